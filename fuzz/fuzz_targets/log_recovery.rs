//! Log recovery of damaged segments: the input is decoded into a plan (batches, small segments,
//! how the first life ends, damage to any file) and run against the public storage API on the
//! in-memory `FaultyBackend`; the invariants are in storage/tests/support/recovery_check.rs
//! (shared with the regression tests). Known storage findings are tolerated unless
//! RIPTIDE_RECOVERY_STRICT=1 is set (see `Tolerate`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use riptide_fuzz::recovery_check::{check_input, Tolerate};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static TOLERATE: OnceLock<Tolerate> = OnceLock::new();
    check_input(data, *TOLERATE.get_or_init(Tolerate::from_env));
});
