//! One command, one table: dhtfs against its anchors, all measured in this
//! run on this machine, every figure a median (and p90 where it says) of
//! repeated runs, each with its ratio dhtfs / anchor.
//!
//! `cargo bench --bench compare`; `DHTFS_BENCH_TINY=1` makes every size tiny
//! (tests/run does, so the bench cannot rot). Sizes, each its own env var:
//! DHTFS_BENCH_NODES (100) nodes of each lookup network, DHTFS_BENCH_LOOKUPS
//! (50) lookups per run, DHTFS_BENCH_MIB (256) the large file,
//! DHTFS_BENCH_SMALL_BLOCKS (100000) 4 KiB blocks of the store opened,
//! DHTFS_BENCH_BIG_BLOCKS (64) 1 MiB blocks, DHTFS_BENCH_PUTS_PER_CLIENT (10)
//! PutBlocks per client per run, DHTFS_BENCH_RUNS (3) runs of every figure.
//! DHTFS_BENCH_ONLY=lookups,large,putblock,store runs only those parts
//! (putblock-lone: PutBlock on a lone node only; large-plain: the large
//! file's plain replicated put and get only; both for profiling).
//!
//! What is measured how:
//! - lookups: a network of in-process dhtfs nodes on 127.0.0.1, warm (every
//!   node refreshed its buckets once), against a seeded `mainline` Testnet of
//!   as many nodes; each lookup a new 512-byte block. dhtfs "put" is a local
//!   durable put on a random node and its store to the K closest (PutBlock
//!   without gRPC); "get" is find_value and fetching the block, from a random
//!   node that does not hold it. mainline's are put_immutable and
//!   get_immutable from two client nodes outside the Testnet.
//! - departed: the same dhtfs figures after a peer that pinged every node
//!   left (the hardening issue's case), against the clean network's.
//! - large file: `files::put` (3 replicas) and `files::get` on a fresh
//!   8-node network each run, against sha256 of the same bytes on one core
//!   and writing them to a file with one fsync.
//! - small blocks: PutBlock from 32 admin clients at once to one node of an
//!   8-node network, against fsynced 4 KiB file writes on one thread; disk
//!   bytes per stored byte (st_blocks); open time and RSS of a store, and
//!   idle RSS of a node, each in a child process of this bench.

#[path = "compare/bulk.rs"]
mod bulk;
#[path = "compare/common.rs"]
mod common;
#[path = "compare/lookup.rs"]
mod lookup;
#[path = "compare/mainline_net.rs"]
mod mainline_net;
#[path = "compare/small.rs"]
mod small;

use std::path::Path;

/// The binary's allocator (see src/main.rs): the nodes and clients in this
/// process are measured as the binary runs them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::time::Instant;

use rand::{RngCore, SeedableRng};

use common::{median, quantile, Row, Sizes};
use lookup::Latencies;

fn main() {
    if let Ok(what) = std::env::var(small::CHILD) {
        small::run_child(&what);
        return;
    }
    let sizes = Sizes::from_env();
    let began = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    let step = |name: &str| eprintln!("compare: {name} ({:.0} s)", began.elapsed().as_secs_f64());

    if sizes.wants("lookups") {
        lookups(&sizes, tmp.path(), &rt, &mut rows, &step);
    }
    if sizes.wants("large") || sizes.wants("large-plain") {
        large_file(&sizes, tmp.path(), &rt, &mut rows, &step);
    }
    if sizes.wants("putblock") || sizes.wants("putblock-lone") {
        putblock(&sizes, tmp.path(), &rt, &mut rows, &step);
    }
    if sizes.wants("store") {
        small_store(&sizes, tmp.path(), &mut rows, &step);
    }
    print_table(&sizes, &rows, began.elapsed().as_secs_f64());
}

/// Lookup latency, clean and with a departed peer, against mainline.
fn lookups(
    sizes: &Sizes,
    tmp: &Path,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
    step: &dyn Fn(&str),
) {
    step("lookups on dhtfs");
    let (clean, departed, (by_ping, ghosts)) = rt.block_on(async {
        let nodes = common::start_net(&tmp.join("lookups"), sizes.nodes).await;
        let mut clean = Latencies::default();
        for _ in 0..sizes.runs {
            lookup::measure(&nodes, sizes.lookups, &mut clean).await;
        }
        let ghosts = lookup::depart(&nodes).await;
        let mut departed = Latencies::default();
        for _ in 0..sizes.runs {
            lookup::measure(&nodes, sizes.lookups, &mut departed).await;
        }
        common::stop_net(nodes).await;
        (clean, departed, ghosts)
    });
    step("lookups on mainline");
    let anchor = rt.block_on(async {
        let net = mainline_net::start(sizes.nodes).await;
        let mut lat = Latencies::default();
        for _ in 0..sizes.runs {
            mainline_net::measure(&net, sizes.lookups, &mut lat).await;
        }
        lat
    });
    let n = sizes.nodes;
    for (what, q) in [("median", 0.5), ("p90", 0.9)] {
        rows.push(
            Row::new(
                format!("put small block to K closest, {n} nodes, {what}"),
                quantile(&clean.put, q),
                "ms",
            )
            .vs("mainline put_immutable", quantile(&anchor.put, q)),
        );
        rows.push(
            Row::new(
                format!("get small block (find_value + fetch), {n} nodes, {what}"),
                quantile(&clean.get, q),
                "ms",
            )
            .vs("mainline get_immutable", quantile(&anchor.get, q)),
        );
    }
    for (what, q) in [("median", 0.5), ("p90", 0.9)] {
        rows.push(
            Row::new(
                format!(
                    "put, departed peer in {ghosts}/{n} tables ({by_ping} by its pings), {what}"
                ),
                quantile(&departed.put, q),
                "ms",
            )
            .vs("dhtfs clean", quantile(&clean.put, q)),
        );
        rows.push(
            Row::new(
                format!(
                    "get, departed peer in {ghosts}/{n} tables ({by_ping} by its pings), {what}"
                ),
                quantile(&departed.get, q),
                "ms",
            )
            .vs("dhtfs clean", quantile(&clean.get, q)),
        );
    }
}

/// Put and get of a large file against sha256 and fsync rates.
fn large_file(
    sizes: &Sizes,
    tmp: &Path,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
    step: &dyn Fn(&str),
) {
    step("large file");
    let mib = sizes.mib;
    let file = tmp.join("large");
    let (sha, fsync, seal, (encode, decode)) = {
        let mut data = vec![0u8; mib << 20];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
        std::fs::write(&file, &data).expect("write large file");
        let sha: Vec<f64> = (0..sizes.runs).map(|_| bulk::sha256_rate(&data)).collect();
        let fsync: Vec<f64> = (0..sizes.runs)
            .map(|_| bulk::fsync_write_rate(tmp, &data))
            .collect();
        let seal: Vec<f64> = (0..sizes.runs).map(|_| bulk::seal_rate(&data)).collect();
        let ec: Vec<(f64, f64)> = (0..sizes.runs)
            .map(|_| bulk::erasure_rates(&data))
            .collect();
        let encode: Vec<f64> = ec.iter().map(|r| r.0).collect();
        let decode: Vec<f64> = ec.iter().map(|r| r.1).collect();
        (
            median(&sha),
            median(&fsync),
            median(&seal),
            (median(&encode), median(&decode)),
        )
    };
    // Plain, erasure-coded and sealed take turns, so that all meet the
    // machine as it is.
    let (mut puts, mut gets, mut memory_gets) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sealed_puts, mut sealed_gets) = (Vec::new(), Vec::new());
    let (mut ec_puts, mut ec_gets) = (Vec::new(), Vec::new());
    let code = dhtfs::erasure::Code::new(bulk::EC_CODE.0, bulk::EC_CODE.1).expect("a code");
    let plain_only = !sizes.wants("large");
    for run in 0..sizes.runs {
        let dir = tmp.join(format!("bulk{run}"));
        let rates = rt.block_on(bulk::transfer(&dir, &file, mib, None, None, true));
        puts.push(rates.put);
        gets.push(rates.get);
        memory_gets.extend(rates.get_to_memory);
        let _ = std::fs::remove_dir_all(&dir);
        if plain_only {
            continue;
        }
        let dir = tmp.join(format!("ec{run}"));
        let rates = rt.block_on(bulk::transfer(&dir, &file, mib, None, Some(code), false));
        ec_puts.push(rates.put);
        ec_gets.push(rates.get);
        let _ = std::fs::remove_dir_all(&dir);
        let dir = tmp.join(format!("sealed{run}"));
        let secret = Some(dhtfs::seal::Secret::random());
        let rates = rt.block_on(bulk::transfer(&dir, &file, mib, secret, None, false));
        sealed_puts.push(rates.put);
        sealed_gets.push(rates.get);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_file(&file);
    let r = bulk::REPLICAS;
    rows.push(
        Row::new(
            format!("put {mib} MiB file, {r} replicas, 8 nodes"),
            median(&puts),
            "MiB/s",
        )
        .vs("sha256, one core", sha),
    );
    rows.push(
        Row::new(
            format!("put {mib} MiB file, {r} replicas, 8 nodes"),
            median(&puts),
            "MiB/s",
        )
        .vs(
            format!("disk write + fsync / {r} replicas"),
            fsync / r as f64,
        ),
    );
    rows.push(
        Row::new(
            format!("get {mib} MiB file, 8 nodes"),
            median(&gets),
            "MiB/s",
        )
        .vs("sha256, one core", sha),
    );
    // The get writes its output to the disk the put just wrote 3 replicas
    // to, and makes it durable: the disk's write rate bounds it too.
    rows.push(
        Row::new(
            format!("get {mib} MiB file, 8 nodes"),
            median(&gets),
            "MiB/s",
        )
        .vs("disk write + fsync", fsync),
    );
    // Each run's first get, right after its put, goes into memory: the
    // network and the checks alone. The slowest is the one the goal
    // ("every get") is about.
    if !memory_gets.is_empty() {
        rows.push(
            Row::new(
                format!("get {mib} MiB file into memory,, right after the put, 8 nodes"),
                median(&memory_gets),
                "MiB/s",
            )
            .vs("sha256, one core", sha),
        );
        rows.push(
            Row::new(
                format!("slowest get of {mib} MiB into memory, right after the put"),
                quantile(&memory_gets, 0.0),
                "MiB/s",
            )
            .vs("sha256, one core", sha),
        );
    }
    rows.push(
        Row::new(
            format!("slowest get of {mib} MiB to disk, 8 nodes"),
            quantile(&gets, 0.0),
            "MiB/s",
        )
        .vs("sha256, one core", sha),
    );
    if plain_only {
        return;
    }
    rows.push(Row::new("seal 1 MiB chunks, one core", seal, "MiB/s").vs("sha256, one core", sha));
    let (k, n) = bulk::EC_CODE;
    rows.push(
        Row::new(
            format!("erasure-code {k}/{n}, 1 MiB chunks, one core"),
            encode,
            "MiB/s",
        )
        .vs("sha256, one core", sha),
    );
    rows.push(
        Row::new(
            format!("decode {k}/{n} from recovery shards only, one core"),
            decode,
            "MiB/s",
        )
        .vs("sha256, one core", sha),
    );
    rows.push(
        Row::new(
            format!("erasure-coded put {mib} MiB file, {k}/{n}, 8 nodes"),
            median(&ec_puts),
            "MiB/s",
        )
        .vs(format!("{r}-replica put, this run"), median(&puts)),
    );
    rows.push(
        Row::new(
            format!("erasure-coded get {mib} MiB file, {k}/{n}, 8 nodes"),
            median(&ec_gets),
            "MiB/s",
        )
        .vs("replicated get, this run", median(&gets)),
    );
    rows.push(
        Row::new(
            format!("sealed put {mib} MiB file, {r} replicas, 8 nodes"),
            median(&sealed_puts),
            "MiB/s",
        )
        .vs("plain put, this run", median(&puts)),
    );
    rows.push(
        Row::new(
            format!("sealed get {mib} MiB file, 8 nodes"),
            median(&sealed_gets),
            "MiB/s",
        )
        .vs("plain get, this run", median(&gets)),
    );
}

/// PutBlock rate from 32 clients, and replicas saved.
fn putblock(
    sizes: &Sizes,
    tmp: &Path,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
    step: &dyn Fn(&str),
) {
    step("PutBlock, 32 clients");
    let per = sizes.puts_per_client;
    // A lone node: PutBlock is a durable local put (its lookup finds no one),
    // the path a group commit speeds up. Eight nodes: the same plus a store
    // to each of the K closest, every one of them a durable put too.
    let measure = |n: usize| {
        rt.block_on(async {
            let nodes = common::start_net(&tmp.join(format!("putblock{n}")), n).await;
            let (mut rates, mut saved) = (Vec::new(), Vec::new());
            for _ in 0..sizes.runs {
                let (rate, replicas) = small::putblock_rate(&nodes[0], per).await;
                rates.push(rate);
                saved.push(replicas);
            }
            common::stop_net(nodes).await;
            (rates, saved)
        })
    };
    let (alone, _) = measure(1);
    let (median_ms, p90_ms) = rt.block_on(async {
        let nodes = common::start_net(&tmp.join("putblock-latency"), 1).await;
        let got = small::putblock_latency(&nodes[0], 40_000, (per * 20).clamp(20, 200)).await;
        common::stop_net(nodes).await;
        got
    });
    // "putblock-lone" alone skips the 8 nodes (for profiling the local path).
    let (putblocks, saved) = if sizes.wants("putblock") {
        measure(8)
    } else {
        (vec![f64::NAN], vec![f64::NAN])
    };
    let probes = (small::CLIENTS * per).clamp(32, 500);
    let fsync_small: Vec<f64> = (0..sizes.runs)
        .map(|_| bulk::fsync_small_rate(tmp, probes))
        .collect();
    rows.push(
        Row::new(
            format!("PutBlock 4 KiB, {} clients, lone node", small::CLIENTS),
            median(&alone),
            "/s",
        )
        .vs("4 KiB file write + fsync, one thread", median(&fsync_small)),
    );
    rows.push(
        Row::new(
            format!(
                "PutBlock 4 KiB, {} clients, 8 nodes, K replicas",
                small::CLIENTS
            ),
            median(&putblocks),
            "/s",
        )
        .vs("4 KiB file write + fsync, one thread", median(&fsync_small)),
    );
    rows.push(
        Row::new(
            "PutBlock 40 KB, one client in turn, lone node, p90",
            p90_ms,
            "ms",
        )
        .vs("its median, this run", median_ms),
    );
    let k = dhtfs::config::Config::default().k as f64;
    rows.push(
        Row::new(
            format!("replicas saved per PutBlock, {} clients", small::CLIENTS),
            median(&saved),
            "",
        )
        .vs("K", k),
    );
}

/// Disk use, open time and RSS of stores, idle RSS of nodes.
fn small_store(sizes: &Sizes, tmp: &Path, rows: &mut Vec<Row>, step: &dyn Fn(&str)) {
    step("small-block store");
    let blocks = sizes.small_blocks;
    let small_dir = tmp.join("small-store");
    let per_byte_4k = small::fill_store(&small_dir, blocks, 4096);
    rows.push(
        Row::new(
            format!("disk bytes per stored byte, {blocks} x 4 KiB"),
            per_byte_4k,
            "x",
        )
        .vs("the bytes themselves", 1.0),
    );
    let big = sizes.big_blocks;
    let big_dir = tmp.join("big-store");
    let per_byte_1m = small::fill_store(&big_dir, big, 1 << 20);
    let _ = std::fs::remove_dir_all(&big_dir);
    rows.push(
        Row::new(
            format!("disk bytes per stored byte, {big} x 1 MiB"),
            per_byte_1m,
            "x",
        )
        .vs("the bytes themselves", 1.0),
    );
    let empty_dir = tmp.join("empty-store");
    small::fill_store(&empty_dir, 0, 4096);
    let measure = |what: &str| {
        let runs: Vec<(f64, f64)> = (0..sizes.runs).map(|_| small::child(what)).collect();
        let took: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let rss: Vec<f64> = runs.iter().map(|r| r.1 / 1024.0).collect();
        (median(&took), median(&rss))
    };
    let (open_full, rss_full) = measure(&format!("open {}", small_dir.display()));
    // After a crash: an open that was never closed leaves no summary, so
    // the next one, in a fresh process as after a real crash, checks every
    // entry.
    let crashed: Vec<(f64, f64)> = (0..sizes.runs)
        .map(|_| {
            small::crash_open(&small_dir);
            small::child(&format!("open {}", small_dir.display()))
        })
        .collect();
    let open_crashed = median(&crashed.iter().map(|r| r.0).collect::<Vec<_>>());
    let rss_crashed = median(&crashed.iter().map(|r| r.1 / 1024.0).collect::<Vec<_>>());
    let (open_empty, rss_empty) = measure(&format!("open {}", empty_dir.display()));
    rows.push(
        Row::new(
            format!("open store of {blocks} blocks after a clean stop"),
            open_full,
            "ms",
        )
        .vs("open empty store", open_empty),
    );
    rows.push(
        Row::new(
            format!("RSS after opening {blocks} blocks after a clean stop"),
            rss_full,
            "MiB",
        )
        .vs("after opening empty store", rss_empty),
    );
    rows.push(
        Row::new(
            format!("open store of {blocks} blocks after a crash (every entry walked, only the unsynced tail read)"),
            open_crashed,
            "ms",
        )
        .vs("open empty store", open_empty),
    );
    rows.push(
        Row::new(
            format!("RSS after opening {blocks} blocks after a crash"),
            rss_crashed,
            "MiB",
        )
        .vs("after opening empty store", rss_empty),
    );
    let (deleted, compacted) = small::delete_half_and_compact(&small_dir);
    rows.push(
        Row::new(
            format!("disk bytes per live byte, {blocks} x 4 KiB, half deleted, before compaction"),
            deleted,
            "x",
        )
        .vs("the live bytes", 1.0),
    );
    rows.push(
        Row::new(
            format!("disk bytes per live byte, {blocks} x 4 KiB, half deleted, after compaction"),
            compacted,
            "x",
        )
        .vs("the live bytes", 1.0),
    );
    let (_, idle) = measure("idle");
    let (_, idle_mainline) = measure("idle-mainline");
    rows.push(
        Row::new("idle RSS of one node", idle, "MiB").vs("one idle mainline node", idle_mainline),
    );
}

fn print_table(sizes: &Sizes, rows: &[Row], secs: f64) {
    let tiny = std::env::var("DHTFS_BENCH_TINY").is_ok_and(|v| v == "1");
    println!();
    println!(
        "`{}cargo bench --bench compare` on {}: nodes {}, lookups {} x {} runs, {} MiB file, {} small blocks, {} big blocks, {} PutBlocks per client; medians of {} runs; {secs:.0} s",
        if tiny { "DHTFS_BENCH_TINY=1 " } else { "" },
        common::machine(),
        sizes.nodes,
        sizes.lookups,
        sizes.runs,
        sizes.mib,
        sizes.small_blocks,
        sizes.big_blocks,
        sizes.puts_per_client,
        sizes.runs,
    );
    println!();
    println!("| figure | dhtfs | anchor | ratio |");
    println!("| --- | ---: | --- | ---: |");
    for r in rows {
        let num = |v: f64| {
            if v.abs() >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        let ratio = r.dhtfs / r.anchor;
        let ratio = if ratio < 0.1 {
            format!("{ratio:.4}")
        } else {
            format!("{ratio:.2}")
        };
        println!(
            "| {} | {} {} | {} {} {} | {ratio}x |",
            r.figure,
            num(r.dhtfs),
            r.unit,
            r.anchor_name,
            num(r.anchor),
            r.unit,
        );
    }
}
