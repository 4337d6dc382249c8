//! Repair of erasure-coded chunks, with no coordinator: a stripe (see
//! `stripe.rs`) is held by the K closest nodes of its key, and the one of
//! them that knows no closer good node checks it each pass. Checking is a
//! find_value lookup per shard; when fewer than the stripe's threshold
//! (all but a quarter of the spares) are found, the checker fetches `k` of the
//! others, decodes, encodes the lost shards again and stores each on the
//! closest nodes of its key, keeping a copy only when it is one of them.
//!
//! Bounded: one stripe at a time, shard lookups paced at [`LOOKUPS_PER_SEC`],
//! and a stripe whose repair failed waits twice as many passes each time
//! (up to [`MAX_BACKOFF_PASSES`]) before it is tried again. Nothing held is
//! ever deleted but a rebuilt shard's own copy, and only after the nodes it
//! belongs on said "saved".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Keys;
use crate::id::Id;
use crate::node::{Node, Transfer};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::stripe::{Stripe, MAX_STRIPE_BLOCK};

/// Shard lookups a second, at most, while checking.
const LOOKUPS_PER_SEC: u64 = 100;
/// A stripe whose repair keeps failing waits at most this many passes.
const MAX_BACKOFF_PASSES: u32 = 64;
/// Stripes remembered as failing, at most (past it, the oldest are forgotten
/// and tried again at once).
const MAX_FAILING: usize = 10_000;

/// What one repair pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepairReport {
    /// Stripes held here.
    pub stripes: u64,
    /// Of those, checked by this node (it is their closest known holder).
    pub checked: u64,
    /// Shards found missing in the stripes checked.
    pub shards_missing: u64,
    /// Shards rebuilt and stored again.
    pub shards_rebuilt: u64,
    /// Bytes of shards fetched to rebuild, and bytes of rebuilt shards
    /// stored (once per node that saved one).
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Stripes that could not be repaired (too few shards, or no node saved
    /// a rebuilt one), and stripes skipped while they back off.
    pub failures: u64,
    pub backing_off: u64,
}

/// Stripes whose last repair failed: how many times in a row, and the pass
/// before which they are not tried again.
#[derive(Default)]
pub struct Backoff {
    pass: u64,
    failing: HashMap<Id, (u32, u64)>,
}

impl Backoff {
    fn waiting(&self, key: &Id) -> bool {
        self.failing
            .get(key)
            .is_some_and(|&(_, until)| until > self.pass)
    }

    fn failed(&mut self, key: Id) {
        if self.failing.len() >= MAX_FAILING && !self.failing.contains_key(&key) {
            if let Some(oldest) = self
                .failing
                .iter()
                .min_by_key(|(_, v)| v.1)
                .map(|(k, _)| *k)
            {
                self.failing.remove(&oldest);
            }
        }
        let entry = self.failing.entry(key).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(1);
        let wait = 2u64
            .saturating_pow(entry.0)
            .min(u64::from(MAX_BACKOFF_PASSES));
        entry.1 = self.pass + wait;
    }

    fn repaired(&mut self, key: &Id) {
        self.failing.remove(key);
    }
}

/// Runs a pass every `every` until `stop` turns true.
pub async fn run_repair(
    node: Node,
    store: Store,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            _ = node.clock().sleep(every) => {}
            _ = stop.changed() => return,
        }
        let pass = repair_once(&node, &store, &mut backoff);
        let report = tokio::select! {
            r = pass => r,
            _ = stop.changed() => return,
        };
        match report {
            Ok(r) if r.shards_missing > 0 || r.failures > 0 => tracing::info!(
                stripes = r.stripes,
                checked = r.checked,
                missing = r.shards_missing,
                rebuilt = r.shards_rebuilt,
                failures = r.failures,
                "repair pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "repair: cannot read the store"),
        }
    }
}

/// One pass over the stripes held here.
pub async fn repair_once(
    node: &Node,
    store: &Store,
    backoff: &mut Backoff,
) -> Result<RepairReport, StoreError> {
    let mut pass = Pass::start(node, backoff);
    let mut keys = Keys::new(store);
    while let Some((key, meta)) = keys.next_with_meta().await? {
        if meta.size <= MAX_STRIPE_BLOCK {
            pass.visit(key).await;
        }
    }
    Ok(pass.report)
}

/// One pass over `keys`, for a node whose store keeps no index of sizes
/// (the simulation's hosts): the same checks as [`repair_once`].
pub async fn repair_keys(node: &Node, keys: Vec<Id>, backoff: &mut Backoff) -> RepairReport {
    let mut pass = Pass::start(node, backoff);
    for key in keys {
        pass.visit(key).await;
    }
    pass.report
}

/// A pass under way.
struct Pass<'a> {
    node: &'a Node,
    backoff: &'a mut Backoff,
    report: RepairReport,
}

impl<'a> Pass<'a> {
    fn start(node: &'a Node, backoff: &'a mut Backoff) -> Pass<'a> {
        Stats::inc(&node.stats().repair_runs);
        backoff.pass += 1;
        Pass {
            node,
            backoff,
            report: RepairReport::default(),
        }
    }

    /// Checks block `key` if it is a stripe this node is the checker of.
    async fn visit(&mut self, key: Id) {
        let (node, stats) = (self.node, self.node.stats().clone());
        let Some(bytes) = read(node, key).await else {
            return;
        };
        if !Stripe::looks_like(&bytes) {
            return;
        }
        let Ok(stripe) = Stripe::parse(key, &bytes) else {
            return;
        };
        self.report.stripes += 1;
        if !checker_of(node, &key) {
            return;
        }
        if self.backoff.waiting(&key) {
            self.report.backing_off += 1;
            return;
        }
        self.report.checked += 1;
        Stats::inc(&stats.repair_checked);
        match check(node, key, &stripe, &mut self.report).await {
            Ok(()) => self.backoff.repaired(&key),
            Err(why) => {
                self.report.failures += 1;
                Stats::inc(&stats.repair_failures);
                self.backoff.failed(key);
                tracing::warn!(stripe = %key, %why, "repair failed");
            }
        }
    }
}

/// Block `key` from this node's store, if held and readable.
async fn read(node: &Node, key: Id) -> Option<Vec<u8>> {
    let blocks = node.blocks().clone();
    match blocks.puts_may_block() {
        true => tokio::task::spawn_blocking(move || blocks.get(&key))
            .await
            .ok()?
            .ok()?,
        false => blocks.get(&key).ok()?,
    }
}

/// Runs `f` on this node's store: off the runtime when the store may block.
async fn on_store<T: Send + 'static>(
    node: &Node,
    f: impl FnOnce(&dyn crate::store::BlockStore) -> T + Send + 'static,
) -> Option<T> {
    let blocks = node.blocks().clone();
    match blocks.puts_may_block() {
        true => tokio::task::spawn_blocking(move || f(blocks.as_ref()))
            .await
            .ok(),
        false => Some(f(blocks.as_ref())),
    }
}

/// Whether this node checks stripe `key`: no good node it knows is closer.
fn checker_of(node: &Node, key: &Id) -> bool {
    let ours = node.me().id.distance(key);
    node.table()
        .closest_good(key, 1)
        .first()
        .is_none_or(|c| c.id.distance(key) > ours)
}

/// Looks up every shard of `stripe`; rebuilds and stores the missing ones
/// when fewer than its threshold are found.
async fn check(
    node: &Node,
    key: Id,
    stripe: &Stripe,
    report: &mut RepairReport,
) -> Result<(), String> {
    let stats = node.stats().clone();
    let n = stripe.code.n();
    let mut missing = Vec::new();
    for (position, id) in stripe.shards.iter().enumerate() {
        if node.find_holders(*id).await.is_empty() {
            missing.push(position);
        }
        node.clock()
            .sleep(Duration::from_millis(1000 / LOOKUPS_PER_SEC))
            .await;
    }
    report.shards_missing += missing.len() as u64;
    Stats::add(&stats.repair_shards_missing, missing.len() as u64);
    if n - missing.len() >= stripe.repair_threshold() {
        return Ok(());
    }
    let k = stripe.code.k();
    if n - missing.len() < k {
        return Err(format!(
            "only {} of its {n} shards were found, {k} are needed: the chunk is lost unless they come back",
            n - missing.len()
        ));
    }
    let transfer = Arc::new(Transfer::new());
    let shards = node
        .fetch_shards(stripe, k, &missing, &transfer)
        .await
        .map_err(|e| e.why)?
        .blocks;
    let read: u64 = shards.iter().map(|(_, b)| b.len() as u64).sum();
    report.bytes_read += read;
    Stats::add(&stats.repair_bytes_read, read);
    let (stripe2, wanted) = (stripe.clone(), missing.clone());
    // Off the runtime beside a real store; inline beside the simulation's,
    // whose paused clock must not move while a thread pool works.
    let rebuilt = on_store(node, move |_| {
        let views: Vec<(usize, &[u8])> = shards.iter().map(|(i, b)| (*i, &b[..])).collect();
        stripe2.rebuild(&views, &wanted)
    })
    .await
    .ok_or("the rebuild task failed")??;
    let mut stored_none = Vec::new();
    for (position, bytes) in rebuilt {
        let id = stripe.shards[position];
        match place(node, id, bytes, stripe.copies).await {
            Ok(written) if written > 0 => {
                report.shards_rebuilt += 1;
                report.bytes_written += written;
                Stats::inc(&stats.repair_shards_rebuilt);
                Stats::add(&stats.repair_bytes_written, written);
            }
            Ok(_) => stored_none.push(position),
            Err(why) => return Err(format!("shard {position}: {why}")),
        }
    }
    if !stored_none.is_empty() {
        return Err(format!(
            "no node saved rebuilt shards {stored_none:?} of stripe {key}"
        ));
    }
    Ok(())
}

/// Stores rebuilt shard `id` on the `copies` closest nodes of its key, from
/// this node's store (other nodes pull what they store from it): kept here
/// if this node is one of them, else dropped once they all said "saved".
/// The bytes written to other nodes.
async fn place(node: &Node, id: Id, bytes: Vec<u8>, copies: u8) -> Result<u64, String> {
    let len = bytes.len() as u64;
    on_store(node, move |s| s.put_copies(&id, &bytes, copies))
        .await
        .ok_or("the store task failed")?
        .map_err(|e| e.to_string())?;
    let want = usize::from(copies.max(1));
    let targets: Vec<_> = node.find_closest(id).await.into_iter().take(want).collect();
    let me = node.me().id;
    let ours = targets.iter().any(|c| c.id == me);
    let saved = node.store_to(id, targets, copies).await.saved;
    let others = saved.iter().filter(|c| c.id != me).count();
    if !ours && others >= want {
        on_store(node, move |s| s.drop_replica(&id)).await;
    }
    Ok(len * others as u64 + if ours { len } else { 0 })
}
