//! Prometheus metrics on `GET /metrics`. Counters live in [`Stats`] as plain
//! atomics that the engine and shells bump; this module copies them into the
//! `prometheus` crate's types at each scrape, and receives distributions
//! (request durations, lookup hops) through the [`Observer`] it plugs in.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;
use crate::stats::{Observer, Outcome, Stats};
use crate::store::Store;
use crate::upkeep::{ScrubControl, ScrubState};
use crate::wire::RequestType;

/// Histograms fed as things happen.
#[derive(Debug)]
struct Distributions {
    request_duration: HistogramVec,
    lookup_hops: Histogram,
}

impl Observer for Distributions {
    fn request_duration(&self, kind: RequestType, seconds: f64) {
        self.request_duration
            .with_label_values(&[kind.as_str()])
            .observe(seconds);
    }

    fn lookup_hops(&self, hops: u32) {
        self.lookup_hops.observe(f64::from(hops));
    }
}

/// Every exported metric of one node.
pub struct Metrics {
    registry: Registry,
    node: Node,
    store: Store,
    scrub: ScrubControl,
    quota: Option<u64>,
    transfer_bytes: IntCounterVec,
    requests: IntCounterVec,
    stores: IntCounterVec,
    datagrams_malformed: IntCounter,
    tcp_connections: IntCounterVec,
    tcp_blocks: IntCounterVec,
    routing_peers: IntGauge,
    pending_requests: IntGauge,
    blocks_stored: IntGauge,
    stored_bytes: IntGauge,
    charged_bytes: IntGauge,
    quota_bytes: IntGauge,
    republish_runs: IntCounter,
    republished_blocks: IntCounter,
    republish_stores: IntCounterVec,
    republish_skipped: IntCounter,
    republish_lookups: IntCounter,
    republish_lookup_requests: IntCounter,
    republish_behind: IntGauge,
    republish_position: prometheus::Gauge,
    republish_last_pass: IntGauge,
    handoff_newcomers: IntCounter,
    handoff_stores: IntCounterVec,
    replicas_dropped: IntCounter,
    replicas_dropped_bytes: IntCounter,
    space_wanted: IntGauge,
    verify_runs: IntCounter,
    verify_checked: IntCounter,
    verify_corrupt: IntCounter,
    verify_repaired: IntCounter,
    requests_limited: IntCounter,
    requests_paced: IntCounter,
    requests_refused_paced: IntCounter,
    lookups_bounded: IntCounterVec,
    admission: IntCounterVec,
    checks: IntCounterVec,
    verify_unreadable: IntCounter,
    scrub_paused: IntGauge,
    scrub_running: IntGauge,
    scrub_position: Gauge,
    scrub_bytes_read: IntCounter,
    scrub_passes: IntCounter,
    scrub_last_pass: IntGauge,
    scrub_last_duration: Gauge,
    gateway: crate::gateway::GatewayMetrics,
}

pub(crate) fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

pub(crate) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn float_gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<Gauge> {
    let g = Gauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Brings a monotonic counter up to `value`.
fn sync(c: &IntCounter, value: u64) {
    c.inc_by(value.saturating_sub(c.get()));
}

impl Metrics {
    /// Registers every metric and plugs the histograms into the node's stats.
    pub fn new(
        node: Node,
        store: Store,
        scrub: ScrubControl,
        quota: Option<u64>,
    ) -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "dhtfs_dht_request_duration_seconds",
                "Time from sending a DHT request to its answer or timeout, by type.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["type"],
        )?;
        r.register(Box::new(request_duration.clone()))?;
        let lookup_hops = Histogram::with_opts(
            HistogramOpts::new("dhtfs_lookup_hops", "Hops an iterative lookup took.")
                .buckets((0..=10).map(f64::from).collect()),
        )?;
        r.register(Box::new(lookup_hops.clone()))?;
        node.stats().set_observer(Arc::new(Distributions {
            request_duration,
            lookup_hops,
        }));
        let build_info = IntGaugeVec::new(
            Opts::new("dhtfs_build_info", "The running dhtfs version; always 1."),
            &["version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            transfer_bytes: counter_vec(&r, "dhtfs_transfer_bytes_total", "Bytes moved, by direction (sent|received) and protocol (udp|tcp).", &["direction", "protocol"])?,
            requests: counter_vec(&r, "dhtfs_dht_requests_total", "DHT requests by type, role (client: we sent it; server: we answered it) and outcome.", &["type", "role", "outcome"])?,
            stores: counter_vec(&r, "dhtfs_store_value_received_total", "store_value requests received, by outcome (saved|bad_hash|refused|pull_failed).", &["outcome"])?,
            datagrams_malformed: counter(&r, "dhtfs_datagrams_malformed_total", "Datagrams that did not parse (answered with an error or dropped).")?,
            tcp_connections: counter_vec(&r, "dhtfs_tcp_connections_total", "Block-server connections, by outcome (accepted|refused at the cap).", &["outcome"])?,
            tcp_blocks: counter_vec(&r, "dhtfs_tcp_block_requests_total", "Block requests over TCP, by outcome (served|absent|bad).", &["outcome"])?,
            routing_peers: gauge(&r, "dhtfs_routing_table_peers", "Entries in the routing table.")?,
            pending_requests: gauge(&r, "dhtfs_pending_requests", "DHT requests of ours waiting for answers.")?,
            blocks_stored: gauge(&r, "dhtfs_blocks_stored", "Blocks held by this node.")?,
            stored_bytes: gauge(&r, "dhtfs_stored_bytes", "Bytes of blocks held by this node.")?,
            charged_bytes: gauge(&r, "dhtfs_storage_charged_bytes", "What the blocks held count against the quota: their bytes plus per-block bookkeeping.")?,
            quota_bytes: gauge(&r, "dhtfs_storage_quota_bytes", "The storage quota in bytes; 0 when unlimited.")?,
            republish_runs: counter(&r, "dhtfs_republish_runs_total", "Republish passes run.")?,
            republished_blocks: counter(&r, "dhtfs_republished_blocks_total", "Blocks republished.")?,
            republish_stores: counter_vec(&r, "dhtfs_republish_stores_total", "store_value requests sent by republishing, by outcome (saved|failed).", &["outcome"])?,
            republish_skipped: counter(&r, "dhtfs_republish_skipped_total", "Blocks a republish skipped because another node stored them to us again within the interval.")?,
            republish_lookups: counter(&r, "dhtfs_republish_lookups_total", "Region lookups run by republishing (one per keyspace region, not per block).")?,
            republish_lookup_requests: counter(&r, "dhtfs_republish_lookup_requests_total", "DHT requests sent by republishing's region lookups.")?,
            republish_behind: gauge(&r, "dhtfs_republish_behind_blocks", "Blocks not refreshed (republished by anyone) for twice the republish interval.")?,
            republish_position: {
                let g = prometheus::Gauge::new("dhtfs_republish_position_ratio", "Where the republish sweep is in the keyspace, 0 to 1.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            handoff_newcomers: counter(&r, "dhtfs_handoff_newcomers_total", "Nodes that newly proved their id, checked for blocks they are now among the K closest of.")?,
            handoff_stores: counter_vec(&r, "dhtfs_handoff_stores_total", "store_value requests handing blocks to newcomers, by outcome (saved|failed).", &["outcome"])?,
            replicas_dropped: counter(&r, "dhtfs_replicas_dropped_total", "Replicas dropped to win space back, each held by K closer nodes.")?,
            replicas_dropped_bytes: counter(&r, "dhtfs_replicas_dropped_bytes_total", "Bytes of the replicas dropped to win space back.")?,
            space_wanted: gauge(&r, "dhtfs_storage_space_wanted_bytes", "Bytes to free to be back under the low-water marks of the quota and the free-space floor; 0 under the high ones.")?,
            republish_last_pass: gauge(&r, "dhtfs_republish_last_pass_completed_timestamp_seconds", "When the republish sweep last completed a pass (unix seconds; 0 before the first).")?,
            verify_runs: counter(&r, "dhtfs_verify_runs_total", "Verify passes run.")?,
            verify_checked: counter(&r, "dhtfs_verify_checked_blocks_total", "Blocks re-hashed by verification.")?,
            verify_corrupt: counter(&r, "dhtfs_verify_corrupt_blocks_total", "Blocks verification found corrupt.")?,
            verify_repaired: counter(&r, "dhtfs_verify_repaired_blocks_total", "Corrupt blocks replaced by a good copy.")?,
            requests_limited: counter(&r, "dhtfs_requests_limited_total", "DHT requests dropped by the per-source rate limit.")?,
            requests_paced: counter(&r, "dhtfs_requests_paced_total", "DHT requests of ours that waited their turn (or a store slot) to keep within a peer's budget.")?,
            requests_refused_paced: counter(&r, "dhtfs_requests_refused_paced_total", "DHT requests of ours refused as busy: too many already waiting for one peer.")?,
            lookups_bounded: counter_vec(&r, "dhtfs_lookups_bounded_total", "Lookups ended early by a bound (deadline|requests).", &["bound"])?,
            admission: counter_vec(&r, "dhtfs_routing_admission_refused_total", "Contacts kept out of the routing table, by reason (ip_limit: per-IP or per-prefix limit; address_conflict: another node holds the address or id).", &["reason"])?,
            checks: counter_vec(&r, "dhtfs_contact_checks_total", "Pings checking an unproven contact, by outcome (passed|failed|skipped: over the check budget).", &["outcome"])?,
            verify_unreadable: counter(&r, "dhtfs_verify_unreadable_blocks_total", "Blocks verification could not read (I/O error) and skipped.")?,
            scrub_paused: gauge(&r, "dhtfs_scrub_paused", "1 while an operator has the scrub paused (PauseScrub), else 0.")?,
            scrub_running: gauge(&r, "dhtfs_scrub_running", "1 while a scrub pass is reading, else 0.")?,
            scrub_position: float_gauge(&r, "dhtfs_scrub_position_ratio", "Where the scrub pass under way stands in the keyspace, 0..1 (0 between passes).")?,
            scrub_bytes_read: counter(&r, "dhtfs_scrub_bytes_read_total", "Bytes of blocks the scrub read.")?,
            scrub_passes: counter(&r, "dhtfs_scrub_passes_total", "Scrub passes completed.")?,
            scrub_last_pass: gauge(&r, "dhtfs_scrub_last_pass_completed_timestamp_seconds", "When the last scrub pass ended, unix seconds (0: none yet; kept across restarts).")?,
            scrub_last_duration: float_gauge(&r, "dhtfs_scrub_last_pass_duration_seconds", "How long the last completed scrub pass took, pauses and restarts included.")?,
            gateway: crate::gateway::GatewayMetrics::register(&r)?,
            registry: r,
            node,
            store,
            scrub,
            quota,
        })
    }

    /// The HTTP gateway's metrics, registered with this node's.
    pub fn gateway(&self) -> crate::gateway::GatewayMetrics {
        self.gateway.clone()
    }

    /// Copies the current counts in and renders the text format.
    pub fn render(&self) -> String {
        self.sync();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn sync(&self) {
        let s = self.node.stats();
        for (direction, protocol, counter) in [
            ("sent", "udp", &s.udp_bytes_sent),
            ("sent", "tcp", &s.tcp_bytes_sent),
            ("received", "udp", &s.udp_bytes_received),
            ("received", "tcp", &s.tcp_bytes_received),
        ] {
            sync(
                &self
                    .transfer_bytes
                    .with_label_values(&[direction, protocol]),
                Stats::get(counter),
            );
        }
        for kind in RequestType::ALL {
            for outcome in Outcome::ALL {
                for (role, counters) in [("client", &s.sent), ("server", &s.served)] {
                    let c =
                        self.requests
                            .with_label_values(&[kind.as_str(), role, outcome.as_str()]);
                    sync(&c, counters.get(kind, outcome));
                }
            }
        }
        for (outcome, counter) in [
            ("saved", &s.stores_saved),
            ("bad_hash", &s.stores_bad_hash),
            ("refused", &s.stores_refused),
            ("pull_failed", &s.stores_pull_failed),
            ("not_responsible", &s.stores_not_responsible),
        ] {
            sync(
                &self.stores.with_label_values(&[outcome]),
                Stats::get(counter),
            );
        }
        sync(
            &self.datagrams_malformed,
            Stats::get(&s.datagrams_malformed),
        );
        sync(
            &self.tcp_connections.with_label_values(&["accepted"]),
            Stats::get(&s.tcp_connections),
        );
        sync(
            &self.tcp_connections.with_label_values(&["refused"]),
            Stats::get(&s.tcp_connections_refused),
        );
        sync(
            &self.tcp_connections.with_label_values(&["refused_per_ip"]),
            Stats::get(&s.tcp_connections_refused_per_ip),
        );
        sync(
            &self.tcp_blocks.with_label_values(&["slow"]),
            Stats::get(&s.tcp_slow_key_lines),
        );
        sync(&self.requests_limited, Stats::get(&s.requests_limited));
        sync(&self.requests_paced, Stats::get(&s.requests_paced));
        sync(
            &self.requests_refused_paced,
            Stats::get(&s.requests_refused_paced),
        );
        for (bound, counter) in [
            ("deadline", &s.lookups_ended_deadline),
            ("requests", &s.lookups_ended_requests),
        ] {
            sync(
                &self.lookups_bounded.with_label_values(&[bound]),
                Stats::get(counter),
            );
        }
        for (reason, counter) in [
            ("ip_limit", &s.contacts_rejected),
            ("address_conflict", &s.address_conflicts),
        ] {
            sync(
                &self.admission.with_label_values(&[reason]),
                Stats::get(counter),
            );
        }
        for (outcome, counter) in [
            ("passed", &s.checks_passed),
            ("failed", &s.checks_failed),
            ("skipped", &s.checks_skipped),
        ] {
            sync(
                &self.checks.with_label_values(&[outcome]),
                Stats::get(counter),
            );
        }
        sync(
            &self.tcp_blocks.with_label_values(&["served"]),
            Stats::get(&s.tcp_blocks_served),
        );
        sync(
            &self.tcp_blocks.with_label_values(&["absent"]),
            Stats::get(&s.tcp_blocks_absent),
        );
        sync(
            &self.tcp_blocks.with_label_values(&["bad"]),
            Stats::get(&s.tcp_bad_requests),
        );
        self.routing_peers.set(self.node.table().len() as i64);
        self.pending_requests
            .set(self.node.pending_requests() as i64);
        self.blocks_stored.set(self.store.block_count() as i64);
        self.stored_bytes.set(self.store.bytes_stored() as i64);
        self.charged_bytes.set(self.store.charged_bytes() as i64);
        self.quota_bytes.set(self.quota.unwrap_or(0) as i64);
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
        sync(&self.verify_runs, Stats::get(&s.verify_runs));
        sync(&self.verify_checked, Stats::get(&s.verify_checked));
        sync(&self.verify_corrupt, Stats::get(&s.verify_corrupt));
        sync(&self.verify_repaired, Stats::get(&s.verify_repaired));
        sync(&self.verify_unreadable, Stats::get(&s.verify_unreadable));
        sync(&self.scrub_bytes_read, Stats::get(&s.scrub_bytes_read));
        sync(&self.scrub_passes, Stats::get(&s.scrub_passes));
        let scrub = self.scrub.status();
        self.scrub_paused
            .set(i64::from(scrub.state == ScrubState::Paused));
        self.scrub_running
            .set(i64::from(scrub.state == ScrubState::Running));
        self.scrub_position.set(scrub.position_ratio);
        let last = scrub.last.unwrap_or_default();
        self.scrub_last_pass
            .set((last.finished_unix_ms / 1000) as i64);
        self.scrub_last_duration
            .set(last.duration_ms as f64 / 1000.0);
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render()) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
