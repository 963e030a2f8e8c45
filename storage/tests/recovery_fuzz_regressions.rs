//! Log recovery under damage, replaying inputs of the `log_recovery` fuzz target (fuzz/) through
//! the same harness and invariants (tests/support/recovery_check.rs). Inputs the fuzzer found
//! to crash are kept here as bytes; `fuzz/corpus/log_recovery` has the rest.
extern crate riptide_storage as storage;

#[path = "support/recovery_check.rs"]
mod recovery_check;

use recovery_check::{check_input, Outcome, Tolerate};

#[test]
fn recovery_fuzz_empty_input_is_one_batch_closed_cleanly() {
    assert_eq!(check_input(&[], Tolerate::NOTHING), Outcome::Recovered { kept_all: true, corrupt_reads: 0 });
}

#[test]
fn recovery_fuzz_seed_inputs_hold() {
    // segment 1 KiB, cache off, 20 batches of 1-4 records; crash; a few kinds of damage.
    let cases: &[&[u8]] = &[
        &[1, 0x40, 19, 3, 100, 1, 50, 2, 200, 0, 0, 3, 30],
        &[1, 0x05, 30, 1, 120, 2, 2, 0, 3, 0, 0x10, 2, 1, 0x02, 0x00],
        &[0, 0x83, 40, 3, 250, 3, 250, 3, 250, 0, 10, 3, 5, 2, 0, 0, 0x01, 0x00, 5, 7],
    ];
    for case in cases {
        check_input(case, Tolerate::NOTHING);
    }
}
