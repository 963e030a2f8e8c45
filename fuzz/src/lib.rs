//! Shared code of the fuzz targets. The recovery harness is the storage tests' own file, so a
//! crashing input replays unchanged as a regression test (storage/tests/recovery_fuzz_regressions.rs).

#[path = "../../storage/tests/support/recovery_check.rs"]
pub mod recovery_check;
