//! Every metric family real nodes export has a row in the metrics page, and
//! every row there is exported.

use std::collections::{BTreeMap, BTreeSet};

use super::markdown::{cells, code_spans, rows_under};
use super::{common, page, METRICS_PAGE};

/// The metric families of a Prometheus text exposition; a histogram's or a
/// summary's `_bucket`, `_sum` and `_count` series count as its family.
fn families(exposition: &str) -> BTreeSet<String> {
    let mut typed = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                typed.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let mut out: BTreeSet<String> = typed.keys().cloned().collect();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name: String = line
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if name.is_empty() {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|stem| {
                typed
                    .get(*stem)
                    .is_some_and(|k| k == "histogram" || k == "summary")
            })
            .map_or(name.clone(), str::to_string);
        out.insert(family);
    }
    out
}

/// The families the page's metric tables name (in their first column).
fn documented_metrics(md: &str) -> BTreeSet<String> {
    rows_under(md, "metric")
        .iter()
        .flat_map(|r| code_spans(&r[0]))
        .map(|s| s.split('{').next().unwrap().trim().to_string())
        .collect()
}

/// The exported families the page's tables do not name.
fn metrics_missing(md: &str, exported: &BTreeSet<String>) -> Vec<String> {
    let documented = documented_metrics(md);
    exported
        .iter()
        .filter(|f| !documented.contains(*f))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_metric_is_in_the_metrics_page() {
    // Two real nodes, one joined to the other, so requests were timed too.
    let net = common::TestNet::start(2).await;
    let mut exported = BTreeSet::new();
    for d in &net.nodes {
        exported.extend(families(
            &common::http::http_get(d.metrics_addr, "/metrics").await,
        ));
    }
    assert!(
        exported.contains("dhtfs_dht_request_duration_seconds"),
        "no request timed yet: {exported:?}"
    );
    let md = page(METRICS_PAGE);
    let missing = metrics_missing(&md, &exported);
    assert!(
        missing.is_empty(),
        "{METRICS_PAGE} lacks exported families: {missing:?}"
    );
    let documented = documented_metrics(&md);
    let stale: Vec<&String> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "{METRICS_PAGE} lists families no node exports: {stale:?}"
    );

    // Each family taken out of the page is caught.
    for family in &exported {
        let without: String = md
            .lines()
            .filter(|l| {
                !(l.starts_with('|')
                    && code_spans(&cells(l)[0])
                        .iter()
                        .any(|s| s.split('{').next() == Some(family.as_str())))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without, md, "no row for {family}");
        assert!(
            metrics_missing(&without, &exported).contains(family),
            "{family} taken out of {METRICS_PAGE}, yet not missed"
        );
    }
    println!(
        "docs: {} metric families exported and documented",
        exported.len()
    );
    let mut net = net;
    net.stop_all().await;
}

#[test]
fn families_fold_histogram_series_into_their_family() {
    let text =
        "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\n\
                # TYPE c_total counter\nc_total{a=\"b\"} 3\n# TYPE g_count gauge\ng_count 1\n";
    let f: Vec<String> = families(text).into_iter().collect();
    assert_eq!(f, ["c_total", "g_count", "h"]);
}
