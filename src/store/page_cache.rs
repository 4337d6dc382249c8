//! Whether a range of a file is in the page cache now, asked of the kernel
//! (cachestat(2), Linux 6.5 and later). A block whose bytes all are can be
//! handed to the kernel to send (sendfile) without any thread waiting on the
//! disk; one that is not is read the ordinary way, off the async runtime.

use std::fs::File;

/// Blocks at least this long are sent from the page cache by the kernel when
/// they are there; shorter ones cost less to copy than the extra calls.
pub const SEND_FROM_CACHE_AT: u64 = 64 << 10;

/// True when every page of the `len` bytes of `file` from `at` is in the page
/// cache (dirty ones included); false when one is not, when the range runs
/// past the file's end, or when the kernel cannot tell (before 6.5).
pub fn resident(file: &File, at: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let page = page_size();
    let Some(end) = at.checked_add(len) else {
        return false;
    };
    let pages = end.div_ceil(page) - at / page;
    cached_pages(file, at, len).is_some_and(|cached| cached >= pages)
}

/// Whether this kernel answers cachestat for `file` (Linux 6.5 and later,
/// unless a seccomp filter refuses it): where it does not, every block is
/// read into memory before it is sent.
pub fn can_tell(file: &File) -> bool {
    cached_pages(file, 0, 1).is_some()
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf takes a constant and returns a number.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => 4096,
    }
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> u64 {
    4096
}

/// Pages of the `len` bytes of `file` from `at` in the page cache now, as
/// cachestat(2) counts them; `None` when the call fails.
#[cfg(target_os = "linux")]
fn cached_pages(file: &File, at: u64, len: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;

    /// `struct cachestat_range` of <linux/mman.h>.
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    /// `struct cachestat` of <linux/mman.h>.
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// cachestat's number, the same on every architecture (the libc crate
    /// does not name it yet).
    const SYS_CACHESTAT: libc::c_long = 451;

    let range = Range { off: at, len };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both live for the
    // call and laid out as the kernel's structs; `file` stays open for it.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    (rc == 0).then_some(stat.nr_cache)
}

#[cfg(not(target_os = "linux"))]
fn cached_pages(_file: &File, _at: u64, _len: u64) -> Option<u64> {
    None
}

/// What a test of the sendfile path says on a kernel without cachestat.
#[cfg(test)]
pub(crate) const NEEDS_CACHESTAT: &str = "this kernel does not answer cachestat (Linux 6.5 and \
     later): blocks are never sent from the page cache here, so this path cannot be tested";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bytes_just_written_are_resident_and_a_range_past_the_end_is_not() {
        // Beside the checkout, on the disk the store uses.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 300_000]).unwrap();
        let f = File::open(&path).unwrap();
        assert!(can_tell(&f), "{NEEDS_CACHESTAT}");
        assert!(resident(&f, 0, 300_000), "a file just written is cached");
        assert!(resident(&f, 5000, 100_000), "so is any range inside it");
        assert!(
            !resident(&f, 200_000, 200_000),
            "pages past the end are not"
        );
        assert!(
            !resident(&f, u64::MAX - 10, 100),
            "nor an overflowing range"
        );
    }

    #[test]
    fn dropped_pages_are_not_resident() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: fadvise on a file we own; DONTNEED drops its clean pages.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        assert!(
            !resident(&f, 0, 1 << 20),
            "synced pages the kernel was told to drop are gone from the cache"
        );
    }
}
