//! Failing writes and fsyncs poison the log; nothing is acknowledged that is not durable. The
//! journal's files are O_DSYNC (a completed write is durable), so a journal failure is a failed
//! or short write; a failed fsync hits the segment files' flush, after the acknowledgement.
extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::io::Faults;
use storage::{Durability, Error, FaultyBackend, Log};

async fn poisoned_after(faults: impl FnOnce(u64, u64) -> Faults) {
    let backend = FaultyBackend::new();
    let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
    let base = append_flushed(&log, batch(2, 1, 100)).await;
    assert_eq!(base, 0);
    backend.set_faults(faults(backend.write_count(), backend.sync_count()));
    let info = log.append(batch(2, 2, 100)).await.unwrap();
    let res = log.wait_durable(info.log_end_offset, Durability::Synced).await;
    assert!(matches!(res, Err(Error::Poisoned(_))), "{res:?}");
    assert_eq!(log.high_watermark(), 2, "no ack for the failed batch");
    assert!(log.poisoned().is_some());
    assert!(matches!(log.append(batch(1, 3, 1)).await, Err(Error::Poisoned(_))));
    // Data made durable before the failure stays acknowledgeable; later data does not.
    assert!(log.wait_durable(2, Durability::Synced).await.is_ok());
    assert!(matches!(log.wait_durable(4, Durability::Synced).await, Err(Error::Poisoned(_))));
    assert!(matches!(log.flush().await, Err(Error::Poisoned(_))));
    // Reads of acknowledged data still work.
    assert_eq!(log.read(0, 1000).await.unwrap().batches.len(), 1);
    drop(log);
    backend.crash();
    let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
    assert!(log.log_end_offset() >= 2);
    assert_eq!(read_all(&log, 0).await.len() as i64, log.log_end_offset() / 2);
    append_flushed(&log, batch(1, 4, 1)).await;
}

#[test]
fn fault_injection_failed_write_poisons() {
    run(|| async { poisoned_after(|w, _| Faults { fail_write_at: Some(w + 1), ..Faults::default() }).await });
}

/// The segment files' sync fails: what was acknowledged stays acknowledged (it is durable in the
/// journal) and readable, the flush reports the failure, and the log refuses further writes.
#[test]
fn fault_injection_failed_segment_fsync_poisons_after_the_ack() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        append_flushed(&log, batch(2, 1, 100)).await;
        let info = log.append(batch(2, 2, 100)).await.unwrap();
        log.wait_durable(info.log_end_offset, Durability::Synced).await.expect("journaled: acknowledged");
        backend.set_faults(Faults { fail_sync_at: Some(backend.sync_count() + 1), ..Faults::default() });
        assert!(matches!(log.flush().await, Err(Error::Poisoned(_))));
        assert!(log.poisoned().is_some());
        assert!(matches!(log.append(batch(1, 3, 1)).await, Err(Error::Poisoned(_))));
        assert_eq!(read_all(&log, 0).await.len(), 2, "acknowledged data still readable");
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await.len(), 2, "and back after a crash, from the journal");
    });
}

#[test]
fn fault_injection_short_write_poisons() {
    run(|| async { poisoned_after(|w, _| Faults { short_write_at: Some((w + 1, 100)), ..Faults::default() }).await });
}

/// A sealed segment whose index survived is not re-read at start; damage in it is found by the
/// first read that reaches it: that read fails naming the file and position, the log stops
/// taking writes, and nothing is deleted.
#[test]
fn fault_injection_corrupt_sealed_segment_found_on_read_takes_log_offline() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut cfg = uncached(config());
        cfg.segment_bytes = 16 << 10;
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg.clone()).await.unwrap();
        for i in 0..60 {
            append_flushed(&log, batch(2, i, 300)).await;
        }
        assert!(log.segment_count() >= 3);
        log.close().await.unwrap();
        let first = std::path::PathBuf::from("/d/t-0/00000000000000000000.log");
        let size = backend.file_len(&first).unwrap();
        backend.corrupt_byte(&first, size / 2);
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.expect("index intact: opens");
        let mut offset = 0;
        let err = loop {
            match log.read(offset, 1 << 20).await {
                Ok(r) => offset = storage::BatchHeader::parse(r.batches.last().unwrap()).unwrap().next_offset(),
                Err(e) => break e,
            }
        };
        match &err {
            Error::CorruptLog { path, position, .. } => {
                assert_eq!(path, &first);
                assert!(*position < size && *position + 400 > size / 2, "position {position} of the damaged batch");
            }
            other => panic!("{other}"),
        }
        assert!(matches!(log.append(batch(1, 1, 1)).await, Err(Error::Poisoned(_))), "no writes after damage");
        assert!(matches!(log.read(0, 100).await, Err(Error::CorruptLog { .. })), "offline: no reads either");
        assert_eq!(backend.file_len(&first), Some(size), "nothing deleted or trimmed");
    });
}

#[test]
fn fault_injection_poison_wakes_all_waiters() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = std::rc::Rc::new(Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap());
        backend.set_faults(Faults { fail_write_at: Some(backend.write_count() + 1), ..Faults::default() });
        let mut tasks = Vec::new();
        for i in 0..20 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let info = log.append(batch(1, i, 10)).await?;
                log.wait_durable(info.log_end_offset, Durability::Synced).await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await, Err(Error::Poisoned(_))));
        }
        assert_eq!(log.high_watermark(), 0);
    });
}

#[test]
fn fault_injection_bad_input_never_panics() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), config()).await.unwrap();
        let good = batch(3, 1, 10);
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 5],
            vec![0xff; 61],
            good[..good.len() - 1].to_vec(),
            [&good[..], &good[..10]].concat(),
            {
                let mut v = good.to_vec();
                v[16] = 1; // magic
                v
            },
            {
                let mut v = good.to_vec();
                v[8..12].copy_from_slice(&(-5i32).to_be_bytes());
                v
            },
            {
                let mut v = good.to_vec();
                v[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
                v
            },
        ];
        for input in inputs {
            assert!(matches!(log.append(input.into()).await, Err(Error::CorruptBatch(_))));
        }
        assert_eq!(log.log_end_offset(), 0);
        assert!(log.poisoned().is_none());
    });
}
