//! The README's join command, run as written beside a node started with
//! every default, on one machine: the second node must start (its admin,
//! gateway and metrics addresses follow its own listen port, so nothing of
//! the first is taken) and join the first.
//!
//! The default node binds 0.0.0.0:7400 and 127.0.0.1:7401, 7402 and 9400,
//! as a newcomer's would; this test fails, naming the port, where another
//! program holds one of them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_get, Proc};

/// The join command in README.md: the code span holding
/// `node --listen 0.0.0.0:7410`, with `cargo run --release --` standing
/// for the binary.
fn readme_join_command() -> Vec<String> {
    let readme = common::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let span = readme
        .split('`')
        .find(|s| s.contains("node --listen 0.0.0.0:7410"))
        .expect("README.md shows the join command `cargo run --release -- node --listen 0.0.0.0:7410 ...`");
    let words: Vec<String> = span.split_whitespace().map(String::from).collect();
    let prefix = ["cargo", "run", "--release", "--"];
    assert!(
        words.starts_with(&prefix.map(String::from)),
        "the README's join command starts with `cargo run --release --`: {span}"
    );
    words[prefix.len()..].to_vec()
}

/// Starts `dhtfs ARGS` in `cwd` and waits for its "listening" line.
fn start(cwd: &Path, args: &[String], what: &str) -> (Proc, String) {
    let mut proc = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_dhtfs"))
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        what,
    );
    let stdout = proc.child.as_mut().unwrap().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if !line.starts_with("listening") {
        let _ = proc.wait(Duration::from_secs(10), what);
        panic!(
            "{what} did not start (is another program using its ports?): {}",
            proc.stderr()
        );
    }
    (proc, line)
}

/// The value of an unlabelled gauge in a /metrics page.
fn gauge(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_join_command_works_beside_a_default_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut first, _) = start(tmp.path(), &["node".into()], "a node with every default");
    let join = readme_join_command();
    let (mut second, line) = start(tmp.path(), &join, "the README's join command");
    assert!(
        line.contains("admin 127.0.0.1:7411") && line.contains("metrics 127.0.0.1:9410"),
        "the second node's addresses follow its listen port 7410: {line}"
    );
    assert!(line.contains("gateway 127.0.0.1:7412"), "{line}");
    // Joined: each node has the other in its routing table.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = gauge(
            &http_get("127.0.0.1:9400".parse().unwrap(), "/metrics").await,
            "dhtfs_routing_table_peers",
        );
        let b = gauge(
            &http_get("127.0.0.1:9410".parse().unwrap(), "/metrics").await,
            "dhtfs_routing_table_peers",
        );
        if a >= 1.0 && b >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not join: {a} and {b} peers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tmp.path().join("node2").is_dir(),
        "the second node keeps its state in ./node2"
    );
    for (proc, what) in [(&mut second, "second"), (&mut first, "first")] {
        proc.signal(libc::SIGTERM);
        let status = proc.wait(Duration::from_secs(20), what);
        assert!(status.success(), "the {what} node stopped with {status}");
    }
}
