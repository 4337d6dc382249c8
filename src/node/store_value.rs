//! store_value received: pull the block from the requester over TCP, check its
//! hash, store it durably, and only then answer "saved".
//!
//! Guarded against a host that would tie up or fill the node: a key is taken
//! only when this node is plausibly among its holders, pulls are capped in
//! all and per source, and a pull must connect and start within the block
//! client's short deadlines.

use std::net::SocketAddr;

use super::{lock, Node};
use crate::addr::Source;
use crate::contact::Contact;
use crate::id::Id;
use crate::stats::Stats;
use crate::store::{PutOutcome, StoreError};
use crate::wire::RequestType;

impl Node {
    pub(super) async fn handle_store(&self, requester: Contact, magic: u64, key: Id, copies: u8) {
        let kind = RequestType::StoreValue;
        let from = requester.addr;
        // The requester resends a store_value it has no answer to: a copy
        // that comes while the store runs gets that store's answer. One
        // that comes after runs again, and finds the block stored.
        let Some(_running) = RunningStore::take(self, from, magic) else {
            tracing::debug!(%from, key = %key.short(), "store_value sent again while it runs; its store answers");
            return;
        };
        if let Err(text) = self.check_responsible(&requester, &key) {
            Stats::inc(&self.inner.stats.stores_not_responsible);
            tracing::debug!(%from, key = %key.short(), "store_value refused: not responsible");
            self.reply_error(from, magic, kind, &text);
            return;
        }
        match self.pull_and_store(from, key, copies).await {
            Ok(_) => {
                Stats::inc(&self.inner.stats.stores_saved);
                self.reply(from, magic, kind, serde_json::json!("saved"));
            }
            Err(text) => {
                tracing::debug!(%from, key = %key.short(), error = %text, "store_value refused");
                self.reply_error(from, magic, kind, &text);
            }
        }
    }

    async fn pull_and_store(
        &self,
        from: SocketAddr,
        key: Id,
        copies: u8,
    ) -> Result<PutOutcome, String> {
        let stats = &self.inner.stats;
        if self.inner.blocks.contains(&key) {
            self.inner.blocks.stored_again(&key);
            return Ok(PutOutcome::AlreadyHad);
        }
        // Refuse early when already full, before moving any bytes.
        if let Err(e) = self.inner.blocks.check_room(0) {
            Stats::inc(&stats.stores_refused);
            return Err(e.to_string());
        }
        let Some(_per_source) = SourceSlot::take(self, crate::addr::source(from)) else {
            Stats::inc(&stats.stores_refused);
            return Err("busy: too many stores in flight from your address, retry later".into());
        };
        let Ok(_permit) = self.inner.pulls.try_acquire() else {
            Stats::inc(&stats.stores_refused);
            return Err("busy: too many stores in flight, retry later".into());
        };
        let max = self.inner.cfg.max_block_size;
        let fetch = self.inner.transport.fetch_block(from, key, max);
        let sleep = self.inner.clock.sleep(self.inner.cfg.pull_timeout);
        let fetched = tokio::select! {
            // In order, not at random: a simulation must repeat exactly.
            biased;
            r = fetch => r,
            _ = sleep => Err(super::FetchError::Timeout),
        };
        let data = match fetched {
            Ok(data) => data,
            Err(super::FetchError::TooLarge { len, max }) => {
                Stats::inc(&stats.stores_refused);
                return Err(format!(
                    "block {key} of {len} bytes is over the {max}-byte limit"
                ));
            }
            Err(e) => {
                Stats::inc(&stats.stores_pull_failed);
                return Err(format!("could not pull block {key} from {from}: {e}"));
            }
        };
        // put_verified checks the hash: the one sha256 pass on this path.
        let len = data.len();
        // Queued for the store's writer (batched with other puts under one
        // flush); an in-memory store (the simulation's) puts inline, so a
        // single-threaded run does not depend on thread timing.
        let put = self.inner.blocks.put_copies_queued(key, data, copies).await;
        match put {
            Ok(outcome) => Ok(outcome),
            Err(StoreError::HashMismatch { .. }) => {
                Stats::inc(&stats.stores_bad_hash);
                Err(format!(
                    "the {len} bytes pulled from {from} do not hash to {key}"
                ))
            }
            Err(StoreError::Busy) => {
                Stats::inc(&stats.stores_refused);
                Err("busy: too many blocks are waiting to be written, retry later".into())
            }
            Err(e @ (StoreError::TooLarge { .. } | StoreError::QuotaExceeded { .. })) => {
                Stats::inc(&stats.stores_refused);
                Err(e.to_string())
            }
            // The disk filled between the early check and the write: refused,
            // and said without the local path a DiskFull names.
            Err(e @ (StoreError::LowDisk { .. } | StoreError::DiskFull { .. })) => {
                Stats::inc(&stats.stores_refused);
                tracing::warn!(key = %key, error = %e, "store refused: disk full or below the free-space floor");
                Err(format!(
                    "this node is out of disk space: block {key} refused"
                ))
            }
            // The details (paths on this machine) are for our log, not for peers.
            Err(e) => {
                tracing::error!(key = %key, error = %e, "cannot store a pulled block");
                Err(format!(
                    "this node could not store block {key}: local storage error"
                ))
            }
        }
    }
}

impl Node {
    /// Refuses a key this node is plainly not a holder of: one for which we
    /// know `k + store_slack` verified nodes closer than ourselves (the one
    /// asking aside), in XOR order (where a republish sweep places) and in
    /// the order spread over prefixes (where a put's lookup places). The
    /// slack keeps an honest put, whose view of the network differs a
    /// little from ours, from ever being refused.
    fn check_responsible(&self, requester: &Contact, key: &Id) -> Result<(), String> {
        let cfg = &self.inner.cfg;
        let limit = cfg.lookup.k + cfg.store_slack;
        let me = self.inner.me;
        let ours = me.id.distance(key);
        let known: Vec<Contact> = self
            .table()
            .closest_good(key, 4 * (limit + 1))
            .into_iter()
            .filter(|c| c.id != requester.id)
            .collect();
        let closer = known.iter().filter(|c| c.id.distance(key) < ours).count();
        if closer >= limit && !cfg.lookup.spread.picks(key, &known, me, limit) {
            return Err(format!(
                "not responsible for block {key}: this node knows {closer} nodes closer to it"
            ));
        }
        Ok(())
    }
}

/// A store_value being run, known by its requester and magic; forgotten
/// when dropped.
struct RunningStore<'a> {
    node: &'a Node,
    key: (SocketAddr, u64),
}

impl<'a> RunningStore<'a> {
    fn take(node: &'a Node, from: SocketAddr, magic: u64) -> Option<RunningStore<'a>> {
        let key = (from, magic);
        let fresh = lock(&node.inner.stores_running).insert(key);
        // Made only when fresh: a guard made and dropped for a copy would
        // forget the running store.
        fresh.then(|| RunningStore { node, key })
    }
}

impl Drop for RunningStore<'_> {
    fn drop(&mut self) {
        lock(&self.node.inner.stores_running).remove(&self.key);
    }
}

/// One store_value pull counted against its source; freed when dropped.
struct SourceSlot<'a> {
    node: &'a Node,
    source: Source,
}

impl<'a> SourceSlot<'a> {
    fn take(node: &'a Node, source: Source) -> Option<SourceSlot<'a>> {
        let mut running = lock(&node.inner.pulls_by_source);
        let n = running.entry(source).or_insert(0);
        if *n >= node.inner.cfg.max_pulls_per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot { node, source })
    }
}

impl Drop for SourceSlot<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.node.inner.pulls_by_source);
        if let Some(n) = running.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.source);
            }
        }
    }
}
