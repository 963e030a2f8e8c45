//! Log recovery under damage, replaying inputs of the `log_recovery` fuzz target (fuzz/) through
//! the same harness and invariants (tests/support/recovery_check.rs). Crashing inputs are kept
//! here as bytes: the storage findings F1-F4 (fuzz/README.md), fixed since, each as found.
//! storage/tests/index_damage.rs covers the same findings directly (F2's input no longer
//! reaches the damage it was minimised for, since segment writes are batched by the journal).
extern crate riptide_storage as storage;

#[path = "support/recovery_check.rs"]
mod recovery_check;

use recovery_check::{check_input, Outcome};

#[test]
fn recovery_fuzz_empty_input_is_one_batch_closed_cleanly() {
    assert_eq!(check_input(&[]), Outcome::Recovered { kept_all: true, corrupt_reads: 0 });
}

#[test]
fn recovery_fuzz_seed_inputs_hold() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/log_recovery");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/log_recovery") {
        let path = entry.unwrap().path();
        check_input(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 4, "{n} seeds in {}", dir.display());
}

/// F4, fuzz/artifacts/log_recovery/f4-truncated-sealed-segment-empty-read: segments of 512 bytes;
/// segment 0 (batches 0..=7) is truncated to its first batch. Its index files still load (no
/// offset entries, a time entry below 8), so recovery trusts it to reach offset 8; a read at
/// offset 1 returns no batches and no error, below a high watermark of 33.
const F4_TRUNCATED_SEALED_SEGMENT: &[u8] = &[
    0x10, 0x05, 0x1e, 0x02, 0x02, 0x01, 0x02, 0x3a, 0x00, 0x05, 0x0f, 0x00, 0x00, 0x00, 0x02, 0x01, 0x78, 0x01, 0x78,
    0x00,
];

#[test]
fn recovery_fuzz_f4_truncated_sealed_segment() {
    check_input(F4_TRUNCATED_SEALED_SEGMENT);
}

/// F2, fuzz/artifacts/log_recovery/f2-damaged-offset-index-skips-batches: segments of 1 KiB; one
/// byte of the first entry of `00000000000000000006.index` is zeroed, so it maps a lower
/// relative offset to the position of a later batch. The damaged index still decodes (entries
/// increasing, within bounds) and only its last entry is spot-checked, so recovery keeps it; a
/// read at offset 6 returns the batch at 8 (6 and 7 silently skipped).
const F2_DAMAGED_OFFSET_INDEX: &[u8] = &[
    0x01, 0x02, 0x13, 0x02, 0x13, 0x60, 0x00, 0x03, 0x01, 0x00, 0xc8, 0x03, 0x64, 0x01, 0x32, 0x7f, 0x02, 0x81, 0x05,
    0x1e, 0x02, 0x07, 0x00, 0x05, 0x80,
];

#[test]
fn recovery_fuzz_f2_damaged_offset_index() {
    check_input(F2_DAMAGED_OFFSET_INDEX);
}

/// F1, fuzz/artifacts/log_recovery/f1-damaged-time-index-skips-batches: segments of 512 bytes,
/// 49 batches, closed cleanly; byte 0 of `00000000000000000042.timeindex` is flipped (the first
/// entry's timestamp turns negative). The entries still increase, so the index loads;
/// `offset_for_timestamp(1411)` answers batch 43 instead of 42.
const F1_DAMAGED_TIME_INDEX: &[u8] = &[0x30, 0x00, 0x30, 0x30, 0x30, 0x30];

#[test]
fn recovery_fuzz_f1_damaged_time_index() {
    check_input(F1_DAMAGED_TIME_INDEX);
}

/// F3, fuzz/artifacts/log_recovery/f3-flipped-base-offset-*: segments of 1 KiB, 64 batches,
/// closed cleanly; one byte of a batch's base offset (outside the CRC) in sealed segment 0 is
/// flipped. The segment's index loads, so it is not scanned; reads do not check base offsets:
/// a read at 0 returns the batch at 1 (batch 0 skipped), or a read at 5 returns nothing.
const F3_BASE_OFFSET_SKIPPED: &[u8] = &[0x01, 0xff, 0xff, 0x01, 0x00, 0x01];
const F3_BASE_OFFSET_EMPTY_READ: &[u8] = &[0x01, 0xff, 0xff, 0x01, 0x00, 0x01, 0x01, 0x02, 0x02];

#[test]
fn recovery_fuzz_f3_flipped_base_offset_skips_batch() {
    check_input(F3_BASE_OFFSET_SKIPPED);
}

#[test]
fn recovery_fuzz_f3_flipped_base_offset_empty_read() {
    check_input(F3_BASE_OFFSET_EMPTY_READ);
}
