//! The timeline of a run. Nodes join one after another; after warm-up,
//! blocks are stored and lookups measured at random moments while churn and
//! the partition (if asked) go on; at the end the network heals, every node
//! republishes, and every stored block is fetched; then everything stops and
//! nothing may be left running.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};

use super::checks;
use super::config::SimConfig;
use super::failures::{sim_time, Check};
use super::files;
use super::lifecycle::{self, Departure};
use super::measure;
use super::record::BlockRecord;
use super::report::Report;
use super::seeds::{self, Stream};
use super::upkeep;
use super::world::{lock, Life, Shared, World};
use crate::id::Id;
use crate::lookup::LookupKind;
use crate::node::{Node, Transfer};

/// How often pending maps and tasks are measured.
const SAMPLE: Duration = Duration::from_secs(30);
/// Every this many samples, all invariants are checked and progress shown.
const FULL_EVERY: u32 = 20;
/// After the last stop, how long everything may take to wind down.
const QUIESCE: Duration = Duration::from_secs(1200);

/// Runs the whole scenario; the caller provides the paused runtime.
pub async fn drive(cfg: SimConfig) -> Report {
    let start = Instant::now();
    let wall = std::time::Instant::now();
    let shared: Shared = Arc::new(Mutex::new(World::new(cfg.clone(), start)));
    let end = start + cfg.duration();
    let mut phases = JoinSet::new();
    phases.spawn(joins(shared.clone()));
    phases.spawn(churn(shared.clone()));
    phases.spawn(stores(shared.clone()));
    phases.spawn(lookups(shared.clone()));
    if cfg.partition {
        phases.spawn(partition(shared.clone()));
    }
    if cfg.files > 0 {
        phases.spawn(files::put_files(shared.clone()));
    }
    let sampler = tokio::spawn(sample(shared.clone(), wall));
    while let Some(done) = phases.join_next().await {
        if let Err(e) = done {
            lock(&shared).fail(Check::Panic, format!("a phase of the scenario failed: {e}"));
        }
    }
    sleep_until(end).await;
    progress(&shared, wall, "heal, republish");
    let net = lock(&shared).net.clone();
    net.set_partitioned(false);
    republish_all(&shared).await;
    progress(&shared, wall, "fetch every block");
    let (found, eligible, lost) = fetch_all(&shared).await;
    if cfg.files > 0 {
        if cfg.repair {
            progress(&shared, wall, "repair");
            files::repair_all(&shared).await;
        }
        progress(&shared, wall, "files: thresholds, bytes, kill, read");
        let outcome = files::finish(&shared).await;
        lock(&shared).files_outcome = outcome;
    }
    {
        let mut w = lock(&shared);
        checks::check_all(&mut w);
        checks::check_stores(&mut w);
        w.stop.store(true, Ordering::Relaxed);
    }
    progress(&shared, wall, "wind down");
    let _ = sampler.await;
    quiesce(&shared).await;
    let w = lock(&shared);
    Report::build(&w, found, eligible, lost)
}

fn progress(shared: &Shared, wall: std::time::Instant, what: &str) {
    let w = lock(shared);
    if w.cfg.progress {
        let up = w.hosts.iter().filter(|h| h.life == Life::Up).count();
        eprintln!(
            "sim t={} up={up} lookups={}/{} blocks={}/{} failures={} wall={:.1}s {what}",
            sim_time(w.now_ms()),
            w.lookups.len(),
            w.cfg.lookups,
            w.blocks.iter().filter(|b| b.done).count(),
            w.cfg.blocks,
            w.failures.count(),
            wall.elapsed().as_secs_f64(),
        );
    }
}

/// `n` moments uniform in `[from, to)`, in order.
pub(super) fn moments(w: &mut World, n: usize, from: Duration, to: Duration) -> Vec<Instant> {
    let (a, b) = (
        from.as_millis() as u64,
        to.as_millis().max(from.as_millis() + 1) as u64,
    );
    let mut t: Vec<u64> = (0..n).map(|_| w.rng.gen_range(a..b)).collect();
    t.sort_unstable();
    t.into_iter()
        .map(|ms| w.start + Duration::from_millis(ms))
        .collect()
}

/// The initial nodes join over the join window, each through a random
/// honest node that already joined.
async fn joins(shared: Shared) {
    let (n, window, start, liars) = {
        let mut w = lock(&shared);
        let n = w.cfg.nodes;
        let count = ((w.cfg.liars * n as f64).round() as usize).min(n - 1);
        // The first node is honest: everyone joins through it at first.
        let mut order: Vec<usize> = (1..n).collect();
        order.shuffle(&mut w.rng);
        let mut liars = vec![false; n];
        for &i in order.iter().take(count) {
            liars[i] = true;
        }
        (n, w.cfg.join_window(), w.start, liars)
    };
    let mut joining = JoinSet::new();
    for (i, liar) in liars.into_iter().enumerate() {
        sleep_until(start + window.mul_f64(i as f64 / n as f64)).await;
        let (index, boot) = {
            let mut w = lock(&shared);
            let index = w.add_host(liar);
            let boot = if i == 0 {
                None
            } else {
                w.pick_bootstrap(index)
            };
            (index, boot)
        };
        let boot = boot.into_iter().collect();
        joining.spawn(lifecycle::start(
            shared.clone(),
            index,
            boot,
            Vec::new(),
            i == 0,
        ));
    }
    while joining.join_next().await.is_some() {}
}

/// Replaces `churn` of the nodes per hour: a third leave for good, a third
/// crash and restart with their routing table, a third without.
async fn churn(shared: Shared) {
    let plan = {
        let mut w = lock(&shared);
        let events = (w.cfg.churn * w.cfg.nodes as f64 * w.cfg.sim_hours).round() as usize;
        let (from, to) = (w.cfg.warm_up(), w.cfg.duration());
        let times = moments(&mut w, events, from, to);
        let kinds: Vec<u8> = (0..events).map(|_| w.rng.gen_range(0..3)).collect();
        times.into_iter().zip(kinds).collect::<Vec<_>>()
    };
    let mut running = JoinSet::new();
    for (at, kind) in plan {
        sleep_until(at).await;
        let how = match kind {
            0 => Departure::Leave,
            1 => Departure::CrashKeepRouting,
            _ => Departure::CrashLoseRouting,
        };
        running.spawn(lifecycle::depart(shared.clone(), how));
    }
    while running.join_next().await.is_some() {}
}

/// Stores the blocks, each through a random honest node that keeps a copy
/// and asks the K closest to store it.
async fn stores(shared: Shared) {
    let (plan, mut data_rng) = {
        let mut w = lock(&shared);
        let (from, to) = (w.cfg.warm_up(), w.cfg.duration().mul_f64(0.9));
        let n = w.cfg.blocks;
        let seed = w.cfg.seed;
        (
            moments(&mut w, n, from, to),
            seeds::rng(seed, Stream::Blocks, 0),
        )
    };
    let mut running = JoinSet::new();
    for at in plan {
        sleep_until(at).await;
        let size = data_rng.gen_range(256..=4096);
        let data: Vec<u8> = (0..size).map(|_| data_rng.gen()).collect();
        let (node, key, slot) = {
            let mut w = lock(&shared);
            let Some(origin) = w.pick_honest() else {
                continue;
            };
            let key = w.hosts[origin].store.insert_own(data);
            let node = w.hosts[origin]
                .node
                .clone()
                .expect("an up host has an engine");
            w.blocks.push(BlockRecord {
                key,
                saved: 0,
                honest_saved: 0,
                done: false,
            });
            (node, key, w.blocks.len() - 1)
        };
        let shared = shared.clone();
        running.spawn(async move {
            let report = node.replicate(key).await;
            let mut w = lock(&shared);
            let me = node.me().id;
            let honest = report
                .saved
                .iter()
                .filter(|c| c.id != me)
                .filter(|c| w.by_id.get(&c.id).is_some_and(|&i| !w.hosts[i].liar))
                .count();
            let record = &mut w.blocks[slot];
            record.saved = report.saved.len();
            record.honest_saved = honest;
            record.done = true;
        });
    }
    while running.join_next().await.is_some() {}
}

/// The measured lookups: from random honest nodes, half for random ids and
/// half for stored keys, each judged against brute force when it ends.
async fn lookups(shared: Shared) {
    let plan = {
        let mut w = lock(&shared);
        let (from, to) = (w.cfg.warm_up(), w.cfg.duration());
        let n = w.cfg.lookups;
        moments(&mut w, n, from, to)
    };
    let mut running = JoinSet::new();
    for (i, at) in plan.into_iter().enumerate() {
        sleep_until(at).await;
        let picked = {
            let mut w = lock(&shared);
            let stored: Vec<Id> = w.blocks.iter().map(|b| b.key).collect();
            let target = if i % 2 == 1 && !stored.is_empty() {
                stored[w.rng.gen_range(0..stored.len())]
            } else {
                Id(w.rng.gen())
            };
            match w.pick_honest() {
                Some(origin) => {
                    let h = &w.hosts[origin];
                    let node = h.node.clone().expect("an up host has an engine");
                    Some((node, h.alive.clone(), h.side, target))
                }
                None => {
                    w.lookups_aborted += 1;
                    None
                }
            }
        };
        let Some((node, alive, side, target)) = picked else {
            continue;
        };
        let shared = shared.clone();
        running.spawn(async move {
            let result = node.lookup(target, LookupKind::FindNode).await;
            let mut w = lock(&shared);
            if !alive.load(Ordering::Relaxed) {
                w.lookups_aborted += 1;
                return;
            }
            let (record, wrong) = measure::judge(&w, &target, side, &result);
            w.lookups.push(record);
            if let Some(wrong) = wrong {
                w.fail(Check::Shape, wrong);
            }
        });
    }
    while running.join_next().await.is_some() {}
}

/// Splits the network in two from 35% to 60% of the run.
async fn partition(shared: Shared) {
    let (start, dur, warm, net) = {
        let w = lock(&shared);
        (w.start, w.cfg.duration(), w.cfg.warm_up(), w.net.clone())
    };
    sleep_until(start + dur.mul_f64(0.35).max(warm)).await;
    net.set_partitioned(true);
    sleep_until(start + dur.mul_f64(0.6).max(warm)).await;
    net.set_partitioned(false);
    lock(&shared).healed = true;
}

/// Checks invariants and shows progress now and then, until the run stops.
async fn sample(shared: Shared, wall: std::time::Instant) {
    for n in 1.. {
        sleep(SAMPLE).await;
        let full = n % FULL_EVERY == 0;
        {
            let mut w = lock(&shared);
            if w.stopping() {
                return;
            }
            if full {
                checks::check_all(&mut w);
            } else {
                checks::check_pending(&mut w);
            }
            let tasks = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks();
            w.max_tasks = w.max_tasks.max(tasks);
        }
        if full {
            progress(&shared, wall, "");
        }
    }
}

/// Every up honest node runs a republish pass, as its schedule would.
async fn republish_all(shared: &Shared) {
    let hosts = lock(shared).up_honest();
    let mut running = JoinSet::new();
    for (node, store) in hosts {
        running.spawn(async move { upkeep::republish(&node, &store).await });
    }
    while running.join_next().await.is_some() {}
}

/// Fetches every stored block, each from a random honest node; returns
/// (found, eligible, lost). Every block had an honest "saved" at least from
/// its origin, which stores its own copy first (as the admin API's PutBlock
/// does). A block some live honest node holds must be found; one nobody
/// holds any more is lost.
async fn fetch_all(shared: &Shared) -> (usize, usize, usize) {
    let jobs = {
        let mut w = lock(shared);
        let keys: Vec<Id> = w.blocks.iter().filter(|b| b.done).map(|b| b.key).collect();
        let mut jobs = Vec::new();
        for key in keys {
            if let Some(i) = w.pick_honest() {
                jobs.push((key, w.hosts[i].node.clone().expect("up host has an engine")));
            }
        }
        jobs
    };
    let eligible = jobs.len();
    let mut running = JoinSet::new();
    for (n, (key, node)) in jobs.into_iter().enumerate() {
        running.spawn(async move { (n, key, fetch_verified(&node, key).await) });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = running.join_next().await {
        if let Ok(outcome) = joined {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|(n, _, _)| *n);
    let mut w = lock(shared);
    let (mut found, mut lost) = (0, 0);
    for (_, key, ok) in outcomes {
        if ok {
            found += 1;
            continue;
        }
        let holders = w
            .hosts
            .iter()
            .filter(|h| h.life == Life::Up && !h.liar && h.store.contains_key(&key))
            .count();
        if holders == 0 {
            lost += 1;
        } else {
            w.fail(
                Check::Found,
                format!(
                    "block {} is held by {holders} live honest nodes but was not found",
                    key.short()
                ),
            );
        }
    }
    (found, eligible, lost)
}

/// Waits for every task to end; none may be left, nor any pending request.
async fn quiesce(shared: &Shared) {
    let handle = tokio::runtime::Handle::current();
    let deadline = Instant::now() + QUIESCE;
    while handle.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
        sleep(Duration::from_secs(30)).await;
    }
    let mut w = lock(shared);
    let left = handle.metrics().num_alive_tasks();
    if left > 0 {
        w.fail(
            Check::Leak,
            format!("{left} tasks still running after everything stopped"),
        );
    }
    let busy: Vec<String> = w
        .hosts
        .iter()
        .filter_map(|h| h.node.as_ref().map(|n| (h.addr, n.pending_requests())))
        .filter(|(_, p)| *p > 0)
        .map(|(a, p)| format!("{a}: {p} requests still pending after everything stopped"))
        .collect();
    for b in busy {
        w.fail(Check::Leak, b);
    }
}

/// Whether `node` gets block `key` with bytes that hash to it: from its own
/// store when it holds it, else through the engine's one fetch path, as
/// `dhtfs get` does.
async fn fetch_verified(node: &Node, key: Id) -> bool {
    if node.blocks().contains(&key) {
        return node.blocks().get(&key).ok().flatten().is_some();
    }
    let max = node.config().max_block_size;
    node.fetch_verified(key, max, &Transfer::new())
        .await
        .is_ok()
}
