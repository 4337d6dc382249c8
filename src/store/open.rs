//! Opening a data dir: creating it, running migrations, repairing what a crash
//! left (or taking a clean close's summary), and the audit that only looks.
//! Also what an open fixes for the store's life: its node id, schema version
//! and dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use super::batch_writer::BatchWriter;
use super::files::{self, DB_DIR};
use super::free_space::DiskFloor;
use super::group_commit::GroupCommit;
use super::in_flight::InFlight;
use super::index::{Trees, NODE_ID_KEY, SEGMENTS_SYNCED_KEY};
use super::segments::{Segments, Synced};
use super::{migrate, repair, summary};
use super::{AuditReport, Inner, RepairReport, Store, StoreConfig, StoreError, LOCK_STRIPES};
use crate::id::Id;

fn open_db(dir: &Path, cache_bytes: u64) -> Result<(sled::Db, PathBuf), StoreError> {
    let db_path = dir.join(DB_DIR);
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok((db, db_path))
}

/// sled's page cache while an open migrates, recovers and checks: the walks
/// of whole trees after a crash would otherwise fill the configured cache
/// and leave it resident (measured on 100k blocks of 4 KiB: 53 MiB RSS with
/// 64 MiB, 31 MiB with 4 MiB, the open 0.23 s and 0.33 s).
const START_CACHE: u64 = 4 << 20;

/// Opens sled again after the handle of the same dir was dropped: its
/// flusher thread may hold the lock a moment longer.
fn reopen_db(dir: &Path, cache_bytes: u64) -> Result<(sled::Db, PathBuf), StoreError> {
    for _ in 0..250 {
        match open_db(dir, cache_bytes) {
            Err(StoreError::Open { source, .. }) if source.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    open_db(dir, cache_bytes)
}

impl Store {
    /// Opens the data dir (creating it if missing), runs migrations, and repairs
    /// what a crash left behind.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<(Store, RepairReport), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let (db, db_path) = open_db(dir, cfg.cache_bytes.min(START_CACHE))?;
        let schema_version = migrate::run(&db, dir, &db_path, cfg.inline_max as u64)?;
        let trees = Trees::open(&db, &db_path)?;
        let node_id = read_node_id(&trees.meta, &db_path)?;
        let synced = read_synced(&trees.meta, &db_path)?;
        let (segments, recovered) =
            Segments::open(dir, synced, cfg.max_block_size as u64, cfg.segment_bytes)?;
        if !recovered.is_clean() {
            tracing::info!(
                dir = %dir.display(),
                records_past_durable_point = recovered.tail.len(),
                torn_bytes_cut = recovered.bytes_cut,
                segment_files_removed = recovered.files_removed,
                "segments recovered past their last durable point"
            );
        }
        // A clean close leaves nothing past the durable point: anything there
        // means writes after it, so every entry is checked.
        let summary = summary::take(dir, &db, &trees, &db_path)?.filter(|_| recovered.is_clean());
        let (counts, report) = match summary {
            // Closed cleanly: nothing to repair but what tmp/ holds (nothing,
            // unless someone put it there), and the counts are known.
            Some(s) => {
                let temps = repair::clean_tmp(&dir.join(files::TMP_DIR), true)?;
                files::ensure_layout(dir)?;
                let report = RepairReport {
                    temp_files_removed: temps,
                    ..RepairReport::default()
                };
                (s, report)
            }
            None => {
                // Before ensure_layout, which would create a missing blocks/
                // and hide that it was gone.
                let scan = repair::scan(dir, &trees, &recovered, true, cfg.accept_data_loss)?;
                files::ensure_layout(dir)?;
                release_scan_memory();
                let counts = summary::Summary {
                    blocks: scan.audit.blocks,
                    bytes: scan.bytes,
                    charged: scan.charged,
                };
                (counts, scan.repaired)
            }
        };
        if !report.is_clean() {
            tracing::warn!(
                dir = %dir.display(),
                temp_files_removed = report.temp_files_removed,
                index_entries_dropped = report.index_entries_dropped,
                stray_files_removed = report.stray_files_removed,
                corrupt_entries_dropped = report.corrupt_entries_dropped,
                "repaired data dir after an unclean stop"
            );
        }
        // The start-up work is done: sled again, with the configured cache.
        let (db, trees) = if cfg.cache_bytes > START_CACHE {
            db.flush().map_err(|e| StoreError::db(&db_path, e))?;
            drop(trees);
            drop(db);
            release_scan_memory();
            let (db, _) = reopen_db(dir, cfg.cache_bytes)?;
            let trees = Trees::open(&db, &db_path)?;
            (db, trees)
        } else {
            (db, trees)
        };
        let floor = DiskFloor::new(dir, cfg.min_free_bytes, cfg.min_free_percent);
        let inner = Inner {
            dir: dir.to_path_buf(),
            db_path,
            cfg,
            db,
            trees,
            node_id,
            schema_version,
            blocks: AtomicU64::new(counts.blocks),
            bytes: AtomicU64::new(counts.bytes),
            charged: AtomicU64::new(counts.charged),
            reserved: Mutex::new(0),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            in_flight: InFlight::default(),
            staging: std::sync::RwLock::new(()),
            floor,
            commit: GroupCommit::default(),
            segments,
            compaction_moved: AtomicU64::new(0),
            segment_reclaimable: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            writer: BatchWriter::default(),
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        Ok((store, report))
    }

    /// Opens the data dir and checks it without repairing or migrating anything.
    pub fn audit(dir: &Path) -> Result<AuditReport, StoreError> {
        let db_dir = dir.join(DB_DIR);
        if !db_dir.is_dir() {
            let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no db/ here");
            return Err(StoreError::io(&db_dir, missing));
        }
        let (db, db_path) = open_db(dir, StoreConfig::default().cache_bytes)?;
        migrate::check_not_newer(&db, dir, &db_path)?;
        let trees = Trees::open(&db, &db_path)?;
        let synced = read_synced(&trees.meta, &db_path)?;
        let recovered =
            Segments::inspect(dir, synced, StoreConfig::default().max_block_size as u64)?;
        Ok(repair::scan(dir, &trees, &recovered, false, true)?.audit)
    }

    /// This node's id, fixed when the data dir was created.
    pub fn node_id(&self) -> Id {
        self.inner.node_id
    }

    /// The data dir's schema version.
    pub fn schema_version(&self) -> u32 {
        self.inner.schema_version
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Gives the heap the scan grew back to the system: reading every inline
/// block through sled leaves tens of MiB free but held (measured: 95 MiB RSS
/// after a scan of 100k blocks of 4 KiB), and jemalloc, the binary's
/// allocator, keeps freed pages some seconds for reuse (measured: 39 MiB
/// RSS after a crash open of 100k blocks, 21 MiB once purged).
fn release_scan_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    /// jemalloc's `MALLCTL_ARENAS_ALL`: the command applies to every arena.
    const ALL_ARENAS: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a purge takes no old or new value, so null pointers and a
    // zero length are what it expects; with jemalloc not the allocator in
    // use, it purges an allocator that holds nothing.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            ALL_ARENAS.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// The segments' durable point as last recorded; `None` before the first.
fn read_synced(meta: &sled::Tree, db_path: &Path) -> Result<Option<Synced>, StoreError> {
    let Some(raw) = meta
        .get(SEGMENTS_SYNCED_KEY)
        .map_err(|e| StoreError::db(db_path, e))?
    else {
        return Ok(None);
    };
    Synced::decode(&raw)
        .map(Some)
        .ok_or_else(|| StoreError::corrupt(db_path, "the segments' durable point does not decode"))
}

fn read_node_id(meta: &sled::Tree, db_path: &Path) -> Result<Id, StoreError> {
    let raw = meta
        .get(NODE_ID_KEY)
        .map_err(|e| StoreError::db(db_path, e))?
        .ok_or_else(|| StoreError::corrupt(db_path, "meta has no node_id"))?;
    let bytes: [u8; 32] = raw.as_ref().try_into().map_err(|_| {
        StoreError::corrupt(db_path, format!("node_id is {} bytes, not 32", raw.len()))
    })?;
    Ok(Id(bytes))
}
