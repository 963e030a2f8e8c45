//! Idempotent producers against a broker whose syncs are held or failed on purpose: a retried
//! batch is answered only once its original is durable, with the original's outcome, and two
//! copies racing on two connections are appended once.

mod common;
use bytes::Bytes;
use common::{encode_request, Client, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use riptide_testkit::idempotent_batch;
use std::io::ErrorKind;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use storage::io::Syncer;

const PRODUCE_VERSION: i16 = 7;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// Syncs wait while the gate is closed; when it opens they succeed or fail as told.
#[derive(Clone, Default)]
struct Gate {
    state: Arc<(Mutex<(bool, bool)>, Condvar)>, // (closed, fail)
}

impl Gate {
    fn syncer(&self) -> Syncer {
        let state = self.state.clone();
        Syncer::Injected(Arc::new(move || {
            let (lock, cv) = &*state;
            let mut g = lock.lock().unwrap();
            while g.0 {
                g = cv.wait(g).unwrap();
            }
            if g.1 { Err(std::io::Error::other("injected: EIO")) } else { Ok(()) }
        }))
    }

    fn set(&self, closed: bool, fail: bool) {
        let (lock, cv) = &*self.state;
        *lock.lock().unwrap() = (closed, fail);
        cv.notify_all();
    }
}

/// Opens the gate when the test ends, pass or fail, so the broker can flush and stop.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set(false, false);
    }
}

fn produce_frame(correlation: i32, acks: i16, records: Bytes) -> Vec<u8> {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("idem"));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 30_000;
    req.topic_data = vec![t];
    encode_request(ApiKey::Produce, PRODUCE_VERSION, correlation, &req)
}

/// (error code, base offset) of partition 0 in a Produce response frame.
fn produce_answer(frame: Vec<u8>) -> (i16, i64) {
    let mut body = Bytes::from(frame).slice(4..);
    let resp = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn send_produce(c: &mut Client, correlation: i32, records: Bytes) {
    c.send(&produce_frame(correlation, -1, records));
}

fn nothing_within(c: &mut Client, wait: Duration) -> bool {
    c.stream.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let silent = matches!(c.stream.peek(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    silent
}

#[test]
fn idempotence_retry_in_flight_waits_for_the_original_and_shares_its_failure() {
    let gate = Gate::default();
    let broker = TestBroker::start_with(1, Some(gate.syncer()));
    let _open = OpenOnDrop(gate.clone());
    let (mut a, mut b) = (broker.connect(), broker.connect());
    send_produce(&mut a, 1, idempotent_batch(1_000, 0, 0, 2));
    assert_eq!(produce_answer(a.recv().unwrap()), (0, 0));
    gate.set(true, true);
    let batch = idempotent_batch(1_000, 0, 2, 2);
    send_produce(&mut a, 2, batch.clone());
    std::thread::sleep(Duration::from_millis(100));
    send_produce(&mut b, 3, batch);
    assert!(nothing_within(&mut b, Duration::from_millis(500)), "the retry was answered before its original was durable");
    gate.set(false, true);
    assert_eq!(produce_answer(a.recv().unwrap()).0, KAFKA_STORAGE_ERROR, "original");
    assert_eq!(produce_answer(b.recv().unwrap()).0, KAFKA_STORAGE_ERROR, "the retry shares the original's failure");
}

#[test]
fn idempotence_racing_copies_on_two_connections_are_appended_once() {
    let gate = Gate::default();
    let broker = TestBroker::start_with(1, Some(gate.syncer()));
    let _open = OpenOnDrop(gate.clone());
    let (mut a, mut b, mut filler) = (broker.connect(), broker.connect(), broker.connect());
    send_produce(&mut a, 1, idempotent_batch(2_000, 0, 0, 1));
    assert_eq!(produce_answer(a.recv().unwrap()), (0, 0));
    // Hold the writer in a sync and fill the partition's write queue (8 MiB): the next appends
    // wait for queue space.
    gate.set(true, false);
    let big = riptide_testkit::unkeyed_batch(1, Bytes::from(vec![7u8; 1000 << 10]), 1);
    for i in 0..10 {
        filler.send(&produce_frame(100 + i, 0, big.clone()));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Larger than what is left in the queue (8 x 1000 KiB queued of 8 MiB), so both copies
    // wait for space (appends queue up behind a sync that does not finish).
    let copy = idempotent_batch(2_000, 0, 1, 20_000);
    assert!(copy.len() > 300 << 10);
    send_produce(&mut a, 2, copy.clone());
    send_produce(&mut b, 3, copy);
    std::thread::sleep(Duration::from_millis(300));
    gate.set(false, false);
    let (ea, oa) = produce_answer(a.recv().unwrap());
    let (eb, ob) = produce_answer(b.recv().unwrap());
    assert_eq!((ea, eb), (0, 0));
    assert_eq!(oa, ob, "both copies answered with the one offset the batch has");
}
