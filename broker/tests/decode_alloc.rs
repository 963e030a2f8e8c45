//! Decoding a request never reserves memory for element counts it has not seen bytes for.
//! Found by the `request_decode` fuzz target's allocation oracle (fuzz/): kafka-protocol
//! reserved `min(count, bytes left) * size_of::<T>()`, over 100 bytes per frame byte, so a
//! 100 MiB frame with a hostile count asked for ~11 GB at once (an abort if refused). Fixed in
//! third_party/kafka-protocol (`prealloc_len`, RIPTIDE-PATCH.md).
//!
//! Not covered here (a separate finding, see fuzz/README.md): decoding real elements may take far
//! more memory than their bytes on the wire, e.g. Metadata v0 topics of 2 bytes (a null name)
//! become 128-byte structs. One test function: the allocation counter is global to the binary.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use riptide_broker::kafka::api::decode_check;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tracks the largest fresh allocation (`alloc`): where an up-front reservation shows.
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
    // Growth (realloc) is not counted: it follows elements actually decoded.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// The largest fresh allocation made by `f`.
fn largest_during(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

/// `zeros` zero bytes (empty strings, zero integers, empty arrays), then a huge element count
/// (`compact`: as an unsigned varint, else as an i32), then `fill` bytes of 0xff.
fn hostile_body(zeros: usize, compact: bool, fill: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(zeros + 5 + fill);
    b.put_bytes(0, zeros);
    if compact {
        b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    } else {
        b.put_i32(i32::MAX);
    }
    b.put_bytes(0xff, fill);
    b.freeze()
}

#[test]
fn decode_alloc_is_bounded_by_bytes_seen() {
    // The fuzz input (direct mode: first byte picked CreateTopics v4; the body claims
    // 0x31000001 topics in 1441 bytes). Before the fix: one 160,944-byte allocation.
    let input = include_bytes!("../../fuzz/seeds/request_decode/regress-create-topics-v4-prealloc");
    let body = Bytes::from_static(&input[1..]);
    let largest = largest_during(|| {
        let _ = decode_check::decode_request(ApiKey::CreateTopics, 4, &mut body.clone());
    });
    assert!(largest <= 64 << 10, "CreateTopics v4: one allocation of {largest} bytes for a {}-byte body", body.len());

    // Every registered (key, version), with the hostile count at each of the first 48 body
    // positions, in a 1 MiB body. Before the fix: allocations of megabytes (1 Mi elements).
    const FILL: usize = 1 << 20;
    let bodies: Vec<(usize, bool, Bytes)> =
        (0..48).flat_map(|z| [false, true].map(|c| (z, c, hostile_body(z, c, FILL)))).collect();
    let mut worst = (0, String::new());
    for (key, version) in decode_check::registered_versions() {
        for (zeros, compact, body) in &bodies {
            let largest = largest_during(|| {
                let _ = decode_check::decode_request(key, version, &mut body.clone());
            });
            if largest > worst.0 {
                worst = (largest, format!("{key:?} v{version}, count at {zeros}, compact {compact}"));
            }
        }
    }
    assert!(worst.0 <= 256 << 10, "one allocation of {} bytes decoding a 1 MiB body: {}", worst.0, worst.1);
}
