//! Plain atomic counters that the engine and the shells bump. The metrics
//! exporter reads them; nothing here knows about Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::wire::RequestType;

/// How a request ended, from either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
}

impl Outcome {
    /// Every outcome, for labels.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::Timeout];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// A counter per request type and outcome.
#[derive(Default, Debug)]
pub struct RequestCounters([[AtomicU64; 3]; 4]);

impl RequestCounters {
    /// Counts one request.
    pub fn add(&self, kind: RequestType, outcome: Outcome) {
        self.0[kind.index()][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads one counter.
    pub fn get(&self, kind: RequestType, outcome: Outcome) -> u64 {
        self.0[kind.index()][outcome as usize].load(Ordering::Relaxed)
    }
}

/// Every counter a node keeps.
#[derive(Default, Debug)]
pub struct Stats {
    pub udp_bytes_sent: AtomicU64,
    pub udp_bytes_received: AtomicU64,
    pub tcp_bytes_sent: AtomicU64,
    pub tcp_bytes_received: AtomicU64,
    /// Datagrams that did not parse (answered with an error or dropped).
    pub datagrams_malformed: AtomicU64,
    /// Datagrams we could not send (socket buffer full).
    pub datagrams_send_failed: AtomicU64,
    /// Responses whose magic matched nothing pending, or came from the wrong address.
    pub responses_unmatched: AtomicU64,
    /// Requests we refused because too many of ours were already pending.
    pub requests_refused_pending_full: AtomicU64,
    /// Requests we answered, by type and outcome.
    pub served: RequestCounters,
    /// Requests we sent, by type and outcome.
    pub sent: RequestCounters,
    /// store_value pulls that ended with the block stored ("saved").
    pub stores_saved: AtomicU64,
    /// store_value pulls whose bytes did not hash to the key.
    pub stores_bad_hash: AtomicU64,
    /// store_value requests refused: too large, over quota, or too busy.
    pub stores_refused: AtomicU64,
    /// store_value pulls that failed to fetch the block.
    pub stores_pull_failed: AtomicU64,
    /// Block fetches (ours) started because an earlier ask for the same
    /// block fell far behind.
    pub fetch_hedged: AtomicU64,
    /// Peers a transfer of ours marked slow (they lost a hedged race).
    pub fetch_slow_peers: AtomicU64,
    /// Waits before another lookup round, after one that found nothing.
    pub fetch_backoffs: AtomicU64,
    /// Block copies we fetched whose bytes did not match the key.
    pub fetch_rejected: AtomicU64,
    /// Files this node read for someone, by kind: gateway responses with
    /// content (sealed files opened by capability, plain ones by root).
    pub files_read_sealed: AtomicU64,
    pub files_read_plain: AtomicU64,
    /// Files this node pinned to the end, by kind.
    pub files_pinned_sealed: AtomicU64,
    pub files_pinned_plain: AtomicU64,
    /// TCP connections accepted and refused at the cap.
    pub tcp_connections: AtomicU64,
    pub tcp_connections_refused: AtomicU64,
    /// TCP block requests served and answered "absent" (closed).
    pub tcp_blocks_served: AtomicU64,
    /// Of those served, the ones the kernel sent from the page cache
    /// (sendfile); the rest were read into memory first.
    pub tcp_blocks_sendfile: AtomicU64,
    pub tcp_blocks_absent: AtomicU64,
    /// TCP key lines that were too long or not a key.
    pub tcp_bad_requests: AtomicU64,
    /// TCP connections refused at the per-IP cap.
    pub tcp_connections_refused_per_ip: AtomicU64,
    /// TCP connections closed because a key line did not arrive in time.
    pub tcp_slow_key_lines: AtomicU64,
    /// Requests of ours sent again after a soft timeout without an answer.
    pub requests_resent: AtomicU64,
    /// Requests dropped by the per-source rate limit.
    pub requests_limited: AtomicU64,
    /// Requests of ours that waited their turn to keep within a peer's
    /// budget, and those refused (busy) because too many waited already.
    pub requests_paced: AtomicU64,
    pub requests_refused_paced: AtomicU64,
    /// Resends not sent because the peer's budget had no turn free then.
    pub resends_skipped: AtomicU64,
    /// Claims on an address or id the table binds to another node.
    pub address_conflicts: AtomicU64,
    /// Newcomers refused by the per-IP or per-prefix limits.
    pub contacts_rejected: AtomicU64,
    /// Pings checking a contact: begun, skipped for want of budget, passed, failed.
    pub checks_sent: AtomicU64,
    pub checks_skipped: AtomicU64,
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Lookups ended by their deadline, and by their request cap.
    pub lookups_ended_deadline: AtomicU64,
    pub lookups_ended_requests: AtomicU64,
    /// store_value requests refused because we are not among the key's holders.
    pub stores_not_responsible: AtomicU64,
    /// Lookups run and their hop counts added up.
    pub lookups: AtomicU64,
    pub lookup_hops_total: AtomicU64,
    /// Republish passes, blocks republished, stores sent and failed.
    pub republish_runs: AtomicU64,
    pub republished_blocks: AtomicU64,
    pub republish_stores_sent: AtomicU64,
    pub republish_failures: AtomicU64,
    /// Blocks a republish skipped: another node stored them to us lately.
    pub republish_skipped: AtomicU64,
    /// Region lookups of republishing, and the requests they sent.
    pub republish_lookups: AtomicU64,
    pub republish_lookup_requests: AtomicU64,
    /// Gauges of the republish sweep: blocks not refreshed for twice the
    /// interval, where the sweep is (keyspace millionths), and when its last
    /// pass completed (unix seconds, 0 before the first).
    pub republish_behind_blocks: AtomicU64,
    /// Shards (blocks kept on fewer nodes than K) this node dropped after
    /// republishing them to the closer nodes they now belong on.
    pub republish_handed_over: AtomicU64,
    pub republish_position_ppm: AtomicU64,
    pub republish_last_pass_unix: AtomicU64,
    /// The republish sweep's interval in seconds (0: republishing is off).
    pub republish_interval_secs: AtomicU64,
    /// Newcomers handed blocks, store_value requests sent to them, failed.
    pub handoff_newcomers: AtomicU64,
    pub handoff_stores: AtomicU64,
    pub handoff_failures: AtomicU64,
    /// Repair of erasure-coded chunks: passes, stripes checked, shards found
    /// missing and rebuilt, bytes fetched and stored to rebuild them, and
    /// stripes that could not be repaired.
    pub repair_runs: AtomicU64,
    pub repair_checked: AtomicU64,
    pub repair_shards_missing: AtomicU64,
    pub repair_shards_rebuilt: AtomicU64,
    pub repair_bytes_read: AtomicU64,
    pub repair_bytes_written: AtomicU64,
    pub repair_failures: AtomicU64,
    /// Replicas dropped to win space back (closer nodes hold them), and bytes.
    pub shed_blocks: AtomicU64,
    pub shed_bytes: AtomicU64,
    /// Gauge: bytes to free to be back under the low-water marks, as the
    /// shedding worker last measured (every 30 s).
    pub space_wanted_bytes: AtomicU64,
    /// Verify passes, blocks checked, found corrupt and repaired.
    pub verify_runs: AtomicU64,
    pub verify_checked: AtomicU64,
    pub verify_corrupt: AtomicU64,
    pub verify_repaired: AtomicU64,
    /// Blocks verification could not read (an I/O error): skipped, not judged.
    pub verify_unreadable: AtomicU64,
    /// Bytes the scrub worker read, and its passes completed.
    pub scrub_bytes_read: AtomicU64,
    pub scrub_passes: AtomicU64,
    /// Compaction passes completed, live bytes it moved, segment files it
    /// removed and the disk bytes that gave back.
    pub compaction_passes: AtomicU64,
    pub compaction_bytes_moved: AtomicU64,
    pub compaction_segments_removed: AtomicU64,
    pub compaction_bytes_freed: AtomicU64,
    /// Gauges, as the last compaction pass measured: disk bytes the segment
    /// files take, and how many of them hold no live block.
    pub segment_bytes: AtomicU64,
    pub segment_dead_bytes: AtomicU64,
    /// Where distributions go (the metrics exporter plugs one in).
    observer: OnceLock<Arc<dyn Observer>>,
}

/// Receives observations that are distributions rather than counts. The
/// exporter implements it; the engine only calls [`Stats::observe_request`]
/// and [`Stats::observe_hops`], and nothing happens without an observer.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A request we sent got its answer (or failed) after `seconds`.
    fn request_duration(&self, kind: RequestType, seconds: f64);
    /// A lookup ended after `hops` hops.
    fn lookup_hops(&self, hops: u32);
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Plugs in the observer; only the first one set is kept.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    /// Records how long a request of ours took.
    pub fn observe_request(&self, kind: RequestType, seconds: f64) {
        if let Some(o) = self.observer.get() {
            o.request_duration(kind, seconds);
        }
    }

    /// Records a finished lookup's hop count.
    pub fn observe_hops(&self, hops: u32) {
        Stats::inc(&self.lookups);
        Stats::add(&self.lookup_hops_total, u64::from(hops));
        if let Some(o) = self.observer.get() {
            o.lookup_hops(hops);
        }
    }

    /// Bytes sent over both protocols.
    pub fn bytes_sent(&self) -> u64 {
        Stats::get(&self.udp_bytes_sent) + Stats::get(&self.tcp_bytes_sent)
    }

    /// Bytes received over both protocols.
    pub fn bytes_received(&self) -> u64 {
        Stats::get(&self.udp_bytes_received) + Stats::get(&self.tcp_bytes_received)
    }
}
