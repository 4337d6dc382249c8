//! `dhtfs put`: cut a file into chunks, seal them (unless plain), hash them,
//! have the closest nodes pull each one from us (many chunks in flight), then
//! store the manifest.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::file_ref::FileRef;
use super::progress::{Counters, Progress};
use super::redundancy::{self, Chosen, Redundancy, Why};
use super::session::Session;
use super::source::{FileSource, Located};
use super::{io, FilesError};
use crate::contact::Contact;
use crate::erasure::Code;
use crate::id::Id;
use crate::manifest::{self, Entry};
use crate::node::{Node, RequestError};
use crate::seal::{self, Capability, Secret};

/// Smallest and largest chunk sizes (a chunk is one block; nodes take 1 MiB).
pub const MIN_CHUNK: u64 = 4 << 10;
pub const MAX_CHUNK: u64 = 1 << 20;

/// Candidates beyond a shard's copies, taken from its region, to move on to
/// when the closest fails.
const NARROW_SPARE: usize = 2;

/// What to put and how.
#[derive(Clone, Debug)]
pub struct PutOptions {
    pub file: PathBuf,
    pub bootstrap: Vec<SocketAddr>,
    /// Nodes each chunk is stored on.
    pub replicas: usize,
    /// Bytes per block: a sealed file's chunks carry the tag's 16 bytes less.
    pub chunk_size: u64,
    /// Chunks in flight at once.
    pub parallel: usize,
    pub quiet: bool,
    /// Seal the file under this convergence secret; `None` stores it plain.
    pub seal: Option<Secret>,
    /// Whole chunks on `replicas` nodes, or each chunk erasure-coded (its
    /// shards on `shard_copies` nodes each, its stripe on `replicas`), or
    /// by default coded when the file and the network are large enough.
    pub redundancy: Redundancy,
    pub shard_copies: usize,
}

impl PutOptions {
    /// Defaults for `file`: the local daemon, 1 MiB chunks, 24/56 erasure
    /// coding where it pays and 7 replicas where not, plain (the command
    /// line seals by default; see `main.rs`).
    pub fn new(file: PathBuf) -> PutOptions {
        PutOptions {
            file,
            bootstrap: vec![SocketAddr::from(([127, 0, 0, 1], 7400))],
            replicas: 7,
            chunk_size: MAX_CHUNK,
            parallel: 16,
            quiet: false,
            seal: None,
            redundancy: Redundancy::Auto(Code::DEFAULT),
            shard_copies: crate::stripe::SHARD_COPIES,
        }
    }
}

/// What a put did.
#[derive(Clone, Debug)]
pub struct PutReport {
    /// The root manifest's block id.
    pub root: Id,
    /// What names the file: the root, or for a sealed file its capability.
    pub file: FileRef,
    pub size: u64,
    /// The code each chunk was erasure-coded under; `None`: replicated.
    pub ec: Option<Code>,
    /// The file's chunks, in order (for the original's hash file).
    pub chunks: Vec<Entry>,
    /// Blocks stored on fewer nodes than asked (none failed outright).
    pub under_replicated: usize,
    /// The summary line.
    pub summary: String,
}

/// What planning the file found, once it has read all of it.
struct Plan {
    chunks: Vec<Entry>,
    size: u64,
    /// The file's first bytes as read and hashed into its first chunk: the
    /// root manifest's head (see `manifest.rs`).
    head: Vec<u8>,
}

/// The regions a put places its blocks in (see `Node::closest_in_region`):
/// a lookup a region of the keyspace rather than one a block, which for an
/// erasure-coded file's n shards a chunk was most of its requests.
pub(super) type Placement = Arc<tokio::sync::Mutex<crate::region::Regions>>;

/// One chunk planned: its place in the file's list of chunks, its block
/// key, and its bytes' length.
type Planned = (usize, Id, u64);

/// Batches of planned chunks the transfer may be behind the plan by: a
/// batch is one chunk per planner, so this is a few MiB read ahead.
const PLANNED_AHEAD: usize = 4;

/// Chunks sealed and hashed at once, one per core (at most 8): sealing is
/// three passes over each byte (the keyed hash, the cipher, the block's
/// hash), and the transfer waits for the plan, so the plan uses every core.
fn planners() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Fills `buf` from `reader` as far as it goes: fewer bytes only at the end.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The block key of each chunk, and its seal key when sealed: one chunk per
/// thread when there are several.
fn key_chunks(
    chunks: &[&[u8]],
    seal: Option<&Secret>,
    chunk_size: u64,
) -> Vec<(Id, Option<seal::SealKey>)> {
    let one = |chunk: &[u8]| match seal {
        None => (Id::of_block(chunk), None),
        Some(secret) => {
            let (k, block) = seal::seal_chunk(secret, chunk, chunk_size);
            (Id::of_block(&block), Some(k))
        }
    };
    if chunks.len() < 2 {
        return chunks.iter().map(|c| one(c)).collect();
    }
    std::thread::scope(|scope| {
        let one = &one;
        let running: Vec<_> = chunks
            .iter()
            .map(|&c| scope.spawn(move || one(c)))
            .collect();
        running
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Reads `file` in chunks of `chunk_size` bytes, seals each under `seal`
/// (if any) and hashes each block, handing each batch to `planned` (where
/// each chunk is, for the nodes to pull it at once) as soon as it is keyed;
/// stops early when `planned` says no more are wanted.
fn plan(
    file: &std::fs::File,
    path: &std::path::Path,
    chunk_size: u64,
    seal: Option<&Secret>,
    mut planned: impl FnMut(Vec<(Id, Located)>, usize) -> bool,
) -> Result<Plan, FilesError> {
    let mut reader = std::io::BufReader::with_capacity(chunk_size as usize, file);
    let mut bufs = vec![vec![0u8; chunk_size as usize]; planners()];
    let mut plan = Plan {
        chunks: Vec::new(),
        size: 0,
        head: Vec::new(),
    };
    let mut at_end = false;
    while !at_end {
        let mut lens = Vec::with_capacity(bufs.len());
        for buf in bufs.iter_mut() {
            let filled = fill(&mut reader, buf).map_err(io(path))?;
            if filled > 0 {
                lens.push(filled);
            }
            if filled < buf.len() {
                at_end = true;
                break;
            }
        }
        let chunks: Vec<&[u8]> = bufs.iter().zip(&lens).map(|(b, &n)| &b[..n]).collect();
        if let (0, Some(first)) = (plan.size, chunks.first()) {
            plan.head = first[..first.len().min(manifest::HEAD_MAX)].to_vec();
        }
        let first_index = plan.chunks.len();
        let mut batch = Vec::with_capacity(chunks.len());
        for (chunk, (key, seal_key)) in chunks.iter().zip(key_chunks(&chunks, seal, chunk_size)) {
            let filled = chunk.len() as u64;
            batch.push((
                key,
                Located {
                    offset: plan.size,
                    size: filled,
                    seal: seal_key,
                    chunk_size,
                },
            ));
            plan.chunks.push(Entry(key, filled, seal_key));
            plan.size += filled;
        }
        if !batch.is_empty() && !planned(batch, first_index) {
            break;
        }
    }
    Ok(plan)
}

/// Stores a file; the root key names it in the network.
pub async fn put(opts: &PutOptions) -> Result<PutReport, FilesError> {
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&opts.chunk_size) {
        return Err(FilesError::ChunkSize(opts.chunk_size));
    }
    let block_size = opts.chunk_size;
    // A sealed chunk's block is its bytes and a tag: the chunk is that much
    // smaller, so that no block exceeds the block size (1 MiB for the nodes).
    let chunk_size = match opts.seal {
        Some(_) => block_size - seal::TAG_LEN as u64,
        None => block_size,
    };
    let path = opts.file.clone();
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let file_len = file.metadata().map_err(io(&path))?.len();
    let reader = file.try_clone().map_err(io(&path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let source = Arc::new(FileSource::new(file, path.clone(), HashMap::new()));
    // The file is planned (read, sealed, hashed) on the blocking pool while
    // the nodes pull the chunks planned so far: the transfer does not wait
    // for the last chunk's hash to send the first.
    let (to_store, mut planned) = tokio::sync::mpsc::channel::<Vec<Planned>>(PLANNED_AHEAD);
    let planning = {
        let (source, secret) = (source.clone(), opts.seal.clone());
        tokio::task::spawn_blocking(move || {
            plan(
                &reader,
                &path,
                chunk_size,
                secret.as_ref(),
                |batch, first| {
                    let mut sent = Vec::with_capacity(batch.len());
                    for (i, (key, at)) in batch.into_iter().enumerate() {
                        source.locate(key, at);
                        sent.push((first + i, key, at.size));
                    }
                    to_store.blocking_send(sent).is_ok()
                },
            )
        })
    };
    let replicas = opts.replicas.max(1);
    let session = Session::start(&opts.bootstrap, source.clone(), replicas.max(7)).await?;
    let mut early: Vec<Planned> = Vec::new();
    // By default, one wide lookup counts the nodes a chunk's shards would
    // spread over; a small file or network is replicated instead.
    let code = redundancy::needs_count(opts.redundancy, file_len);
    let first = match code {
        Some(_) => {
            early.extend(planned.recv().await.unwrap_or_default());
            early.first().map(|p| p.1)
        }
        None => None,
    };
    let seen = match (code, first) {
        (Some(code), Some(first)) => Some(
            session
                .node
                .lookup_wide(first, code.n())
                .await
                .closest
                .len(),
        ),
        _ => None,
    };
    let chosen = redundancy::choose(opts.redundancy, file_len, seen);
    // A small file replicated is what anyone expects; a large one on a
    // small network is worth a word.
    if let (
        Chosen::Replicas {
            why: Some(why @ Why::FewNodes { .. }),
        },
        false,
    ) = (&chosen, opts.quiet)
    {
        eprintln!("storing {replicas} replicas of each chunk rather than erasure-coding: {why}");
    }
    let ec = match chosen {
        Chosen::Coded(code) => Some(code),
        Chosen::Replicas { .. } => None,
    };

    let progress = Progress::start("put", file_len, file_len.div_ceil(chunk_size), opts.quiet);
    let counters = progress.counters.clone();
    let mut failed = Vec::new();
    let mut under = 0;
    let placement = Placement::default();
    // Chunks first, many at a time; the manifest only once they are all in.
    let stored = match ec {
        None => {
            let results = store_all(
                &session.node,
                (early, &mut planned),
                (replicas, opts.parallel.max(1)),
                &counters,
                &placement,
            )
            .await;
            for (index, key, outcome) in results {
                match outcome {
                    Ok(saved) if saved < replicas => under += 1,
                    Ok(_) => {}
                    Err(why) => failed.push((index, key, why)),
                }
            }
            None
        }
        Some(code) => {
            // A striped put takes the whole plan first.
            let mut all = early;
            while let Some(batch) = planned.recv().await {
                all.extend(batch);
            }
            let mut distinct: Vec<(usize, Id)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut sizes: HashMap<Id, u64> = HashMap::new();
            for (index, key, size) in all {
                if seen.insert(key) {
                    distinct.push((index, key));
                    sizes.insert(key, size);
                }
            }
            let how = super::put_striped::Striping {
                code,
                shard_copies: opts.shard_copies.clamp(1, replicas),
                stripe_copies: replicas,
                parallel: opts.parallel.max(1),
            };
            let stripes = super::put_striped::store_striped(
                &session.node,
                &source,
                &distinct,
                &how,
                (&counters, &placement),
                &sizes,
            )
            .await;
            let mut stripe_of = HashMap::new();
            for (index, key, outcome) in stripes {
                match outcome {
                    Ok((stripe, short)) => {
                        under += short;
                        stripe_of.insert(key, stripe);
                    }
                    Err(why) => failed.push((index, key, why)),
                }
            }
            Some(stripe_of)
        }
    };
    drop(planned);
    let planned = planning.await.map_err(|e| FilesError::Io {
        path: opts.file.clone(),
        source: std::io::Error::other(e.to_string()),
    });
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(e)) | Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    if !failed.is_empty() {
        session.close().await;
        failed.sort_by_key(|f| f.0);
        return Err(FilesError::StoreFailed(failed));
    }
    let entries: Vec<Entry> = match &stored {
        None => plan.chunks.clone(),
        Some(stripe_of) => plan
            .chunks
            .iter()
            .map(|e| Entry(stripe_of.get(&e.0).copied().unwrap_or(Id::ZERO), e.1, e.2))
            .collect(),
    };
    // Manifest blocks are no larger than a chunk, so small chunk sizes make trees.
    let built = manifest::build(
        name.as_deref(),
        chunk_size,
        &entries,
        block_size as usize,
        opts.seal.as_ref(),
        ec.is_some(),
        &plan.head,
    );
    for (key, bytes) in &built.blocks {
        source.add(*key, bytes.clone());
    }
    for (key, _) in &built.blocks {
        match store_block(&session.node, *key, (replicas, 0), &counters, &placement).await {
            Ok(saved) if saved < replicas => under += 1,
            Ok(_) => {}
            Err(why) => failed.push((usize::MAX, *key, format!("manifest block: {why}"))),
        }
    }
    session.close().await;
    if !failed.is_empty() {
        return Err(FilesError::StoreFailed(failed));
    }
    let mut summary = progress.finish();
    match ec {
        Some(code) => summary.push_str(&format!(", erasure-coded {code}")),
        None => summary.push_str(&format!(", {replicas} replicas")),
    }
    if under > 0 {
        summary.push_str(&format!(", {under} blocks on fewer than {replicas} nodes"));
    }
    let file = match built.root_key {
        Some(key) => FileRef::Sealed(Capability {
            root: built.root,
            key,
        }),
        None => FileRef::Plain(built.root),
    };
    Ok(PutReport {
        root: built.root,
        file,
        size: plan.size,
        ec,
        chunks: entries,
        under_replicated: under,
        summary,
    })
}

/// Stores each distinct chunk as the plan hands it over (`early` first,
/// then what comes from `planned` until the plan is done), `parallel` at
/// a time, each on `replicas` nodes.
async fn store_all(
    node: &Node,
    (early, planned): (Vec<Planned>, &mut tokio::sync::mpsc::Receiver<Vec<Planned>>),
    (replicas, parallel): (usize, usize),
    counters: &Arc<Counters>,
    placement: &Placement,
) -> Vec<(usize, Id, Result<usize, String>)> {
    let mut out = Vec::new();
    let mut running = JoinSet::new();
    let mut queue: std::collections::VecDeque<Planned> = early.into();
    let mut seen = std::collections::HashSet::new();
    let mut planning = true;
    loop {
        while running.len() < parallel {
            let Some((index, key, size)) = queue.pop_front() else {
                break;
            };
            if !seen.insert(key) {
                continue;
            }
            let (node, counters, placement) = (node.clone(), counters.clone(), placement.clone());
            running.spawn(async move {
                let r = store_block(&node, key, (replicas, 0), &counters, &placement).await;
                if r.is_ok() {
                    Counters::add(&counters.bytes, size);
                    Counters::add(&counters.chunks, 1);
                }
                (index, key, r)
            });
        }
        if running.is_empty() && queue.is_empty() && !planning {
            break;
        }
        tokio::select! {
            batch = planned.recv(), if planning && queue.is_empty() => match batch {
                Some(batch) => queue.extend(batch),
                None => planning = false,
            },
            joined = running.join_next(), if !running.is_empty() => match joined {
                Some(Ok(r)) => out.push(r),
                Some(Err(e)) => tracing::warn!(error = %e, "store task failed"),
                None => {}
            },
        }
    }
    out
}

/// Stores `key` on up to `replicas` of the closest nodes, moving on to the
/// next closest when one fails, asking each to keep it on `copies` nodes
/// (0: the network's K). Ok(number saved), or why none saved it.
pub(super) async fn store_block(
    node: &Node,
    key: Id,
    (replicas, copies): (usize, u8),
    counters: &Counters,
    placement: &Placement,
) -> Result<usize, String> {
    // A block kept on fewer nodes than K (a shard) needs only its closest
    // few and a spare or two; the rest its K closest.
    let want = match copies {
        0 => node.config().lookup.k,
        c => usize::from(c) + NARROW_SPARE,
    };
    let candidates = node.closest_in_region(key, want, placement).await;
    if candidates.is_empty() {
        return Err("the lookup found no nodes".into());
    }
    let mut queue = candidates.into_iter();
    let mut running: JoinSet<(Contact, Result<(), RequestError>, u64)> = JoinSet::new();
    let spawn = |running: &mut JoinSet<_>, c: Contact| {
        let node = node.clone();
        running.spawn(async move {
            let (r, retries) = store_with_retry(&node, &c, key, copies).await;
            (c, r, retries)
        });
    };
    for c in queue.by_ref().take(replicas) {
        spawn(&mut running, c);
    }
    let (mut saved, mut last_error) = (0, String::new());
    while let Some(joined) = running.join_next().await {
        let Ok((contact, result, retries)) = joined else {
            continue;
        };
        Counters::add(&counters.retries, retries);
        match result {
            Ok(()) => {
                saved += 1;
                counters.peer(contact.addr);
            }
            Err(e) => {
                last_error = format!("{}: {e}", contact.addr);
                if let Some(next) = queue.next() {
                    spawn(&mut running, next);
                }
            }
        }
    }
    if saved == 0 {
        Err(format!("every candidate failed, last {last_error}"))
    } else {
        Ok(saved)
    }
}

/// One node, a few tries: a timeout or a "busy" answer is worth another go.
async fn store_with_retry(
    node: &Node,
    to: &Contact,
    key: Id,
    copies: u8,
) -> (Result<(), RequestError>, u64) {
    let mut retries = 0;
    loop {
        let r = node.store_copies_rpc(to, key, copies).await;
        let retry = match &r {
            Err(RequestError::Timeout(_)) | Err(RequestError::Busy) => true,
            Err(RequestError::Remote(text)) => text.starts_with("busy"),
            _ => false,
        };
        if !retry || retries >= 3 {
            return (r, retries);
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(100 * retries)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn the_plan_hands_over_every_chunk_in_order_as_it_keys_them() {
        let chunk = 4096u64;
        // Nine and a half chunks, the fourth a repeat of the first.
        let mut bytes: Vec<u8> = (0..chunk * 19 / 2).map(|i| (i * 31 % 251) as u8).collect();
        let first = bytes[..chunk as usize].to_vec();
        bytes[3 * chunk as usize..4 * chunk as usize].copy_from_slice(&first);
        let (_dir, path) = file_of(&bytes);
        let file = std::fs::File::open(&path).unwrap();
        let mut handed: Vec<(usize, Id, Located)> = Vec::new();
        let plan = plan(&file, &path, chunk, None, |batch, first| {
            for (i, (key, at)) in batch.into_iter().enumerate() {
                handed.push((first + i, key, at));
            }
            true
        })
        .unwrap();
        assert_eq!(plan.size, bytes.len() as u64);
        assert_eq!(plan.chunks.len(), 10);
        assert_eq!(handed.len(), 10, "every chunk handed over once");
        for (n, (index, key, at)) in handed.iter().enumerate() {
            assert_eq!(*index, n);
            let start = n as u64 * chunk;
            let end = (start + chunk).min(bytes.len() as u64);
            assert_eq!((at.offset, at.size), (start, end - start));
            assert_eq!(*key, Id::of_block(&bytes[start as usize..end as usize]));
            assert_eq!(plan.chunks[n].0, *key);
        }
        assert_eq!(handed[3].1, handed[0].1, "a repeated chunk keeps its key");
        assert_eq!(plan.head, bytes[..manifest::HEAD_MAX.min(chunk as usize)]);
    }

    #[test]
    fn the_plan_stops_reading_once_nobody_wants_more() {
        let chunk = 4096u64;
        let bytes = vec![5u8; chunk as usize * 64];
        let (_dir, path) = file_of(&bytes);
        let file = std::fs::File::open(&path).unwrap();
        let mut batches = 0;
        let plan = plan(&file, &path, chunk, None, |_, _| {
            batches += 1;
            false
        })
        .unwrap();
        assert_eq!(batches, 1);
        assert!(
            plan.chunks.len() <= planners(),
            "read no further than one batch"
        );
    }
}
