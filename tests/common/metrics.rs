//! Reading samples out of a node's Prometheus exposition.

use std::net::SocketAddr;

/// The value of the sample `name` (with its label set, if any) in an
/// exposition; None when it has no such sample.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of metric `name` (with its label set, if any) on a node.
pub async fn metric(metrics: SocketAddr, name: &str) -> f64 {
    let text = super::http::http_get(metrics, "/metrics").await;
    sample(&text, name).unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}
