//! Errors from the block store, each naming what failed and what to do about it.

use std::path::{Path, PathBuf};

use crate::id::Id;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled refused to open the database, most often because another process holds its lock.
    #[error(
        "cannot open data dir {path}: {source} (is another dhtfs node using it? \
         if it is corrupt, move it aside or pass another --data-dir)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// The data dir was written by a newer dhtfs whose layout this one does not know.
    #[error(
        "data dir {path} has schema version {found} but this dhtfs supports up to \
         {supported}: upgrade dhtfs or use another --data-dir"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A file system call failed.
    #[error(
        "I/O error on {path}: {source} (check that the disk is not full and that \
         dhtfs may write there)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// sled failed after the database was open.
    #[error(
        "database error in {path}: {source} (check that the disk is not full; \
         if it persists, stop dhtfs and move the data dir aside)"
    )]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// Something on disk does not have the shape dhtfs wrote.
    #[error(
        "data dir {path} is corrupt: {what} (restart dhtfs to repair it, or move \
         the data dir aside)"
    )]
    Corrupt { path: PathBuf, what: String },

    /// The bytes offered for a key do not hash to it.
    #[error(
        "block offered as {key} hashes to {actual}: refused, nothing was stored \
         (the sender must send the bytes whose sha256 is the key)"
    )]
    HashMismatch { key: Id, actual: Id },

    /// The block is bigger than this node accepts.
    #[error(
        "block of {size} bytes is over the {max}-byte limit (split the data into \
         smaller blocks)"
    )]
    TooLarge { size: u64, max: u64 },

    /// Storing the block would take the node past its quota.
    #[error(
        "storage quota full: {used} of {quota} bytes in use, no room for a block of \
         {size} bytes (raise the quota or delete blocks)"
    )]
    QuotaExceeded { size: u64, used: u64, quota: u64 },
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`StoreError::Db`] for the database under `path`.
    pub(crate) fn db(path: &Path, source: sled::Error) -> StoreError {
        StoreError::Db {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`StoreError::Corrupt`] for `path`.
    pub(crate) fn corrupt(path: &Path, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}
