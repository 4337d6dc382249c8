//! Writing a get's output around the page cache: whole, aligned chunks go
//! through a second descriptor opened with `O_DIRECT`, straight from an
//! aligned buffer to the disk; anything else (the file's short last chunk,
//! tmpfs, a filesystem without direct I/O) through the page cache.
//!
//! Why: a get writes each byte once and nobody reads it back soon, and on
//! this machine kind the kernel's copy into page-cache pages it has not
//! touched lately runs at some 0.45 GB/s, where a direct write runs at
//! 1.3-1.5 GB/s (`dd`, 512 MiB of 1 MiB writes). It also keeps a large get
//! from evicting a node's hot blocks from the cache.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Offsets, lengths and buffers of direct writes are multiples of this.
pub const ALIGN: usize = 4096;

/// A part file's two ways in.
pub struct Output {
    /// Through the page cache: reads, the last chunk, and every write when
    /// direct I/O is not to be had.
    pub buffered: File,
    direct: Option<File>,
    /// Set when a direct write was refused: the rest go buffered.
    refused: AtomicBool,
    /// One buffered write at a time: the kernel takes the file's lock for
    /// each, and writers waiting for it spin (13% of a get's CPU right
    /// after a put, profiled) where waiting here sleeps. Direct writes run
    /// side by side, so the disk sees more than one at once.
    one_buffered: Mutex<()>,
}

/// How one write went into the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrote {
    Direct,
    Buffered,
}

impl Output {
    /// `buffered`, the part file at `path`, and a direct descriptor on it
    /// when the filesystem allows one.
    pub fn new(buffered: File, path: &Path) -> Output {
        let direct = takes_direct_io(&buffered)
            .then(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .flatten();
        Output {
            buffered,
            direct,
            refused: AtomicBool::new(false),
            one_buffered: Mutex::new(()),
        }
    }

    /// `data` at `offset`, directly when both are aligned.
    pub fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<Wrote> {
        let aligned = !data.is_empty()
            && data.len().is_multiple_of(ALIGN)
            && offset.is_multiple_of(ALIGN as u64)
            && !self.refused.load(Ordering::Relaxed);
        if let (true, Some(direct)) = (aligned, &self.direct) {
            match write_direct(direct, data, offset) {
                Ok(()) => return Ok(Wrote::Direct),
                // EINVAL: this filesystem or device will not take it after
                // all; the page cache will.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.refused.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let _one = self.one_buffered.lock().unwrap_or_else(|p| p.into_inner());
        self.buffered.write_all_at(data, offset)?;
        Ok(Wrote::Buffered)
    }
}

/// Whether a direct write to `file` would bypass a page cache: not on
/// tmpfs, which has taken `O_DIRECT` since Linux 6.6 but copies into its
/// own pages either way, so that a "direct" write there only adds the copy
/// into the aligned buffer (4% of a get into /dev/shm, profiled); nor where
/// statx reports no direct I/O, or alignments coarser than [`ALIGN`].
fn takes_direct_io(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    // SAFETY: fstatfs and statx fill the zeroed structs they are given
    // (plain integers), on a descriptor `file` keeps open, with an empty
    // NUL-terminated path and AT_EMPTY_PATH.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(file.as_raw_fd(), &mut fs) == 0 && fs.f_type as libc::c_long == TMPFS_MAGIC
        {
            return false;
        }
        let mut st: libc::statx = std::mem::zeroed();
        let asked = libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut st,
        );
        // A kernel before 6.1, or a filesystem that does not say: try it,
        // and fall back on the first EINVAL (see `write_at`).
        if asked != 0 || st.stx_mask & libc::STATX_DIOALIGN == 0 {
            return true;
        }
        let fits = |a: u32| a > 0 && a as usize <= ALIGN;
        fits(st.stx_dio_mem_align) && fits(st.stx_dio_offset_align)
    }
}

/// A heap buffer aligned for direct I/O, grown as needed and kept by its
/// thread (the blocking pool's threads live on, so a get reuses a few).
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    const fn empty() -> Aligned {
        Aligned {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }

    /// The first `len` bytes, reallocated when the buffer is shorter.
    fn get(&mut self, len: usize) -> &mut [u8] {
        if self.len < len {
            self.free();
            let layout = Layout::from_size_align(len, ALIGN).expect("a valid layout");
            // SAFETY: `layout` has a non-zero size (`len` > 0: callers write
            // non-empty data).
            let ptr = unsafe { alloc_zeroed(layout) };
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            (self.ptr, self.len) = (ptr, len);
        }
        // SAFETY: `ptr` points to `self.len >= len` initialised bytes that
        // only this buffer owns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }

    fn free(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated in `get` with exactly this layout.
            unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(self.len, ALIGN)) };
            (self.ptr, self.len) = (std::ptr::null_mut(), 0);
        }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        self.free();
    }
}

thread_local! {
    static BUFFER: RefCell<Aligned> = const { RefCell::new(Aligned::empty()) };
}

/// Writes `data` at `offset`: straight from `data` when it sits on an
/// aligned address (the allocator hands out page-aligned blocks this large),
/// else through this thread's aligned buffer. The copy and the first touch
/// of each pool thread's buffer were 17% of a get's CPU, profiled.
fn write_direct(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    if (data.as_ptr() as usize).is_multiple_of(ALIGN) {
        return file.write_all_at(data, offset);
    }
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        let buf = b.get(data.len());
        buf.copy_from_slice(data);
        file.write_all_at(buf, offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn where_direct_io_is_refused_everything_goes_buffered() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("out.part");
        let file = std::fs::File::create(&path).unwrap();
        let out = Output {
            buffered: file,
            direct: None,
            refused: AtomicBool::new(false),
            one_buffered: Mutex::new(()),
        };
        assert_eq!(out.write_at(&[7u8; ALIGN], 0).unwrap(), Wrote::Buffered);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; ALIGN]);
    }

    #[test]
    fn on_tmpfs_every_write_goes_buffered() {
        let shm = Path::new("/dev/shm");
        assert!(shm.is_dir(), "this test needs /dev/shm (tmpfs)");
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = dir.path().join("out.part");
        let file = std::fs::File::create(&path).unwrap();
        let out = Output::new(file, &path);
        assert!(out.direct.is_none(), "no direct descriptor on tmpfs");
        assert_eq!(out.write_at(&[7u8; ALIGN], 0).unwrap(), Wrote::Buffered);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; ALIGN]);
    }

    /// A part file open to read and write, beside the checkout: on a disk,
    /// where tmpfs would not bypass the page cache.
    fn part_on_disk() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("out.part");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        (dir, path, file)
    }

    #[test]
    fn aligned_chunks_go_direct_and_the_rest_buffered_and_all_read_back() {
        let (_dir, path, file) = part_on_disk();
        let size = 3 * 65_536 + 100;
        file.set_len(size as u64).unwrap();
        let out = Output::new(file, &path);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let mut ways = Vec::new();
        for (i, chunk) in data.chunks(65_536).enumerate() {
            ways.push(out.write_at(chunk, (i * 65_536) as u64).unwrap());
        }
        assert_eq!(
            ways,
            [Wrote::Direct, Wrote::Direct, Wrote::Direct, Wrote::Buffered],
            "whole aligned chunks go direct on this disk, the short last one buffered"
        );
        let mut back = vec![0u8; size];
        out.buffered.read_exact_at(&mut back, 0).unwrap();
        assert!(back == data, "the file reads back as written");
    }

    #[test]
    fn aligned_and_unaligned_addresses_both_write_direct_and_read_back() {
        let (_dir, path, file) = part_on_disk();
        let out = Output::new(file, &path);
        // One page more than two chunks, so that a chunk can start on an
        // aligned address and another one byte past one.
        let mut backing = Aligned::empty();
        let buf = backing.get(3 * ALIGN);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 13 % 251) as u8;
        }
        let (at_page, past_page) = (&buf[..ALIGN], &buf[1..1 + ALIGN]);
        assert!((at_page.as_ptr() as usize).is_multiple_of(ALIGN));
        assert!(!(past_page.as_ptr() as usize).is_multiple_of(ALIGN));
        assert_eq!(out.write_at(at_page, 0).unwrap(), Wrote::Direct);
        assert_eq!(
            out.write_at(past_page, ALIGN as u64).unwrap(),
            Wrote::Direct
        );
        let mut back = vec![0u8; 2 * ALIGN];
        out.buffered.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..ALIGN] == *at_page, "the aligned chunk, as it was");
        assert!(back[ALIGN..] == *past_page, "the copied chunk, as it was");
    }
}
