//! Log recovery under damage, replaying inputs of the `log_recovery` fuzz target (fuzz/) through
//! the same harness and invariants (tests/support/recovery_check.rs). Crashing inputs are kept
//! here as bytes; the `ignore`d tests are open storage findings (fuzz/README.md), reproduced
//! with nothing tolerated: un-ignore one when its finding is fixed (and drop its `Tolerate` flag).
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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/log_recovery");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/log_recovery") {
        let path = entry.unwrap().path();
        check_input(&std::fs::read(&path).unwrap(), Tolerate::KNOWN);
        n += 1;
    }
    assert!(n >= 4, "{n} seeds in {}", dir.display());
}
