//! The node's periodic jobs, driven by its clock: bucket refresh, routing
//! snapshots, the republish sweep and verification. Refresh and verify run
//! when their interval has passed since they last ran; a slow job delays the
//! other, never overlaps itself. Routing snapshots and the republish sweep
//! (`sweep.rs`, which paces itself) run beside them, so a long verify pass
//! never holds back the snapshot of a changed table or the republishing.

use std::time::Duration;

use tokio::sync::watch;

use super::snapshot::run_snapshots;
use super::sweep::run_sweep;
use super::verify_once;
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
    pub verify: Option<Duration>,
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

/// Runs the jobs until `stop` turns true.
pub async fn run(node: Node, store: Store, schedule: Schedule, stop: watch::Receiver<bool>) {
    let snapshots = run_snapshots(
        node.clone(),
        store.clone(),
        schedule.snapshot,
        schedule.snapshot_after_change,
        stop.clone(),
    );
    let sweep = {
        let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
        let every = schedule.republish;
        async move {
            if let Some(every) = every {
                run_sweep(node, store, every, stop).await;
            }
        }
    };
    tokio::join!(snapshots, sweep, run_jobs(node, store, schedule, stop));
}

/// Bucket refresh and verify, one after another.
async fn run_jobs(node: Node, store: Store, schedule: Schedule, mut stop: watch::Receiver<bool>) {
    let clock = node.clock().clone();
    let refresh_age = node.config().bucket_refresh.as_millis() as u64;
    let now = clock.now_ms();
    let mut verify = schedule.verify.map(|d| Job::new(d, now));
    // Often enough that no job runs much later than due, and a bucket is never
    // much older than its limit.
    let tick = [schedule.verify]
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
        if verify.as_mut().is_some_and(|j| j.due(now)) {
            match verify_once(&node, &store, true).await {
                Ok(r) if r.corrupt > 0 => tracing::warn!(
                    checked = r.checked,
                    corrupt = r.corrupt,
                    repaired = r.repaired,
                    "verified: corrupt blocks found"
                ),
                Ok(r) => tracing::info!(checked = r.checked, "verified"),
                Err(e) => tracing::warn!(error = %e, "verify failed"),
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
