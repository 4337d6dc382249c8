//! The republish sweep as a node runs it: one pass per interval, spread over
//! that interval by keyspace position (a key a third of the way through the
//! keyspace is republished a third of the way through the interval), so a
//! node holding many blocks never republishes them in one burst. Where the
//! pass stands is saved in the store's `upkeep` tree, so a restart resumes it
//! where it stopped, keeping the pass's start: a node that was down catches
//! up at full speed on the keys that fell due meanwhile.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::republish::{Pass, RepublishReport};
use super::Keys;
use crate::id::Id;
use crate::node::Node;
use crate::region::{due_ms, position};
use crate::stats::Stats;
use crate::store::Store;

/// The job's name in the store's `upkeep` tree.
pub const JOB: &str = "republish";
/// Progress is saved at least this often while a pass runs.
const SAVE_EVERY_MS: u64 = 1_000;
/// The behind-gauge is recounted this often at most.
const BEHIND_EVERY_MS: u64 = 60_000;
/// After a store error, the sweep tries again this much later.
const RETRY_MS: u64 = 60_000;

/// Where the sweep stands, as saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepProgress {
    /// When the current pass started, unix ms.
    pub pass_started_unix_ms: u64,
    /// The last key the current pass reached (hex); none at its start.
    #[serde(default)]
    pub after: Option<String>,
    /// What the current pass has done so far.
    #[serde(default)]
    pub pass: RepublishReport,
    /// Passes completed.
    #[serde(default)]
    pub passes: u64,
    /// When the last pass completed, unix ms (0: none yet), and how long it took.
    #[serde(default)]
    pub last_pass_completed_unix_ms: u64,
    #[serde(default)]
    pub last_pass_ms: u64,
    /// What the last completed pass did.
    #[serde(default)]
    pub last_pass: RepublishReport,
}

impl SweepProgress {
    fn after_key(&self) -> Option<Id> {
        self.after.as_deref().and_then(|h| Id::from_hex(h).ok())
    }
}

/// Where the sweep of the node using `store` stands, as last saved.
pub fn sweep_progress(store: &Store) -> Option<SweepProgress> {
    store.load_progress(JOB).ok().flatten()
}

/// Runs the sweep until `stop` turns true: a pass every `interval`.
pub async fn run_sweep(
    node: Node,
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let clock = node.clock().clone();
    let interval_ms = (interval.as_millis() as u64).max(1);
    let mut progress = sweep_progress(&store).unwrap_or_else(|| SweepProgress {
        pass_started_unix_ms: clock.unix_ms(),
        ..SweepProgress::default()
    });
    let stats = node.stats();
    Stats::set(&stats.republish_interval_secs, interval.as_secs());
    // Kept across restarts: the alert on a stale sweep reads it.
    if progress.last_pass_completed_unix_ms > 0 {
        Stats::set(
            &stats.republish_last_pass_unix,
            progress.last_pass_completed_unix_ms / 1000,
        );
    }
    let mut behind_at = 0;
    loop {
        match sweep_pass(
            &node,
            &store,
            interval_ms,
            &mut progress,
            &mut stop,
            &mut behind_at,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "republish sweep: store error; retrying in a minute");
                if sleep_or_stop(&node, Duration::from_millis(RETRY_MS), &mut stop).await {
                    return;
                }
                continue;
            }
        }
        let now = clock.unix_ms();
        let done = std::mem::take(&mut progress.pass);
        tracing::info!(
            blocks = done.blocks,
            skipped = done.skipped,
            lookups = done.lookups,
            stores = done.stores_sent,
            failures = done.failures,
            "republish pass complete"
        );
        Stats::inc(&node.stats().republish_runs);
        progress.passes += 1;
        progress.last_pass_ms = now.saturating_sub(progress.pass_started_unix_ms);
        progress.last_pass_completed_unix_ms = now;
        progress.last_pass = done;
        progress.after = None;
        // The next pass starts an interval after this one did, or now when
        // this one ran over.
        progress.pass_started_unix_ms = (progress.pass_started_unix_ms + interval_ms).max(now);
        Stats::set(&node.stats().republish_last_pass_unix, now / 1000);
        save(&store, &progress);
        update_behind(&node, &store, interval_ms, &mut 0).await;
        let wait = progress
            .pass_started_unix_ms
            .saturating_sub(clock.unix_ms());
        if sleep_or_stop(&node, Duration::from_millis(wait), &mut stop).await {
            return;
        }
    }
}

/// Runs the rest of the current pass; false when stopped (progress saved).
async fn sweep_pass(
    node: &Node,
    store: &Store,
    interval_ms: u64,
    progress: &mut SweepProgress,
    stop: &mut watch::Receiver<bool>,
    behind_at: &mut u64,
) -> Result<bool, crate::store::StoreError> {
    let clock = node.clock().clone();
    let mut keys = Keys::after(store, progress.after_key());
    let mut pass = Pass::new(node, store, Some(interval_ms / 1000), progress.pass.clone());
    let mut saved_at = clock.now_ms();
    update_behind(node, store, interval_ms, behind_at).await;
    while let Some((key, meta)) = keys.next_with_meta().await? {
        let due = due_ms(&key, progress.pass_started_unix_ms, interval_ms);
        let wait = due.saturating_sub(clock.unix_ms());
        if wait > 0 {
            // Nothing to do until then: what is saved is exact.
            progress.pass = pass.report().clone();
            save(store, progress);
            if sleep_or_stop(node, Duration::from_millis(wait), stop).await {
                return Ok(false);
            }
            update_behind(node, store, interval_ms, behind_at).await;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => {
                // The key being visited counts as not reached; stores in
                // flight are dropped with the pass (a republish is a hint).
                progress.pass = pass.report().clone();
                save(store, progress);
                return Ok(false);
            }
            _ = pass.visit(key, &meta) => {}
        }
        progress.after = Some(key.to_hex());
        Stats::set(
            &node.stats().republish_position_ppm,
            (position(&key) * 1e6) as u64,
        );
        let now = clock.now_ms();
        if now.saturating_sub(saved_at) >= SAVE_EVERY_MS {
            saved_at = now;
            progress.pass = pass.report().clone();
            save(store, progress);
        }
    }
    progress.pass = pass.finish().await;
    Ok(true)
}

/// Sleeps `d` on the node's clock; true if `stop` turned true meanwhile.
async fn sleep_or_stop(node: &Node, d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = node.clock().sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

fn save(store: &Store, progress: &SweepProgress) {
    if let Err(e) = store.save_progress(JOB, progress) {
        tracing::warn!(error = %e, "cannot save the republish sweep's progress");
    }
}

/// Recounts the blocks not refreshed for twice the interval, at most once a
/// minute (`last` is when it last did, clock ms).
async fn update_behind(node: &Node, store: &Store, interval_ms: u64, last: &mut u64) {
    let now = node.clock().now_ms();
    if *last != 0 && now.saturating_sub(*last) < BEHIND_EVERY_MS {
        return;
    }
    *last = now.max(1);
    let cutoff = (node.clock().unix_ms().saturating_sub(2 * interval_ms)) / 1000;
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.count_refreshed_before(cutoff)).await {
        Ok(Ok(n)) => Stats::set(&node.stats().republish_behind_blocks, n),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot count blocks behind on republish"),
        Err(e) => tracing::warn!(error = %e, "count task failed"),
    }
}
