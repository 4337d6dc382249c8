//! Free space on a file system, and the floor below which the store refuses
//! new blocks, so that no peer (or pile of peers) can fill the node's disk.
//!
//! `statvfs` is a cheap system call, but a node may take hundreds of blocks a
//! second; the floor keeps one sample for [`SAMPLE_TTL`] and counts what it let
//! through since, so a burst between samples cannot overshoot the floor.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, StoreError};

/// How long one statvfs sample is trusted.
pub(crate) const SAMPLE_TTL: Duration = Duration::from_secs(1);

/// Space on the file system holding some path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged process may still write (`f_bavail`): root's
    /// reserve is not ours to spend.
    pub available: u64,
    /// Size of the file system in bytes.
    pub total: u64,
}

/// statvfs(2) on `path`.
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c_path is a valid NUL-terminated string and st points to memory
    // large enough for a statvfs, which the call fills on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(space_of(&st))
}

/// The fields are u64 here but narrower on some targets, hence the casts.
#[allow(clippy::unnecessary_cast)]
fn space_of(st: &libc::statvfs) -> DiskSpace {
    let frsize = st.f_frsize as u64;
    DiskSpace {
        available: (st.f_bavail as u64).saturating_mul(frsize),
        total: (st.f_blocks as u64).saturating_mul(frsize),
    }
}

/// The free-space floor: the larger of `min_free_bytes` and `min_free_percent`
/// of the file system.
pub(crate) fn floor_bytes(space: DiskSpace, min_free_bytes: u64, min_free_percent: u8) -> u64 {
    let percent = u64::from(min_free_percent.min(100));
    let by_percent = (u128::from(space.total) * u128::from(percent) / 100) as u64;
    min_free_bytes.max(by_percent)
}

/// Refuses a write of `charge` bytes that would take `space` (less `pending`
/// bytes already let through since it was sampled) below `floor`.
pub(crate) fn check_floor(
    space: DiskSpace,
    pending: u64,
    floor: u64,
    charge: u64,
) -> Result<(), StoreError> {
    let free = space.available.saturating_sub(pending);
    if free.saturating_sub(charge) < floor || free < charge {
        return Err(StoreError::LowDisk {
            size: charge,
            free,
            floor,
        });
    }
    Ok(())
}

struct Sample {
    space: DiskSpace,
    taken: Instant,
    /// Bytes let through since `taken`.
    pending: u64,
}

/// The floor of one data dir, with its cached sample.
pub(crate) struct DiskFloor {
    dir: PathBuf,
    min_free_bytes: u64,
    min_free_percent: u8,
    sample: Mutex<Option<Sample>>,
}

impl DiskFloor {
    pub fn new(dir: &Path, min_free_bytes: u64, min_free_percent: u8) -> DiskFloor {
        DiskFloor {
            dir: dir.to_path_buf(),
            min_free_bytes,
            min_free_percent,
            sample: Mutex::new(None),
        }
    }

    fn disabled(&self) -> bool {
        self.min_free_bytes == 0 && self.min_free_percent == 0
    }

    /// Checks that `charge` more bytes keep the disk above the floor; with
    /// `take`, counts them as written until the next sample.
    pub fn check(&self, charge: u64, take: bool) -> Result<(), StoreError> {
        if self.disabled() {
            return Ok(());
        }
        let mut guard = lock(&self.sample);
        let stale = guard
            .as_ref()
            .is_none_or(|s| s.taken.elapsed() >= SAMPLE_TTL);
        if stale {
            let space = disk_space(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
            *guard = Some(Sample {
                space,
                taken: Instant::now(),
                pending: 0,
            });
        }
        let Some(sample) = guard.as_mut() else {
            return Ok(());
        };
        let floor = floor_bytes(sample.space, self.min_free_bytes, self.min_free_percent);
        check_floor(sample.space, sample.pending, floor, charge)?;
        if take {
            sample.pending = sample.pending.saturating_add(charge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn floor_is_the_larger_of_bytes_and_percent() {
        let space = DiskSpace {
            available: 50 * GIB,
            total: 100 * GIB,
        };
        assert_eq!(floor_bytes(space, GIB, 5), 5 * GIB);
        assert_eq!(floor_bytes(space, 10 * GIB, 5), 10 * GIB);
        assert_eq!(floor_bytes(space, 0, 0), 0);
        assert_eq!(
            floor_bytes(space, 0, 200),
            100 * GIB,
            "percent capped at 100"
        );
    }

    #[test]
    fn a_write_that_would_cross_the_floor_is_refused() {
        let space = DiskSpace {
            available: 10_000,
            total: 100_000,
        };
        assert!(check_floor(space, 0, 5_000, 5_000).is_ok());
        let err = check_floor(space, 0, 5_000, 5_001).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::LowDisk {
                    size: 5_001,
                    free: 10_000,
                    floor: 5_000
                }
            ),
            "{err}"
        );
        // What was let through since the sample counts as gone.
        assert!(check_floor(space, 4_000, 5_000, 1_001).is_err());
        assert!(check_floor(space, 4_000, 5_000, 1_000).is_ok());
        // Even with no floor, a write larger than the free space is refused.
        assert!(check_floor(space, 0, 0, 10_001).is_err());
        assert!(check_floor(space, 20_000, 0, 0).is_ok());
    }

    #[test]
    fn statvfs_of_a_real_dir_is_sane() {
        let tmp = tempfile::tempdir().unwrap();
        let space = disk_space(tmp.path()).unwrap();
        assert!(
            space.total > 0 && space.available <= space.total,
            "{space:?}"
        );
        assert!(disk_space(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn the_floor_counts_what_it_let_through_between_samples() {
        let tmp = tempfile::tempdir().unwrap();
        let free = disk_space(tmp.path()).unwrap().available;
        // A floor leaving 1 GiB of room above it (other processes may write
        // meanwhile, but not a GiB within this test's one sample).
        let floor = DiskFloor::new(tmp.path(), free.saturating_sub(GIB), 0);
        floor.check(GIB / 2, true).unwrap();
        assert!(
            matches!(floor.check(GIB, true), Err(StoreError::LowDisk { .. })),
            "half a GiB already let through within the same sample"
        );
        // Off: never refuses, never calls statvfs.
        let off = DiskFloor::new(&tmp.path().join("missing"), 0, 0);
        assert!(off.check(u64::MAX, true).is_ok());
    }
}
