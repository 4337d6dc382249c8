//! `dhtfs get`: resolve the manifest, then fetch chunks many at a time from
//! any node that holds them, verify each, and write it at its offset as it
//! arrives. Writes go to `OUT.part`, renamed to `OUT` once every chunk is
//! verified; a rerun resumes from the verified chunks already there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::progress::{Counters, Progress};
use super::session::Session;
use super::source::NoBlocks;
use super::{io, FilesError};
use crate::id::Id;
use crate::lookup::LookupKind;
use crate::manifest::{self, Body, Entry, Manifest, MAX_DEPTH};
use crate::node::FetchError;

/// Largest block a get accepts (the nodes' limit).
const MAX_BLOCK: u64 = 1 << 20;
/// Lookups per chunk that find nothing new before giving up on it.
const ROUNDS: u32 = 3;
/// Lookups per chunk at most, however many liars they unmask.
const MAX_ROUNDS: u32 = 16;

/// What to get and how.
#[derive(Clone, Debug)]
pub struct GetOptions {
    /// The file's root key (or give `hashfile`).
    pub root: Option<Id>,
    /// The original's hash file listing the chunks.
    pub hashfile: Option<PathBuf>,
    pub out: PathBuf,
    pub bootstrap: Vec<SocketAddr>,
    /// Chunks in flight at once.
    pub parallel: usize,
    pub quiet: bool,
    /// Stop after fetching this many chunks (to test resuming).
    pub stop_after: Option<usize>,
}

impl GetOptions {
    /// Defaults: the local daemon, 32 chunks in flight.
    pub fn new(root: Id, out: PathBuf) -> GetOptions {
        GetOptions {
            root: Some(root),
            hashfile: None,
            out,
            bootstrap: vec![SocketAddr::from(([127, 0, 0, 1], 7400))],
            parallel: 32,
            quiet: false,
            stop_after: None,
        }
    }
}

/// What a get did.
#[derive(Clone, Debug)]
pub struct GetReport {
    pub size: u64,
    pub chunks: usize,
    /// Distinct chunks fetched over the network this run.
    pub fetched: usize,
    /// Distinct chunks found already verified in `OUT.part`.
    pub reused: usize,
    /// Chunks whose bytes did not match their key, from any peer.
    pub rejected: u64,
    pub retries: u64,
    pub summary: String,
}

/// Where one chunk goes: its key, size and every offset it appears at.
struct Want {
    index: usize,
    key: Id,
    size: u64,
    offsets: Vec<u64>,
}

/// Fetches a file into `opts.out`.
pub async fn get(opts: &GetOptions) -> Result<GetReport, FilesError> {
    let session = Session::start(&opts.bootstrap, Arc::new(NoBlocks), 7).await?;
    let result = run(&session, opts).await;
    session.close().await;
    result
}

async fn run(session: &Session, opts: &GetOptions) -> Result<GetReport, FilesError> {
    let bad_peers = Arc::new(Mutex::new(HashSet::new()));
    let chunks = match (&opts.hashfile, opts.root) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            manifest::parse_hashfile(&text)?
        }
        (None, Some(root)) => resolve(session, root, &bad_peers).await?,
        (None, None) => return Err(FilesError::RootNotFound(Id::ZERO)),
    };
    if let Some(Entry(key, size)) = chunks.iter().find(|e| e.1 > MAX_BLOCK) {
        return Err(manifest::ManifestError::Inconsistent {
            key: *key,
            why: format!("chunk of {size} bytes is over the {MAX_BLOCK}-byte block limit"),
        }
        .into());
    }
    let size: u64 = chunks.iter().map(|e| e.1).sum();
    let mut wants: Vec<Want> = Vec::new();
    let mut by_key: HashMap<Id, usize> = HashMap::new();
    let mut offset = 0;
    for (index, Entry(key, len)) in chunks.iter().enumerate() {
        match by_key.get(key) {
            Some(&w) => wants[w].offsets.push(offset),
            None => {
                by_key.insert(*key, wants.len());
                wants.push(Want {
                    index,
                    key: *key,
                    size: *len,
                    offsets: vec![offset],
                });
            }
        }
        offset += len;
    }

    let part = part_path(&opts.out);
    let (file, done) = {
        let (part, wants_view): (PathBuf, Vec<(Id, u64, u64)>) = (
            part.clone(),
            wants
                .iter()
                .map(|w| (w.key, w.size, w.offsets[0]))
                .collect(),
        );
        tokio::task::spawn_blocking(move || open_part(&part, size, &wants_view))
            .await
            .map_err(|e| FilesError::Io {
                path: opts.out.clone(),
                source: std::io::Error::other(e.to_string()),
            })??
    };
    let file = Arc::new(file);
    let reused = done.len();
    let todo: Vec<Want> = wants
        .into_iter()
        .filter(|w| !done.contains(&w.key))
        .collect();

    let progress = Progress::start("get", size, chunks.len() as u64, opts.quiet);
    let counters = progress.counters.clone();
    let reused_bytes: u64 = chunks
        .iter()
        .filter(|e| done.contains(&e.0))
        .map(|e| e.1)
        .sum();
    Counters::add(&counters.bytes, reused_bytes);
    Counters::add(
        &counters.chunks,
        chunks.iter().filter(|e| done.contains(&e.0)).count() as u64,
    );

    let fetched = fetch_all(session, opts, todo, &file, &counters, &bad_peers, &part).await?;
    let (part2, out) = (part.clone(), opts.out.clone());
    tokio::task::spawn_blocking(move || finish(&file, &part2, &out))
        .await
        .map_err(|e| FilesError::Io {
            path: opts.out.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let mut summary = progress.finish();
    if reused > 0 {
        summary.push_str(&format!(", {reused} chunks reused from {}", part.display()));
    }
    Ok(GetReport {
        size,
        chunks: chunks.len(),
        fetched,
        reused,
        rejected: Counters::get(&counters.rejected),
        retries: Counters::get(&counters.retries),
        summary,
    })
}

async fn fetch_all(
    session: &Session,
    opts: &GetOptions,
    todo: Vec<Want>,
    file: &Arc<File>,
    counters: &Arc<Counters>,
    bad_peers: &Arc<Mutex<HashSet<SocketAddr>>>,
    part: &Path,
) -> Result<usize, FilesError> {
    let mut running = JoinSet::new();
    let mut queue = todo.into_iter();
    let mut fetched = 0;
    loop {
        while running.len() < opts.parallel.max(1) {
            let Some(want) = queue.next() else { break };
            let (s_node, s_client) = (session.node.clone(), session.client.clone());
            let (file, counters, bad) = (file.clone(), counters.clone(), bad_peers.clone());
            running.spawn(async move {
                let data =
                    fetch_block(&s_node, &s_client, want.key, want.size, &bad, &counters).await;
                let data = match data {
                    Ok(d) => d,
                    Err(why) => return Err((want.index, want.key, why)),
                };
                let offsets = want.offsets.clone();
                let written = tokio::task::spawn_blocking(move || {
                    offsets.iter().try_for_each(|&o| {
                        file.write_all_at(&data, o)?;
                        start_writeback(&file, o, data.len() as u64);
                        Ok::<(), std::io::Error>(())
                    })
                })
                .await;
                match written {
                    Ok(Ok(())) => {
                        Counters::add(&counters.bytes, want.size * want.offsets.len() as u64);
                        Counters::add(&counters.chunks, want.offsets.len() as u64);
                        Ok(())
                    }
                    Ok(Err(e)) => Err((want.index, want.key, format!("writing it failed: {e}"))),
                    Err(e) => Err((want.index, want.key, e.to_string())),
                }
            });
        }
        match running.join_next().await {
            Some(Ok(Ok(()))) => {
                fetched += 1;
                if opts.stop_after.is_some_and(|n| fetched >= n) {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    let _ = file.sync_all();
                    return Err(FilesError::Interrupted(fetched));
                }
            }
            Some(Ok(Err((index, key, why)))) => {
                running.abort_all();
                while running.join_next().await.is_some() {}
                let _ = file.sync_all();
                tracing::debug!(part = %part.display(), "keeping the part file to resume from");
                return Err(FilesError::ChunkNotFound {
                    index,
                    key,
                    why,
                    out: opts.out.clone(),
                });
            }
            Some(Err(e)) => tracing::warn!(error = %e, "fetch task failed"),
            None => return Ok(fetched),
        }
    }
}

/// Fetches one block from whichever node has it, verified. A node that sends
/// bytes that do not match is avoided for the rest of the transfer.
pub(super) async fn fetch_block(
    node: &crate::node::Node,
    client: &crate::net::TcpClient,
    key: Id,
    max: u64,
    bad: &Mutex<HashSet<SocketAddr>>,
    counters: &Counters,
) -> Result<Vec<u8>, String> {
    let mut last = String::from("no node holds it");
    // A round that unmasks a liar is free: liars are each caught once, and a
    // network with many of them must not exhaust the honest tries.
    let (mut failed_rounds, mut rounds) = (0, 0);
    while failed_rounds < ROUNDS && rounds < MAX_ROUNDS {
        if failed_rounds > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(failed_rounds))).await;
        }
        rounds += 1;
        let mut caught = false;
        // Peers caught sending bad bytes are neither asked nor believed.
        let avoid = bad.lock().map(|b| b.clone()).unwrap_or_default();
        let found = node
            .lookup_avoiding(key, LookupKind::FindValue, &avoid)
            .await;
        // Holders first, then the closest nodes: replicas live there too.
        let mut candidates = found.holders;
        candidates.extend(found.closest);
        let mut seen = HashSet::new();
        for c in candidates {
            if !seen.insert(c.addr) || bad.lock().is_ok_and(|b| b.contains(&c.addr)) {
                continue;
            }
            match client.fetch(c.addr, key, max).await {
                Ok(data) if Id::of_block(&data) == key => {
                    counters.peer(c.addr);
                    return Ok(data);
                }
                Ok(_) => {
                    Counters::add(&counters.rejected, 1);
                    tracing::warn!(peer = %c.addr, key = %key, "peer sent bytes that do not match the key; avoiding it");
                    if let Ok(mut b) = bad.lock() {
                        caught |= b.insert(c.addr);
                    }
                    last = format!("{} sent bad bytes", c.addr);
                }
                Err(FetchError::Absent) => {}
                Err(e) => {
                    Counters::add(&counters.retries, 1);
                    last = format!("{}: {e}", c.addr);
                }
            }
        }
        if !caught {
            failed_rounds += 1;
        }
    }
    Err(last)
}

/// Fetches the root manifest and, for a tree, every part, in file order.
async fn resolve(
    session: &Session,
    root: Id,
    bad: &Mutex<HashSet<SocketAddr>>,
) -> Result<Vec<Entry>, FilesError> {
    let counters = Counters::default();
    let counters = &counters;
    let fetch = |key: Id| async move {
        fetch_block(
            &session.node,
            &session.client,
            key,
            MAX_BLOCK,
            bad,
            counters,
        )
        .await
    };
    let bytes = fetch(root)
        .await
        .map_err(|_| FilesError::RootNotFound(root))?;
    let top = Manifest::parse(root, &bytes)?;
    let chunk_size = top.chunk_size;
    let mut out = Vec::new();
    // Depth-first, in order: (entries still to expand at each level).
    let mut stack: Vec<std::vec::IntoIter<Entry>> = Vec::new();
    match top.body {
        Body::Chunks(c) => return Ok(c),
        Body::Parts(p) => stack.push(p.into_iter()),
    }
    while let Some(level) = stack.last_mut() {
        let Some(Entry(key, covered)) = level.next() else {
            stack.pop();
            continue;
        };
        if stack.len() >= MAX_DEPTH {
            return Err(manifest::ManifestError::TooDeep { root }.into());
        }
        let bytes = fetch(key).await.map_err(|why| FilesError::ChunkNotFound {
            index: out.len(),
            key,
            why: format!("manifest part: {why}"),
            out: PathBuf::new(),
        })?;
        let m = Manifest::parse(key, &bytes)?;
        if m.size != covered || m.chunk_size != chunk_size {
            return Err(manifest::ManifestError::Inconsistent {
                key,
                why: format!(
                    "covers {} bytes in {}-byte chunks, its parent says {covered} in {chunk_size}",
                    m.size, m.chunk_size
                ),
            }
            .into());
        }
        match m.body {
            Body::Chunks(c) => out.extend(c),
            Body::Parts(p) => stack.push(p.into_iter()),
        }
    }
    Ok(out)
}

/// Asks the kernel to start writing a range to disk now, without waiting, so
/// the fsync before the rename finds little left to do: the disk works while
/// the network does.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its arguments; the fd is open for
    // as long as `file` lives. A failure is harmless: the final fsync covers it.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn part_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".part");
    PathBuf::from(name)
}

/// Opens `OUT.part` at the file's size; when it already was that size,
/// returns the chunks in it that verify, so they are not fetched again.
fn open_part(
    part: &Path,
    size: u64,
    wants: &[(Id, u64, u64)],
) -> Result<(File, HashSet<Id>), FilesError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(io(part))?;
    let existing = file.metadata().map_err(io(part))?.len();
    let mut done = HashSet::new();
    if existing == size && size > 0 {
        let mut buf = Vec::new();
        for &(key, len, offset) in wants {
            buf.resize(len as usize, 0);
            if file.read_exact_at(&mut buf, offset).is_ok() && Id::of_block(&buf) == key {
                done.insert(key);
            }
        }
    } else {
        file.set_len(size).map_err(io(part))?;
    }
    Ok((file, done))
}

/// Makes the verified file durable and gives it its name.
fn finish(file: &File, part: &Path, out: &Path) -> Result<(), FilesError> {
    file.sync_all().map_err(io(part))?;
    std::fs::rename(part, out).map_err(io(out))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
