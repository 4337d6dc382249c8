//! Fetching blocks from whichever node holds them, verified, avoiding peers
//! caught lying; and resolving a root manifest (tree included) into the
//! file's chunk list. `dhtfs get`, pinning and the HTTP gateway all fetch
//! through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::file_ref::FileRef;
use super::progress::Counters;
use super::FilesError;
use crate::id::Id;
use crate::manifest::{self, Body, Entry, Manifest, MAX_DEPTH};
use crate::node::{Node, Transfer};
use crate::seal::{self, SealKey};
use crate::stripe::MAX_STRIPE_BLOCK;

pub use crate::node::Unfetched;

/// Largest block a get accepts (the nodes' limit).
pub const MAX_BLOCK: u64 = 1 << 20;

/// A file's header and chunk list, its manifest tree resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: Option<String>,
    /// The sum of the chunks' sizes, checked against the root's size.
    pub size: u64,
    /// The chunk size the file was cut in (a sealed chunk's padding follows it).
    pub chunk_size: u64,
    /// In a sealed file, each entry carries its chunk's key.
    pub chunks: Vec<Entry>,
    /// Whether the entries name stripes (an erasure-coded file).
    pub stripes: bool,
    /// The root manifest's copy of the file's first bytes (maybe none):
    /// verified with the root, and checked against the first chunk.
    pub head: bytes::Bytes,
}

/// Whether chunk `index`'s verified, opened bytes `data` agree with the
/// root's `head`: the first chunk must start with it. A reader may have
/// handed the head out already, so a root that lies about it is refused.
pub fn check_head(head: &[u8], index: usize, data: &[u8]) -> Result<(), String> {
    match index == 0 && !data.starts_with(head) {
        true => Err(format!(
            "it does not start with the {} bytes its root manifest copies (the manifest is inconsistent)",
            head.len()
        )),
        false => Ok(()),
    }
}

/// The largest block that can hold chunk `entry` of a file in
/// `chunk_size`-byte chunks: its size, or sealed, its padded size and tag.
pub fn block_len(entry: &Entry, chunk_size: u64) -> u64 {
    match entry.2 {
        None => entry.1,
        Some(_) => seal::padded_len(entry.1, chunk_size) + seal::TAG_LEN as u64,
    }
}

/// The file's bytes in chunk `entry`'s verified block: the block itself, or
/// sealed, the block opened under the entry's key and unpadded.
pub fn open_chunk(entry: &Entry, chunk_size: u64, block: Vec<u8>) -> Result<Vec<u8>, String> {
    let data = match &entry.2 {
        None => block,
        Some(key) => seal::open_chunk(key, &block, entry.1, chunk_size)
            .map_err(|e| format!("it does not open: {e}"))?,
    };
    // The hash matched; a manifest that lies about the size must still not
    // make us write or send more or fewer bytes than it promised.
    if data.len() as u64 != entry.1 {
        return Err(format!(
            "it is {} bytes, its manifest says {}",
            data.len(),
            entry.1
        ));
    }
    Ok(data)
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

    /// Chunk `entry`'s block of a file in `chunk_size`-byte chunks,
    /// verified: fetched whole, or with `stripes` decoded from its shards.
    pub async fn chunk(
        &self,
        entry: &Entry,
        chunk_size: u64,
        stripes: bool,
    ) -> Result<Vec<u8>, Unfetched> {
        let max = block_len(entry, chunk_size);
        if !stripes {
            return self.block(entry.0, max).await;
        }
        let stripe = self.block(entry.0, MAX_STRIPE_BLOCK).await?;
        super::stripes::fetch_striped(self, entry.0, &stripe, max).await
    }

    /// Resolves the file `file` names into its chunk list.
    pub async fn resolve(&self, file: FileRef) -> Result<Resolved, FilesError> {
        resolve(file, |key| self.block(key, MAX_BLOCK), |_| Ok(())).await
    }
}

/// Opens root manifest block `bytes` of `file`: a plain root as it is, a
/// sealed one under its capability's key; parsed, and sealed exactly when
/// the file is.
pub fn open_root(file: &FileRef, bytes: &[u8]) -> Result<Manifest, FilesError> {
    let root = file.root();
    let top = match file {
        FileRef::Plain(_) => Manifest::parse(root, bytes)?,
        FileRef::Sealed(cap) => {
            let plain = seal::open(&cap.key, bytes).map_err(|why| FilesError::WrongKey {
                root,
                why: why.to_string(),
            })?;
            Manifest::parse(root, &plain)?
        }
    };
    check_sealing(root, &top, file.is_sealed())?;
    Ok(top)
}

/// A sealed manifest lists keys with every entry, a plain one with none.
fn check_sealing(key: Id, m: &Manifest, sealed: bool) -> Result<(), manifest::ManifestError> {
    if m.entries().iter().all(|e| e.2.is_some() == sealed) {
        return Ok(());
    }
    Err(manifest::ManifestError::Inconsistent {
        key,
        why: if sealed {
            "it is sealed but lists a block without its key".into()
        } else {
            "it is plain but lists sealed blocks: open it by its capability".into()
        },
    })
}

/// Fetches the root manifest of `file` and, for a tree, every part, in file
/// order, opening sealed ones; `check` sees the parsed root before any part
/// is fetched (to refuse a file larger than its disk).
pub async fn resolve<F, Fut>(
    file: FileRef,
    mut fetch: F,
    check: impl FnOnce(&Manifest) -> Result<(), FilesError>,
) -> Result<Resolved, FilesError>
where
    F: FnMut(Id) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, Unfetched>>,
{
    let root = file.root();
    let bytes = fetch(root).await.map_err(|e| {
        if e.timed_out {
            FilesError::RootTimedOut { root, why: e.why }
        } else {
            FilesError::RootNotFound(root)
        }
    })?;
    let mut top = open_root(&file, &bytes)?;
    check(&top)?;
    let head = bytes::Bytes::from(std::mem::take(&mut top.head));
    let (name, claimed, chunk_size, stripes) =
        (top.name.clone(), top.size, top.chunk_size, top.stripes);
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
    Ok(Resolved {
        name,
        size,
        chunk_size,
        chunks,
        stripes,
        head,
    })
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
    Counters::add(&counters.backoffs, tally.backoffs);
    let fetched = fetched?;
    counters.peer(fetched.from);
    Ok(fetched.data)
}

/// Expands a parsed root manifest into its chunk list, fetching each distinct
/// child manifest once (a file of repeated data repeats whole subtrees, and a
/// liar could repeat them to make us fetch without end), at most
/// [`MAX_DEPTH`] levels deep, and never more chunks than the root's size and
/// chunk size allow. A sealed tree's parts are opened under the keys their
/// parents list, and each must be sealed as its parent is.
pub(crate) async fn expand<F, Fut>(
    root: Id,
    top: Manifest,
    mut fetch: F,
) -> Result<Vec<Entry>, FilesError>
where
    F: FnMut(Id) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
{
    let (chunk_size, stripes) = (top.chunk_size, top.stripes);
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
        let Some(Entry(key, covered, seal_key)) = level.next() else {
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
                let m = open_part(key, seal_key.as_ref(), &bytes)?;
                if m.chunk_size != chunk_size {
                    return Err(manifest::ManifestError::Inconsistent {
                        key,
                        why: format!("has {}-byte chunks, its root {chunk_size}", m.chunk_size),
                    }
                    .into());
                }
                if m.stripes != stripes {
                    return Err(manifest::ManifestError::Inconsistent {
                        key,
                        why: "lists stripes where its root lists chunks, or the reverse".into(),
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

/// Opens and parses child manifest `key` (under `seal_key` when sealed).
fn open_part(key: Id, seal_key: Option<&SealKey>, bytes: &[u8]) -> Result<Manifest, FilesError> {
    let m = match seal_key {
        None => Manifest::parse(key, bytes)?,
        Some(k) => {
            let plain = seal::open(k, bytes).map_err(|e| manifest::ManifestError::Inconsistent {
                key,
                why: format!("this sealed manifest part does not open under the key its parent lists: {e}"),
            })?;
            Manifest::parse(key, &plain)?
        }
    };
    check_sealing(key, &m, seal_key.is_some())?;
    if !m.head.is_empty() {
        return Err(manifest::ManifestError::Inconsistent {
            key,
            why: "a manifest part carries a head: only a root does".into(),
        }
        .into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_chunk_answers_to_the_head() {
        assert!(check_head(b"abc", 0, b"abcdef").is_ok());
        assert!(check_head(b"", 0, b"abcdef").is_ok());
        // A whole file within its head.
        assert!(check_head(b"abc", 0, b"abc").is_ok());
        assert!(check_head(b"abd", 0, b"abcdef").is_err());
        // Longer than the chunk: it cannot start with it.
        assert!(check_head(b"abcdefg", 0, b"abcdef").is_err());
        assert!(check_head(b"xyz", 1, b"abcdef").is_ok());
    }
}
