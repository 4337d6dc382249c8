//! SIGKILL during compaction: a data dir whose segment files are mostly
//! dead (three of every four small blocks deleted) is served by the real
//! binary with compaction every second, slowly paced, and killed again and
//! again while it rewrites segments. Every block not deleted must then read
//! back whole, the dir audit clean, and the dead bytes be given back.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::process::{node_command, Proc};
use common::segments::{segment_files, MostlyDead};
use dhtfs::id::Id;
use dhtfs::store::{Store, StoreConfig};

const BLOCKS: usize = 4000;
const SET: MostlyDead = MostlyDead {
    blocks: BLOCKS,
    seed: 900_000,
};

#[test]
fn every_live_block_survives_sigkill_during_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    // 1 MiB segments, so 16 MiB of blocks make many sealed ones.
    SET.write(&dir);
    let before = segment_files(&dir);
    let conf = tmp.path().join("node.toml");
    std::fs::write(
        &conf,
        "compaction_interval_secs = 1\ncompaction_rate_mib_per_sec = 1\nrepublish_interval_secs = 0\n\
         verify_interval_secs = 0\nmin_free_bytes = 0\nmin_free_percent = 0\n",
    )
    .unwrap();

    let (mut kills, mut mid_way) = (0, 0);
    let mut delay = Duration::from_millis(1500);
    loop {
        let files = segment_files(&dir);
        let mut cmd = node_command(&dir, "127.0.0.1:0".parse().unwrap(), None);
        cmd.arg("--config").arg(&conf);
        let mut node = Proc::spawn(
            cmd.stdout(Stdio::null()).stderr(Stdio::null()),
            "dhtfs node",
        );
        std::thread::sleep(delay);
        node.signal(libc::SIGKILL);
        node.wait(Duration::from_secs(10), "the killed node");
        kills += 1;
        let after = segment_files(&dir);
        eprintln!("kill {kills} after {delay:?}: {files} -> {after} segment files");
        if after < files && after > 2 {
            mid_way += 1;
        }
        if after == files {
            delay += Duration::from_millis(500);
        }
        if after <= 2 || kills >= 30 {
            break;
        }
    }
    assert!(
        mid_way > 0,
        "no kill landed while compaction was removing segments"
    );

    let (store, _) = common::retry_while_locked(|| Store::open(&dir, StoreConfig::default()));
    assert_eq!(store.block_count(), (BLOCKS / 4) as u64);
    for i in SET.kept_ones() {
        let d = SET.data(i);
        assert_eq!(store.get(&Id::of_block(&d)).unwrap(), Some(d), "block {i}");
    }
    let uses = store.segment_use().unwrap();
    let allocated: u64 = uses.iter().map(|u| u.allocated).sum();
    let live: u64 = uses.iter().map(|u| u.live).sum();
    eprintln!(
        "{kills} kills, {mid_way} while segments were being removed; {before} -> {} segment files, \
         {allocated} bytes on disk for {live} live",
        uses.len()
    );
    store.close().unwrap();
    drop(store);
    let audit = common::retry_while_locked(|| Store::audit(&dir));
    assert!(audit.is_clean(), "{audit:?}");
}
