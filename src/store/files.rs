//! Block files: where a large block lives on disk, and the write-fsync-rename dance
//! that makes one appear there whole or not at all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::StoreError;
use crate::id::{Id, ID_LEN};

/// Subdirectory of the data dir holding sled.
pub(crate) const DB_DIR: &str = "db";
/// Subdirectory of the data dir holding block files.
pub(crate) const BLOCKS_DIR: &str = "blocks";
/// Subdirectory of the data dir holding half-written files; emptied on every open.
pub(crate) const TMP_DIR: &str = "tmp";

/// `<dir>/blocks/ab/cd/<64 hex>` for a key whose hex starts `abcd`: two levels of
/// 256 fan-out keep directories small even with millions of blocks.
pub(crate) fn block_path(dir: &Path, key: &Id) -> PathBuf {
    let hex = key.to_hex();
    dir.join(BLOCKS_DIR)
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex)
}

/// The key a path relative to `blocks/` names, if it is exactly `ab/cd/<hex>` with
/// lowercase hex whose first four digits are `abcd`; anything else is a stray.
pub(crate) fn parse_block_path(rel: &Path) -> Option<Id> {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<Vec<&str>>>()?;
    let [a, b, name] = parts.as_slice() else {
        return None;
    };
    if name.len() != ID_LEN * 2 || name.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let id = Id::from_hex(name).ok()?;
    (name.get(0..2) == Some(*a) && name.get(2..4) == Some(*b)).then_some(id)
}

/// Creates `blocks/` and `tmp/` under `dir` if missing.
pub(crate) fn ensure_layout(dir: &Path) -> Result<(), StoreError> {
    ensure_dir(&dir.join(BLOCKS_DIR))?;
    ensure_dir(&dir.join(TMP_DIR))
}

/// Creates `path` if missing and fsyncs its parent, so the new directory entry
/// survives a crash (otherwise a file renamed into it could vanish with it).
pub(crate) fn ensure_dir(path: &Path) -> Result<(), StoreError> {
    if path.is_dir() {
        return Ok(());
    }
    match fs::create_dir(path) {
        Ok(()) => {}
        // Another thread may have won the race; that is as good.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(StoreError::io(path, e)),
    }
    match path.parent() {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

/// fsyncs a directory, making renames and creations inside it durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

/// Writes `data` as the file of `key`: temp file, fsync, rename into place, fsync
/// the directory. When this returns Ok the file is durable under its final name;
/// on any error no file is left under the final name by this call (a crash can
/// leave a temp file, which the next open removes).
pub(crate) fn write_block(dir: &Path, key: &Id, data: &[u8]) -> Result<PathBuf, StoreError> {
    let tmp = temp_path(dir);
    let written = write_synced(&tmp, data);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dest = block_path(dir, key);
    let placed = place(&tmp, &dest);
    if placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    placed.map(|()| dest)
}

fn temp_path(dir: &Path) -> PathBuf {
    let mut name = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut name);
    dir.join(TMP_DIR).join(format!("{}.tmp", hex::encode(name)))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    write_and_sync(&mut file, path, data)
}

/// Writes all of `data` and fsyncs; a full disk comes back as `DiskFull`.
fn write_and_sync(file: &mut File, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

fn place(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    let parent = dest
        .parent()
        .ok_or_else(|| StoreError::corrupt(dest, "block path has no parent"))?;
    if let Some(grandparent) = parent.parent() {
        ensure_dir(grandparent)?;
    }
    ensure_dir(parent)?;
    fs::rename(tmp, dest).map_err(|e| StoreError::io(dest, e))?;
    let synced = fsync_dir(parent);
    if synced.is_err() {
        // The rename may not survive a crash: take it back, so that no file is
        // left under the final name by a write reported as failed.
        let _ = fs::remove_file(dest);
    }
    synced
}

/// Removes the file of a deleted block; a missing file is already the goal.
pub(crate) fn remove_block(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_path_fans_out_on_the_first_four_hex_digits() {
        let key = Id::of_block(b"");
        let path = block_path(Path::new("/d"), &key);
        assert_eq!(
            path,
            Path::new("/d/blocks/e3/b0").join(key.to_hex()),
            "sha256('') starts e3b0"
        );
        let rel = path.strip_prefix("/d/blocks").unwrap();
        assert_eq!(parse_block_path(rel), Some(key));
    }

    #[test]
    fn misplaced_or_misnamed_files_do_not_parse() {
        let hex = Id::of_block(b"").to_hex();
        assert_eq!(parse_block_path(&Path::new("e3/b1").join(&hex)), None);
        assert_eq!(parse_block_path(&Path::new("e3").join(&hex)), None);
        assert_eq!(parse_block_path(&Path::new("e3/b0/x").join(&hex)), None);
        let upper = hex.to_uppercase();
        assert_eq!(parse_block_path(&Path::new("E3/B0").join(&upper)), None);
        assert_eq!(parse_block_path(Path::new("e3/b0/notes.txt")), None);
    }

    #[test]
    fn a_real_enospc_is_reported_as_a_full_disk() {
        // /dev/full fails every write with ENOSPC: a real full disk, no mount.
        let path = Path::new("/dev/full");
        let mut file = OpenOptions::new().write(true).open(path).unwrap();
        let err = write_and_sync(&mut file, path, &[1u8; 8192]).unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(
            err.to_string().contains("disk full writing /dev/full"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_placement_leaves_no_file_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        ensure_layout(dir.path()).unwrap();
        let data = vec![9u8; 1000];
        let key = Id::of_block(&data);
        // blocks/ab is a file, so the directory for the block cannot be made.
        let fan = block_path(dir.path(), &key);
        let fan = fan.parent().unwrap().parent().unwrap();
        fs::write(fan, b"in the way").unwrap();
        assert!(write_block(dir.path(), &key, &data).is_err());
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(fs::read(fan).unwrap(), b"in the way");
    }

    #[test]
    fn write_block_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        ensure_layout(dir.path()).unwrap();
        let data = vec![7u8; 1000];
        let key = Id::of_block(&data);
        let path = write_block(dir.path(), &key, &data).unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }
}
