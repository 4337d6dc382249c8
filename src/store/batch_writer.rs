//! The batch writer: puts handed in one at a time (PutBlocks from many
//! clients at once) are written by one thread, in batches of whatever
//! queued while the previous batch flushed, each batch under one flush
//! ([`Store::put_many`]); each put's answer goes to its callback once its
//! batch is durable.
//!
//! Before, every PutBlock took a thread of the blocking pool of its own,
//! which slept on the group commit's condvar until the flush and was woken
//! with all the others: with 32 clients, a third of the node's CPU went to
//! switching threads. Here a put costs one queue push and one wake of the
//! task that waits for it; the thread that drains the queue runs only
//! while there is something in it, so nothing of it outlives the work.
//!
//! Every put that arrives over the network goes through it: a client's
//! PutBlock (admin API) and a peer's store_value (after the pull), so both
//! share the same batches and flushes. The store owns the one writer.
//!
//! Bounded: at most [`MAX_QUEUED_BYTES`] of blocks wait; more are refused,
//! for the caller to say "busy".

use std::future::Future;
use std::mem;
use std::sync::Mutex;

use super::write::PutItem;
use super::{lock, Origin, PutOutcome, Store, StoreError};
use crate::id::Id;

/// Bytes of blocks waiting at most (32 MiB blocks at 1 MiB each).
pub const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Puts written under one flush at most.
const MAX_BATCH: usize = 256;

/// Told a put's result once its batch is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<PutOutcome, StoreError>) + Send>;

/// One put waiting.
struct Queued {
    key: Id,
    data: Vec<u8>,
    origin: Origin,
    copies: u8,
    done: Done,
}

#[derive(Default)]
struct Queue {
    items: Vec<Queued>,
    bytes: usize,
    /// Whether a thread is draining the queue (it drains until it is empty).
    draining: bool,
}

/// What [`BatchWriter::submit`] did with a put.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for the thread draining the queue.
    Queued,
    /// Queued, and no thread drains the queue: the caller must run
    /// [`BatchWriter::drain`] on a thread that may block.
    Drain,
    /// Refused: too many bytes wait already.
    Full,
}

/// Puts queued for one writer thread at a time.
#[derive(Default)]
pub struct BatchWriter {
    queue: Mutex<Queue>,
}

impl BatchWriter {
    /// Queues a put of `data` under `key` (see [`Store::put_with`]);
    /// `done` is told its result. Unless refused, `done` is called exactly
    /// once, by the thread draining the queue.
    pub fn submit(
        &self,
        key: Id,
        data: Vec<u8>,
        (origin, copies): (Origin, u8),
        done: Done,
    ) -> Submitted {
        let mut q = lock(&self.queue);
        if q.bytes + data.len() > MAX_QUEUED_BYTES && !q.items.is_empty() {
            return Submitted::Full;
        }
        q.bytes += data.len();
        q.items.push(Queued {
            key,
            data,
            origin,
            copies,
            done,
        });
        if mem::replace(&mut q.draining, true) {
            Submitted::Queued
        } else {
            Submitted::Drain
        }
    }

    /// Writes queued puts into `store`, a batch under one flush at a time,
    /// until none is left. Blocks: run it where blocking is allowed.
    pub fn drain(&self, store: &Store) {
        // Should a put panic, the queue is left to the next submit to drain
        // rather than to nobody.
        struct Reset<'a>(&'a Mutex<Queue>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    lock(self.0).draining = false;
                }
            }
        }
        let _reset = Reset(&self.queue);
        loop {
            let batch: Vec<Queued> = {
                let mut q = lock(&self.queue);
                if q.items.is_empty() {
                    q.draining = false;
                    return;
                }
                let n = q.items.len().min(MAX_BATCH);
                let batch: Vec<Queued> = q.items.drain(..n).collect();
                q.bytes -= batch.iter().map(|b| b.data.len()).sum::<usize>();
                batch
            };
            let items: Vec<PutItem<'_>> = batch
                .iter()
                .map(|b| PutItem {
                    key: b.key,
                    data: &b.data,
                    origin: b.origin,
                    copies: b.copies,
                })
                .collect();
            let results = store.put_many(&items);
            drop(items);
            for (queued, result) in batch.into_iter().zip(results) {
                (queued.done)(result);
            }
        }
    }
}

impl Store {
    /// Queues a put of `data` under `key` for the store's batch writer (see
    /// [`Store::put_with`]); the future resolves once the batch holding it
    /// is durable, with no thread of its own waiting meanwhile. The first
    /// put into an idle writer starts the thread that drains it (the
    /// runtime's blocking pool when there is one). Refused at once with
    /// [`StoreError::Busy`] when too many bytes wait.
    pub fn put_queued(
        &self,
        key: Id,
        data: Vec<u8>,
        origin: Origin,
        copies: u8,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send + 'static {
        let (tx, rx) = futures::channel::oneshot::channel();
        let done: Done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let refused = match self.inner.writer.submit(key, data, (origin, copies), done) {
            Submitted::Queued => false,
            Submitted::Drain => {
                let store = self.clone();
                let drain = move || store.inner.writer.drain(&store);
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => drop(rt.spawn_blocking(drain)),
                    Err(_) => drop(std::thread::spawn(drain)),
                }
                false
            }
            Submitted::Full => true,
        };
        async move {
            if refused {
                return Err(StoreError::Busy);
            }
            rx.await.unwrap_or(Err(StoreError::Busy))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use std::sync::mpsc;

    fn store(dir: &std::path::Path) -> Store {
        let cfg = StoreConfig {
            min_free_bytes: 0,
            min_free_percent: 0,
            ..StoreConfig::default()
        };
        Store::open(dir, cfg).unwrap().0
    }

    #[test]
    fn queued_puts_are_written_in_batches_and_each_is_answered_once_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        let writer = BatchWriter::default();
        let (tx, rx) = mpsc::channel();
        let blocks: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().repeat(1000)).collect();
        let mut drains = 0;
        for (i, data) in blocks.iter().enumerate() {
            let tx = tx.clone();
            let submitted = writer.submit(
                Id::of_block(data),
                data.clone(),
                (Origin::Pinned, 0),
                Box::new(move |r| tx.send((i, r)).unwrap()),
            );
            drains += usize::from(submitted == Submitted::Drain);
        }
        // The same block twice in one batch: the second was already had.
        let tx2 = tx.clone();
        writer.submit(
            Id::of_block(&blocks[0]),
            blocks[0].clone(),
            (Origin::Pinned, 0),
            Box::new(move |r| tx2.send((usize::MAX, r)).unwrap()),
        );
        // A block whose bytes are not its key's is refused alone.
        let tx3 = tx.clone();
        writer.submit(
            Id::of_block(b"other"),
            b"bytes".to_vec(),
            (Origin::Pinned, 0),
            Box::new(move |r| tx3.send((usize::MAX - 1, r)).unwrap()),
        );
        assert_eq!(drains, 1, "one drain for everything queued before it ran");
        writer.drain(&store);
        drop(tx);
        let answers: Vec<_> = rx.iter().collect();
        assert_eq!(answers.len(), 302, "every put answered once");
        for (i, r) in answers {
            match i {
                usize::MAX => assert_eq!(r.unwrap(), PutOutcome::AlreadyHad),
                n if n == usize::MAX - 1 => {
                    assert!(matches!(r, Err(StoreError::HashMismatch { .. })))
                }
                _ => assert_eq!(r.unwrap(), PutOutcome::Stored),
            }
        }
        assert_eq!(store.block_count(), 300);
        let again = writer.submit(
            Id::of_block(&blocks[1]),
            blocks[1].clone(),
            (Origin::Replica, 0),
            Box::new(|r| assert_eq!(r.unwrap(), PutOutcome::AlreadyHad)),
        );
        assert_eq!(again, Submitted::Drain, "the drain ended with the queue");
        writer.drain(&store);
        drop(store);
        let reopened = store_reopen(tmp.path());
        for data in &blocks {
            assert_eq!(
                reopened.get(&Id::of_block(data)).unwrap().as_deref(),
                Some(&data[..])
            );
        }
    }

    fn store_reopen(dir: &std::path::Path) -> Store {
        for _ in 0..100 {
            match Store::open(dir, StoreConfig::default()) {
                Ok((s, _)) => return s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        store(dir)
    }

    #[test]
    fn a_full_queue_refuses_and_an_empty_one_takes_any_block() {
        let writer = BatchWriter::default();
        let big = vec![7u8; MAX_QUEUED_BYTES - 10];
        let ok = writer.submit(
            Id::of_block(&big),
            big,
            (Origin::Pinned, 0),
            Box::new(|_| {}),
        );
        assert_eq!(ok, Submitted::Drain);
        let more = vec![8u8; 100];
        let refused = writer.submit(
            Id::of_block(&more),
            more,
            (Origin::Pinned, 0),
            Box::new(|_| panic!("a refused put is not answered")),
        );
        assert_eq!(refused, Submitted::Full);
    }

    #[test]
    fn put_queued_answers_once_written_inside_a_runtime_and_outside_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        let a = b"queued in a runtime".to_vec();
        let b = b"queued with no runtime".to_vec();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let put = store.put_queued(Id::of_block(&a), a.clone(), Origin::Replica, 3);
        assert_eq!(rt.block_on(put).unwrap(), PutOutcome::Stored);
        drop(rt);
        let put = store.put_queued(Id::of_block(&b), b.clone(), Origin::Replica, 3);
        assert_eq!(
            futures::executor::block_on(put).unwrap(),
            PutOutcome::Stored
        );
        let bad = store.put_queued(Id::of_block(b"x"), b"y".to_vec(), Origin::Replica, 3);
        assert!(matches!(
            futures::executor::block_on(bad),
            Err(StoreError::HashMismatch { .. })
        ));
        drop(store);
        let reopened = store_reopen(tmp.path());
        assert_eq!(reopened.get(&Id::of_block(&a)).unwrap(), Some(a));
        assert_eq!(reopened.get(&Id::of_block(&b)).unwrap(), Some(b));
    }
}
