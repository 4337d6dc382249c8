//! Schema migrations: numbered steps, each in `migrations/NNNN_name.rs`, run in
//! order on open until the data dir is at [`SCHEMA_VERSION`].
//!
//! A fresh dir is version 0. After each step the version is written to the `meta`
//! tree and flushed, so a crash repeats at most the step it interrupted: every
//! step must therefore be safe to run twice. A dir newer than this build is
//! refused before any step runs, since an older build cannot know what a newer
//! layout means and might damage it.

use std::path::Path;

use super::index::{META_TREE, SCHEMA_VERSION_KEY};
use super::StoreError;

#[path = "../../migrations/0001_initial.rs"]
mod m0001_initial;
#[path = "../../migrations/0002_block_records.rs"]
mod m0002_block_records;
#[path = "../../migrations/0003_segments.rs"]
mod m0003_segments;
#[path = "../../migrations/0004_block_files.rs"]
mod m0004_block_files;

/// The schema version this build writes and the newest it can open.
pub const SCHEMA_VERSION: u32 = 4;

/// What a migration step gets to work with.
pub(crate) struct Ctx<'a> {
    /// The open database.
    pub db: &'a sled::Db,
    /// The data dir.
    pub dir: &'a Path,
    /// The sled directory, for error messages.
    pub db_path: &'a Path,
    /// Blocks up to this many bytes belong in segments (the store's
    /// `inline_max`).
    pub inline_max: u64,
}

/// Makes a batch of a migration's segment appends the blocks' home: the
/// segments fsynced, then every `(key, entry)` of `entries` written and the
/// segments' durable point recorded, in one flush. Only after it returns
/// may the batch's old copies go.
pub(crate) fn commit_to_segments<'a>(
    ctx: &Ctx,
    segments: &super::segments::Segments,
    entries: impl IntoIterator<Item = (&'a sled::IVec, &'a super::index::IndexEntry)>,
) -> Result<(), StoreError> {
    let db_err = |e| StoreError::db(ctx.db_path, e);
    let meta = ctx.db.open_tree(META_TREE).map_err(db_err)?;
    let index = ctx.db.open_tree(super::index::INDEX_TREE).map_err(db_err)?;
    let point = segments.sync()?;
    let mut batch = sled::Batch::default();
    for (key, entry) in entries {
        batch.insert(key.clone(), entry.encode());
    }
    meta.insert(super::index::SEGMENTS_SYNCED_KEY, &point.encode()[..])
        .map_err(db_err)?;
    index.apply_batch(batch).map_err(db_err)?;
    ctx.db.flush().map_err(db_err)?;
    Ok(())
}

/// One migration: after `run` succeeds the dir is at `version`.
struct Step {
    version: u32,
    name: &'static str,
    run: fn(&Ctx) -> Result<(), StoreError>,
}

/// Every step, in order; the last one's version is [`SCHEMA_VERSION`].
const STEPS: &[Step] = &[
    Step {
        version: 1,
        name: "initial",
        run: m0001_initial::run,
    },
    Step {
        version: 2,
        name: "block_records",
        run: m0002_block_records::run,
    },
    Step {
        version: 3,
        name: "segments",
        run: m0003_segments::run,
    },
    Step {
        version: 4,
        name: "block_files",
        run: m0004_block_files::run,
    },
];

/// A test-only crash point: when set to a step's version, [`run`] fails right
/// after that step completed and before the version is bumped, as a crash
/// there would leave it. Per thread, so tests running beside it are not hit.
#[cfg(test)]
pub(crate) mod crash_hook {
    use std::cell::Cell;

    thread_local! {
        static BEFORE_BUMP: Cell<Option<u32>> = const { Cell::new(None) };
        static MID_STEP: Cell<Option<u32>> = const { Cell::new(None) };
    }

    /// Makes the next run of step `version` on this thread stop after its
    /// first durable batch, as a crash mid-step would leave it.
    pub(crate) fn mid_step(version: u32) {
        MID_STEP.with(|c| c.set(Some(version)));
    }

    /// Whether step `version` stops here (the hook fires once).
    pub(crate) fn mid_step_fires(version: u32) -> bool {
        MID_STEP.with(|c| {
            let fire = c.get() == Some(version);
            if fire {
                c.set(None);
            }
            fire
        })
    }

    /// Makes the next [`super::run`] on this thread stop before bumping to `version`.
    pub(crate) fn before_bump(version: u32) {
        BEFORE_BUMP.with(|c| c.set(Some(version)));
    }

    /// Whether to stop before bumping to `version` (the hook fires once).
    pub(super) fn fires(version: u32) -> bool {
        BEFORE_BUMP.with(|c| {
            let fire = c.get() == Some(version);
            if fire {
                c.set(None);
            }
            fire
        })
    }
}

/// The version recorded in the dir: 0 when none is.
pub(crate) fn read_version(db: &sled::Db, db_path: &Path) -> Result<u32, StoreError> {
    let meta = db
        .open_tree(META_TREE)
        .map_err(|e| StoreError::db(db_path, e))?;
    let raw = meta
        .get(SCHEMA_VERSION_KEY)
        .map_err(|e| StoreError::db(db_path, e))?;
    match raw {
        None => Ok(0),
        Some(bytes) => {
            let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| {
                StoreError::corrupt(
                    db_path,
                    format!("schema_version is {} bytes, not 4", bytes.len()),
                )
            })?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Refuses a dir written by a newer dhtfs; returns the version found.
pub(crate) fn check_not_newer(
    db: &sled::Db,
    dir: &Path,
    db_path: &Path,
) -> Result<u32, StoreError> {
    let found = read_version(db, db_path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: dir.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Brings the dir up to [`SCHEMA_VERSION`], returning it; blocks of up to
/// `inline_max` bytes move into segments.
pub(crate) fn run(
    db: &sled::Db,
    dir: &Path,
    db_path: &Path,
    inline_max: u64,
) -> Result<u32, StoreError> {
    let found = check_not_newer(db, dir, db_path)?;
    let ctx = Ctx {
        db,
        dir,
        db_path,
        inline_max,
    };
    let meta = db
        .open_tree(META_TREE)
        .map_err(|e| StoreError::db(db_path, e))?;
    for step in STEPS.iter().filter(|s| s.version > found) {
        tracing::info!(
            version = step.version,
            name = step.name,
            "running migration"
        );
        (step.run)(&ctx)?;
        #[cfg(test)]
        if crash_hook::fires(step.version) {
            return Err(StoreError::corrupt(
                db_path,
                format!(
                    "test crash after migration {} before its bump",
                    step.version
                ),
            ));
        }
        meta.insert(SCHEMA_VERSION_KEY, &step.version.to_be_bytes())
            .map_err(|e| StoreError::db(db_path, e))?;
        db.flush().map_err(|e| StoreError::db(db_path, e))?;
    }
    Ok(SCHEMA_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_one_up_to_schema_version() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(step.version as usize, i + 1, "step {}", step.name);
        }
        assert_eq!(STEPS.last().map(|s| s.version), Some(SCHEMA_VERSION));
    }

    #[test]
    fn fresh_db_migrates_to_latest_and_rerun_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("db");
        let db = sled::Config::new().path(&db_path).open().unwrap();
        assert_eq!(read_version(&db, &db_path).unwrap(), 0);
        assert_eq!(
            run(&db, dir.path(), &db_path, 1 << 20).unwrap(),
            SCHEMA_VERSION
        );
        assert_eq!(read_version(&db, &db_path).unwrap(), SCHEMA_VERSION);
        let meta = db.open_tree(META_TREE).unwrap();
        let id = meta.get(super::super::index::NODE_ID_KEY).unwrap().unwrap();
        assert_eq!(id.len(), 32);
        run(&db, dir.path(), &db_path, 1 << 20).unwrap();
        let again = meta.get(super::super::index::NODE_ID_KEY).unwrap().unwrap();
        assert_eq!(id, again, "node id must not change on a second run");
    }

    #[test]
    fn malformed_version_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("db");
        let db = sled::Config::new().path(&db_path).open().unwrap();
        let meta = db.open_tree(META_TREE).unwrap();
        meta.insert(SCHEMA_VERSION_KEY, &[1u8, 2][..]).unwrap();
        let err = read_version(&db, &db_path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
