//! Where the upkeep workers stand: the `upkeep` tree, key = a job's name
//! (`republish`, `scrub`), value = the JSON of that job's own progress type.
//! JSON because these are a handful of small values, rewritten a few times a
//! second at most and read by people debugging a node. Not flushed on every
//! write: sled flushes within half a second, and a job that resumes from a
//! slightly older position only repeats a little work.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// Tree of upkeep progress values.
pub(crate) const UPKEEP_TREE: &str = "upkeep";

pub(super) fn save<T: Serialize>(
    tree: &sled::Tree,
    db_path: &Path,
    job: &str,
    value: &T,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| StoreError::corrupt(db_path, format!("cannot encode {job} progress: {e}")))?;
    tree.insert(job.as_bytes(), json)
        .map_err(|e| StoreError::db(db_path, e))?;
    Ok(())
}

/// The saved value; `None` when absent, or when it does not decode (a value
/// from another version starts the job afresh rather than stopping the node).
pub(super) fn load<T: DeserializeOwned>(
    tree: &sled::Tree,
    db_path: &Path,
    job: &str,
) -> Result<Option<T>, StoreError> {
    let Some(raw) = tree
        .get(job.as_bytes())
        .map_err(|e| StoreError::db(db_path, e))?
    else {
        return Ok(None);
    };
    match serde_json::from_slice(&raw) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::warn!(job, error = %e, "saved upkeep progress does not decode; starting afresh");
            Ok(None)
        }
    }
}
