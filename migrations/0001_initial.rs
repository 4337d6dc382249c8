//! Migration 1: creates the four trees and gives the node its id for life.
//!
//! Safe to run twice: opening an existing tree is a no-op and an existing node id
//! is kept.

use super::Ctx;
use crate::id::Id;
use crate::store::index::{Trees, NODE_ID_KEY};
use crate::store::StoreError;

/// Creates `meta`, `index`, `inline` and `routing`, and writes a random node id if none.
pub(super) fn run(ctx: &Ctx) -> Result<(), StoreError> {
    let trees = Trees::open(ctx.db, ctx.db_path)?;
    let id = Id::random();
    // compare_and_swap from "absent" keeps an id that an interrupted earlier run wrote.
    let swapped = trees
        .meta
        .compare_and_swap(NODE_ID_KEY, None::<&[u8]>, Some(&id.0[..]))
        .map_err(|e| StoreError::db(ctx.db_path, e))?;
    if swapped.is_ok() {
        tracing::info!(node_id = %id, "new data dir: generated node id");
    }
    Ok(())
}
