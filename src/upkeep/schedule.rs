//! The node's background jobs, driven by its clock, each its own task so a
//! slow one never holds back another: bucket refresh, routing snapshots, the
//! republish sweep (`sweep.rs`, paced over its interval), the scrub
//! (`scrub.rs`, paced by bytes), segment compaction (`compact.rs`, paced by
//! bytes), handoff to newcomers (`handoff.rs`),
//! repair of erasure-coded chunks (`repair.rs`), shedding replicas when
//! space is wanted (`shed.rs`), and asking lost and missing peers again
//! (a mended split of the network finds itself again).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::compact::run_compaction;
use super::handoff::run_handoff;
use super::repair::run_repair;
use super::scrub::{run_scrub, ScrubSettings};
use super::shed::run_shed;
use super::snapshot::run_snapshots;
use super::sweep::run_sweep;
use super::{CompactionControl, ScrubControl};
use crate::node::Node;
use crate::store::pressure::Marks;
use crate::store::Store;

/// How often each job runs; `None` turns a job off.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub snapshot: Duration,
    /// A changed routing table is snapshotted this long after the change was
    /// first seen; `None`: only every `snapshot`.
    pub snapshot_after_change: Option<Duration>,
    /// A republish sweep pass spreads over this long.
    pub republish: Option<Duration>,
    /// A scrub pass starts this long after the previous one started.
    pub verify: Option<Duration>,
    /// Bytes the scrub reads a second at most.
    pub scrub_bytes_per_sec: u64,
    /// A compaction pass starts this long after the previous one ended.
    pub compaction: Option<Duration>,
    /// Live bytes compaction moves a second at most.
    pub compaction_bytes_per_sec: u64,
    /// A repair pass over the stripes held here starts this long after the
    /// previous one ended.
    pub repair: Option<Duration>,
    /// Whether newcomers are handed the blocks they are now closest to.
    pub handoff: bool,
    /// When replicas others hold are dropped to win space back.
    pub shed: Marks,
    /// Bootstrap peers missing from the table and entries dropped for
    /// failing are asked again this often.
    pub rejoin: Option<Duration>,
    /// The bootstrap peers.
    pub bootstrap: Vec<SocketAddr>,
}

/// Runs the jobs until `stop` turns true; the scrub and compaction show
/// their state and take pause and resume through `scrub` and `compaction`.
pub async fn run(
    node: Node,
    store: Store,
    schedule: Schedule,
    scrub: ScrubControl,
    compaction: CompactionControl,
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
    let sweep = {
        let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
        let every = schedule.republish;
        async move {
            if let Some(every) = every {
                run_sweep(node, store, every, stop).await;
            }
        }
    };
    let handoff = {
        let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
        async move {
            if schedule.handoff {
                run_handoff(node, store, stop).await;
            }
        }
    };
    let repair = {
        let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
        let every = schedule.repair;
        async move {
            if let Some(every) = every {
                run_repair(node, store, every, stop).await;
            }
        }
    };
    let compaction = {
        let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
        let (every, rate) = (schedule.compaction, schedule.compaction_bytes_per_sec);
        async move {
            if let Some(every) = every {
                run_compaction(node, store, every, rate, compaction, stop).await;
            }
        }
    };
    let shed = run_shed(node.clone(), store, schedule.shed, stop.clone());
    let rejoin = {
        let (node, stop) = (node.clone(), stop.clone());
        let (every, bootstrap) = (schedule.rejoin, schedule.bootstrap);
        async move {
            if let Some(every) = every {
                run_rejoin(node, every, bootstrap, stop).await;
            }
        }
    };
    tokio::join!(
        snapshots,
        scrubber,
        compaction,
        sweep,
        handoff,
        repair,
        shed,
        rejoin,
        run_refresh(node, stop)
    );
}

/// Asks lost and missing peers again every `every` (see `Node::rejoin`).
async fn run_rejoin(
    node: Node,
    every: Duration,
    bootstrap: Vec<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = node.clock().clone();
    loop {
        tokio::select! {
            _ = clock.sleep(every) => {}
            _ = stop.changed() => return,
        }
        node.rejoin(&bootstrap).await;
    }
}

/// Refreshes the buckets that saw no lookup for the configured age, checking
/// every minute at most.
async fn run_refresh(node: Node, mut stop: watch::Receiver<bool>) {
    let clock = node.clock().clone();
    let refresh_age = node.config().bucket_refresh.as_millis() as u64;
    let tick = node
        .config()
        .bucket_refresh
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = clock.sleep(tick) => {}
            _ = stop.changed() => return,
        }
        node.refresh_buckets(refresh_age).await;
    }
}
