//! The gateway's metrics, registered with the node's registry and bumped as
//! requests are answered and bodies stream out.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::files::Counters;
use crate::metrics::{counter, counter_vec};

/// Status codes shown from the start (at 0), so dashboards and alerts find
/// the series before the first request.
const CODES: [&str; 10] = [
    "200", "206", "304", "400", "403", "404", "416", "422", "503", "504",
];

/// Counters and the time-to-first-byte histogram of one gateway.
#[derive(Clone)]
pub struct GatewayMetrics {
    requests: IntCounterVec,
    bytes: IntCounter,
    ttfb: Histogram,
    cut: IntCounter,
    rejected: IntCounter,
    refused: IntCounterVec,
    manifest_hits: IntCounter,
    manifest_misses: IntCounter,
    resolves: IntCounter,
    manifest_bytes: IntGauge,
    manifest_entries: IntGauge,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics with `r`.
    pub fn register(r: &Registry) -> prometheus::Result<GatewayMetrics> {
        let ttfb = Histogram::with_opts(
            HistogramOpts::new(
                "dhtfs_gateway_time_to_first_byte_seconds",
                "Time from a gateway request to the first body byte being ready (its manifest resolved and first chunk verified).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        r.register(Box::new(ttfb.clone()))?;
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::with_opts(Opts::new(name, help))?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let m = GatewayMetrics {
            requests: counter_vec(r, "dhtfs_gateway_requests_total", "HTTP gateway requests answered, by status code.", &["code"])?,
            bytes: counter(r, "dhtfs_gateway_bytes_total", "Verified body bytes the HTTP gateway sent.")?,
            ttfb,
            cut: counter(r, "dhtfs_gateway_streams_cut_total", "Gateway responses ended early (short against Content-Length) because a chunk could not be fetched.")?,
            rejected: counter(r, "dhtfs_gateway_chunks_rejected_total", "Blocks peers sent the gateway whose bytes did not match their key (never sent on).")?,
            refused: counter_vec(r, "dhtfs_gateway_connections_refused_total", "Gateway connections closed at accept, by reason (cap: all connections; per_ip: one IP's).", &["reason"])?,
            manifest_hits: counter(r, "dhtfs_gateway_manifest_cache_hits_total", "Gateway file requests whose resolved manifest was cached (no manifest lookup).")?,
            manifest_misses: counter(r, "dhtfs_gateway_manifest_cache_misses_total", "Gateway file requests whose manifest had to be resolved from the network.")?,
            resolves: counter(r, "dhtfs_gateway_manifest_resolves_total", "Manifest resolves the gateway started; concurrent misses for one file share one.")?,
            manifest_bytes: gauge("dhtfs_gateway_manifest_cache_bytes", "Bytes charged for the resolved manifests the gateway caches (at most gateway_manifest_cache_bytes).")?,
            manifest_entries: gauge("dhtfs_gateway_manifest_cache_entries", "Resolved manifests the gateway caches.")?,
        };
        for code in CODES {
            m.requests.with_label_values(&[code]);
        }
        for reason in ["cap", "per_ip"] {
            m.refused.with_label_values(&[reason]);
        }
        Ok(m)
    }

    /// A response with `status` was answered.
    pub fn answered(&self, status: StatusCode) {
        self.requests.with_label_values(&[status.as_str()]).inc();
    }

    /// Body bytes went out.
    pub fn sent(&self, n: usize) {
        self.bytes.inc_by(n as u64);
    }

    /// The first body byte was ready `seconds` after the request.
    pub fn first_byte(&self, seconds: f64) {
        self.ttfb.observe(seconds);
    }

    /// A body ended early.
    pub fn cut(&self) {
        self.cut.inc();
    }

    /// A connection was refused for `reason` (cap or per_ip).
    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// A file request found its manifest cached (`hit`) or not.
    pub fn manifest_lookup(&self, hit: bool) {
        if hit {
            self.manifest_hits.inc();
        } else {
            self.manifest_misses.inc();
        }
    }

    /// A manifest resolve started (one per file at a time).
    pub fn resolve_started(&self) {
        self.resolves.inc();
    }

    /// The manifest cache now holds `entries` charged `bytes`.
    pub fn manifest_cache_held(&self, bytes: u64, entries: usize) {
        self.manifest_bytes.set(bytes as i64);
        self.manifest_entries.set(entries as i64);
    }

    /// Moves the bad blocks a fetch run counted into the metric.
    pub fn take_rejected(&self, counters: &Counters) {
        self.rejected
            .inc_by(counters.rejected.swap(0, Ordering::Relaxed));
    }
}
