//! The compaction worker on a real node (real sled, real segment files):
//! paused mid-pass it moves nothing more, stays paused across a restart, and
//! once resumed starts the pass over and finishes it, every live block read
//! back. The admin API's face of the same control is in admin_grpcurl.rs.

mod common;

use std::time::Duration;

use common::segments::{segment_files, MostlyDead};
use common::test_config;
use dhtfs::config::Config;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::stats::Stats;
use dhtfs::upkeep::{CompactionControl, CompactionState, CompactionStatus};

const SET: MostlyDead = MostlyDead {
    blocks: 4096,
    seed: 700_000,
};

/// Polls the status every 50 ms until `done` holds, for at most `secs`.
async fn wait_for(
    c: &CompactionControl,
    secs: u64,
    what: &str,
    done: impl Fn(&CompactionStatus) -> bool,
) -> CompactionStatus {
    for _ in 0..secs * 20 {
        let status = c.status();
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("compaction: {what} did not happen: {:?}", c.status());
}

/// Starts a node again on a data dir just closed, while sled lets go of
/// its lock.
async fn restart(cfg: &Config) -> Daemon {
    for _ in 0..40 {
        match Daemon::start(cfg).await {
            Ok(node) => return node,
            Err(e) if e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
    panic!("restart: sled never let go of its lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_across_a_restart_and_a_resume_finishes_the_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    // 1 MiB segments: 16 MiB of blocks make 16, three quarters dead.
    SET.write(&dir);
    let before = segment_files(&dir);
    // At 1 MiB/s, each segment's 256 KiB of live blocks takes 0.25 s.
    let cfg = Config {
        compaction_interval_secs: 1,
        compaction_rate_mib_per_sec: 1,
        republish_interval_secs: 0,
        verify_interval_secs: 0,
        min_free_bytes: 0,
        min_free_percent: 0,
        ..test_config(dir.clone())
    };
    let node = Daemon::start(&cfg).await.unwrap();
    let running = wait_for(&node.compaction, 20, "a segment rewritten", |s| {
        s.state == CompactionState::Running && s.pass.segments_removed >= 1
    })
    .await;
    assert!(running.pass.segments_due >= 10, "{running:?}");
    assert_eq!(running.rate_bytes_per_sec, 1 << 20);
    let paused = node.compaction.pause().unwrap();
    assert_eq!(paused.state, CompactionState::Paused);
    // The batch in flight ends; then nothing more moves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = Stats::get(&node.stats().compaction_bytes_moved);
    let files = segment_files(&dir);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        Stats::get(&node.stats().compaction_bytes_moved),
        moved,
        "paused, yet bytes moved"
    );
    assert_eq!(segment_files(&dir), files);
    assert!(files > 2, "the pause came too late to test: {files} files");
    let status = node.compaction.status();
    assert_eq!(
        status.passes, 0,
        "the paused pass did not count: {status:?}"
    );
    node.shutdown().await;

    let node = restart(&cfg).await;
    let status = wait_for(&node.compaction, 10, "the saved pause restored", |s| {
        s.state == CompactionState::Paused
    })
    .await;
    assert_eq!(status.next_pass_unix_ms, 0);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        Stats::get(&node.stats().compaction_bytes_moved),
        0,
        "a restart ended the pause"
    );
    assert_eq!(segment_files(&dir), files);
    let resumed = node.compaction.resume().unwrap();
    assert_ne!(resumed.state, CompactionState::Paused);
    let done = wait_for(&node.compaction, 30, "the pass finished", |s| s.passes >= 1).await;
    let last = done.last.expect("the pass completed");
    let after = segment_files(&dir);
    println!(
        "compaction: {before} segment files, paused at {files}, {after} after the resumed pass \
         ({} rewritten in it, {} bytes freed, {} ms)",
        last.counts.segments_removed, last.counts.bytes_freed, last.duration_ms
    );
    assert!(last.counts.segments_removed >= 1);
    assert!(after < files, "{files} -> {after}");
    for i in SET.kept_ones() {
        let d = SET.data(i);
        let got = node.store.get(&Id::of_block(&d)).unwrap();
        assert_eq!(got.as_deref(), Some(&d[..]), "block {i}");
    }
    node.shutdown().await;
}
