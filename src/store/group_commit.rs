//! Group commit: concurrent writers share one flush instead of each paying
//! for its own.
//!
//! sled makes a write durable by sealing its current log buffer and fsyncing
//! it. Thirty-two puts flushing at once each seal a buffer of one block and
//! queue an fsync, so the disk's fsync rate caps the put rate. Here a writer
//! whose write is done waits for the next flush to *start* after it; only one
//! flush runs at a time, and whoever finds none running starts it, for every
//! write done so far. A lone writer pays one flush, as before; many writers
//! pay about two between them.
//!
//! A flush covers every write that finished before it started, so a waiter
//! takes the result of the latest flush that finished: an error there means
//! the log could not be made durable, and sled refuses every write after it.

use std::sync::{Condvar, Mutex};

use super::lock;

/// The flushes started and finished, by generation number.
#[derive(Default)]
struct State {
    /// Generation of the last flush started (0: none yet).
    started: u64,
    /// Generation of the last flush finished.
    finished: u64,
    /// Whether a flush is running now (the one of generation `started`).
    running: bool,
    /// What the flush of generation `finished` gave.
    result: Option<sled::Error>,
}

/// One group-commit point for a store's flushes.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
}

impl GroupCommit {
    /// Returns once a flush that started after this call began has finished,
    /// running it here if none is running; with that flush's result.
    pub(super) fn flush(
        &self,
        flush: impl Fn() -> Result<(), sled::Error>,
    ) -> Result<(), sled::Error> {
        let mut state = lock(&self.state);
        // The running flush may have started before our write: it does not count.
        let needed = state.started + 1;
        loop {
            if state.finished >= needed {
                return state.result.clone().map_or(Ok(()), Err);
            }
            if !state.running {
                state.running = true;
                state.started += 1;
                let generation = state.started;
                drop(state);
                let result = flush();
                state = lock(&self.state);
                state.running = false;
                state.finished = generation;
                state.result = result.err();
                self.finished.notify_all();
                continue;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn a_lone_writer_runs_its_own_flush() {
        let g = GroupCommit::default();
        let runs = AtomicU64::new(0);
        for _ in 0..3 {
            g.flush(|| {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn many_writers_share_few_flushes_and_each_sees_a_flush_started_after_it() {
        let g = Arc::new(GroupCommit::default());
        // The "disk": writes done so far, and what the last finished flush covered.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let runs = Arc::new(AtomicU64::new(0));
        let writers = 32;
        let start = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let (g, written, durable, runs, start) = (
                    g.clone(),
                    written.clone(),
                    durable.clone(),
                    runs.clone(),
                    start.clone(),
                );
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..20 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        g.flush(|| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            let upto = written.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                            durable.fetch_max(upto, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= mine,
                            "a writer returned before its write was covered by a flush"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs < 640 / 4, "{runs} flushes for 640 writes: not grouped");
    }

    #[test]
    fn a_failed_flush_fails_its_waiters_and_the_next_one_can_succeed() {
        let g = GroupCommit::default();
        let err = g.flush(|| Err(sled::Error::Unsupported("disk gone".into())));
        assert!(err.is_err());
        assert!(g.flush(|| Ok(())).is_ok());
    }
}
