//! Log recovery of damaged segments: the input is decoded into a plan (batches, small segments,
//! how the first life ends, damage to any file) and run against the public storage API on the
//! in-memory `FaultyBackend`; the invariants are in storage/tests/support/recovery_check.rs
//! (shared with the regression tests). Nothing is tolerated: findings F1-F4 are fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riptide_fuzz::recovery_check::check_input;

fuzz_target!(|data: &[u8]| {
    check_input(data);
});
