//! Fetching blocks from whichever node holds them, verified, avoiding peers
//! caught lying; and resolving a root manifest (tree included) into the
//! file's chunk list. `dhtfs get`, pinning and the HTTP gateway all fetch
//! through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::progress::Counters;
use super::FilesError;
use crate::id::Id;
use crate::manifest::{self, Body, Entry, Manifest, MAX_DEPTH};
use crate::node::{Node, Transfer};

pub use crate::node::Unfetched;

/// Largest block a get accepts (the nodes' limit).
pub const MAX_BLOCK: u64 = 1 << 20;

/// A file's header and chunk list, its manifest tree resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: Option<String>,
    /// The sum of the chunks' sizes, checked against the root's size.
    pub size: u64,
    pub chunks: Vec<Entry>,
}

/// What a run of fetches shares: the node that looks up holders and fetches
/// from them, the transfer's liars, slow peers and timings, and the counts.
#[derive(Clone)]
pub struct Fetcher {
    pub node: Node,
    pub transfer: Arc<Transfer>,
    pub counters: Arc<Counters>,
}

impl Fetcher {
    /// A fetcher with no liars known yet and zero counts.
    pub fn new(node: Node) -> Fetcher {
        Fetcher {
            node,
            transfer: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Block `key` of at most `max` bytes, verified: from this node's own
    /// store when it is a holder and has it intact, else from the network.
    pub async fn block(&self, key: Id, max: u64) -> Result<Vec<u8>, Unfetched> {
        // The index says at once whether the block is here; only then is it
        // read, off the runtime (a miss costs no trip to the blocking pool).
        if self.node.config().is_holder && self.node.blocks().contains(&key) {
            let blocks = self.node.blocks().clone();
            let local = tokio::task::spawn_blocking(move || blocks.get(&key)).await;
            if let Ok(Ok(Some(data))) = local {
                if Id::of_block(&data) == key {
                    return Ok(data);
                }
                tracing::warn!(key = %key, "a block held here does not match its key; fetching it from a peer");
            }
        }
        fetch_block(&self.node, key, max, &self.transfer, &self.counters).await
    }

    /// Resolves root manifest `root` into the file's chunk list.
    pub async fn resolve(&self, root: Id) -> Result<Resolved, FilesError> {
        resolve(root, |key| self.block(key, MAX_BLOCK), |_| Ok(())).await
    }
}

/// Fetches root manifest `root` and, for a tree, every part, in file order;
/// `check` sees the parsed root before any part is fetched (to refuse a file
/// larger than its disk).
pub async fn resolve<F, Fut>(
    root: Id,
    mut fetch: F,
    check: impl FnOnce(&Manifest) -> Result<(), FilesError>,
) -> Result<Resolved, FilesError>
where
    F: FnMut(Id) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, Unfetched>>,
{
    let bytes = fetch(root).await.map_err(|e| {
        if e.timed_out {
            FilesError::RootTimedOut { root, why: e.why }
        } else {
            FilesError::RootNotFound(root)
        }
    })?;
    let top = Manifest::parse(root, &bytes)?;
    check(&top)?;
    let (name, claimed) = (top.name.clone(), top.size);
    let chunks = expand(root, top, |key| {
        let fetched = fetch(key);
        async move { fetched.await.map_err(|e| e.why) }
    })
    .await?;
    let size: u64 = chunks.iter().map(|e| e.1).sum();
    if size != claimed {
        return Err(manifest::ManifestError::Inconsistent {
            key: root,
            why: format!("claims {claimed} bytes, its chunks add up to {size}"),
        }
        .into());
    }
    Ok(Resolved { name, size, chunks })
}

/// Fetches one block from whichever node has it, verified, through the
/// engine's one fetch path ([`Node::fetch_verified`]), and counts what it met.
pub async fn fetch_block(
    node: &Node,
    key: Id,
    max: u64,
    transfer: &Transfer,
    counters: &Counters,
) -> Result<Vec<u8>, Unfetched> {
    let fetched = node.fetch_verified(key, max, transfer).await;
    let tally = match &fetched {
        Ok(f) => f.tally,
        Err(e) => e.tally,
    };
    Counters::add(&counters.rejected, tally.rejected);
    Counters::add(&counters.retries, tally.retries);
    Counters::add(&counters.hedged, tally.hedged);
    let fetched = fetched?;
    counters.peer(fetched.from);
    Ok(fetched.data)
}

/// Expands a parsed root manifest into its chunk list, fetching each distinct
/// child manifest once (a file of repeated data repeats whole subtrees, and a
/// liar could repeat them to make us fetch without end), at most
/// [`MAX_DEPTH`] levels deep, and never more chunks than the root's size and
/// chunk size allow.
pub(crate) async fn expand<F, Fut>(
    root: Id,
    top: Manifest,
    mut fetch: F,
) -> Result<Vec<Entry>, FilesError>
where
    F: FnMut(Id) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
{
    let chunk_size = top.chunk_size;
    let want = top.size.div_ceil(chunk_size);
    let too_many = |key: Id| manifest::ManifestError::Inconsistent {
        key,
        why: format!(
            "its tree lists more than the {want} chunks of {} bytes in {chunk_size}-byte chunks",
            top.size
        ),
    };
    let mut out = Vec::new();
    // Each child manifest fetched, by key: the bytes it covers and its body.
    let mut seen: HashMap<Id, (u64, Body)> = HashMap::new();
    // Depth-first, in order: (the manifest, its entries still to expand) per level.
    let mut stack: Vec<(Id, std::vec::IntoIter<Entry>)> = Vec::new();
    match top.body {
        Body::Chunks(c) => return Ok(c),
        Body::Parts(p) => stack.push((root, p.into_iter())),
    }
    while let Some((_, level)) = stack.last_mut() {
        let Some(Entry(key, covered)) = level.next() else {
            stack.pop();
            continue;
        };
        if stack.len() >= MAX_DEPTH {
            return Err(manifest::ManifestError::TooDeep { root }.into());
        }
        if stack.iter().any(|(k, _)| *k == key) {
            return Err(manifest::ManifestError::Inconsistent {
                key,
                why: "it lists itself among its own parts".into(),
            }
            .into());
        }
        let (size, body) = match seen.get(&key) {
            Some(known) => known.clone(),
            None => {
                let bytes = fetch(key).await.map_err(|why| FilesError::ChunkNotFound {
                    index: out.len(),
                    key,
                    why: format!("manifest part: {why}"),
                    out: PathBuf::new(),
                })?;
                let m = Manifest::parse(key, &bytes)?;
                if m.chunk_size != chunk_size {
                    return Err(manifest::ManifestError::Inconsistent {
                        key,
                        why: format!("has {}-byte chunks, its root {chunk_size}", m.chunk_size),
                    }
                    .into());
                }
                seen.insert(key, (m.size, m.body.clone()));
                (m.size, m.body)
            }
        };
        // Checked at every occurrence: a repeated part must cover the same.
        if size != covered {
            return Err(manifest::ManifestError::Inconsistent {
                key,
                why: format!("covers {size} bytes, its parent says {covered}"),
            }
            .into());
        }
        match body {
            Body::Chunks(c) => {
                if out.len() as u64 + c.len() as u64 > want {
                    return Err(too_many(root).into());
                }
                out.extend(c);
            }
            Body::Parts(p) => stack.push((key, p.into_iter())),
        }
    }
    if out.len() as u64 != want {
        return Err(too_many(root).into());
    }
    Ok(out)
}
