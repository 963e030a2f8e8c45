//! Shard-wide sync coalescing for the DMA backend.
//!
//! With one fdatasync per partition per write round, syncs scale with the partition count: 100
//! partitions on one shard meant 100 fdatasyncs per round and produce acks of ~270 ms at only
//! 10 MB/s. A `SyncGroup` (one per executor thread and device) turns every `sync` issued while a
//! round is running into one `syncfs` for the next round. syncfs makes durable everything written
//! on the filesystem before it starts: O_DIRECT data already sent to the device, plus metadata
//! (file sizes, extents), plus the device cache flush.
//!
//! Ticket rule: a caller's writes completed before it took its ticket, so a round that *starts*
//! after the ticket covers it; rounds already running do not.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use event_listener::Event;

thread_local! {
    static GROUPS: RefCell<HashMap<u64, Rc<SyncGroup>>> = RefCell::new(HashMap::new());
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out so far.
    requested: u64,
    /// Every ticket <= this one is covered by a finished round.
    completed: u64,
    running: bool,
    /// Tickets (from, to] of the last failed round and its error.
    failure: Option<(u64, u64, String)>,
}

pub struct SyncGroup {
    /// A directory on the device, kept open for syncfs for the life of the thread.
    dir: OwnedFd,
    state: RefCell<SyncState>,
    done: Event,
    rounds: Cell<u64>,
}

impl SyncGroup {
    /// The group of `dev` on this thread, created with `dir` (a directory on that device).
    pub fn for_device(dev: u64, dir: &Path) -> io::Result<Rc<SyncGroup>> {
        if let Some(g) = GROUPS.with(|g| g.borrow().get(&dev).cloned()) {
            return Ok(g);
        }
        let dir: OwnedFd = std::fs::File::open(dir)?.into();
        let group = Rc::new(SyncGroup { dir, state: RefCell::default(), done: Event::new(), rounds: Cell::new(0) });
        GROUPS.with(|g| g.borrow_mut().insert(dev, group.clone()));
        Ok(group)
    }

    /// syncfs rounds run so far (observability and tests).
    pub fn rounds(&self) -> u64 {
        self.rounds.get()
    }

    /// Resolves once a syncfs that started after this call has finished.
    pub async fn sync(&self) -> io::Result<()> {
        let ticket = {
            let mut st = self.state.borrow_mut();
            st.requested += 1;
            st.requested
        };
        loop {
            let listener = self.done.listen();
            let lead = {
                let mut st = self.state.borrow_mut();
                if st.completed >= ticket {
                    return outcome(&st, ticket);
                }
                if st.running {
                    None
                } else {
                    st.running = true;
                    Some((st.completed, st.requested))
                }
            };
            match lead {
                Some((from, to)) => self.round(from, to).await,
                None => listener.await,
            }
        }
    }

    /// One syncfs covering tickets (from, to].
    async fn round(&self, from: u64, to: u64) {
        let guard = RoundGuard { group: self };
        let fd = self.dir.as_raw_fd();
        // syncfs blocks: run it off the executor thread. The fd lives as long as the group,
        // which lives as long as the thread.
        let result = glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: syncfs only reads the descriptor, which stays open (see above).
                if unsafe { libc::syncfs(fd) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
            })
            .await;
        std::mem::forget(guard);
        self.rounds.set(self.rounds.get() + 1);
        let mut st = self.state.borrow_mut();
        st.running = false;
        st.completed = to;
        if let Err(e) = result {
            tracing::error!(error = %e, "syncfs failed");
            st.failure = Some((from, to, e.to_string()));
        }
        drop(st);
        self.done.notify(usize::MAX);
    }
}

fn outcome(st: &SyncState, ticket: u64) -> io::Result<()> {
    match &st.failure {
        Some((from, to, msg)) if *from < ticket && ticket <= *to => Err(io::Error::other(format!("syncfs: {msg}"))),
        _ => Ok(()),
    }
}

/// If the leading task is dropped mid-round, let another waiter lead instead of hanging.
struct RoundGuard<'a> {
    group: &'a SyncGroup,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        self.group.state.borrow_mut().running = false;
        self.group.done.notify(usize::MAX);
    }
}
