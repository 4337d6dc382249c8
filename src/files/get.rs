//! `dhtfs get`: resolve the manifest, then fetch chunks many at a time from
//! any node that holds them, verify each, and write it at its offset as it
//! arrives. Writes go to `OUT.part`, renamed to `OUT` once every chunk is
//! verified; a rerun resumes from the verified chunks already there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::direct::{Output, Wrote};
use super::fetch::{block_len, check_head, fetch_block, open_chunk, resolve, Fetcher, MAX_BLOCK};
use super::file_ref::FileRef;
use super::progress::{Counters, Progress};
use super::session::Session;
use super::source::NoBlocks;
use super::{io, FilesError};
use crate::id::Id;
use crate::manifest::{self, Entry};
use crate::node::Transfer;
use crate::seal;
use crate::stripe::{Stripe, MAX_STRIPE_BLOCK};

/// A file of this many chunks or more is fetched by region (see
/// `Transfer::ask_by_region`); an erasure-coded one always, since each of
/// its chunks is n shards.
const BY_REGION_FROM: usize = 16;
/// A striped file's chunks in flight are this share of `parallel`.
const STRIPED_SHARE: usize = 4;

/// What to get and how.
#[derive(Clone, Debug)]
pub struct GetOptions {
    /// The file's root key or capability (or give `hashfile`).
    pub root: Option<FileRef>,
    /// The original's hash file listing the chunks.
    pub hashfile: Option<PathBuf>,
    pub out: PathBuf,
    pub bootstrap: Vec<SocketAddr>,
    /// Chunks in flight at once.
    pub parallel: usize,
    pub quiet: bool,
    /// Stop after fetching this many chunks (to test resuming).
    pub stop_after: Option<usize>,
    /// Make the file durable (fsync it and its directory) before it gets its
    /// name. Off by default, as with cp or curl: a crash may then leave a
    /// named file whose last writes were lost, or an `OUT.part`, which a
    /// rerun resumes, keeping only the chunks that verify.
    pub sync: bool,
}

impl GetOptions {
    /// Defaults: the local daemon, 32 chunks in flight.
    pub fn new(root: impl Into<FileRef>, out: PathBuf) -> GetOptions {
        GetOptions {
            root: Some(root.into()),
            hashfile: None,
            out,
            bootstrap: vec![SocketAddr::from(([127, 0, 0, 1], 7400))],
            parallel: 32,
            quiet: false,
            stop_after: None,
            sync: false,
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
    /// Asks started because an earlier one for the same chunk fell far behind.
    pub hedged: u64,
    pub summary: String,
}

/// Where one chunk goes: its entry (key, size, sealing key) and every
/// offset it appears at.
struct Want {
    index: usize,
    entry: Entry,
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
    // One transfer: a liar or slow peer met on one block is avoided for all.
    let transfer = Arc::new(Transfer::new());
    let (chunks, chunk_size, stripes, head) = match (&opts.hashfile, opts.root) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            (
                manifest::parse_hashfile(&text)?,
                MAX_BLOCK,
                false,
                Bytes::new(),
            )
        }
        (None, Some(root)) => {
            let counters = Counters::default();
            let fetch = |key| fetch_block(&session.node, key, MAX_BLOCK, &transfer, &counters);
            let resolved = resolve(root, fetch, |top| check_disk_room(&opts.out, top.size)).await?;
            (
                resolved.chunks,
                resolved.chunk_size,
                resolved.stripes,
                resolved.head,
            )
        }
        (None, None) => return Err(FilesError::RootNotFound(Id::ZERO)),
    };
    // Many blocks: one lookup a region of the keyspace, not one a block.
    if stripes || chunks.len() >= BY_REGION_FROM {
        transfer.ask_by_region();
    }
    if let Some(e) = chunks.iter().find(|e| block_len(e, chunk_size) > MAX_BLOCK) {
        return Err(manifest::ManifestError::Inconsistent {
            key: e.0,
            why: format!(
                "chunk of {} bytes is over the {MAX_BLOCK}-byte block limit",
                block_len(e, chunk_size)
            ),
        }
        .into());
    }
    let size: u64 = chunks.iter().map(|e| e.1).sum();
    if opts.hashfile.is_some() {
        check_disk_room(&opts.out, size)?;
    }
    let mut wants: Vec<Want> = Vec::new();
    let mut by_key: HashMap<Id, usize> = HashMap::new();
    let mut offset = 0;
    for (index, entry) in chunks.iter().enumerate() {
        match by_key.get(&entry.0) {
            Some(&w) => wants[w].offsets.push(offset),
            None => {
                by_key.insert(entry.0, wants.len());
                wants.push(Want {
                    index,
                    entry: *entry,
                    offsets: vec![offset],
                });
            }
        }
        offset += entry.1;
    }

    let part = part_path(&opts.out);
    // An erasure-coded file's entries name stripes, not the chunks' blocks:
    // a part file's chunks are checked against the blocks their stripes
    // name, fetched only when there is a part file to check.
    let blocks: Vec<Id> = match stripes && part_has_len(&part, size) {
        true => stripe_blocks(session, &wants, &transfer, opts.parallel).await,
        false => wants.iter().map(|w| w.entry.0).collect(),
    };
    let (file, done) = {
        let (part, wants_view): (PathBuf, Vec<(Entry, u64, Id)>) = (
            part.clone(),
            wants
                .iter()
                .zip(&blocks)
                .map(|(w, block)| (w.entry, w.offsets[0], *block))
                .collect(),
        );
        tokio::task::spawn_blocking(move || {
            open_part(&part, size, chunk_size, &wants_view)
                .map(|(file, done)| (Output::new(file, &part), done))
        })
        .await
        .map_err(|e| FilesError::Io {
            path: opts.out.clone(),
            source: std::io::Error::other(e.to_string()),
        })??
    };
    let file = Arc::new(file);
    let reused = done.len();
    let mut todo: Vec<Want> = wants
        .into_iter()
        .filter(|w| !done.contains(&w.entry.0))
        .collect();
    // A file no longer than its root's head is all in the verified root:
    // no chunk needs fetching.
    let from_head = size > 0 && head.len() as u64 == size && !todo.is_empty();
    if from_head {
        let (out, head) = (file.clone(), head.clone());
        tokio::task::spawn_blocking(move || out.buffered.write_all_at(&head, 0))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|written| written)
            .map_err(io(&part))?;
        todo.clear();
    }

    let progress = Progress::start("get", size, chunks.len() as u64, opts.quiet);
    let counters = progress.counters.clone();
    let have = |e: &&Entry| from_head || done.contains(&e.0);
    let had_bytes: u64 = chunks.iter().filter(have).map(|e| e.1).sum();
    Counters::add(&counters.bytes, had_bytes);
    Counters::add(&counters.chunks, chunks.iter().filter(have).count() as u64);

    let fetched = fetch_all(
        session,
        opts,
        (todo, chunk_size, stripes, head),
        &file,
        &counters,
        &transfer,
        &part,
    )
    .await?;
    let (part2, out, sync) = (part.clone(), opts.out.clone(), opts.sync);
    tokio::task::spawn_blocking(move || finish(&file.buffered, &part2, &out, sync))
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
        hedged: Counters::get(&counters.hedged),
        summary,
    })
}

async fn fetch_all(
    session: &Session,
    opts: &GetOptions,
    (todo, chunk_size, stripes, head): (Vec<Want>, u64, bool, Bytes),
    file: &Arc<Output>,
    counters: &Arc<Counters>,
    transfer: &Arc<Transfer>,
    part: &Path,
) -> Result<usize, FilesError> {
    let mut running = JoinSet::new();
    let mut queue = todo.into_iter();
    let mut fetched = 0;
    // Whether every chunk's fetch has started.
    let mut drained = false;
    let sync = opts.sync;
    // A striped chunk is k and some spare fetches of its shards at once:
    // fewer chunks in flight keep the fetches near a replicated get's
    // (measured, 12 nodes, 10/20: 195 MiB/s at 8 chunks, 82 at 16, 15-75 at 32).
    let window = match stripes {
        true => opts.parallel.div_ceil(STRIPED_SHARE),
        false => opts.parallel,
    };
    loop {
        while running.len() < window.max(1) {
            let Some(want) = queue.next() else {
                drained = true;
                break;
            };
            let fetcher = Fetcher {
                node: session.node.clone(),
                transfer: transfer.clone(),
                counters: counters.clone(),
            };
            let (file, counters, head) = (file.clone(), counters.clone(), head.clone());
            running.spawn(async move {
                let key = want.entry.0;
                let data = fetcher.chunk(&want.entry, chunk_size, stripes).await;
                let data = match data {
                    Ok(d) => d,
                    Err(why) => return Err((want.index, key, why.to_string())),
                };
                let (offsets, entry) = (want.offsets.clone(), want.entry);
                let sync = sync;
                let written = tokio::task::spawn_blocking(move || {
                    // Opened (a sealed chunk) off the runtime, beside the write.
                    let data = open_chunk(&entry, chunk_size, data).map_err(Err)?;
                    check_head(&head, want.index, &data).map_err(Err)?;
                    offsets
                        .iter()
                        .try_for_each(|&o| {
                            // A direct write is on the disk already.
                            if file.write_at(&data, o)? == Wrote::Buffered && sync {
                                start_writeback(&file.buffered, o, data.len() as u64);
                            }
                            Ok::<(), std::io::Error>(())
                        })
                        .map_err(Ok)
                })
                .await;
                match written {
                    Ok(Ok(())) => {
                        Counters::add(&counters.bytes, want.entry.1 * want.offsets.len() as u64);
                        Counters::add(&counters.chunks, want.offsets.len() as u64);
                        Ok(())
                    }
                    Ok(Err(Ok(e))) => Err((want.index, key, format!("writing it failed: {e}"))),
                    Ok(Err(Err(why))) => Err((want.index, key, why)),
                    Err(e) => Err((want.index, key, e.to_string())),
                }
            });
        }
        // The last few chunks in flight: the links have room for hedges,
        // and one stalled chunk is all the get would wait on.
        if drained && running.len() <= (window / 4).max(1) {
            transfer.enter_endgame();
        }
        match running.join_next().await {
            Some(Ok(Ok(()))) => {
                fetched += 1;
                if opts.stop_after.is_some_and(|n| fetched >= n) {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    let _ = file.buffered.sync_all();
                    return Err(FilesError::Interrupted(fetched));
                }
            }
            Some(Ok(Err((index, key, why)))) => {
                running.abort_all();
                while running.join_next().await.is_some() {}
                let _ = file.buffered.sync_all();
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

/// Refuses a file of `size` bytes when the disk `out` goes to has less free
/// (counting what an `OUT.part` being resumed already holds).
fn check_disk_room(out: &Path, size: u64) -> Result<(), FilesError> {
    use std::os::unix::fs::MetadataExt;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let space = crate::store::disk_space(dir).map_err(io(dir))?;
    let held = std::fs::metadata(part_path(out))
        .map(|m| m.blocks().saturating_mul(512))
        .unwrap_or(0);
    let needed = size.saturating_sub(held);
    if needed > space.available {
        return Err(FilesError::NoRoom {
            out: out.to_path_buf(),
            size,
            free: space.available,
        });
    }
    Ok(())
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
/// returns the chunks in it that verify, so they are not fetched again (a
/// sealed chunk verifies when sealing it again gives its block).
/// Whether `part` is there and `size` bytes long: a part file to resume.
fn part_has_len(part: &Path, size: u64) -> bool {
    size > 0 && std::fs::metadata(part).is_ok_and(|m| m.len() == size)
}

/// The block each of an erasure-coded file's chunks is, as its stripe
/// names it ([`Id::ZERO`] where the stripe could not be had: that chunk is
/// fetched again).
async fn stripe_blocks(
    session: &Session,
    wants: &[Want],
    transfer: &Arc<Transfer>,
    parallel: usize,
) -> Vec<Id> {
    use futures::stream::{self, StreamExt};
    let fetcher = Fetcher {
        node: session.node.clone(),
        transfer: transfer.clone(),
        counters: Arc::default(),
    };
    stream::iter(wants.iter().map(|w| {
        let (fetcher, key) = (fetcher.clone(), w.entry.0);
        async move {
            let bytes = fetcher.block(key, MAX_STRIPE_BLOCK).await.ok()?;
            Stripe::parse(key, &bytes).ok().map(|s| s.block)
        }
    }))
    .buffered(parallel.max(1))
    .map(|block| block.unwrap_or(Id::ZERO))
    .collect()
    .await
}

/// Opens (or makes) the part file; when it is already `size` bytes, the
/// chunks in it that verify: each want is its entry, its first offset, and
/// the block id its bytes must make (the entry's key, or for a stripe the
/// block the stripe names).
fn open_part(
    part: &Path,
    size: u64,
    chunk_size: u64,
    wants: &[(Entry, u64, Id)],
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
        for &(Entry(key, len, seal_key), offset, block) in wants {
            buf.resize(len as usize, 0);
            if file.read_exact_at(&mut buf, offset).is_err() {
                continue;
            }
            let block_id = match &seal_key {
                None => Id::of_block(&buf),
                Some(k) => Id::of_block(&seal::reseal_chunk(k, &buf, chunk_size)),
            };
            if block_id == block && block != Id::ZERO {
                done.insert(key);
            }
        }
    } else {
        file.set_len(size).map_err(io(part))?;
    }
    Ok((file, done))
}

/// Gives the verified file its name; with `sync`, makes it durable first
/// and the name after.
fn finish(file: &File, part: &Path, out: &Path, sync: bool) -> Result<(), FilesError> {
    if sync {
        file.sync_all().map_err(io(part))?;
    }
    std::fs::rename(part, out).map_err(io(out))?;
    if let Some(dir) = out.parent().filter(|d| sync && !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::fetch::expand;
    use super::*;
    use crate::manifest::{build, Body, Manifest, ManifestError, MAX_DEPTH};

    /// Expands `root` from an in-memory set of blocks, counting fetches.
    fn expand_from(
        root: Id,
        blocks: &HashMap<Id, Vec<u8>>,
        fetches: &AtomicUsize,
    ) -> Result<Vec<Entry>, FilesError> {
        let top = Manifest::parse(root, &blocks[&root]).unwrap();
        let fetch = |key: Id| {
            fetches.fetch_add(1, Ordering::SeqCst);
            let found = blocks
                .get(&key)
                .cloned()
                .ok_or_else(|| "absent".to_string());
            async move { found }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(expand(root, top, fetch))
    }

    #[test]
    fn each_child_manifest_is_fetched_once() {
        // A file of one repeated chunk: every leaf (and every inner node but
        // the last of each level) is the same block.
        let chunk = Entry::plain(Id::of_block(b"zeros"), 4096);
        let chunks = vec![chunk; 20_000];
        let built = build(None, 4096, &chunks, 4096, None, false, &[]);
        let blocks: HashMap<Id, Vec<u8>> = built.blocks.iter().cloned().collect();
        assert!(
            blocks.len() < 20,
            "{} distinct manifest blocks",
            blocks.len()
        );
        let fetches = AtomicUsize::new(0);
        let out = expand_from(built.root, &blocks, &fetches).unwrap();
        assert_eq!(out, chunks);
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            blocks.len() - 1,
            "each distinct part once, the root not again"
        );
    }

    /// A tree node over `parts` (key, bytes covered) in 4 KiB chunks.
    fn parts_block(parts: &[(Id, u64)]) -> (Id, Vec<u8>) {
        let entries = parts.iter().map(|&(k, c)| Entry::plain(k, c)).collect();
        let m = Manifest {
            name: None,
            size: parts.iter().map(|p| p.1).sum(),
            chunk_size: 4096,
            stripes: false,
            body: Body::Parts(entries),
            head: Vec::new(),
        };
        let bytes = m.encode();
        (Id::of_block(&bytes), bytes)
    }

    /// A leaf manifest of one 4 KiB chunk, carrying `head`.
    fn one_chunk_leaf(head: Vec<u8>) -> Vec<u8> {
        Manifest {
            name: None,
            size: 4096,
            chunk_size: 4096,
            stripes: false,
            body: Body::Chunks(vec![Entry::plain(Id::of_block(b"c"), 4096)]),
            head,
        }
        .encode()
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused() {
        let leaf = one_chunk_leaf(Vec::new());
        let mut blocks = HashMap::new();
        let mut key = Id::of_block(&leaf);
        blocks.insert(key, leaf);
        for _ in 0..MAX_DEPTH + 1 {
            let (k, bytes) = parts_block(&[(key, 4096)]);
            blocks.insert(k, bytes);
            key = k;
        }
        let fetches = AtomicUsize::new(0);
        let err = expand_from(key, &blocks, &fetches).unwrap_err();
        assert!(
            matches!(err, FilesError::Manifest(ManifestError::TooDeep { .. })),
            "{err}"
        );
        assert!(fetches.load(Ordering::SeqCst) <= MAX_DEPTH);
    }

    #[test]
    fn a_part_that_carries_a_head_is_refused() {
        let leaf = one_chunk_leaf(b"only a root has one".to_vec());
        let leaf_key = Id::of_block(&leaf);
        let (root, root_bytes) = parts_block(&[(leaf_key, 4096)]);
        let blocks = HashMap::from([(leaf_key, leaf), (root, root_bytes)]);
        let err = expand_from(root, &blocks, &AtomicUsize::new(0)).unwrap_err();
        assert!(err.to_string().contains("only a root does"), "{err}");
    }

    #[test]
    fn a_part_that_disagrees_with_its_parent_is_refused() {
        let leaf = Manifest {
            name: None,
            size: 8192,
            chunk_size: 4096,
            stripes: false,
            body: Body::Chunks(vec![Entry::plain(Id::of_block(b"c"), 4096); 2]),
            head: Vec::new(),
        }
        .encode();
        let leaf_key = Id::of_block(&leaf);
        // The parent claims the leaf covers 3 chunks' worth; it covers 2.
        let (root, root_bytes) = parts_block(&[(leaf_key, 12288), (leaf_key, 4096)]);
        let blocks = HashMap::from([(leaf_key, leaf.clone()), (root, root_bytes)]);
        let err = expand_from(root, &blocks, &AtomicUsize::new(0)).unwrap_err();
        assert!(err.to_string().contains("its parent says 12288"), "{err}");
        // Right the first time, wrong when repeated (no second fetch to check it).
        let (root, root_bytes) = parts_block(&[(leaf_key, 8192), (leaf_key, 4096)]);
        let blocks = HashMap::from([(leaf_key, leaf), (root, root_bytes)]);
        let err = expand_from(root, &blocks, &AtomicUsize::new(0)).unwrap_err();
        assert!(err.to_string().contains("its parent says 4096"), "{err}");
    }

    #[test]
    fn an_output_larger_than_the_free_disk_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("big.iso");
        let free = crate::store::disk_space(tmp.path()).unwrap().available;
        let err = check_disk_room(&out, free + (1 << 30)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FilesError::NoRoom { .. }), "{text}");
        assert!(
            text.contains(out.to_str().unwrap()) && text.contains("-o"),
            "{text}"
        );
        assert!(check_disk_room(&out, 1 << 20).is_ok());
        // The refusal comes before anything is written.
        assert!(!out.exists() && !part_path(&out).exists());
    }
}
