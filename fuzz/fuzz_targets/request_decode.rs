//! Request decoding, as the broker does it, from arbitrary bytes (must never panic or abort):
//! 1. the input as a whole frame payload (after the 4-byte size): preamble, registry lookup,
//!    version check, request header, body (`decode_check::decode_frame`);
//! 2. the input as a body for one registered (key, version) pair picked by its first byte, so
//!    every pair is reached without a valid header (`decode_check::decode_request`).
//! Produce bodies also go through `storage::validate_batches` and `storage::BatchHeader::parse`
//! (`decode_check::check_records`, which asserts the two agree).
#![no_main]

use broker::kafka::api::decode_check::{self, FrameOutcome};
use broker::kafka::api::{Registry, REGISTRY};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn pairs() -> &'static [(kafka_protocol::messages::ApiKey, i16)] {
    static PAIRS: OnceLock<Vec<(kafka_protocol::messages::ApiKey, i16)>> = OnceLock::new();
    PAIRS.get_or_init(decode_check::registered_versions)
}

thread_local! {
    static REG: Registry = Registry::new(REGISTRY).expect("registry");
}

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let _: FrameOutcome = REG.with(|reg| decode_check::decode_frame(reg, frame));
    if let Some((&pick, body)) = data.split_first() {
        let (key, version) = pairs()[usize::from(pick) % pairs().len()];
        let mut body = Bytes::copy_from_slice(body);
        let _ = decode_check::decode_request(key, version, &mut body);
    }
    // The records parsers on their own, on the raw input (Produce bodies rarely decode).
    decode_check::check_records(&Bytes::copy_from_slice(data));
});
