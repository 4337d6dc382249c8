//! The guard against repairing away an unmounted disk. When `blocks/` lives on
//! a disk that is not mounted (or was moved), every file block looks missing,
//! and the open-time repair would drop every index entry: the node would
//! start empty and the data would be as good as lost even once the disk is
//! back. A crash never removes a block file whose index entry exists (the file
//! is durable before its entry is written), so missing files mean the disk or
//! an operator; a few are repaired as before, but many are refused. The same
//! holds for `segments/`: no crash removes a segment file an entry points
//! into (compaction removes one only once no entry does).

use std::path::Path;

use super::StoreError;

/// Fewest file blocks in the index before "most are missing" is taken as a
/// missing disk: with fewer, a handful of lost files (a bad sector, a slip of
/// `rm`) is likelier than an unmount, and repairing them is the old behaviour.
pub(crate) const MIN_LISTED: u64 = 16;

/// What the index lists against what is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileCensus {
    /// Whether `blocks/` exists at all.
    pub blocks_dir_exists: bool,
    /// Index entries whose bytes live in a file.
    pub listed: u64,
    /// Of those, how many files are missing altogether (not merely short).
    pub missing: u64,
}

impl FileCensus {
    /// True when the files look gone wholesale rather than a few at a time:
    /// `blocks/` itself is missing while the index lists file blocks, or at
    /// least [`MIN_LISTED`] are listed and more than half are missing (an
    /// empty mount point, or a disk holding only what was written since).
    pub fn looks_unmounted(&self) -> bool {
        if self.listed == 0 {
            return false;
        }
        if !self.blocks_dir_exists {
            return true;
        }
        self.listed >= MIN_LISTED && self.missing * 2 > self.listed
    }
}

/// Refuses to open when the census of the files under `dir` (`blocks/`, or
/// `segments/`) looks like an unmounted disk, unless the operator accepted
/// the loss.
pub(crate) fn check(dir: &Path, census: FileCensus, accept_loss: bool) -> Result<(), StoreError> {
    if !census.looks_unmounted() {
        return Ok(());
    }
    if accept_loss {
        tracing::warn!(
            dir = %dir.display(),
            listed = census.listed,
            missing = census.missing,
            "block files missing; dropping their index entries as --accept-data-loss allows"
        );
        return Ok(());
    }
    Err(StoreError::BlocksMissing {
        blocks: dir.to_path_buf(),
        listed: census.listed,
        missing: census.missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(exists: bool, listed: u64, missing: u64) -> FileCensus {
        FileCensus {
            blocks_dir_exists: exists,
            listed,
            missing,
        }
    }

    #[test]
    fn few_missing_files_are_left_to_repair() {
        assert!(!census(true, 0, 0).looks_unmounted());
        assert!(!census(false, 0, 0).looks_unmounted(), "a fresh dir");
        assert!(!census(true, 15, 15).looks_unmounted(), "too few to tell");
        assert!(!census(true, 100, 50).looks_unmounted(), "half is not most");
    }

    #[test]
    fn a_missing_or_mostly_empty_blocks_dir_is_refused() {
        assert!(census(false, 1, 1).looks_unmounted());
        assert!(census(true, 16, 9).looks_unmounted());
        assert!(census(true, 1000, 1000).looks_unmounted());
        let dir = Path::new("/data/blocks");
        let err = check(dir, census(true, 20, 20), false).unwrap_err();
        let text = err.to_string();
        for needle in ["/data/blocks", "20", "--accept-data-loss", "mount"] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        assert!(check(dir, census(true, 20, 20), true).is_ok());
    }
}
