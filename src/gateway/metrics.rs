//! The gateway's metrics, registered with the node's registry and bumped as
//! requests are answered and bodies stream out.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Registry};

use crate::files::Counters;
use crate::metrics::{counter, counter_vec};

/// Status codes shown from the start (at 0), so dashboards and alerts find
/// the series before the first request.
const CODES: [&str; 9] = [
    "200", "206", "304", "400", "404", "416", "422", "503", "504",
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
        let m = GatewayMetrics {
            requests: counter_vec(r, "dhtfs_gateway_requests_total", "HTTP gateway requests answered, by status code.", &["code"])?,
            bytes: counter(r, "dhtfs_gateway_bytes_total", "Verified body bytes the HTTP gateway sent.")?,
            ttfb,
            cut: counter(r, "dhtfs_gateway_streams_cut_total", "Gateway responses ended early (short against Content-Length) because a chunk could not be fetched.")?,
            rejected: counter(r, "dhtfs_gateway_chunks_rejected_total", "Blocks peers sent the gateway whose bytes did not match their key (never sent on).")?,
            refused: counter_vec(r, "dhtfs_gateway_connections_refused_total", "Gateway connections closed at accept, by reason (cap: all connections; per_ip: one IP's).", &["reason"])?,
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

    /// Moves the bad blocks a fetch run counted into the metric.
    pub fn take_rejected(&self, counters: &Counters) {
        self.rejected
            .inc_by(counters.rejected.swap(0, Ordering::Relaxed));
    }
}
