//! Directory operations (removing a deleted topic's directories, renames, directory syncs) run
//! off the shard's reactor: while one runs, every other task of the shard keeps running.
extern crate riptide_storage as storage;
mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use storage::{DmaBackend, IoBackend};

/// Files in the directory removed; takes the kernel ~0.5-1 s, far above the gap allowed.
const FILES: usize = 40_000;
const TICK_MS: u64 = 5;
const GAP_MAX_MS: u128 = 250;

#[test]
fn reactor_remove_dir_all_does_not_stall_other_tasks() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("deleted-topic-0");
        std::fs::create_dir_all(&victim).unwrap();
        for i in 0..FILES {
            std::fs::write(victim.join(format!("{i:08}.log")), b"x").unwrap();
        }
        let done = Rc::new(Cell::new(false));
        let worst = Rc::new(Cell::new(0u128));
        let (d, w) = (done.clone(), worst.clone());
        let ticker = glommio::spawn_local(async move {
            let mut last = Instant::now();
            while !d.get() {
                glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
                w.set(w.get().max(last.elapsed().as_millis()));
                last = Instant::now();
            }
        });
        let started = Instant::now();
        DmaBackend::new().remove_dir_all(&victim).await.unwrap();
        let took = started.elapsed();
        done.set(true);
        ticker.await;
        assert!(!victim.exists());
        assert!(worst.get() < GAP_MAX_MS, "reactor stalled {} ms while removing {FILES} files ({took:?})", worst.get());
    });
}
