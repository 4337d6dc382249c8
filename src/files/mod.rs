//! The user-facing job: `dhtfs put` stores a file in the network and prints
//! its root key; `dhtfs get` fetches it back anywhere, in parallel and out of
//! order, verified, resumable. Both run as a short-lived client node.

mod direct;
mod fetch;
mod file_ref;
mod get;
mod pin;
mod progress;
mod put;
mod put_striped;
mod redundancy;
pub mod secret;
mod session;
mod source;
pub mod stream;
mod stripes;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use fetch::{block_len, fetch_block, open_chunk, Fetcher, Resolved, Unfetched, MAX_BLOCK};
pub use file_ref::{BadFileRef, FileRef};
pub use get::{get, GetOptions, GetReport};
pub use pin::{pin, unpin, PinError, PinProgress};
pub use progress::{Counters, Progress};
pub use put::{put, PutOptions, PutReport};
pub use redundancy::{choose, min_coded_size, Chosen, Redundancy, Why, MIN_SHARD_BYTES};
pub use session::Session;

use crate::id::Id;
use crate::manifest::ManifestError;
use crate::net::BindError;

/// Why a put or get failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("no bootstrap peer answered at {0:?}: is a dhtfs node running there? (start one with `dhtfs node` or `dhtfs devnet`, or pass --bootstrap)")]
    NoBootstrap(Vec<SocketAddr>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("--chunk-size {0} is out of range: use 4096 to 1048576 bytes")]
    ChunkSize(u64),
    #[error("{} chunk(s) could not be stored on any node: {}", .0.len(), list(.0))]
    StoreFailed(Vec<(usize, Id, String)>),
    #[error(
        "no node supplied root block {0}: check the key, and that the nodes that stored it are up"
    )]
    RootNotFound(Id),
    #[error("the capability does not open root block {root} ({why}): check that it was copied whole; a truncated or altered capability cannot open its file")]
    WrongKey { root: Id, why: String },
    #[error("root block {root} could not be fetched: {why}; peers did not answer in time, retry when the network is reachable")]
    RootTimedOut { root: Id, why: String },
    #[error("chunk {index} ({key}) could not be fetched from any node ({why}); {out} was not written, rerun to resume")]
    ChunkNotFound {
        index: usize,
        key: Id,
        why: String,
        out: PathBuf,
    },
    #[error("{out} would need {size} bytes but its disk has {free} free: free some space there, or write elsewhere with -o")]
    NoRoom { out: PathBuf, size: u64, free: u64 },
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error("stopped after {0} chunks, as asked; rerun to resume")]
    Interrupted(usize),
}

fn list(failed: &[(usize, Id, String)]) -> String {
    let mut shown: Vec<String> = failed
        .iter()
        .take(5)
        .map(|(i, k, why)| format!("chunk {i} ({}): {why}", k.short()))
        .collect();
    if failed.len() > 5 {
        shown.push(format!("and {} more", failed.len() - 5));
    }
    shown.join("; ")
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}
