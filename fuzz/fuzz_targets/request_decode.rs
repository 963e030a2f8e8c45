//! Request decoding, as the broker does it, from arbitrary bytes (must never panic or abort):
//! 1. the input as a whole frame payload (after the 4-byte size): preamble, registry lookup,
//!    version check, request header, body (`decode_check::decode_frame`);
//! 2. the input as a body for one registered (key, version) pair picked by its first byte, so
//!    every pair is reached without a valid header (`decode_check::decode_request`).
//! Produce bodies also go through `storage::validate_batches` and `storage::BatchHeader::parse`
//! (`decode_check::check_records`, which asserts the two agree).
//!
//! Allocation oracle: no fresh allocation (`alloc`, not growth by `realloc`) while decoding may
//! exceed `ALLOC_BYTES_PER_INPUT_BYTE` per input byte (plus `ALLOC_SLACK_BYTES`). Copies of input
//! stay below; reserving capacity for a count read from the wire does not (a 100 MiB frame with
//! a hostile count reserved ~11 GB at once before the kafka-protocol `prealloc_len` patch).
#![no_main]

use broker::kafka::api::decode_check::{self, FrameOutcome};
use broker::kafka::api::{Registry, REGISTRY};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const ALLOC_BYTES_PER_INPUT_BYTE: usize = 64;
const ALLOC_SLACK_BYTES: usize = 64 << 10;

/// Tracks the largest fresh allocation since the last reset.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    // Growth (realloc) is not counted: it follows elements actually decoded.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

fn pairs() -> &'static [(kafka_protocol::messages::ApiKey, i16)] {
    static PAIRS: OnceLock<Vec<(kafka_protocol::messages::ApiKey, i16)>> = OnceLock::new();
    PAIRS.get_or_init(decode_check::registered_versions)
}

thread_local! {
    static REG: Registry = Registry::new(REGISTRY).expect("registry");
}

/// Runs `f` and panics if it made an allocation larger than the input justifies.
fn bounded<T>(what: &str, input_len: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    let limit = ALLOC_BYTES_PER_INPUT_BYTE * input_len + ALLOC_SLACK_BYTES;
    assert!(largest <= limit, "{what}: a fresh allocation of {largest} bytes decoding {input_len} input bytes (limit {limit})");
    out
}

fuzz_target!(|data: &[u8]| {
    let _ = pairs();
    let frame = Bytes::copy_from_slice(data);
    let _: FrameOutcome = REG.with(|reg| bounded("frame", data.len(), || decode_check::decode_frame(reg, frame)));
    if let Some((&pick, body)) = data.split_first() {
        let (key, version) = pairs()[usize::from(pick) % pairs().len()];
        let mut body = Bytes::copy_from_slice(body);
        let what = format!("{key:?} v{version} body");
        let _ = bounded(&what, data.len(), || decode_check::decode_request(key, version, &mut body));
    }
    // The records parsers on their own, on the raw input (Produce bodies rarely decode).
    decode_check::check_records(&Bytes::copy_from_slice(data));
});
