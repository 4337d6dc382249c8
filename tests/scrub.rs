//! The scrub worker on real nodes (real sled, real sockets): it holds its
//! byte rate, goes on after the last key checked when the node restarts,
//! reads nothing while paused (and stays paused across a restart), and
//! replaces a copy rotten on disk with a good one fetched from another node.
//!
//! The rate, restart and pause tests run on tokio's paused clock, which the
//! node's clock reads: virtual time jumps to the next timer whenever every
//! task is idle, but never while a block is being read (a spawn_blocking
//! task holds it), so what they assert on time is exact and repeatable.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{test_config, TestNet};
use dhtfs::config::Config;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::stats::Stats;
use dhtfs::store::Origin;
use dhtfs::upkeep::{ScrubControl, ScrubState, ScrubStatus};

const BLOCKS: u64 = 40;
const BLOCK_SIZE: usize = 256 << 10;

/// Block `i` of 256 KiB (in a segment file, being under inline_max).
fn block(i: u32) -> Vec<u8> {
    let mut data = vec![0u8; BLOCK_SIZE];
    for (n, b) in data.iter_mut().enumerate() {
        *b = (n as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8 ^ (i as u8);
    }
    data[..4].copy_from_slice(&i.to_le_bytes());
    data
}

/// A node whose scrub reads 1 MiB/s, a pass due 60 s after the previous.
fn slow_scrub(dir: &Path) -> Config {
    Config {
        verify_interval_secs: 60,
        scrub_rate_mib_per_sec: 1,
        ..test_config(dir.join("n"))
    }
}

/// Puts the 40 blocks (10 MiB) into the node's store.
fn fill(node: &Daemon) {
    for i in 0..BLOCKS as u32 {
        let data = block(i);
        node.store
            .put_verified(&Id::of_block(&data), &data)
            .unwrap();
    }
}

/// Polls the scrub's status every 100 ms of (virtual or real) time until
/// `done` holds, for at most `polls` polls.
async fn wait_for(
    scrub: &ScrubControl,
    polls: u32,
    what: &str,
    done: impl Fn(&ScrubStatus) -> bool,
) -> ScrubStatus {
    for _ in 0..polls {
        let status = scrub.status();
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("scrub: {what} did not happen: {:?}", scrub.status());
}

/// Starts a node again on a data dir just closed. sled lets go of its lock
/// file a moment after the last handle drops (sled issue 1234), so a start
/// refused for the lock is tried again, up to 40 times 50 ms of real time.
async fn restart(cfg: &Config) -> Daemon {
    for _ in 0..40 {
        match Daemon::start(cfg).await {
            Ok(node) => return node,
            Err(e) if e.to_string().contains("lock") => {
                // Real time (a blocking sleep), which the paused clock ignores.
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)))
                    .await
                    .unwrap();
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
    panic!("restart: sled never let go of its lock");
}

fn checked(node: &Daemon) -> u64 {
    Stats::get(&node.stats().verify_checked)
}

#[tokio::test(start_paused = true)]
async fn a_pass_holds_the_byte_rate() {
    let dir = tempfile::tempdir().unwrap();
    let node = Daemon::start(&slow_scrub(dir.path())).await.unwrap();
    fill(&node);
    let status = wait_for(&node.scrub, 1_000, "a pass", |s| s.passes == 1).await;
    let last = status.last.unwrap();
    println!(
        "scrub: {} blocks, {} bytes at 1 MiB/s in {} ms of virtual time",
        last.counts.blocks, last.counts.bytes, last.duration_ms
    );
    assert_eq!(last.counts.blocks, BLOCKS);
    assert_eq!(last.counts.bytes, BLOCKS * BLOCK_SIZE as u64);
    assert_eq!(
        Stats::get(&node.stats().scrub_bytes_read),
        10 << 20,
        "10 MiB read, once"
    );
    // One second's worth (4 blocks) at once, then 4 a second: 9 s for the rest.
    assert!(
        (9_000..10_000).contains(&last.duration_ms),
        "10 MiB at 1 MiB/s took {} ms",
        last.duration_ms
    );
    assert_eq!(status.state, ScrubState::Idle, "{status:?}");
    assert_eq!(status.position, None);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_goes_on_after_the_last_key_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = slow_scrub(dir.path());
    let first = Daemon::start(&cfg).await.unwrap();
    fill(&first);
    let scrub = first.scrub.clone();
    wait_for(&scrub, 1_000, "half a pass", |s| s.pass.blocks >= 20).await;
    first.shutdown().await;
    let stopped = scrub.status();
    let done = stopped.pass.blocks;
    assert!((20..BLOCKS).contains(&done), "{stopped:?}");
    let position = stopped.position.expect("a position mid-pass");
    println!(
        "scrub: stopped after {done} blocks, at {:.3} of the keyspace",
        stopped.position_ratio
    );

    let second = restart(&cfg).await;
    let status = wait_for(&second.scrub, 1_000, "the pass's end", |s| s.passes == 1).await;
    let last = status.last.unwrap();
    assert_eq!(last.counts.blocks, BLOCKS, "one pass over every block");
    assert_eq!(last.counts.bytes, BLOCKS * BLOCK_SIZE as u64);
    assert_eq!(
        checked(&second),
        BLOCKS - done,
        "the restarted node reads only the blocks after {position}"
    );
    assert_eq!(
        Stats::get(&second.stats().verify_runs),
        0,
        "resuming is not a new pass"
    );
    second.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_scrub_reads_nothing_even_after_a_restart_then_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = slow_scrub(dir.path());
    let first = Daemon::start(&cfg).await.unwrap();
    fill(&first);
    wait_for(&first.scrub, 1_000, "a quarter pass", |s| {
        s.pass.blocks >= 10
    })
    .await;
    let paused = first.scrub.pause().unwrap();
    assert_eq!(paused.state, ScrubState::Paused);
    // The block being checked when the pause came may still finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let done = checked(&first);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(checked(&first), done, "nothing read in 2 paused minutes");
    let status = first.scrub.status();
    assert_eq!(status.state, ScrubState::Paused);
    assert_eq!(status.pass.blocks, done);
    first.shutdown().await;

    // The pause was saved: a restarted node stays paused.
    let second = restart(&cfg).await;
    let status = wait_for(&second.scrub, 100, "the worker's start", |s| {
        s.state != ScrubState::Off
    })
    .await;
    assert_eq!(status.state, ScrubState::Paused, "{status:?}");
    assert_eq!(status.pass.blocks, done);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        checked(&second),
        0,
        "a paused scrub stays paused on restart"
    );

    let resumed = second.scrub.resume().unwrap();
    assert_eq!(resumed.state, ScrubState::Running);
    let status = wait_for(&second.scrub, 1_000, "the pass's end", |s| s.passes == 1).await;
    assert_eq!(status.last.unwrap().counts.blocks, BLOCKS);
    assert_eq!(checked(&second), BLOCKS - done, "went on where it stopped");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_rotten_on_disk_is_found_refetched_and_replaced() {
    let net = TestNet::start_with(2, |cfg| cfg.verify_interval_secs = 1).await;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    // Paused while the test lays out the blocks, so no pass sees them half done.
    wait_for(&a.scrub, 100, "the worker's start", |s| {
        s.state != ScrubState::Off
    })
    .await;
    a.scrub.pause().unwrap();
    let data = block(7);
    let key = Id::of_block(&data);
    // Pinned on A: the repaired copy must stay pinned.
    a.store.put_as(&key, &data, Origin::Pinned).unwrap();
    b.store.put_verified(&key, &data).unwrap();
    let good = block(8);
    a.store.put_verified(&Id::of_block(&good), &good).unwrap();
    common::rot_on_disk(&a.store, &key, 1000);

    a.scrub.resume().unwrap();
    let status = wait_for(&a.scrub, 300, "a repair", |s| s.total.repaired >= 1).await;
    // Found at least once (twice if a first fetch failed), repaired once.
    assert!(status.total.corrupt >= 1, "{status:?}");
    assert_eq!(status.total.unreadable, 0, "{status:?}");
    let on_disk = common::bytes_on_disk(&a.store, &key, data.len());
    assert_eq!(
        Id::of_block(&on_disk),
        key,
        "the bytes on disk hash right again"
    );
    assert_eq!(a.store.get(&key).unwrap().as_deref(), Some(&data[..]));
    assert_eq!(
        a.store.record(&key).unwrap().map(|r| r.origin),
        Some(Origin::Pinned),
        "a repair never unpins"
    );
    assert_eq!(Stats::get(&a.stats().verify_repaired), 1);
    assert_eq!(b.store.get(&key).unwrap().as_deref(), Some(&data[..]));
}
