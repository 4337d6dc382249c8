//! Pin, Unpin and ListPins through the generated admin client, on real nodes
//! in this process (issue 10, item 2): a node that holds none of a file pins
//! it, streaming progress, and then holds every block pinned; unpinning turns
//! them back into replicas except those another pin shares.

mod common;

use std::collections::HashSet;

use common::admin::{client, pin};
use common::put::put_file;
use common::TestNet;
use dhtfs::admin::pb;
use dhtfs::id::Id;
use dhtfs::store::{Origin, Store};
use rand::RngCore;
use tonic::Code;

const CHUNK: u64 = 64 << 10;

/// Every block the store holds, with its origin.
fn origins(store: &Store) -> Vec<(Id, Origin)> {
    store
        .list(None, 100_000)
        .unwrap()
        .into_iter()
        .map(|(k, m)| (k, m.origin))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holding_none_of_a_file_pins_it_and_unpins_it() {
    let mut net = TestNet::start(5).await;
    let first = net.nodes[0].local_addr;
    // Two files sharing their first 8 chunks (the chunk boundaries line up).
    let mut big = vec![0u8; 20 * CHUNK as usize + 1234];
    rand::thread_rng().fill_bytes(&mut big);
    let small = big[..8 * CHUNK as usize].to_vec();
    let big_root = put_file(net.dir.path(), "big.bin", &big, CHUNK, 2, first).await;
    let small_root = put_file(net.dir.path(), "small.bin", &small, CHUNK, 2, first).await;

    // A node that joins afterwards holds none of either.
    let late = dhtfs::daemon::Daemon::start(&common::test_config(net.dir.path().join("late")))
        .await
        .unwrap();
    late.join(&[first.to_string()]).await.unwrap();
    assert_eq!(late.store.block_count(), 0);
    let mut c = client(late.admin_addr).await;

    let msgs = pin(&mut c, big_root).await.expect("pin succeeds");
    let last = msgs.last().expect("at least the final message");
    assert!(last.done, "the last message says done: {msgs:?}");
    assert!(msgs[..msgs.len() - 1].iter().all(|m| !m.done));
    assert_eq!(last.blocks_done, last.blocks_total);
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.blocks_total, 21 + 1, "21 chunks and the manifest");
    assert!(
        last.bytes_total > big.len() as u64,
        "chunks plus the manifest"
    );
    assert!(
        msgs.windows(2)
            .all(|w| w[0].blocks_done <= w[1].blocks_done),
        "progress only grows: {msgs:?}"
    );
    let held = origins(&late.store);
    assert_eq!(held.len(), 22, "every block of the file is held here");
    assert!(held.iter().all(|(_, o)| *o == Origin::Pinned), "{held:?}");

    let pins = c
        .list_pins(pb::ListPinsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pins;
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].root, big_root.to_hex());
    assert_eq!(
        (pins[0].name.as_str(), pins[0].size),
        ("big.bin", big.len() as u64)
    );
    assert_eq!(pins[0].blocks, 22);

    // A second file sharing 8 chunks: only its manifest is new here.
    let msgs = pin(&mut c, small_root).await.expect("second pin");
    assert_eq!(msgs.last().unwrap().blocks_total, 8 + 1);
    assert_eq!(late.store.block_count(), 23);

    // Unpinning the big file keeps the shared chunks pinned for the small one.
    let n = c
        .unpin(pb::UnpinRequest {
            root: big_root.to_hex(),
        })
        .await
        .unwrap()
        .into_inner()
        .blocks_unpinned;
    assert_eq!(n, 22 - 8, "its manifest and 13 chunks it alone uses");
    let pinned: HashSet<Id> = origins(&late.store)
        .into_iter()
        .filter(|(_, o)| *o == Origin::Pinned)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pinned.len(), 9, "the small file: 8 chunks and its manifest");
    assert!(pinned.contains(&small_root) && !pinned.contains(&big_root));
    assert_eq!(late.store.block_count(), 23, "unpinning deletes nothing");
    let pins = c
        .list_pins(pb::ListPinsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pins;
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].root, small_root.to_hex());

    c.unpin(pb::UnpinRequest {
        root: small_root.to_hex(),
    })
    .await
    .unwrap();
    assert!(origins(&late.store)
        .iter()
        .all(|(_, o)| *o == Origin::Replica));
    assert!(c
        .list_pins(pb::ListPinsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pins
        .is_empty());

    // A root nobody has: NOT_FOUND, naming the key.
    let absent = Id::random();
    let err = pin(&mut c, absent).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(&absent.to_hex()),
        "{}",
        err.message()
    );
    let err = c
        .unpin(pb::UnpinRequest {
            root: absent.to_hex(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .unpin(pb::UnpinRequest { root: "xyz".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    late.shutdown().await;
    net.stop_all().await;
}
