//! Every setting of `Config`, read from `Config::default()` at test time,
//! has a row in the configuration reference with its default.

use std::collections::{BTreeMap, BTreeSet};

use dhtfs::config::Config;

use super::markdown::{code_spans, rows_under};
use super::{page, CONFIG_PAGE};

/// Every setting of `Config` and its default as written in TOML, read from
/// `Config::default()` itself; "unset" for an optional one left out.
fn settings() -> Vec<(String, String)> {
    let value = serde_json::to_value(Config::default()).expect("Config serializes");
    let serde_json::Value::Object(fields) = value else {
        panic!("Config serializes to an object")
    };
    fields
        .into_iter()
        .map(|(name, v)| {
            let default = if v.is_null() {
                "unset".to_string()
            } else {
                toml::Value::try_from(&v)
                    .unwrap_or_else(|e| panic!("{name}'s default as TOML: {e}"))
                    .to_string()
            };
            (name, default)
        })
        .collect()
}

/// The settings the page lacks or shows with another default, each with why.
fn settings_missing(md: &str, settings: &[(String, String)]) -> Vec<String> {
    let rows: BTreeMap<String, String> = rows_under(md, "setting")
        .into_iter()
        .filter(|r| r.len() >= 3)
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let mut missing = Vec::new();
    for (name, default) in settings {
        let Some(cell) = rows.get(&format!("`{name}`")) else {
            missing.push(format!("`{name}` has no row (default {default})"));
            continue;
        };
        let shown = if default == "unset" {
            cell.starts_with("unset")
        } else {
            code_spans(cell).iter().any(|s| s == default)
        };
        if !shown {
            missing.push(format!(
                "`{name}`: its default cell {cell:?} does not show `{default}`"
            ));
        }
    }
    missing
}

/// Rows of the page's setting tables that name no setting.
fn settings_unknown(md: &str, settings: &[(String, String)]) -> Vec<String> {
    let known: BTreeSet<String> = settings.iter().map(|(n, _)| format!("`{n}`")).collect();
    rows_under(md, "setting")
        .into_iter()
        .map(|r| r[0].clone())
        .filter(|name| !known.contains(name))
        .collect()
}

#[test]
fn every_setting_is_in_the_configuration_page_with_its_default() {
    let md = page(CONFIG_PAGE);
    let settings = settings();
    assert!(settings.len() > 50, "{} settings?", settings.len());
    let missing = settings_missing(&md, &settings);
    assert!(missing.is_empty(), "{CONFIG_PAGE}:\n{}", missing.join("\n"));
    let unknown = settings_unknown(&md, &settings);
    assert!(
        unknown.is_empty(),
        "{CONFIG_PAGE} lists settings Config does not have: {unknown:?}"
    );
}

#[test]
fn a_setting_taken_out_of_the_configuration_page_is_caught() {
    let md = page(CONFIG_PAGE);
    let settings = settings();
    for (name, default) in &settings {
        let row_start = format!("| `{name}` |");
        let without: String = md
            .lines()
            .filter(|l| !l.starts_with(&row_start))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without, md, "no row for {name}");
        let missing = settings_missing(&without, &settings);
        assert!(
            missing.iter().any(|m| m.starts_with(&format!("`{name}`"))),
            "{name} taken out, yet: {missing:?}"
        );
        // A wrong default is caught too.
        let (from, to) = if default == "unset" {
            (format!("{row_start} unset"), format!("{row_start} `0`"))
        } else {
            (
                format!("{row_start} `{default}`"),
                format!("{row_start} `{default}1`"),
            )
        };
        let wrong = md.replacen(&from, &to, 1);
        assert_ne!(wrong, md, "{name}'s default cell is not `{default}`");
        assert_eq!(settings_missing(&wrong, &settings).len(), 1, "{name}");
    }
}
