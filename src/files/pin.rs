//! Pins: fetch a whole file (its manifest tree and every chunk) into this
//! node's store and mark every block pinned, so nothing but DeleteBlock drops
//! it; unpin turns them back into replicas. The blocks carry the pin in their
//! records; the store's `pins` list names the roots.
//!
//! Blocks already held are only marked, never fetched again. A block no node
//! supplies leaves the pin incomplete: what was fetched stays pinned, the root
//! is not listed, and pinning again fetches only what is still missing.
//!
//! A sealed file is pinned by its capability: the manifests are opened here
//! to find the chunks, and only the sealed blocks are stored. The capability
//! is not kept, nor the file's name; the pin's blocks are listed instead, so
//! that Unpin finds them by the root alone.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::fetch::{expand, open_root};
use super::file_ref::FileRef;
use super::FilesError;
use crate::id::Id;
use crate::manifest::{Entry, Manifest, ManifestError};
use crate::node::{Node, Transfer};
use crate::store::{Origin, PinInfo, Store, StoreError};
use crate::stripe::Stripe;

/// Chunks fetched at once.
const PARALLEL: usize = 8;
/// Progress is reported at most this often (and once at the end).
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// How far a pin got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinProgress {
    pub blocks_done: u64,
    pub blocks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Why a pin or an unpin failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "no node supplied root block {0}: check the key, and that the nodes that stored it are up"
    )]
    RootNotFound(Id),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "the capability does not open root block {root} ({why}): check that it was copied whole"
    )]
    WrongKey { root: Id, why: String },
    #[error("{missing} of {total} blocks of {root} could not be fetched from any node (first: {first}); the blocks fetched stay pinned: pin it again once their holders are up")]
    Incomplete {
        root: Id,
        missing: u64,
        total: u64,
        first: Id,
    },
    #[error("manifest of {root} could not be read: {why}")]
    Tree { root: Id, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is neither pinned nor held here: nothing to unpin (ListPins shows the pins)")]
    NotPinned(Id),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|e| StoreError::Io {
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Makes `key` held here and pinned: marks it if held, else fetches it from
/// the network and stores it pinned. Returns its bytes when `want_bytes`, and
/// its size; `Ok(None)` when no node supplied it.
async fn hold_pinned(
    node: &Node,
    store: &Store,
    key: Id,
    want_bytes: bool,
    transfer: &Transfer,
) -> Result<Option<(u64, Option<Vec<u8>>)>, StoreError> {
    let held = blocking(store, move |s| {
        if !s.set_origin(&key, Origin::Pinned)? {
            return Ok(None);
        }
        let size = s.meta(&key)?.map_or(0, |m| m.size);
        let bytes = if want_bytes { s.get(&key)? } else { None };
        Ok(Some((size, bytes)))
    })
    .await?;
    if held.is_some() {
        return Ok(held);
    }
    let max = node.config().max_block_size;
    let Ok(fetched) = node.fetch_verified(key, max, transfer).await else {
        return Ok(None);
    };
    let data = fetched.data;
    let size = data.len() as u64;
    let (stored, keep) = if want_bytes {
        (data.clone(), Some(data))
    } else {
        (data, None)
    };
    blocking(store, move |s| s.put_as(&key, &stored, Origin::Pinned)).await?;
    Ok(Some((size, keep)))
}

/// Makes chunk stripe `key` and all its shards held here and pinned: the
/// stripe fetched (or marked), then `k` shards (from here when held, else
/// from the network), decoded and encoded again, so a shard the network
/// lost is rebuilt here, and every shard stored pinned (the republish sweep
/// then puts each back on its closest node). The shards' ids go to
/// `pinned`, for Unpin. `Ok(None)` when the stripe or `k` shards are
/// nowhere.
async fn hold_stripe(
    node: &Node,
    store: &Store,
    key: Id,
    pinned: &Mutex<Vec<Id>>,
    transfer: &Transfer,
) -> Result<Option<(u64, Option<Vec<u8>>)>, StoreError> {
    let Some((len, Some(bytes))) = hold_pinned(node, store, key, true, transfer).await? else {
        return Ok(None);
    };
    let Ok(stripe) = Stripe::parse(key, &bytes) else {
        return Ok(None);
    };
    let transfer = std::sync::Arc::new(Transfer::new());
    let Ok(shards) = node
        .fetch_shards(&stripe, stripe.code.k(), &[], &transfer)
        .await
    else {
        return Ok(None);
    };
    let all: Vec<usize> = (0..stripe.code.n()).collect();
    let rebuilt = tokio::task::spawn_blocking(move || {
        let views: Vec<(usize, &[u8])> = shards.blocks.iter().map(|(i, b)| (*i, &b[..])).collect();
        stripe.rebuild(&views, &all).map(|r| (stripe, r))
    })
    .await;
    let Ok(Ok((stripe, rebuilt))) = rebuilt else {
        return Ok(None);
    };
    let copies = stripe.copies;
    let ids: Vec<Id> = rebuilt.iter().map(|(i, _)| stripe.shards[*i]).collect();
    blocking(store, move |s| {
        for (i, shard) in &rebuilt {
            s.put_with(&stripe.shards[*i], shard, Origin::Pinned, copies)?;
        }
        Ok(())
    })
    .await?;
    lock(pinned).extend(ids);
    Ok(Some((len, None)))
}

/// Pins the file `file` names (a root or a capability): every block held
/// here and pinned, the root listed among the pins. `progress` is called as
/// blocks are done, at most every 100 ms, and once at the end with the totals.
pub async fn pin(
    node: &Node,
    store: &Store,
    file: FileRef,
    progress: impl FnMut(PinProgress),
) -> Result<PinProgress, PinError> {
    let root = file.root();
    let pinned: Mutex<Vec<Id>> = Mutex::new(Vec::new());
    let striped = std::sync::atomic::AtomicBool::new(false);
    let result = pin_tree(node, store, file, (&pinned, &striped), progress).await;
    // A sealed pin's blocks are listed as far as it got, complete or not:
    // Unpin cannot find them otherwise.
    let pinned = pinned.into_inner().unwrap_or_else(|p| p.into_inner());
    // An erasure-coded file's shards are not in its manifests: listed too.
    let striped = striped.load(std::sync::atomic::Ordering::Relaxed);
    if (file.is_sealed() || striped) && !pinned.is_empty() {
        blocking(store, move |s| {
            s.add_pin_blocks(&root, &pinned)?;
            s.flush()
        })
        .await?;
    }
    result
}

async fn pin_tree(
    node: &Node,
    store: &Store,
    file: FileRef,
    (pinned, striped_out): (&Mutex<Vec<Id>>, &std::sync::atomic::AtomicBool),
    mut progress: impl FnMut(PinProgress),
) -> Result<PinProgress, PinError> {
    let root = file.root();
    // One transfer: a liar or slow peer met on one block is avoided for all.
    let transfer = &Transfer::new();
    let Some((root_len, Some(bytes))) = hold_pinned(node, store, root, true, transfer).await?
    else {
        return Err(PinError::RootNotFound(root));
    };
    lock(pinned).push(root);
    let top = open_root(&file, &bytes).map_err(|e| match e {
        FilesError::WrongKey { root, why } => PinError::WrongKey { root, why },
        FilesError::Manifest(m) => PinError::Manifest(m),
        other => PinError::Tree {
            root,
            why: other.to_string(),
        },
    })?;
    let name = if file.is_sealed() {
        None
    } else {
        top.name.clone()
    };
    let (size, striped) = (top.size, top.stripes);
    striped_out.store(striped, std::sync::atomic::Ordering::Relaxed);
    // The tree's manifest blocks, pinned as expand fetches them.
    let manifests: Mutex<Vec<(Id, u64)>> = Mutex::new(vec![(root, root_len)]);
    let failed_part: Mutex<Option<Id>> = Mutex::new(None);
    let chunks = {
        let (manifests, failed_part) = (&manifests, &failed_part);
        expand(root, top, |key| {
            let fetched = hold_pinned(node, store, key, true, transfer);
            async move {
                match fetched.await {
                    Ok(Some((len, Some(bytes)))) => {
                        lock(manifests).push((key, len));
                        lock(pinned).push(key);
                        Ok(bytes)
                    }
                    Ok(_) => {
                        *lock(failed_part) = Some(key);
                        Err("no node supplied it".to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    };
    let manifests = manifests.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed_part = failed_part.into_inner().unwrap_or_else(|p| p.into_inner());
    let chunks = match chunks {
        Ok(c) => c,
        Err(_) if failed_part.is_some() => {
            let first = failed_part.unwrap_or(root);
            return Err(PinError::Incomplete {
                root,
                missing: 1,
                total: manifests.len() as u64 + 1,
                first,
            });
        }
        Err(FilesError::Manifest(m)) => return Err(m.into()),
        Err(e) => {
            return Err(PinError::Tree {
                root,
                why: e.to_string(),
            })
        }
    };
    let mut seen = HashSet::new();
    let distinct: Vec<Entry> = chunks.into_iter().filter(|e| seen.insert(e.0)).collect();
    let mut done = PinProgress {
        blocks_done: manifests.len() as u64,
        blocks_total: (manifests.len() + distinct.len()) as u64,
        bytes_done: manifests.iter().map(|m| m.1).sum(),
        bytes_total: 0,
    };
    done.bytes_total = done.bytes_done + distinct.iter().map(|e| e.1).sum::<u64>();
    progress(done);
    let mut last_report = Instant::now();
    let mut missing: Vec<Id> = Vec::new();
    let mut results = stream::iter(distinct)
        .map(|Entry(key, len, _)| async move {
            let held = match striped {
                false => hold_pinned(node, store, key, false, transfer).await,
                true => hold_stripe(node, store, key, pinned, transfer).await,
            };
            (key, len, held)
        })
        .buffer_unordered(PARALLEL);
    while let Some((key, len, held)) = results.next().await {
        match held? {
            Some(_) => {
                lock(pinned).push(key);
                done.blocks_done += 1;
                done.bytes_done += len;
            }
            None => missing.push(key),
        }
        if last_report.elapsed() >= REPORT_EVERY {
            progress(done);
            last_report = Instant::now();
        }
    }
    // Pinned marks made durable before the pin is said done.
    blocking(store, |s| s.flush()).await?;
    if let Some(&first) = missing.first() {
        progress(done);
        return Err(PinError::Incomplete {
            root,
            missing: missing.len() as u64,
            total: done.blocks_total,
            first,
        });
    }
    let info = PinInfo {
        name,
        sealed: file.is_sealed(),
        size,
        blocks: done.blocks_total,
        bytes: done.bytes_total,
        pinned_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    blocking(store, move |s| s.add_pin(&root, &info)).await?;
    progress(done);
    Ok(done)
}

/// The keys of the file under `root` that are held here: a sealed pin's
/// listed blocks; a plain file's manifest blocks and, when the whole tree is
/// here, its chunks.
async fn held_tree(store: &Store, root: Id) -> Result<Vec<Id>, PinError> {
    let listed = blocking(store, move |s| s.pin_blocks(&root)).await?;
    if !listed.is_empty() {
        return Ok(listed);
    }
    let Some(bytes) = blocking(store, move |s| s.get(&root)).await? else {
        return Ok(Vec::new());
    };
    let mut keys = vec![root];
    let Ok(top) = Manifest::parse(root, &bytes) else {
        return Ok(keys);
    };
    let parts: Mutex<Vec<Id>> = Mutex::new(Vec::new());
    let chunks = {
        let parts = &parts;
        expand(root, top, |key| {
            let read = blocking(store, move |s| s.get(&key));
            async move {
                match read.await {
                    Ok(Some(bytes)) => {
                        lock(parts).push(key);
                        Ok(bytes)
                    }
                    Ok(None) => Err("not held here".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    };
    keys.extend(parts.into_inner().unwrap_or_else(|p| p.into_inner()));
    if let Ok(chunks) = chunks {
        keys.extend(chunks.into_iter().map(|e| e.0));
    }
    Ok(keys)
}

/// Unpins `root`: its blocks held here become replicas again, except those
/// another pinned file also uses, and it leaves the pin list. Returns how
/// many blocks were unpinned. Blocks pinned by PutBlock that the file uses
/// are unpinned too.
pub async fn unpin(store: &Store, root: Id) -> Result<u64, PinError> {
    let pins = blocking(store, |s| s.pins()).await?;
    let listed = pins.iter().any(|(r, _)| *r == root);
    let keys = held_tree(store, root).await?;
    if !listed && keys.is_empty() {
        return Err(PinError::NotPinned(root));
    }
    let mut keep = HashSet::new();
    for (other, _) in pins.iter().filter(|(r, _)| *r != root) {
        keep.extend(held_tree(store, *other).await?);
    }
    let unpin: Vec<Id> = keys
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|k| !keep.contains(k))
        .collect();
    let count = blocking(store, move |s| {
        let mut n = 0;
        for key in &unpin {
            if s.record(key)?.is_some_and(|r| r.origin == Origin::Pinned)
                && s.set_origin(key, Origin::Replica)?
            {
                n += 1;
            }
        }
        s.remove_pin(&root)?;
        Ok(n)
    })
    .await?;
    Ok(count)
}
