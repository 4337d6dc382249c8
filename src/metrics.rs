//! Prometheus metrics on `GET /metrics`. This module serves one registry and
//! registers what sits below it: the engine's counters in [`Stats`] (plain
//! atomics the engine and shells bump, copied in at each scrape), the
//! distributions it receives through the [`Observer`] it plugs in, and the
//! store's gauges. Every subsystem above registers its own metrics into the
//! registry it is given (`gateway/metrics.rs`, `upkeep/metrics.rs`), so this
//! module imports none of them.

use std::sync::{Arc, Mutex};

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;
use crate::stats::{Observer, Outcome, Stats};
use crate::store::Store;
use crate::wire::RequestType;

/// Registers a counter that its owner bumps as things happen.
pub fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Registers a labelled counter that its owner bumps as things happen.
pub fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Brings a monotonic counter up to `value`, its owner's count.
pub fn sync(c: &IntCounter, value: u64) {
    c.inc_by(value.saturating_sub(c.get()));
}

/// Metrics whose values are copied in from their owner at each scrape, so the
/// owner keeps plain counters and state and knows nothing of Prometheus.
/// Build them with [`OnScrape::counter`] and its siblings, then hand them to
/// [`OnScrape::register`] with the function that copies the values in.
#[derive(Default)]
pub struct OnScrape {
    metrics: Vec<Box<dyn Collector>>,
}

impl OnScrape {
    /// A counter, to be brought up to its owner's count with [`sync`].
    pub fn counter(&mut self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        let c = IntCounter::new(name, help)?;
        self.metrics.push(Box::new(c.clone()));
        Ok(c)
    }

    /// A labelled counter.
    pub fn counter_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.metrics.push(Box::new(c.clone()));
        Ok(c)
    }

    /// An integer gauge.
    pub fn gauge(&mut self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        let g = IntGauge::new(name, help)?;
        self.metrics.push(Box::new(g.clone()));
        Ok(g)
    }

    /// A floating-point gauge.
    pub fn float_gauge(&mut self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        let g = Gauge::new(name, help)?;
        self.metrics.push(Box::new(g.clone()));
        Ok(g)
    }

    /// Registers the metrics built so far; `refresh` runs before each scrape
    /// reads them.
    pub fn register(
        self,
        registry: &Registry,
        refresh: impl Fn() + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        registry.register(Box::new(Refreshed {
            metrics: self.metrics,
            refresh: Mutex::new(Box::new(refresh)),
        }))
    }
}

type Refresh = Box<dyn Fn() + Send + Sync>;

/// The collector [`OnScrape::register`] registers.
struct Refreshed {
    metrics: Vec<Box<dyn Collector>>,
    /// Held through a refresh and the read after it, so two scrapes at once
    /// cannot both add the same difference to a counter.
    refresh: Mutex<Refresh>,
}

impl Collector for Refreshed {
    fn desc(&self) -> Vec<&Desc> {
        self.metrics.iter().flat_map(|m| m.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let refresh = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        refresh();
        self.metrics.iter().flat_map(|m| m.collect()).collect()
    }
}

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

/// One node's registry, served by [`serve`].
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry holding the build info, the process's own metrics, the
    /// engine's and the store's, with the histograms plugged into the node's
    /// stats. `quota` is the store's, `None` when unlimited.
    pub fn new(node: Node, store: Store, quota: Option<u64>) -> prometheus::Result<Metrics> {
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
        let mut m = OnScrape::default();
        let engine = Engine::new(&mut m)?;
        m.register(&r, move || engine.refresh(&node, &store, quota))?;
        Ok(Metrics { registry: r })
    }

    /// The registry every subsystem registers its own metrics into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads every metric and renders the text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The engine's and the store's metrics, read from [`Stats`], the node and
/// the store at each scrape.
struct Engine {
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
    requests_limited: IntCounter,
    requests_paced: IntCounter,
    requests_refused_paced: IntCounter,
    fetch_hedged: IntCounter,
    tcp_blocks_sendfile: IntCounter,
    fetch_slow_peers: IntCounter,
    fetch_backoffs: IntCounter,
    fetch_rejected: IntCounter,
    files: IntCounterVec,
    lookups_bounded: IntCounterVec,
    admission: IntCounterVec,
    checks: IntCounterVec,
}

impl Engine {
    #[rustfmt::skip]
    fn new(m: &mut OnScrape) -> prometheus::Result<Engine> {
        Ok(Engine {
            transfer_bytes: m.counter_vec("dhtfs_transfer_bytes_total", "Bytes moved, by direction (sent|received) and protocol (udp|tcp).", &["direction", "protocol"])?,
            requests: m.counter_vec("dhtfs_dht_requests_total", "DHT requests by type, role (client: we sent it; server: we answered it) and outcome.", &["type", "role", "outcome"])?,
            stores: m.counter_vec("dhtfs_store_value_received_total", "store_value requests received, by outcome (saved|bad_hash|refused|pull_failed).", &["outcome"])?,
            datagrams_malformed: m.counter("dhtfs_datagrams_malformed_total", "Datagrams that did not parse (answered with an error or dropped).")?,
            tcp_connections: m.counter_vec("dhtfs_tcp_connections_total", "Block-server connections, by outcome (accepted|refused at the cap).", &["outcome"])?,
            tcp_blocks: m.counter_vec("dhtfs_tcp_block_requests_total", "Block requests over TCP, by outcome (served|absent|bad).", &["outcome"])?,
            routing_peers: m.gauge("dhtfs_routing_table_peers", "Entries in the routing table.")?,
            pending_requests: m.gauge("dhtfs_pending_requests", "DHT requests of ours waiting for answers.")?,
            blocks_stored: m.gauge("dhtfs_blocks_stored", "Blocks held by this node.")?,
            stored_bytes: m.gauge("dhtfs_stored_bytes", "Bytes of blocks held by this node.")?,
            charged_bytes: m.gauge("dhtfs_storage_charged_bytes", "What the blocks held count against the quota: their bytes plus per-block bookkeeping.")?,
            quota_bytes: m.gauge("dhtfs_storage_quota_bytes", "The storage quota in bytes; 0 when unlimited.")?,
            requests_limited: m.counter("dhtfs_requests_limited_total", "DHT requests dropped by the per-source rate limit.")?,
            requests_paced: m.counter("dhtfs_requests_paced_total", "DHT requests of ours that waited their turn (or a store slot) to keep within a peer's budget.")?,
            requests_refused_paced: m.counter("dhtfs_requests_refused_paced_total", "DHT requests of ours refused as busy: too many already waiting for one peer.")?,
            tcp_blocks_sendfile: m.counter("dhtfs_tcp_blocks_sendfile_total", "Blocks served over TCP that the kernel sent straight from the page cache (sendfile); the rest were read into memory first.")?,
            fetch_hedged: m.counter("dhtfs_fetch_hedged_total", "Block fetches of ours started because an earlier ask for the same block fell far behind (hedges).")?,
            fetch_slow_peers: m.counter("dhtfs_fetch_slow_peers_total", "Peers a transfer of ours marked slow: they fell far behind and another holder's copy won.")?,
            fetch_backoffs: m.counter("dhtfs_fetch_backoffs_total", "Waits of our block fetches before another lookup round, after a round that found no copy.")?,
            fetch_rejected: m.counter("dhtfs_fetch_rejected_total", "Block copies we fetched whose bytes did not match the key (the sender is avoided).")?,
            files: m.counter_vec("dhtfs_files_total", "Files this node read for someone (op=read: gateway responses with content) or pinned to the end (op=pin), by kind (sealed: by capability; plain: by root). Puts run in the client and are not seen here.", &["op", "kind"])?,
            lookups_bounded: m.counter_vec("dhtfs_lookups_bounded_total", "Lookups ended early by a bound (deadline|requests).", &["bound"])?,
            admission: m.counter_vec("dhtfs_routing_admission_refused_total", "Contacts kept out of the routing table, by reason (ip_limit: per-IP or per-prefix limit; address_conflict: another node holds the address or id).", &["reason"])?,
            checks: m.counter_vec("dhtfs_contact_checks_total", "Pings checking an unproven contact, by outcome (passed|failed|skipped: over the check budget).", &["outcome"])?,
        })
    }

    fn refresh(&self, node: &Node, store: &Store, quota: Option<u64>) {
        let s = node.stats();
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
        for (outcome, counter) in [
            ("accepted", &s.tcp_connections),
            ("refused", &s.tcp_connections_refused),
            ("refused_per_ip", &s.tcp_connections_refused_per_ip),
        ] {
            sync(
                &self.tcp_connections.with_label_values(&[outcome]),
                Stats::get(counter),
            );
        }
        for (outcome, counter) in [
            ("slow", &s.tcp_slow_key_lines),
            ("served", &s.tcp_blocks_served),
            ("absent", &s.tcp_blocks_absent),
            ("bad", &s.tcp_bad_requests),
        ] {
            sync(
                &self.tcp_blocks.with_label_values(&[outcome]),
                Stats::get(counter),
            );
        }
        sync(&self.requests_limited, Stats::get(&s.requests_limited));
        sync(&self.requests_paced, Stats::get(&s.requests_paced));
        sync(
            &self.requests_refused_paced,
            Stats::get(&s.requests_refused_paced),
        );
        sync(&self.fetch_hedged, Stats::get(&s.fetch_hedged));
        sync(
            &self.tcp_blocks_sendfile,
            Stats::get(&s.tcp_blocks_sendfile),
        );
        sync(&self.fetch_slow_peers, Stats::get(&s.fetch_slow_peers));
        sync(&self.fetch_backoffs, Stats::get(&s.fetch_backoffs));
        sync(&self.fetch_rejected, Stats::get(&s.fetch_rejected));
        for (op, kind, counter) in [
            ("read", "sealed", &s.files_read_sealed),
            ("read", "plain", &s.files_read_plain),
            ("pin", "sealed", &s.files_pinned_sealed),
            ("pin", "plain", &s.files_pinned_plain),
        ] {
            sync(
                &self.files.with_label_values(&[op, kind]),
                Stats::get(counter),
            );
        }
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
        self.routing_peers.set(node.table().len() as i64);
        self.pending_requests.set(node.pending_requests() as i64);
        self.blocks_stored.set(store.block_count() as i64);
        self.stored_bytes.set(store.bytes_stored() as i64);
        self.charged_bytes.set(store.charged_bytes() as i64);
        self.quota_bytes.set(quota.unwrap_or(0) as i64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The value of the sample `name` in `registry`'s exposition.
    fn sample(registry: &Registry, name: &str) -> f64 {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name}"))
    }

    #[test]
    fn on_scrape_metrics_follow_their_owner_at_each_scrape() {
        let r = Registry::new();
        let owned = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let mut m = OnScrape::default();
        let (c, g) = (
            m.counter("t_things_total", "Things.").unwrap(),
            m.gauge("t_level", "Level.").unwrap(),
        );
        let source = owned.clone();
        m.register(&r, move || {
            sync(&c, source.0.load(Ordering::Relaxed));
            g.set(source.1.load(Ordering::Relaxed) as i64);
        })
        .unwrap();
        assert_eq!(sample(&r, "t_things_total"), 0.0);
        owned.0.store(5, Ordering::Relaxed);
        owned.1.store(9, Ordering::Relaxed);
        assert_eq!(sample(&r, "t_things_total"), 5.0);
        assert_eq!(sample(&r, "t_level"), 9.0);
        owned.0.store(7, Ordering::Relaxed);
        owned.1.store(2, Ordering::Relaxed);
        assert_eq!(sample(&r, "t_things_total"), 7.0);
        assert_eq!(sample(&r, "t_level"), 2.0);
        // A name registered twice is refused, as with the registry's own.
        let mut again = OnScrape::default();
        again.counter("t_things_total", "Again.").unwrap();
        assert!(again.register(&r, || {}).is_err());
    }

    #[test]
    fn scrapes_at_once_never_count_a_difference_twice() {
        // A refresh that reads, waits, then adds what is missing, the way
        // `sync` does: without the collector's lock, scrapes overlapping in
        // the wait would each add the 1000 and overshoot.
        let r = Registry::new();
        let mut m = OnScrape::default();
        let c = m.counter("t_moved_total", "Moved.").unwrap();
        m.register(&r, move || {
            let have = c.get();
            std::thread::sleep(std::time::Duration::from_millis(5));
            c.inc_by(1000u64.saturating_sub(have));
        })
        .unwrap();
        let r = Arc::new(r);
        let scrapes: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || r.gather())
            })
            .collect();
        for s in scrapes {
            s.join().unwrap();
        }
        assert_eq!(sample(&r, "t_moved_total"), 1000.0);
    }
}
