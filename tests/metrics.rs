//! Prometheus metrics: counts match what moved, and the real promtool accepts
//! the exposition.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::http::http_get;
use common::{require_tool, TestNet};
use dhtfs::id::Id;

/// The value of the sample `name{labels}` in an exposition, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    common::metrics::sample(text, name_and_labels).unwrap_or(0.0)
}

fn promtool_check(promtool: &std::path::Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool prints lint findings (and exits 0 for some); require none.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.trim().is_empty(), "promtool found problems: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_totals_add_up_and_promtool_is_clean() {
    let promtool = require_tool("promtool", "apt-get install prometheus");
    let mut net = TestNet::start(3).await;

    // A put through node 0: it keeps the block and the two others pull it.
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let key = Id::of_block(&data);
    let origin = &net.nodes[0];
    origin.store.put_verified(&key, &data).unwrap();
    let report = origin.node.replicate(key).await;
    assert_eq!(report.saved.len(), 3);
    // A get through node 2's view: find a holder other than itself, fetch it.
    let getter = &net.nodes[2];
    getter.store.delete(&key).unwrap();
    let fetched = getter
        .node
        .fetch_verified(key, 1 << 20, &dhtfs::node::Transfer::new())
        .await
        .expect("a holder serves it");
    assert_eq!(fetched.data, data);
    // Moved over TCP: two pulls and one get.
    let moved = 3.0 * data.len() as f64;

    let (mut tcp_sent, mut served, mut sendfile) = (0.0, 0.0, 0.0);
    for d in &net.nodes {
        let text = http_get(d.metrics_addr, "/metrics").await;
        promtool_check(&promtool, &text);
        tcp_sent += sample(
            &text,
            r#"dhtfs_transfer_bytes_total{direction="sent",protocol="tcp"}"#,
        );
        served += sample(&text, r#"dhtfs_tcp_block_requests_total{outcome="served"}"#);
        sendfile += sample(&text, "dhtfs_tcp_blocks_sendfile_total");
        for name in [
            "dhtfs_dht_request_duration_seconds_bucket",
            "dhtfs_lookup_hops_bucket",
            "dhtfs_routing_table_peers",
            "dhtfs_blocks_stored",
            "dhtfs_stored_bytes",
            "dhtfs_republish_runs_total",
            "dhtfs_republished_blocks_total",
            "dhtfs_verify_runs_total",
            "dhtfs_verify_corrupt_blocks_total",
            "dhtfs_verify_repaired_blocks_total",
            "dhtfs_build_info{version=",
            "dhtfs_dht_requests_total{",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert_eq!(sample(&text, "dhtfs_routing_table_peers"), 2.0);
    }
    println!("metrics: tcp bytes sent across 3 nodes {tcp_sent}, block bytes moved {moved}");
    assert!(tcp_sent >= moved, "sent {tcp_sent} < moved {moved}");
    // Each of the three was just written, so in the page cache: the kernel
    // sent it (sendfile), none was read into memory first.
    let probe = tempfile::tempfile().unwrap();
    assert!(
        dhtfs::store::can_tell(&probe),
        "this kernel does not answer cachestat (Linux 6.5 and later): blocks are never sent \
         from the page cache here, so the sendfile count cannot be tested"
    );
    assert_eq!(
        (served, sendfile),
        (3.0, 3.0),
        "served, and of them sent by the kernel"
    );

    // Requests are counted on both sides.
    let text = http_get(net.nodes[0].metrics_addr, "/metrics").await;
    assert!(
        sample(
            &text,
            r#"dhtfs_dht_requests_total{outcome="ok",role="client",type="store_value"}"#
        ) >= 2.0
    );
    let text1 = http_get(net.nodes[1].metrics_addr, "/metrics").await;
    assert!(
        sample(
            &text1,
            r#"dhtfs_dht_requests_total{outcome="ok",role="server",type="store_value"}"#
        ) >= 1.0
    );
    assert_eq!(sample(&text1, "dhtfs_blocks_stored"), 1.0);
    assert_eq!(sample(&text1, "dhtfs_stored_bytes"), data.len() as f64);
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_republishes_and_verifies_on_its_own_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path().join("n"));
    cfg.republish_interval_secs = 1;
    cfg.verify_interval_secs = 1;
    let node = dhtfs::daemon::Daemon::start(&cfg).await.unwrap();
    let data = b"kept fresh".to_vec();
    node.store
        .put_verified(&Id::of_block(&data), &data)
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = http_get(node.metrics_addr, "/metrics").await;
        let republished = sample(&text, "dhtfs_republished_blocks_total");
        let verified = sample(&text, "dhtfs_verify_checked_blocks_total");
        let scrubbed = sample(&text, "dhtfs_scrub_passes_total");
        if republished >= 1.0 && verified >= 1.0 && scrubbed >= 1.0 {
            assert!(sample(&text, "dhtfs_republish_runs_total") >= 1.0);
            assert!(sample(&text, "dhtfs_verify_runs_total") >= 1.0);
            // The scrub's own gauges: a pass ended (unix seconds), not paused.
            let ended = sample(&text, "dhtfs_scrub_last_pass_completed_timestamp_seconds");
            assert!(ended > 1.6e9, "last pass ended at {ended}");
            assert!(sample(&text, "dhtfs_scrub_bytes_read_total") >= data.len() as f64);
            assert_eq!(sample(&text, "dhtfs_scrub_paused"), 0.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled republish ({republished}), verify ({verified}) or scrub pass ({scrubbed}) within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    node.shutdown().await;
}
