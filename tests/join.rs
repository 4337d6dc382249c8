//! The README's join command, run as written beside a node started with
//! every default, on one machine: the second node must start (its admin,
//! gateway and metrics addresses follow its own listen port, so nothing of
//! the first is taken) and join the first.
//!
//! The default node binds 0.0.0.0:7400 and 127.0.0.1:7401, 7402 and 9400,
//! as a newcomer's would; this test fails, naming the port, where another
//! program holds one of them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::http_get;
use common::metrics::metric;
use common::process::{NodeProc, BIN};

/// The join command in README.md: the line holding
/// `node --listen 0.0.0.0:7410`, with `cargo run --release --` standing
/// for the binary.
fn readme_join_command() -> Vec<String> {
    let readme = common::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let span = readme
        .lines()
        .find(|l| l.contains("node --listen 0.0.0.0:7410"))
        .map(|l| l.trim().trim_matches('`'))
        .expect("README.md shows the join command `cargo run --release -- node --listen 0.0.0.0:7410 ...`");
    let words: Vec<String> = span.split_whitespace().map(String::from).collect();
    let prefix = ["cargo", "run", "--release", "--"];
    assert!(
        words.starts_with(&prefix.map(String::from)),
        "the README's join command starts with `cargo run --release --`: {span}"
    );
    words[prefix.len()..].to_vec()
}

/// Starts `dhtfs ARGS` in `cwd`; fails naming `what` (is another program
/// using its ports?) when it prints no listening line.
fn start(cwd: &Path, args: &[String], what: &str) -> NodeProc {
    NodeProc::start(
        Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn"),
    )
    .unwrap_or_else(|why| {
        panic!("{what} did not start (is another program using its ports?): {why}")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_join_command_works_beside_a_default_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = start(tmp.path(), &["node".into()], "a node with every default");
    let join = readme_join_command();
    let mut second = start(tmp.path(), &join, "the README's join command");
    // Its admin, metrics and gateway addresses follow its listen port 7410.
    assert_eq!(second.admin, "127.0.0.1:7411".parse().unwrap());
    assert_eq!(second.metrics, "127.0.0.1:9410".parse().unwrap());
    let page = http_get("127.0.0.1:7412".parse().unwrap(), "/").await;
    assert!(
        page.contains("dhtfs gateway"),
        "the second node's gateway answers on 7412: {page}"
    );
    // Joined: each node has the other in its routing table.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = metric(first.metrics, "dhtfs_routing_table_peers").await;
        let b = metric(second.metrics, "dhtfs_routing_table_peers").await;
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
    for (node, what) in [(&mut second, "second"), (&mut first, "first")] {
        let status = node.terminate(Duration::from_secs(20));
        assert!(status.success(), "the {what} node stopped with {status}");
    }
}
