//! Files in the simulation (issue 17): as many erasure-coded as replicated
//! files, each put through a random honest node the way `dhtfs put` puts
//! them (the origin keeps nothing but what it is itself among the closest
//! nodes of): a replicated chunk on its K closest, an erasure-coded chunk
//! as `n` shards on one node each and a stripe on its K closest. Hosts run
//! the daemon's repair (`upkeep/repair.rs`) when asked. At the end, after
//! the network healed and upkeep ran: every erasure-coded chunk must have
//! its repair threshold of shards on live honest nodes (with repair on),
//! the bytes stored per file byte are counted, then a share of the nodes is
//! killed at once and every file read through the engine's fetch path.

use std::sync::Arc;

use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use super::failures::Check;
use super::seeds::{self, Stream};
use super::store::MemStore;
use super::world::{lock, Life, Shared, World};
use crate::id::Id;
use crate::node::{Node, Transfer};
use crate::stripe::{Stripe, MAX_STRIPE_BLOCK};

/// One file stored during the run.
#[derive(Clone, Debug)]
pub struct FileRecord {
    pub erasure_coded: bool,
    pub bytes: u64,
    /// A replicated file's chunk blocks.
    pub chunks: Vec<Id>,
    /// An erasure-coded file's stripes (their keys and what they say).
    pub stripes: Vec<(Id, Stripe)>,
    /// Its put ended with every block saved somewhere.
    pub stored: bool,
}

impl FileRecord {
    /// Every block of the file: chunks, or stripes and shards.
    fn blocks(&self) -> Vec<Id> {
        let mut out = self.chunks.clone();
        for (key, s) in &self.stripes {
            out.push(*key);
            out.extend(s.shards.iter().copied());
        }
        out
    }
}

/// What the files came to at the end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilesOutcome {
    pub ec_files: usize,
    pub rep_files: usize,
    /// Files whose every chunk was read back after the mass kill.
    pub ec_readable: usize,
    pub rep_readable: usize,
    /// Bytes held by every host that still has its disk, per byte of file.
    pub stored_per_byte: f64,
    pub rep_stored_per_byte: f64,
    /// Erasure-coded chunks below their repair threshold of live shards
    /// before the kill.
    pub below_threshold: usize,
    /// Bytes repair fetched and stored, over every incarnation.
    pub repair_bytes: u64,
    pub killed: usize,
}

/// Puts the files at random moments of the first half of the run, after
/// warm-up: even-numbered ones erasure-coded, odd ones replicated.
pub async fn put_files(shared: Shared) {
    let (plan, mut data_rng, cfg) = {
        let mut w = lock(&shared);
        let (from, to) = (w.cfg.warm_up(), w.cfg.duration().mul_f64(0.5));
        let n = 2 * w.cfg.files;
        let seed = w.cfg.seed;
        let cfg = w.cfg.clone();
        (
            super::scenario::moments(&mut w, n, from, to),
            seeds::rng(seed, Stream::Files, 0),
            cfg,
        )
    };
    let mut running = JoinSet::new();
    for (i, at) in plan.into_iter().enumerate() {
        sleep_until(at).await;
        let erasure_coded = i % 2 == 0;
        let chunks: Vec<Vec<u8>> = (0..cfg.file_chunks)
            .map(|_| (0..cfg.chunk_bytes).map(|_| data_rng.gen()).collect())
            .collect();
        let picked = {
            let mut w = lock(&shared);
            w.file_blocks += match erasure_coded {
                true => cfg.file_chunks * (cfg.ec.n() + 1),
                false => cfg.file_chunks,
            };
            w.pick_honest().map(|origin| {
                let h = &w.hosts[origin];
                (
                    h.node.clone().expect("an up host has an engine"),
                    h.store.clone(),
                )
            })
        };
        let Some((node, store)) = picked else {
            continue;
        };
        let shared = shared.clone();
        let code = cfg.ec;
        running.spawn(async move {
            let record = match erasure_coded {
                true => put_striped(&node, &store, code, chunks).await,
                false => put_replicated(&node, &store, chunks).await,
            };
            lock(&shared).files.push(record);
        });
    }
    while running.join_next().await.is_some() {}
    // Put in the order they finished; sorted so that a run repeats exactly
    // whatever order equal moments took.
    let mut w = lock(&shared);
    w.files.sort_by_key(|f| f.blocks().first().copied());
}

/// Stores `key` (held by the origin) on the `copies` closest nodes (0: K),
/// then drops the origin's copy unless it is one of them; whether anyone
/// saved it.
async fn place(node: &Node, store: &Arc<MemStore>, key: Id, copies: u8) -> bool {
    let want = crate::store::copies_of(copies, node.config().lookup.k);
    let targets: Vec<_> = node
        .find_closest(key)
        .await
        .into_iter()
        .take(want)
        .collect();
    let me = node.me().id;
    let ours = targets.iter().any(|c| c.id == me);
    let saved = node.store_to(key, targets, copies).await.saved;
    let others = saved.iter().filter(|c| c.id != me).count();
    if !ours && others > 0 {
        store.remove(&key);
    }
    ours || others > 0
}

async fn put_replicated(node: &Node, store: &Arc<MemStore>, chunks: Vec<Vec<u8>>) -> FileRecord {
    let mut record = FileRecord {
        erasure_coded: false,
        bytes: chunks.iter().map(|c| c.len() as u64).sum(),
        chunks: Vec::new(),
        stripes: Vec::new(),
        stored: true,
    };
    for chunk in chunks {
        let key = store.insert_own_with(chunk, 0);
        record.stored &= place(node, store, key, 0).await;
        record.chunks.push(key);
    }
    record
}

async fn put_striped(
    node: &Node,
    store: &Arc<MemStore>,
    code: crate::erasure::Code,
    chunks: Vec<Vec<u8>>,
) -> FileRecord {
    let mut record = FileRecord {
        erasure_coded: true,
        bytes: chunks.iter().map(|c| c.len() as u64).sum(),
        chunks: Vec::new(),
        stripes: Vec::new(),
        stored: true,
    };
    for chunk in chunks {
        let (stripe, shards) = Stripe::make(code, 1, &chunk);
        let mut running = JoinSet::new();
        for shard in shards {
            let key = store.insert_own_with(shard, 1);
            let (node, store) = (node.clone(), store.clone());
            running.spawn(async move { place(&node, &store, key, 1).await });
        }
        while let Some(joined) = running.join_next().await {
            record.stored &= joined.unwrap_or(false);
        }
        let key = store.insert_own_with(stripe.encode(), 0);
        record.stored &= place(node, store, key, 0).await;
        record.stripes.push((key, stripe));
    }
    record
}

/// Every up honest host runs one repair pass, as its schedule would.
pub async fn repair_all(shared: &Shared) {
    let hosts = lock(shared).up_honest();
    let mut running = JoinSet::new();
    for (node, store) in hosts {
        running.spawn(async move {
            let mut backoff = crate::upkeep::Backoff::default();
            crate::upkeep::repair_keys(&node, store.keys(), &mut backoff).await
        });
    }
    while running.join_next().await.is_some() {}
}

/// Live honest shards of `stripe`.
fn live_shards(w: &World, stripe: &Stripe) -> usize {
    stripe
        .shards
        .iter()
        .filter(|id| {
            w.hosts
                .iter()
                .any(|h| h.life == Life::Up && !h.liar && h.store.contains_key(id))
        })
        .count()
}

/// The files' end: thresholds and bytes stored, then the kill, then reads.
pub async fn finish(shared: &Shared) -> FilesOutcome {
    let mut out = FilesOutcome::default();
    let (files, kill) = {
        let mut w = lock(shared);
        let files: Vec<FileRecord> = w.files.iter().filter(|f| f.stored).cloned().collect();
        out.ec_files = files.iter().filter(|f| f.erasure_coded).count();
        out.rep_files = files.len() - out.ec_files;
        if w.cfg.repair {
            for f in files.iter().filter(|f| f.erasure_coded) {
                for (key, s) in &f.stripes {
                    let live = live_shards(&w, s);
                    if live < s.repair_threshold() {
                        out.below_threshold += 1;
                        let why = format!(
                            "stripe {} has {live} live shards, under its repair threshold {}",
                            key.short(),
                            s.repair_threshold()
                        );
                        w.fail(Check::Found, why);
                    }
                }
            }
        }
        let per_byte = |ec: bool| {
            let of: Vec<&FileRecord> = files.iter().filter(|f| f.erasure_coded == ec).collect();
            let bytes: u64 = of.iter().map(|f| f.bytes).sum();
            let keys: Vec<Id> = of.iter().flat_map(|f| f.blocks()).collect();
            let held: u64 = w
                .hosts
                .iter()
                .filter(|h| h.life != Life::Gone && !h.liar)
                .map(|h| h.store.bytes_of(&keys))
                .sum();
            held as f64 / bytes.max(1) as f64
        };
        out.stored_per_byte = per_byte(true);
        out.rep_stored_per_byte = per_byte(false);
        out.repair_bytes = w.retired.repair_bytes
            + w.hosts
                .iter()
                .filter_map(|h| h.node.as_ref())
                .map(|n| {
                    let s = n.stats();
                    crate::stats::Stats::get(&s.repair_bytes_read)
                        + crate::stats::Stats::get(&s.repair_bytes_written)
                })
                .sum::<u64>();
        // The kill: a share of the up nodes at once, none restarted.
        let up: Vec<usize> = (0..w.hosts.len())
            .filter(|&i| w.hosts[i].life == Life::Up)
            .collect();
        let kill = (w.cfg.mass_kill * up.len() as f64).round() as usize;
        let mut victims = up;
        for i in 0..kill.min(victims.len()) {
            let j = w.rng.gen_range(i..victims.len());
            victims.swap(i, j);
        }
        victims.truncate(kill);
        victims.sort_unstable();
        for &v in &victims {
            w.crash(v);
        }
        (files, victims.len())
    };
    out.killed = kill;
    let mut running = JoinSet::new();
    for (n, f) in files.into_iter().enumerate() {
        let node = {
            let mut w = lock(shared);
            match w.pick_honest() {
                Some(i) => w.hosts[i].node.clone().expect("up host has an engine"),
                None => continue,
            }
        };
        running.spawn(async move { (n, f.erasure_coded, readable(&node, &f).await) });
    }
    while let Some(joined) = running.join_next().await {
        if let Ok((_, ec, true)) = joined {
            match ec {
                true => out.ec_readable += 1,
                false => out.rep_readable += 1,
            }
        }
    }
    out
}

/// Whether `node` reads every chunk of `file` back, verified.
async fn readable(node: &Node, file: &FileRecord) -> bool {
    let transfer = Arc::new(Transfer::new());
    let max = node.config().max_block_size;
    for key in &file.chunks {
        if !node.blocks().contains(key) && node.fetch_verified(*key, max, &transfer).await.is_err()
        {
            return false;
        }
    }
    for (key, stripe) in &file.stripes {
        let held = node.blocks().contains(key)
            || node
                .fetch_verified(*key, MAX_STRIPE_BLOCK, &transfer)
                .await
                .is_ok();
        if !held {
            return false;
        }
        let Ok(shards) = node
            .fetch_shards(stripe, stripe.code.k(), &[], &transfer)
            .await
        else {
            return false;
        };
        let views: Vec<(usize, &[u8])> = shards.blocks.iter().map(|(i, b)| (*i, &b[..])).collect();
        if stripe.decode(&views).is_err() {
            return false;
        }
    }
    true
}
