//! Republish: ask the K closest nodes of every stored block to store it, so
//! blocks stay on the nodes a lookup will reach as the network changes.
//!
//! Keys are walked in keyspace order and looked up a region at a time: one
//! lookup for 3K nodes names every node of a region around its target (see
//! `region.rs`), and each key of that region goes to the K closest of them
//! with no lookup of its own. A block another node stored to us again
//! within the interval is skipped when asked to: that node just republished
//! it (the Kademlia paper's rule, so a network does not republish every
//! block K times an interval).

use tokio::task::JoinSet;

use super::Keys;
use crate::contact::Contact;
use crate::id::Id;
use crate::node::{Node, StoreReport};
use crate::region::{closest_of, Region};
use crate::stats::Stats;
use crate::store::{copies_of, BlockMeta, Refresh, Store, StoreError};

/// Blocks republished at once.
const PARALLEL: usize = 8;
/// A region's nodes are looked up again after this long.
const REGION_TTL_MS: u64 = 10 * 60 * 1000;

/// What one republish pass (or part of one) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepublishReport {
    /// Blocks walked.
    pub blocks: u64,
    /// Of those, skipped because another node stored them to us again lately.
    #[serde(default)]
    pub skipped: u64,
    /// Region lookups run.
    #[serde(default)]
    pub lookups: u64,
    /// Requests those lookups sent.
    #[serde(default)]
    pub lookup_requests: u64,
    /// store_value requests sent to other nodes.
    pub stores_sent: u64,
    /// Of those, how many did not end in "saved".
    pub failures: u64,
}

/// Runs one pass over every stored block now. With `skip_within` (seconds),
/// blocks another node stored to us again that recently are skipped.
pub async fn republish_once(
    node: &Node,
    store: &Store,
    skip_within: Option<u64>,
) -> Result<RepublishReport, StoreError> {
    Stats::inc(&node.stats().republish_runs);
    let mut pass = Pass::new(node, store, skip_within, RepublishReport::default());
    let mut keys = Keys::new(store);
    while let Some((key, meta)) = keys.next_with_meta().await? {
        pass.visit(key, &meta).await;
    }
    Ok(pass.finish().await)
}

/// One pass over `keys` (each with the copies it is kept on, 0 for K), in
/// keyspace order, for a node whose store keeps no records (the simulation's hosts, whose blocks live in memory): the
/// same walk as [`republish_once`], with no block skipped nor marked.
pub async fn republish_keys(node: &Node, mut keys: Vec<(Id, u8)>) -> RepublishReport {
    Stats::inc(&node.stats().republish_runs);
    keys.sort_unstable();
    let mut pass = Pass::walking(node, None, None, RepublishReport::default());
    for (key, copies) in keys {
        pass.walk(key, copies).await;
    }
    pass.finish().await
}

/// A pass in progress: the current region and the stores in flight.
pub(super) struct Pass<'a> {
    node: &'a Node,
    /// The store whose records say what to skip and what was republished;
    /// none for a store that keeps no records.
    store: Option<&'a Store>,
    skip_within: Option<u64>,
    region: Option<(Region, u64)>,
    /// Each store in flight: the key, and for a block kept on fewer copies
    /// than K whose closest nodes we are not among, the copies to see saved
    /// before our own copy may go.
    running: JoinSet<(Id, Option<usize>, StoreReport)>,
    report: RepublishReport,
}

impl<'a> Pass<'a> {
    /// A pass whose totals start from `so_far` (a resumed pass's).
    pub(super) fn new(
        node: &'a Node,
        store: &'a Store,
        skip_within: Option<u64>,
        so_far: RepublishReport,
    ) -> Pass<'a> {
        Pass::walking(node, Some(store), skip_within, so_far)
    }

    fn walking(
        node: &'a Node,
        store: Option<&'a Store>,
        skip_within: Option<u64>,
        so_far: RepublishReport,
    ) -> Pass<'a> {
        Pass {
            node,
            store,
            skip_within,
            region: None,
            running: JoinSet::new(),
            report: so_far,
        }
    }

    /// Republishes one block (or skips it), waiting for room first.
    pub(super) async fn visit(&mut self, key: Id, meta: &BlockMeta) {
        let now_secs = self.node.clock().unix_ms() / 1000;
        if let Some(window) = self.skip_within {
            if meta.record().stored_again_within(now_secs, window) {
                self.report.blocks += 1;
                self.report.skipped += 1;
                Stats::inc(&self.node.stats().republish_skipped);
                return;
            }
        }
        self.walk(key, meta.copies).await;
    }

    /// Stores `key` to its K closest nodes (or, for a block kept on fewer
    /// `copies`, that many), waiting for room first.
    async fn walk(&mut self, key: Id, copies: u8) {
        self.report.blocks += 1;
        Stats::inc(&self.node.stats().republished_blocks);
        let mut targets = self.targets(key).await;
        let want = copies_of(copies, self.node.config().lookup.k);
        targets.truncate(want);
        let me = self.node.me().id;
        // A shard (kept on fewer nodes than K) whose closest nodes no longer
        // include us is dropped once they all said "saved": otherwise every
        // newcomer closer to it would leave one more copy behind.
        let handing = (copies != 0 && !targets.iter().any(|c| c.id == me)).then_some(want);
        while self.running.len() >= PARALLEL {
            self.join_one().await;
        }
        let node = self.node.clone();
        self.running
            .spawn(async move { (key, handing, node.store_to(key, targets, copies).await) });
    }

    /// Waits for what is still in flight; the totals.
    pub(super) async fn finish(mut self) -> RepublishReport {
        while !self.running.is_empty() {
            self.join_one().await;
        }
        self.report
    }

    /// The totals so far (stores in flight not yet counted).
    pub(super) fn report(&self) -> &RepublishReport {
        &self.report
    }

    /// The K closest nodes of `key`, from the current region's nodes, or from
    /// a new region lookup when `key` is past the region or it is stale.
    async fn targets(&mut self, key: Id) -> Vec<Contact> {
        let k = self.node.config().lookup.k;
        let now = self.node.clock().now_ms();
        let fresh = |(region, at): &(Region, u64)| {
            key <= region.end && now.saturating_sub(*at) < REGION_TTL_MS
        };
        if !self.region.as_ref().is_some_and(fresh) {
            let (region, requests) = self.node.lookup_region(key).await;
            let stats = self.node.stats();
            self.report.lookups += 1;
            self.report.lookup_requests += requests as u64;
            Stats::inc(&stats.republish_lookups);
            Stats::add(&stats.republish_lookup_requests, requests as u64);
            self.region = Some((region, now));
        }
        let (region, _) = self.region.as_ref().expect("set above");
        closest_of(&key, &region.nodes, k)
    }

    async fn join_one(&mut self) {
        let Some(joined) = self.running.join_next().await else {
            return;
        };
        let Ok((key, handing, r)) = joined else {
            return;
        };
        let me = self.node.me().id;
        let stats = self.node.stats();
        let sent = r.saved.iter().filter(|c| c.id != me).count() + r.failed.len();
        self.report.stores_sent += sent as u64;
        self.report.failures += r.failed.len() as u64;
        Stats::add(&stats.republish_stores_sent, sent as u64);
        Stats::add(&stats.republish_failures, r.failed.len() as u64);
        let others = r.saved.iter().filter(|c| c.id != me).count();
        if handing.is_some_and(|want| others >= want) {
            let blocks = self.node.blocks().clone();
            let dropped = match blocks.puts_may_block() {
                true => tokio::task::spawn_blocking(move || blocks.drop_replica(&key))
                    .await
                    .unwrap_or(Ok(false)),
                false => blocks.drop_replica(&key),
            };
            if let Ok(true) = dropped {
                Stats::inc(&stats.republish_handed_over);
                return;
            }
        }
        if let Some(store) = self.store.filter(|_| others > 0) {
            mark_republished(store, key).await;
        }
    }
}

/// A block another node said "saved" to counts as refreshed by us.
async fn mark_republished(store: &Store, key: Id) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.mark_refreshed(&key, Refresh::Republished)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(key = %key, error = %e, "cannot record a republish"),
        Err(e) => tracing::warn!(key = %key, error = %e, "record task failed"),
    }
}
