//! Every alert of the shipped Prometheus rules has a row in the monitoring
//! page, and every row there is an alert.

use std::collections::BTreeSet;

use super::markdown::rows_under;
use super::{common, page};

/// The alert names of a Prometheus rules file.
fn alerts(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|a| a.trim().to_string())
        .collect()
}

/// The alerts the page's alert table lacks.
fn alerts_missing(md: &str, alerts: &[String]) -> Vec<String> {
    let rows: BTreeSet<String> = rows_under(md, "alert")
        .into_iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .collect();
    alerts
        .iter()
        .filter(|a| !rows.contains(*a))
        .cloned()
        .collect()
}

#[test]
fn every_alert_is_in_the_monitoring_page() {
    let md = page("docs/operators/monitoring.md");
    let alerts = alerts(&common::read(&common::deploy("prometheus/dhtfs-rules.yml")));
    assert!(alerts.len() >= 7, "{alerts:?}");
    let missing = alerts_missing(&md, &alerts);
    assert!(
        missing.is_empty(),
        "docs/operators/monitoring.md lacks alerts: {missing:?}"
    );
    let unknown: Vec<String> = rows_under(&md, "alert")
        .into_iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .filter(|a| !alerts.contains(a))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/operators/monitoring.md lists alerts the rules lack: {unknown:?}"
    );
    for alert in &alerts {
        let without: String = md
            .lines()
            .filter(|l| !l.starts_with(&format!("| {alert} |")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            alerts_missing(&without, &alerts),
            std::slice::from_ref(alert)
        );
    }
}
