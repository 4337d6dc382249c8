//! store_value received: pull the block from the requester over TCP, check its
//! hash, store it durably, and only then answer "saved".

use std::net::SocketAddr;

use super::Node;
use crate::id::Id;
use crate::stats::Stats;
use crate::store::{PutOutcome, StoreError};
use crate::wire::RequestType;

impl Node {
    pub(super) async fn handle_store(&self, from: SocketAddr, magic: u64, key: Id) {
        let kind = RequestType::StoreValue;
        match self.pull_and_store(from, key).await {
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

    async fn pull_and_store(&self, from: SocketAddr, key: Id) -> Result<PutOutcome, String> {
        let stats = &self.inner.stats;
        if self.inner.blocks.contains(&key) {
            return Ok(PutOutcome::AlreadyHad);
        }
        // Refuse early when already full, before moving any bytes.
        if let Err(e) = self.inner.blocks.check_room(0) {
            Stats::inc(&stats.stores_refused);
            return Err(e.to_string());
        }
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
        let blocks = self.inner.blocks.clone();
        let put = if blocks.puts_may_block() {
            tokio::task::spawn_blocking(move || blocks.put_verified(&key, &data)).await
        } else {
            // An in-memory store (the simulation's) puts inline: a thread hop
            // would make a single-threaded run depend on thread timing.
            Ok(blocks.put_verified(&key, &data))
        };
        match put {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(StoreError::HashMismatch { .. })) => {
                Stats::inc(&stats.stores_bad_hash);
                Err(format!(
                    "the {len} bytes pulled from {from} do not hash to {key}"
                ))
            }
            Ok(Err(e @ (StoreError::TooLarge { .. } | StoreError::QuotaExceeded { .. }))) => {
                Stats::inc(&stats.stores_refused);
                Err(e.to_string())
            }
            // The details (paths on this machine) are for our log, not for peers.
            Ok(Err(e)) => {
                tracing::error!(key = %key, error = %e, "cannot store a pulled block");
                Err(format!(
                    "this node could not store block {key}: local storage error"
                ))
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "store task failed");
                Err(format!(
                    "this node could not store block {key}: local storage error"
                ))
            }
        }
    }
}
