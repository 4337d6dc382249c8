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

    /// Too many puts wait for the writer already.
    #[error("too many puts are waiting to be written: retry shortly")]
    Busy,

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

    /// Storing the block would take the data dir's disk below the free-space
    /// floor. Says no path: peers see this text.
    #[error(
        "this node's disk is nearly full: {free} bytes free, no room for a block \
         of {size} bytes above the {floor}-byte floor (free disk space, or lower \
         min_free_bytes / min_free_percent)"
    )]
    LowDisk { size: u64, free: u64, floor: u64 },

    /// A write failed because the disk is full (ENOSPC, or EDQUOT).
    #[error(
        "disk full writing {path}: nothing was stored (free space on that disk, \
         or set quota_bytes / min_free_bytes so the node refuses blocks before it fills)"
    )]
    DiskFull { path: PathBuf },

    /// Most block files (or blocks' segment files) the index lists are
    /// missing: likely an unmounted disk.
    #[error(
        "{missing} of the {listed} blocks the index lists are missing from \
         {blocks} (is the disk holding it unmounted?): mount it and restart, or \
         start with --accept-data-loss to drop their index entries"
    )]
    BlocksMissing {
        blocks: PathBuf,
        listed: u64,
        missing: u64,
    },
}

/// True for the errors of a full disk or an exhausted disk quota (by kind too:
/// sled clones its errors into new ones that keep the kind but not the errno).
fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        if is_disk_full(&source) {
            return StoreError::DiskFull {
                path: path.to_path_buf(),
            };
        }
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`StoreError::Db`] for the database under `path`.
    pub(crate) fn db(path: &Path, source: sled::Error) -> StoreError {
        if let sled::Error::Io(e) = &source {
            if is_disk_full(e) {
                return StoreError::DiskFull {
                    path: path.to_path_buf(),
                };
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let path = Path::new("/data/tmp/x.tmp");
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let err = StoreError::io(path, full);
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("disk full writing /data/tmp/x.tmp"));
        let sled_full = sled::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(
            StoreError::db(path, sled_full),
            StoreError::DiskFull { .. }
        ));
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(StoreError::io(path, other), StoreError::Io { .. }));
    }
}
