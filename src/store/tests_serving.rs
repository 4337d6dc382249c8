//! What the block server is given: a large block whose bytes are in the page
//! cache as its range of a segment or its block file (for sendfile),
//! anything else as bytes.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::tests::{block, open};
use super::*;
use crate::id::Id;

/// The bytes `served` stands for, read the way the kernel would send them.
fn bytes_of(served: &Serving) -> Vec<u8> {
    match served {
        Serving::Bytes(data) => data.clone(),
        Serving::File { file, at, len } => {
            let mut out = vec![0u8; *len as usize];
            file.read_exact_at(&mut out, *at).unwrap();
            out
        }
    }
}

/// A store whose blocks of up to 1 MiB go to segments, as a node's do.
fn open_segments(dir: &std::path::Path) -> Store {
    let cfg = StoreConfig {
        inline_max: 1 << 20,
        ..StoreConfig::default()
    };
    super::tests::when_unlocked(|| Store::open(dir, cfg.clone()))
        .unwrap()
        .0
}

#[test]
fn a_large_block_in_the_page_cache_is_served_as_its_range_of_a_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_segments(tmp.path());
    let large = block(1 << 20, 1);
    let small = block(SEND_FROM_CACHE_AT as usize - 1, 2);
    for data in [&large, &small] {
        store
            .put_as(&Id::of_block(data), data, Origin::Pinned)
            .unwrap();
    }
    let (segment, _) = store.bytes_on_disk(&Id::of_block(&large)).unwrap().unwrap();
    assert!(
        can_tell(&std::fs::File::open(segment).unwrap()),
        "{NEEDS_CACHESTAT}"
    );
    let served = store.serving(&Id::of_block(&large)).unwrap().unwrap();
    assert!(
        matches!(served, Serving::File { len, .. } if len == 1 << 20),
        "just written, so cached: {served:?}"
    );
    assert!(
        bytes_of(&served) == large,
        "the range holds the block's bytes"
    );
    let served = store.serving(&Id::of_block(&small)).unwrap().unwrap();
    assert!(
        matches!(served, Serving::Bytes(_)),
        "a small block is copied"
    );
    assert!(bytes_of(&served) == small);
    assert!(store.serving(&Id::of_block(b"absent")).unwrap().is_none());
}

#[test]
fn a_large_block_file_in_the_page_cache_is_served_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let large = block(300 * 1024, 4);
    let key = Id::of_block(&large);
    store.put_as(&key, &large, Origin::Pinned).unwrap();
    let (path, at) = store.bytes_on_disk(&key).unwrap().unwrap();
    assert!(
        path.starts_with(tmp.path().join("blocks")) && at == 0,
        "a block file"
    );
    let served = store.serving(&key).unwrap().unwrap();
    assert!(matches!(served, Serving::File { at: 0, len, .. } if len == 300 * 1024));
    assert!(bytes_of(&served) == large);
}

#[test]
fn a_large_block_out_of_the_page_cache_is_read_and_a_deleted_one_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_segments(tmp.path());
    let large = block(1 << 20, 3);
    let key = Id::of_block(&large);
    store.put_as(&key, &large, Origin::Pinned).unwrap();
    // Durable, so its pages are clean and the kernel can drop them.
    let (path, at) = store.bytes_on_disk(&key).unwrap().unwrap();
    let segment = std::fs::File::open(&path).unwrap();
    segment.sync_all().unwrap();
    // SAFETY: fadvise on a file we opened; DONTNEED drops its clean pages.
    let rc = unsafe {
        libc::posix_fadvise(
            segment.as_raw_fd(),
            at as i64,
            1 << 20,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0);
    let served = store.serving(&key).unwrap().unwrap();
    assert!(
        matches!(served, Serving::Bytes(_)),
        "no thread of the runtime waits on the disk: read first"
    );
    assert!(bytes_of(&served) == large);
    assert!(store.delete(&key).unwrap());
    assert!(
        store.serving(&key).unwrap().is_none(),
        "deleted: nothing to send"
    );
}
