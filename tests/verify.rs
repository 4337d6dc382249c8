//! Verify on real nodes: a corrupt copy is replaced only once a good one is in
//! hand (never deleted first), and an unreadable block is skipped and counted
//! without ending the pass.

mod common;

use std::path::Path;

use common::{block_file, TestNet};
use dhtfs::id::Id;
use dhtfs::stats::Stats;
use dhtfs::upkeep::verify_once;

/// 100 KiB: a file under blocks/ on a node whose inline_max is 64 KiB (as
/// every node's was before segments took every block), else in a segment.
fn file_block(seed: u8) -> Vec<u8> {
    (0..100 * 1024u32)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect()
}

fn rot(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_blocks_are_skipped_and_a_corrupt_lone_copy_is_kept() {
    // Block files, whose unreadable kind (a directory in the file's place)
    // a test can make.
    let net = TestNet::start_with(1, |c| c.inline_max = 64 << 10).await;
    let node = &net.nodes[0];
    let dir = node.data_dir();
    let blocks: Vec<Vec<u8>> = (1..=3).map(file_block).collect();
    let keys: Vec<Id> = blocks.iter().map(|b| Id::of_block(b)).collect();
    for (key, data) in keys.iter().zip(&blocks) {
        node.store.put_verified(key, data).unwrap();
    }
    // keys[0] cannot be read at all (its file is a directory: EISDIR);
    // keys[1] reads, but its bytes are rotten, and no other node holds it.
    let unreadable = block_file(&dir, &keys[0]);
    std::fs::remove_file(&unreadable).unwrap();
    std::fs::create_dir(&unreadable).unwrap();
    let rotten = rot(&block_file(&dir, &keys[1]));

    let report = verify_once(&node.node, &node.store, true)
        .await
        .expect("an unreadable block must not end the pass");
    assert_eq!(report.checked, 3, "{report:?}");
    assert_eq!(report.unreadable, 1, "{report:?}");
    assert_eq!(report.corrupt, 1, "{report:?}");
    assert_eq!(report.repaired, 0, "{report:?}");
    assert_eq!(report.corrupt_keys, vec![keys[1]]);
    assert_eq!(Stats::get(&node.stats().verify_unreadable), 1);
    // No good copy anywhere: ours is kept, for a later pass to replace.
    assert!(node.store.meta(&keys[1]).unwrap().is_some());
    assert_eq!(
        std::fs::read(block_file(&dir, &keys[1])).unwrap(),
        rotten,
        "the only copy must not be deleted"
    );
    assert_eq!(
        node.store.get(&keys[2]).unwrap().as_deref(),
        Some(&blocks[2][..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_is_replaced_by_a_good_one_from_a_holder() {
    let net = TestNet::start(2).await;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let data = file_block(9);
    let key = Id::of_block(&data);
    // Pinned on A: the repaired copy must stay pinned.
    a.store
        .put_as(&key, &data, dhtfs::store::Origin::Pinned)
        .unwrap();
    b.store.put_verified(&key, &data).unwrap();
    // In a segment record: rotten where it lies.
    common::rot_on_disk(&a.store, &key, 1000);

    let report = verify_once(&a.node, &a.store, true).await.unwrap();
    assert_eq!(
        (
            report.checked,
            report.corrupt,
            report.repaired,
            report.unreadable
        ),
        (1, 1, 1, 0),
        "{report:?}"
    );
    assert_eq!(a.store.get(&key).unwrap().as_deref(), Some(&data[..]));
    assert_eq!(Stats::get(&a.stats().verify_repaired), 1);
    assert_eq!(
        a.store.record(&key).unwrap().map(|r| r.origin),
        Some(dhtfs::store::Origin::Pinned),
        "a repair never unpins"
    );
}
