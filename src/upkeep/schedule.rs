//! The node's periodic jobs, driven by its clock: bucket refresh, routing
//! snapshots, republishing and the scrub. Each job runs when its interval
//! has passed since it last ran; a slow job delays the others, never overlaps
//! itself. Routing snapshots and the scrub worker run beside them, so a long
//! republish pass never holds back the snapshot of a changed table.

use std::time::Duration;

use tokio::sync::watch;

use super::scrub::{run_scrub, ScrubSettings};
use super::snapshot::run_snapshots;
use super::{republish_once, ScrubControl};
use crate::node::Node;
use crate::store::Store;

/// How often each job runs; `None` turns a job off.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub snapshot: Duration,
    /// A changed routing table is snapshotted this long after the change was
    /// first seen; `None`: only every `snapshot`.
    pub snapshot_after_change: Option<Duration>,
    pub republish: Option<Duration>,
    /// A scrub pass starts this long after the previous one started.
    pub verify: Option<Duration>,
    /// Bytes the scrub reads a second at most.
    pub scrub_bytes_per_sec: u64,
}

/// One job's timing, in clock milliseconds.
#[derive(Debug)]
struct Job {
    every_ms: u64,
    last_ms: u64,
}

impl Job {
    fn new(every: Duration, now: u64) -> Job {
        Job {
            every_ms: every.as_millis() as u64,
            last_ms: now,
        }
    }

    /// Whether it is due at `now`; if so, it counts as run.
    fn due(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.last_ms) >= self.every_ms {
            self.last_ms = now;
            true
        } else {
            false
        }
    }
}

/// Runs the jobs until `stop` turns true; the scrub shows its state and
/// takes pause and resume through `scrub`.
pub async fn run(
    node: Node,
    store: Store,
    schedule: Schedule,
    scrub: ScrubControl,
    stop: watch::Receiver<bool>,
) {
    let snapshots = run_snapshots(
        node.clone(),
        store.clone(),
        schedule.snapshot,
        schedule.snapshot_after_change,
        stop.clone(),
    );
    let scrub_settings = ScrubSettings {
        every: schedule.verify,
        bytes_per_sec: schedule.scrub_bytes_per_sec,
    };
    let scrubber = run_scrub(
        node.clone(),
        store.clone(),
        scrub_settings,
        scrub,
        stop.clone(),
    );
    tokio::join!(snapshots, scrubber, run_jobs(node, store, schedule, stop));
}

/// Bucket refresh and republish, one after another.
async fn run_jobs(node: Node, store: Store, schedule: Schedule, mut stop: watch::Receiver<bool>) {
    let clock = node.clock().clone();
    let refresh_age = node.config().bucket_refresh.as_millis() as u64;
    let now = clock.now_ms();
    let mut republish = schedule.republish.map(|d| Job::new(d, now));
    // Often enough that no job runs much later than due, and a bucket is never
    // much older than its limit.
    let tick = [schedule.republish]
        .into_iter()
        .flatten()
        .fold(Duration::from_secs(60), Duration::min)
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = clock.sleep(tick) => {}
            _ = stop.changed() => return,
        }
        node.refresh_buckets(refresh_age).await;
        let now = clock.now_ms();
        if republish.as_mut().is_some_and(|j| j.due(now)) {
            match republish_once(&node, &store).await {
                Ok(r) => tracing::info!(
                    blocks = r.blocks,
                    stores = r.stores_sent,
                    failures = r.failures,
                    "republished"
                ),
                Err(e) => tracing::warn!(error = %e, "republish failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_due_once_per_interval() {
        let mut j = Job::new(Duration::from_secs(10), 1_000);
        assert!(!j.due(5_000));
        assert!(j.due(11_000));
        assert!(!j.due(12_000));
        assert!(j.due(21_500));
    }
}
