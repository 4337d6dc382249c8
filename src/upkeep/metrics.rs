//! Upkeep's metrics: republish, handoff, shedding, verify, the scrub and
//! compaction, registered by upkeep itself into the node's registry and read
//! at each scrape from the counters the jobs bump and the shown state of the
//! scrub and of compaction.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{CompactionControl, CompactionState, ScrubControl, ScrubState};
use crate::metrics::{sync, OnScrape};
use crate::node::Node;
use crate::stats::Stats;

/// Registers upkeep's metrics with `registry`, read from `node`'s stats, from
/// `scrub` and from `compaction`.
pub fn register_metrics(
    registry: &Registry,
    node: Node,
    scrub: ScrubControl,
    compaction: CompactionControl,
) -> prometheus::Result<()> {
    let mut m = OnScrape::default();
    let upkeep = UpkeepMetrics::new(&mut m)?;
    m.register(registry, move || {
        upkeep.refresh(&node, &scrub);
        upkeep.refresh_compaction(&compaction);
    })
}

struct UpkeepMetrics {
    republish_runs: IntCounter,
    republished_blocks: IntCounter,
    republish_stores: IntCounterVec,
    republish_skipped: IntCounter,
    republish_handed_over: IntCounter,
    republish_lookups: IntCounter,
    republish_lookup_requests: IntCounter,
    republish_behind: IntGauge,
    republish_position: Gauge,
    republish_last_pass: IntGauge,
    handoff_newcomers: IntCounter,
    handoff_stores: IntCounterVec,
    replicas_dropped: IntCounter,
    replicas_dropped_bytes: IntCounter,
    repair_runs: IntCounter,
    repair_checked: IntCounter,
    repair_shards: IntCounterVec,
    repair_bytes: IntCounterVec,
    repair_failures: IntCounter,
    space_wanted: IntGauge,
    verify_runs: IntCounter,
    verify_checked: IntCounter,
    verify_corrupt: IntCounter,
    verify_repaired: IntCounter,
    verify_unreadable: IntCounter,
    compaction_paused: IntGauge,
    compaction_running: IntGauge,
    compaction_last_pass: IntGauge,
    scrub_paused: IntGauge,
    scrub_running: IntGauge,
    scrub_position: Gauge,
    scrub_bytes_read: IntCounter,
    scrub_passes: IntCounter,
    scrub_last_pass: IntGauge,
    scrub_last_duration: Gauge,
    scrub_interval: IntGauge,
    republish_interval: IntGauge,
    compaction_passes: IntCounter,
    compaction_bytes_moved: IntCounter,
    compaction_segments_removed: IntCounter,
    compaction_bytes_freed: IntCounter,
    segment_bytes: IntGauge,
    segment_dead_bytes: IntGauge,
}

impl UpkeepMetrics {
    #[rustfmt::skip]
    fn new(m: &mut OnScrape) -> prometheus::Result<UpkeepMetrics> {
        Ok(UpkeepMetrics {
            republish_runs: m.counter("dhtfs_republish_runs_total", "Republish passes run.")?,
            republished_blocks: m.counter("dhtfs_republished_blocks_total", "Blocks republished.")?,
            republish_stores: m.counter_vec("dhtfs_republish_stores_total", "store_value requests sent by republishing, by outcome (saved|failed).", &["outcome"])?,
            republish_skipped: m.counter("dhtfs_republish_skipped_total", "Blocks a republish skipped because another node stored them to us again within the interval.")?,
            republish_handed_over: m.counter("dhtfs_republish_handed_over_total", "Shards (blocks kept on fewer nodes than K) dropped here after republishing them to the closer nodes they now belong on, each of which said saved.")?,
            republish_lookups: m.counter("dhtfs_republish_lookups_total", "Region lookups run by republishing (one per keyspace region, not per block).")?,
            republish_lookup_requests: m.counter("dhtfs_republish_lookup_requests_total", "DHT requests sent by republishing's region lookups.")?,
            republish_behind: m.gauge("dhtfs_republish_behind_blocks", "Blocks not refreshed (republished by anyone) for twice the republish interval.")?,
            republish_position: m.float_gauge("dhtfs_republish_position_ratio", "Where the republish sweep is in the keyspace, 0 to 1.")?,
            republish_last_pass: m.gauge("dhtfs_republish_last_pass_completed_timestamp_seconds", "When the republish sweep last completed a pass (unix seconds; 0 before the first; kept across restarts).")?,
            republish_interval: m.gauge("dhtfs_republish_interval_seconds", "A republish pass starts this long after the previous one started (republish_interval_secs); 0 while republishing is off.")?,
            handoff_newcomers: m.counter("dhtfs_handoff_newcomers_total", "Nodes that newly proved their id, checked for blocks they are now among the K closest of.")?,
            handoff_stores: m.counter_vec("dhtfs_handoff_stores_total", "store_value requests handing blocks to newcomers, by outcome (saved|failed).", &["outcome"])?,
            replicas_dropped: m.counter("dhtfs_replicas_dropped_total", "Replicas dropped to win space back, each held by K closer nodes.")?,
            replicas_dropped_bytes: m.counter("dhtfs_replicas_dropped_bytes_total", "Bytes of the replicas dropped to win space back.")?,
            repair_runs: m.counter("dhtfs_repair_runs_total", "Repair passes run over the stripes held here.")?,
            repair_checked: m.counter("dhtfs_repair_stripes_checked_total", "Stripes of erasure-coded chunks this node checked (it is their closest known holder).")?,
            repair_shards: m.counter_vec("dhtfs_repair_shards_total", "Shards of the stripes checked, by state (missing: no node held one; rebuilt: decoded and stored again).", &["state"])?,
            repair_bytes: m.counter_vec("dhtfs_repair_bytes_total", "Bytes moved by repair, by direction (read: shards fetched to rebuild; written: rebuilt shards stored, once per node that saved one).", &["direction"])?,
            repair_failures: m.counter("dhtfs_repair_failures_total", "Stripes a repair pass could not bring back to their threshold (too few shards left, or no node saved a rebuilt one).")?,
            space_wanted: m.gauge("dhtfs_storage_space_wanted_bytes", "Bytes to free to be back under the low-water marks of the quota and the free-space floor; 0 under the high ones.")?,
            verify_runs: m.counter("dhtfs_verify_runs_total", "Verify passes run.")?,
            verify_checked: m.counter("dhtfs_verify_checked_blocks_total", "Blocks re-hashed by verification.")?,
            verify_corrupt: m.counter("dhtfs_verify_corrupt_blocks_total", "Blocks verification found corrupt.")?,
            verify_repaired: m.counter("dhtfs_verify_repaired_blocks_total", "Corrupt blocks replaced by a good copy.")?,
            verify_unreadable: m.counter("dhtfs_verify_unreadable_blocks_total", "Blocks verification could not read (I/O error) and skipped.")?,
            compaction_paused: m.gauge("dhtfs_compaction_paused", "1 while an operator has compaction paused (PauseCompaction), else 0.")?,
            compaction_running: m.gauge("dhtfs_compaction_running", "1 while a compaction pass measures or rewrites segments, else 0.")?,
            compaction_last_pass: m.gauge("dhtfs_compaction_last_pass_completed_timestamp_seconds", "When the last compaction pass ended, unix seconds (0: none yet; kept across restarts).")?,
            scrub_paused: m.gauge("dhtfs_scrub_paused", "1 while an operator has the scrub paused (PauseScrub), else 0.")?,
            scrub_running: m.gauge("dhtfs_scrub_running", "1 while a scrub pass is reading, else 0.")?,
            scrub_position: m.float_gauge("dhtfs_scrub_position_ratio", "Where the scrub pass under way stands in the keyspace, 0..1 (0 between passes).")?,
            scrub_bytes_read: m.counter("dhtfs_scrub_bytes_read_total", "Bytes of blocks the scrub read.")?,
            scrub_passes: m.counter("dhtfs_scrub_passes_total", "Scrub passes completed.")?,
            scrub_last_pass: m.gauge("dhtfs_scrub_last_pass_completed_timestamp_seconds", "When the last scrub pass ended, unix seconds (0: none yet; kept across restarts).")?,
            scrub_last_duration: m.float_gauge("dhtfs_scrub_last_pass_duration_seconds", "How long the last completed scrub pass took, pauses and restarts included.")?,
            scrub_interval: m.gauge("dhtfs_scrub_interval_seconds", "A scrub pass starts this long after the previous one started (verify_interval_secs); 0 while the scrub is off.")?,
            compaction_passes: m.counter("dhtfs_compaction_passes_total", "Compaction passes completed.")?,
            compaction_bytes_moved: m.counter("dhtfs_compaction_moved_bytes_total", "Bytes of live blocks compaction copied out of segments it rewrote.")?,
            compaction_segments_removed: m.counter("dhtfs_compaction_segments_removed_total", "Segment files compaction emptied and removed.")?,
            compaction_bytes_freed: m.counter("dhtfs_compaction_freed_bytes_total", "Disk bytes the segment files compaction removed took.")?,
            segment_bytes: m.gauge("dhtfs_segment_bytes", "Disk bytes the segment files take, as the last compaction pass measured.")?,
            segment_dead_bytes: m.gauge("dhtfs_segment_dead_bytes", "Disk bytes of the segment files that hold no live block (deleted, or copied elsewhere), as the last compaction pass measured.")?,
        })
    }

    fn refresh(&self, node: &Node, scrub: &ScrubControl) {
        let s = node.stats();
        sync(&self.republish_runs, Stats::get(&s.republish_runs));
        sync(&self.republished_blocks, Stats::get(&s.republished_blocks));
        let sent = Stats::get(&s.republish_stores_sent);
        let failed = Stats::get(&s.republish_failures);
        sync(
            &self.republish_stores.with_label_values(&["saved"]),
            sent.saturating_sub(failed),
        );
        sync(
            &self.republish_stores.with_label_values(&["failed"]),
            failed,
        );
        sync(&self.republish_skipped, Stats::get(&s.republish_skipped));
        sync(
            &self.republish_handed_over,
            Stats::get(&s.republish_handed_over),
        );
        sync(&self.republish_lookups, Stats::get(&s.republish_lookups));
        sync(
            &self.republish_lookup_requests,
            Stats::get(&s.republish_lookup_requests),
        );
        self.republish_behind
            .set(Stats::get(&s.republish_behind_blocks) as i64);
        self.republish_position
            .set(Stats::get(&s.republish_position_ppm) as f64 / 1e6);
        self.republish_last_pass
            .set(Stats::get(&s.republish_last_pass_unix) as i64);
        self.republish_interval
            .set(Stats::get(&s.republish_interval_secs) as i64);

        sync(&self.handoff_newcomers, Stats::get(&s.handoff_newcomers));
        let handed = Stats::get(&s.handoff_stores);
        let handoff_failed = Stats::get(&s.handoff_failures);
        sync(
            &self.handoff_stores.with_label_values(&["saved"]),
            handed.saturating_sub(handoff_failed),
        );
        sync(
            &self.handoff_stores.with_label_values(&["failed"]),
            handoff_failed,
        );

        sync(&self.replicas_dropped, Stats::get(&s.shed_blocks));
        sync(&self.replicas_dropped_bytes, Stats::get(&s.shed_bytes));
        self.space_wanted
            .set(Stats::get(&s.space_wanted_bytes) as i64);

        sync(&self.repair_runs, Stats::get(&s.repair_runs));
        sync(&self.repair_checked, Stats::get(&s.repair_checked));
        sync(
            &self.repair_shards.with_label_values(&["missing"]),
            Stats::get(&s.repair_shards_missing),
        );
        sync(
            &self.repair_shards.with_label_values(&["rebuilt"]),
            Stats::get(&s.repair_shards_rebuilt),
        );
        sync(
            &self.repair_bytes.with_label_values(&["read"]),
            Stats::get(&s.repair_bytes_read),
        );
        sync(
            &self.repair_bytes.with_label_values(&["written"]),
            Stats::get(&s.repair_bytes_written),
        );
        sync(&self.repair_failures, Stats::get(&s.repair_failures));

        sync(&self.verify_runs, Stats::get(&s.verify_runs));
        sync(&self.verify_checked, Stats::get(&s.verify_checked));
        sync(&self.verify_corrupt, Stats::get(&s.verify_corrupt));
        sync(&self.verify_repaired, Stats::get(&s.verify_repaired));
        sync(&self.verify_unreadable, Stats::get(&s.verify_unreadable));

        sync(&self.compaction_passes, Stats::get(&s.compaction_passes));
        sync(
            &self.compaction_bytes_moved,
            Stats::get(&s.compaction_bytes_moved),
        );
        sync(
            &self.compaction_segments_removed,
            Stats::get(&s.compaction_segments_removed),
        );
        sync(
            &self.compaction_bytes_freed,
            Stats::get(&s.compaction_bytes_freed),
        );
        self.segment_bytes
            .set(i64::try_from(Stats::get(&s.segment_bytes)).unwrap_or(i64::MAX));
        self.segment_dead_bytes
            .set(i64::try_from(Stats::get(&s.segment_dead_bytes)).unwrap_or(i64::MAX));

        sync(&self.scrub_bytes_read, Stats::get(&s.scrub_bytes_read));
        sync(&self.scrub_passes, Stats::get(&s.scrub_passes));
        let status = scrub.status();
        self.scrub_paused
            .set(i64::from(status.state == ScrubState::Paused));
        self.scrub_running
            .set(i64::from(status.state == ScrubState::Running));
        self.scrub_position.set(status.position_ratio);
        let last = status.last.unwrap_or_default();
        self.scrub_last_pass
            .set((last.finished_unix_ms / 1000) as i64);
        self.scrub_last_duration
            .set(last.duration_ms as f64 / 1000.0);
        self.scrub_interval.set((status.interval_ms / 1000) as i64);
    }

    fn refresh_compaction(&self, compaction: &CompactionControl) {
        let status = compaction.status();
        self.compaction_paused
            .set(i64::from(status.state == CompactionState::Paused));
        self.compaction_running
            .set(i64::from(status.state == CompactionState::Running));
        let last = status.last.unwrap_or_default();
        self.compaction_last_pass
            .set((last.finished_unix_ms / 1000) as i64);
    }
}
