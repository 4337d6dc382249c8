//! `put` and `get` on a 10-node network: sizes at the edges, a manifest tree,
//! dead nodes, a lying peer, an interrupted get, a missing root, and the
//! original's hash files through the real binary.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::TestNet;
use dhtfs::files::{get, put, FilesError, GetOptions, PutOptions};
use dhtfs::id::Id;
use dhtfs::node::Transfer;
use rand::{RngCore, SeedableRng};

fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    path
}

fn put_opts(file: &Path, via: SocketAddr) -> PutOptions {
    PutOptions {
        bootstrap: vec![via],
        quiet: true,
        ..PutOptions::new(file.to_path_buf())
    }
}

fn get_opts(root: Id, out: &Path, via: SocketAddr) -> GetOptions {
    GetOptions {
        bootstrap: vec![via],
        quiet: true,
        ..GetOptions::new(root, out.to_path_buf())
    }
}

fn same(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ ({} vs {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_through_ten_nodes_even_with_three_dead() {
    let mut net = TestNet::start(10).await;
    let tmp = tempfile::tempdir().unwrap();
    let (via_put, via_get) = (net.nodes[0].local_addr, net.nodes[5].local_addr);

    let cases = [
        ("big", 50 << 20, 1 << 20),
        ("empty", 0, 1 << 20),
        ("one-mib", 1 << 20, 1 << 20),
        ("one-mib-plus-one", (1 << 20) + 1, 1 << 20),
        // 4 KiB chunks: 300 chunks do not fit one 4 KiB manifest block.
        ("tree", 300 * 4096 - 7, 4096),
    ];
    let mut roots = Vec::new();
    for (i, (name, len, chunk)) in cases.iter().enumerate() {
        let file = random_file(tmp.path(), name, *len, i as u64);
        let opts = PutOptions {
            chunk_size: *chunk,
            ..put_opts(&file, via_put)
        };
        let report = put(&opts)
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
        assert_eq!(report.size, *len as u64);
        println!("{name}: {}", report.summary);
        let out = tmp.path().join(format!("{name}.out"));
        let got = get(&get_opts(report.root, &out, via_get))
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        println!("{name}: {}", got.summary);
        same(&file, &out);
        roots.push((file, report.root));
    }

    // Three nodes die; every file is still there.
    for d in net.nodes.drain(7..) {
        d.shutdown().await;
    }
    for (file, root) in &roots {
        let out = tmp.path().join("after-deaths.out");
        let _ = std::fs::remove_file(&out);
        let got = get(&get_opts(*root, &out, via_get))
            .await
            .unwrap_or_else(|e| panic!("get after deaths: {e}"));
        println!("after 3 deaths: {}", got.summary);
        same(file, &out);
    }
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_rejected_and_avoided() {
    let mut net = TestNet::start(10).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "f", 60 << 20, 7);
    let report = put(&put_opts(&file, net.nodes[0].local_addr))
        .await
        .unwrap();
    // Eight liars among ten honest nodes: with 60 chunks, lookups meet one
    // first for several chunks. (Five liars and 30 chunks met none in one
    // of seven full runs once liars had to pass a ping before being handed out.)
    let mut liars = Vec::new();
    for _ in 0..8 {
        liars.push(common::hostile::start_liar([127, 0, 0, 1].into(), &net.contacts(), 1000).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = tmp.path().join("f.out");
    let got = get(&get_opts(report.root, &out, net.nodes[4].local_addr))
        .await
        .unwrap();
    println!("with a liar: {}", got.summary);
    same(&file, &out);
    assert!(
        got.rejected >= 1,
        "the liar's chunks were seen and rejected"
    );
    for liar in liars {
        liar.abort();
    }
    net.stop_all().await;
}

/// A holder that answers every find_value and passes the ping check, then
/// trickles 1 KB a second of a promised 1 MiB: a get hedges past it, takes
/// the first copy that verifies, and stops asking it once it fell behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_trickles_bytes_is_hedged_past_and_avoided() {
    let mut net = TestNet::start(8).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "f", 32 << 20, 9);
    // One honest replica per chunk: the trickler, holder of every key, is
    // then first to be asked for about half the chunks, unless avoided.
    let opts = PutOptions {
        replicas: 1,
        ..put_opts(&file, net.nodes[0].local_addr)
    };
    let report = put(&opts).await.unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let ip = common::hostile::hostile_ip(2);
    let trickler =
        common::hostile::start_trickler(ip, Id::random(), &net.contacts(), asked.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = tmp.path().join("f.out");
    let opts = GetOptions {
        parallel: 4,
        ..get_opts(report.root, &out, net.nodes[5].local_addr)
    };
    let got = get(&opts).await.unwrap();
    let asked = asked.load(Ordering::Relaxed);
    println!(
        "with a trickling holder: {}; it was asked {asked} times",
        got.summary
    );
    same(&file, &out);
    // Once one fetch from it lost a race it is avoided: the 4 fetches in
    // flight then (and the root's) may have asked it, the other 28 not.
    // Unavoided, it would be first for about half of the 33 blocks.
    assert!(
        asked <= 8,
        "the trickler was asked {asked} times: it is not avoided"
    );
    trickler.abort();
    net.stop_all().await;
}

/// Six nodes with no republish nor handoff (the one holder stays the only
/// honest one), `blocks` put on the node farthest from the first block's
/// key, and a trickler on 127.0.0.`hostile` closer to that key than anyone.
/// The fetcher is node 1: its first lookup's first asks go to the trickler
/// and honest nodes that do not hold the block. Returns the network, the
/// holder's index, the trickler's count of asks, and the trickler.
async fn one_holder_behind_a_trickler(
    blocks: &[(Id, Vec<u8>)],
    hostile: u8,
) -> (
    TestNet,
    usize,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let net = TestNet::start_with(6, |c| {
        c.republish_interval_secs = 0;
        c.handoff = false;
    })
    .await;
    let first = blocks[0].0;
    let holder = (2..6)
        .max_by_key(|&i| net.nodes[i].node.me().id.distance(&first))
        .unwrap();
    for (key, data) in blocks {
        net.nodes[holder].store.put_verified(key, data).unwrap();
    }
    let asked = Arc::new(AtomicUsize::new(0));
    let ip = common::hostile::hostile_ip(hostile);
    let near = common::hostile::near(&first, 200);
    let trickler = common::hostile::start_trickler(ip, near, &net.contacts(), asked.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    (net, holder, asked, trickler)
}

/// The engine's one fetch path, block by block: a trickler closer to the
/// key than anyone ends the first lookup at itself and is asked first; the
/// fetch hedges, looks past it, takes the honest copy, marks it slow, and
/// the transfer's next fetch neither asks it nor believes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickler_asked_first_is_hedged_past_then_avoided() {
    let blocks: Vec<(Id, Vec<u8>)> = (1..=2u8)
        .map(|i| {
            let data = vec![i; 300_000];
            (Id::of_block(&data), data)
        })
        .collect();
    let first = blocks[0].0;
    let (mut net, holder, asked, trickler) = one_holder_behind_a_trickler(&blocks, 2).await;
    let fetcher = &net.nodes[1].node;
    let transfer = Transfer::new();
    let got = fetcher
        .fetch_verified(first, 1 << 20, &transfer)
        .await
        .expect("the honest holder's copy");
    assert_eq!(got.data, blocks[0].1);
    assert_eq!(got.from, net.nodes[holder].local_addr);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "the trickler was asked first"
    );
    assert!(
        got.tally.hedged >= 1,
        "the fetch hedged past it: {:?}",
        got.tally
    );
    let slow = fetcher.stats().fetch_slow_peers.load(Ordering::Relaxed);
    assert_eq!(slow, 1, "the trickler was marked slow");
    let again = fetcher
        .fetch_verified(blocks[1].0, 1 << 20, &transfer)
        .await
        .expect("the second block");
    assert_eq!(again.data, blocks[1].1);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "a slow peer is not asked again in the same transfer"
    );
    trickler.abort();
    net.stop_all().await;
}

/// A block whose one holder this transfer marked slow is still fetched
/// from it, with no failed round's backoff: the lookup that kept the slow
/// peer out found no holder, and the next, believing it, runs at once (at
/// 1% loss a get waited 200 ms so on a chunk whose every holder had met a
/// retransmission stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_held_only_by_slow_peers_is_fetched_without_a_backoff() {
    let net = TestNet::start_with(6, |c| {
        c.republish_interval_secs = 0;
        c.handoff = false;
    })
    .await;
    let data = vec![5u8; 200_000];
    let key = Id::of_block(&data);
    net.nodes[3].store.put_verified(&key, &data).unwrap();
    let holder = net.nodes[3].local_addr;
    let transfer = Transfer::new();
    assert!(transfer.mark_slow(holder));
    let got = net.nodes[1]
        .node
        .fetch_verified(key, 1 << 20, &transfer)
        .await
        .expect("the slow holder's copy");
    assert_eq!(got.data, data);
    assert_eq!(got.from, holder);
    assert_eq!(got.tally.backoffs, 0, "{:?}", got.tally);
    let mut net = net;
    net.stop_all().await;
}

/// A get's end game reaches fetches already running: a trickler is asked
/// first for a block of up to 16 MiB, whose hedge waits four times the
/// first-rate estimate (over 8 s on loopback) until the transfer enters
/// its end game mid-fetch, from when it waits once that estimate (about
/// 2 s); the hedge's lookup finds the honest holder, asked at once. The
/// fetch must end well before the far-behind delay (it timed out at 6 s
/// without the end game).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_game_hedges_a_running_fetch_sooner() {
    let data = vec![9u8; 300_000];
    let key = Id::of_block(&data);
    let (mut net, holder, asked, trickler) =
        one_holder_behind_a_trickler(&[(key, data.clone())], 3).await;
    let fetcher = net.nodes[1].node.clone();
    let transfer = Arc::new(Transfer::new());
    let fetch = {
        let transfer = transfer.clone();
        tokio::spawn(async move { fetcher.fetch_verified(key, 16 << 20, &transfer).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "the trickler was asked first"
    );
    transfer.enter_endgame();
    let got = tokio::time::timeout(std::time::Duration::from_secs(6), fetch)
        .await
        .expect("hedged in the end game, before the 8 s far-behind delay")
        .unwrap()
        .expect("the honest holder's copy");
    assert_eq!(got.data, data);
    assert_eq!(got.from, net.nodes[holder].local_addr);
    assert!(got.tally.hedged >= 1, "{:?}", got.tally);
    trickler.abort();
    net.stop_all().await;
}

/// Eight liars closer to a key than any honest node fill the fetcher's k
/// closest contacts for it: each lookup ends at one of them. Once all are
/// caught, the next lookup must start from the honest nodes behind them
/// rather than from the caught liars alone (CI saw a gateway get fail so,
/// when random liar ids happened to be the closest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_closest_to_a_key_do_not_hide_its_holder() {
    let mut net = TestNet::start_with(5, |c| {
        c.republish_interval_secs = 0;
        c.handoff = false;
    })
    .await;
    let data = vec![5u8; 4096];
    let key = Id::of_block(&data);
    let holder = (2..5)
        .max_by_key(|&i| net.nodes[i].node.me().id.distance(&key))
        .unwrap();
    net.nodes[holder].store.put_verified(&key, &data).unwrap();
    let ip = common::hostile::hostile_ip(2);
    let mut liars = Vec::new();
    for _ in 0..8 {
        let id = common::hostile::near(&key, 200);
        liars.push(common::hostile::start_liar_as(ip, id, &net.contacts(), 4096).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let fetcher = &net.nodes[1].node;
    let seats = fetcher
        .routing_contacts()
        .iter()
        .filter(|c| c.addr.ip() == ip)
        .count();
    assert!(seats >= 7, "the liars sit in the fetcher's table: {seats}");
    let got = fetcher
        .fetch_verified(key, 4096, &Transfer::new())
        .await
        .expect("the honest holder's copy");
    assert_eq!(got.data, data);
    assert_eq!(got.from, net.nodes[holder].local_addr);
    assert!(
        got.tally.rejected >= 7,
        "the liars were asked first: {:?}",
        got.tally
    );
    for liar in liars {
        liar.abort();
    }
    net.stop_all().await;
}

/// A holder that breaks off once (busy, restarting) is asked again once a
/// round found nobody else: before, it stayed among the peers tried, and
/// with it the only holder, the block could not be fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_broke_off_once_is_asked_again() {
    let mut net = TestNet::start_with(5, |c| {
        c.republish_interval_secs = 0;
        c.handoff = false;
    })
    .await;
    let data = vec![6u8; 4096];
    let key = Id::of_block(&data);
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let near = common::hostile::near(&key, 200);
    let holder = common::hostile::start_breaks_once(
        common::hostile::hostile_ip(2),
        near,
        &net.contacts(),
        data.clone(),
        asked.clone(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got = net.nodes[1]
        .node
        .fetch_verified(key, 4096, &Transfer::new())
        .await
        .expect("the second ask of the only holder");
    assert_eq!(got.data, data);
    let asked = asked.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "files: the only holder broke off once; asked {asked} times, {:?}",
        got.tally
    );
    assert_eq!(asked, 2, "asked once more after it broke off");
    assert!(got.tally.retries >= 1, "{:?}", got.tally);
    holder.abort();
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_resumes_and_a_missing_root_fails_cleanly() {
    let mut net = TestNet::start(10).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "f", 24 << 20, 9);
    let report = put(&put_opts(&file, net.nodes[1].local_addr))
        .await
        .unwrap();
    let out = tmp.path().join("f.out");
    let via = net.nodes[8].local_addr;

    let half = GetOptions {
        stop_after: Some(12),
        parallel: 4,
        ..get_opts(report.root, &out, via)
    };
    match get(&half).await {
        Err(FilesError::Interrupted(n)) => assert_eq!(n, 12),
        other => panic!("expected an interruption, got {other:?}"),
    }
    assert!(!out.exists(), "OUT appears only when complete");
    let got = get(&get_opts(report.root, &out, via)).await.unwrap();
    println!("resumed: {}", got.summary);
    assert!(got.reused >= 12, "reused {} verified chunks", got.reused);
    assert_eq!(got.fetched + got.reused, 24, "nothing fetched twice");
    same(&file, &out);

    let nobody = Id::random();
    let missing = tmp.path().join("missing.out");
    let err = get(&get_opts(nobody, &missing, via)).await.unwrap_err();
    assert!(
        matches!(err, FilesError::RootNotFound(k) if k == nobody),
        "{err}"
    );
    assert!(err.to_string().contains(&nobody.to_hex()));
    assert!(!missing.exists());
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_files_in_the_original_format_round_trip_through_the_binary() {
    let mut net = TestNet::start(4).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "f", 3 * (1 << 20) + 5, 11);
    let hashfile = tmp.path().join("f.hashes");
    let bin = env!("CARGO_BIN_EXE_dhtfs");
    let via = net.nodes[0].local_addr.to_string();
    let (file2, hashfile2, via2) = (file.clone(), hashfile.clone(), via.clone());
    let put_out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args([
                "put",
                file2.to_str().unwrap(),
                "--bootstrap",
                &via2,
                "--hashfile",
                hashfile2.to_str().unwrap(),
                "--replicas",
                "3",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        put_out.status.success(),
        "{}",
        String::from_utf8_lossy(&put_out.stderr)
    );
    let stdout = String::from_utf8(put_out.stdout).unwrap();
    let root = stdout.lines().last().unwrap();
    assert!(
        Id::from_hex(root).is_ok(),
        "last line is the root key: {stdout}"
    );
    assert!(
        String::from_utf8_lossy(&put_out.stderr).contains("put: "),
        "a summary"
    );
    let text = std::fs::read_to_string(&hashfile).unwrap();
    assert_eq!(text.matches('|').count(), 4, "{text}");
    assert!(text.ends_with('|'));
    for entry in text.trim_end_matches('|').split('|') {
        let (hex, size) = entry.split_once('$').unwrap();
        assert_eq!(hex.len(), 64);
        size.parse::<u64>().unwrap();
    }
    let out = tmp.path().join("f.out");
    let (out2, via2) = (out.clone(), via.clone());
    let get_out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args([
                "get",
                "--hashfile",
                hashfile.to_str().unwrap(),
                "-o",
                out2.to_str().unwrap(),
                "--bootstrap",
                &via2,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        get_out.status.success(),
        "{}",
        String::from_utf8_lossy(&get_out.stderr)
    );
    same(&file, &out);

    // A root nobody holds, through the binary: one clear line, non-zero, no OUT.
    let missing = tmp.path().join("missing.out");
    let missing2 = missing.clone();
    let fail = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args([
                "get",
                &Id::random().to_hex(),
                "-o",
                missing2.to_str().unwrap(),
                "--bootstrap",
                &via,
                "--quiet",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!fail.status.success());
    let err = String::from_utf8(fail.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no node supplied root block"), "{err}");
    assert!(!missing.exists());
    net.stop_all().await;
}
