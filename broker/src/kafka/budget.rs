//! Request memory of one shard: how many request bytes its connections may hold at once.
//!
//! Budget is taken for payload bytes once they have arrived (`Held::take` after each read), never
//! for a size prefix: a client announcing 100 MiB and sending nothing holds nothing. Three pools:
//!
//! - **main** (`Shard::request_budget`, `SHARD_REQUEST_BYTES_IN_FLIGHT_MAX`): every request
//!   takes from it first.
//! - **reserve** (`SHARD_REQUEST_RESERVE_BYTES`): only requests up to
//!   `RESERVE_REQUEST_BYTES_MAX` may use it, and only when main has no room. Big requests that
//!   have taken all of main (or are waiting for it) do not starve ApiVersions, Metadata and
//!   ordinary produce requests.
//! - **finisher** (one token): taking budget piece by piece means that partly read requests can
//!   together hold all of main while each waits for more, and none could ever finish. A request
//!   that has to wait also races for the finisher token; the holder reads the rest of its payload
//!   without budget and keeps the token until its response is written. So some request always
//!   completes, and the overdraft is at most one request (`socket.request.max.bytes`) per shard.

use crate::constants::{RESERVE_REQUEST_BYTES_MAX, SHARD_REQUEST_RESERVE_BYTES};
use futures::future::{poll_fn, Future};
use glommio::sync::Semaphore;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

/// Units of the finisher pool: one request at a time may read past the budget.
const FINISHER_TOKENS: u64 = 1;

/// The semaphores a shard's connections take request memory from.
pub struct RequestBudget {
    main: Rc<Semaphore>,
    reserve: Semaphore,
    finisher: Semaphore,
}

/// The pools were closed (the shard is stopping).
#[derive(Debug, thiserror::Error)]
#[error("request budget closed")]
pub struct BudgetClosed;

impl RequestBudget {
    /// `main` is the shard's `request_budget`; the reserve and the finisher token are added here.
    pub fn new(main: Rc<Semaphore>) -> Rc<RequestBudget> {
        Self::with_reserve(main, SHARD_REQUEST_RESERVE_BYTES)
    }

    pub fn with_reserve(main: Rc<Semaphore>, reserve_bytes: u64) -> Rc<RequestBudget> {
        Rc::new(RequestBudget { main, reserve: Semaphore::new(reserve_bytes), finisher: Semaphore::new(FINISHER_TOKENS) })
    }

    /// Budget for one request of `size` bytes, empty until `take` is called.
    pub fn hold(self: &Rc<Self>, size: usize) -> Held {
        Held { budget: self.clone(), small: size <= RESERVE_REQUEST_BYTES_MAX, main: 0, reserve: 0, finisher: false }
    }
}

/// Which pool a waiting `take` got its units from.
enum Granted {
    Main,
    Reserve,
    Finisher,
}

/// The budget one request holds; returned to the pools when dropped (once the response is
/// written, or when the connection closes mid-request).
pub struct Held {
    budget: Rc<RequestBudget>,
    small: bool,
    main: u64,
    reserve: u64,
    finisher: bool,
}

impl Held {
    /// Accounts for `units` more bytes of this request, waiting for room if there is none.
    pub async fn take(&mut self, units: u64) -> Result<(), BudgetClosed> {
        if self.finisher {
            return Ok(()); // the rest of this request is the shard's one overdraft
        }
        let b = &*self.budget;
        if b.main.try_acquire(units).map_err(|_| BudgetClosed)? {
            self.main += units;
            return Ok(());
        }
        if self.small && b.reserve.try_acquire(units).map_err(|_| BudgetClosed)? {
            self.reserve += units;
            return Ok(());
        }
        match self.wait(units).await? {
            Granted::Main => self.main += units,
            Granted::Reserve => self.reserve += units,
            Granted::Finisher => self.finisher = true,
        }
        Ok(())
    }

    /// Waits for whichever comes first: room in main, room in the reserve (small requests
    /// only), or the finisher token.
    async fn wait(&self, units: u64) -> Result<Granted, BudgetClosed> {
        let b = &*self.budget;
        let granted = {
            let mut main = pin!(b.main.acquire(units));
            let mut reserve = pin!(b.reserve.acquire(units));
            let mut finisher = pin!(b.finisher.acquire(FINISHER_TOKENS));
            let small = self.small;
            poll_fn(|cx| {
                if let Poll::Ready(r) = main.as_mut().poll(cx) {
                    return Poll::Ready(r.map(|()| Granted::Main));
                }
                if small {
                    if let Poll::Ready(r) = reserve.as_mut().poll(cx) {
                        return Poll::Ready(r.map(|()| Granted::Reserve));
                    }
                }
                if let Poll::Ready(r) = finisher.as_mut().poll(cx) {
                    return Poll::Ready(r.map(|()| Granted::Finisher));
                }
                Poll::Pending
            })
            .await
        };
        // glommio wakes a waiter and sets its units aside before the waiter runs; a loser dropped
        // after being woken would leave those units unclaimed until the next release. Signalling
        // zero units re-runs the wake-up so that another waiter gets them.
        b.main.signal(0);
        b.reserve.signal(0);
        b.finisher.signal(0);
        granted.map_err(|_| BudgetClosed)
    }

    /// Bytes taken from (main, reserve), and whether this request holds the finisher token.
    pub fn units(&self) -> (u64, u64, bool) {
        (self.main, self.reserve, self.finisher)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let b = &*self.budget;
        if self.main > 0 {
            b.main.signal(self.main);
        }
        if self.reserve > 0 {
            b.reserve.signal(self.reserve);
        }
        if self.finisher {
            b.finisher.signal(FINISHER_TOKENS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use futures::FutureExt;

    #[test]
    fn budget_small_request_uses_reserve_when_main_is_exhausted() {
        run(|| async {
            let budget = RequestBudget::with_reserve(Rc::new(Semaphore::new(1000)), 100);
            let mut big = budget.hold(RESERVE_REQUEST_BYTES_MAX + 1);
            big.take(1000).await.unwrap();
            let mut small = budget.hold(80);
            small.take(80).now_or_never().expect("small request must not wait").unwrap();
            assert_eq!(small.units(), (0, 80, false));
            // a big request never touches the reserve: it waits, and gets the finisher token
            let mut big2 = budget.hold(RESERVE_REQUEST_BYTES_MAX + 1);
            big2.take(10).now_or_never().expect("finisher token is free").unwrap();
            assert_eq!(big2.units(), (0, 0, true));
            drop((small, big));
            assert_eq!(budget.main.available(), 1000);
            assert_eq!(budget.reserve.available(), 100);
        });
    }

    #[test]
    fn budget_partly_read_requests_cannot_deadlock() {
        run(|| async {
            // two half-read requests hold all of main; each needs more to finish
            let budget = RequestBudget::with_reserve(Rc::new(Semaphore::new(100)), 0);
            let mut a = budget.hold(RESERVE_REQUEST_BYTES_MAX * 2);
            let mut b = budget.hold(RESERVE_REQUEST_BYTES_MAX * 2);
            a.take(50).await.unwrap();
            b.take(50).await.unwrap();
            a.take(50).now_or_never().expect("one request finishes on the finisher token").unwrap();
            assert!(a.units().2);
            {
                let mut b_more = pin!(b.take(50));
                assert!(b_more.as_mut().now_or_never().is_none(), "only one overdraft at a time");
                drop(a); // its response was written: main has room again
                b_more.await.unwrap();
            }
            assert_eq!(b.units(), (100, 0, false));
        });
    }

    #[test]
    fn budget_released_units_go_to_the_next_waiter() {
        run(|| async {
            let budget = RequestBudget::with_reserve(Rc::new(Semaphore::new(10)), 0);
            let mut holder = budget.hold(RESERVE_REQUEST_BYTES_MAX * 2);
            holder.take(10).await.unwrap();
            let mut finisher = budget.hold(RESERVE_REQUEST_BYTES_MAX * 2);
            finisher.take(1).await.unwrap(); // takes the token
            let waiter = glommio::spawn_local({
                let budget = budget.clone();
                async move {
                    let mut w = budget.hold(RESERVE_REQUEST_BYTES_MAX * 2);
                    w.take(10).await.unwrap();
                    w.units()
                }
            });
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await; // let it wait
            drop(holder);
            let timeout = glommio::timer::sleep(std::time::Duration::from_secs(5));
            match futures::future::select(waiter, pin!(timeout)).await {
                futures::future::Either::Left((units, _)) => assert_eq!(units, (10, 0, false)),
                futures::future::Either::Right(_) => panic!("waiter not woken when main had room again"),
            }
        });
    }
}
