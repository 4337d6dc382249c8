//! Migration 1: creates the four trees and gives the node its id for life.
//!
//! Safe to run twice: opening an existing tree is a no-op and an existing node id
//! is kept.

use super::Ctx;
use crate::id::Id;
use crate::store::index::{INDEX_TREE, INLINE_TREE, META_TREE, NODE_ID_KEY, ROUTING_TREE};
use crate::store::StoreError;

/// Creates `meta`, `index`, `inline` and `routing`, and writes a random node id if none.
pub(super) fn run(ctx: &Ctx) -> Result<(), StoreError> {
    // By name, not through `Trees`: this step makes the version 1 layout,
    // whatever later versions add.
    let open = |name: &str| {
        ctx.db
            .open_tree(name)
            .map_err(|e| StoreError::db(ctx.db_path, e))
    };
    let meta = open(META_TREE)?;
    for name in [INDEX_TREE, INLINE_TREE, ROUTING_TREE] {
        open(name)?;
    }
    let id = Id::random();
    // compare_and_swap from "absent" keeps an id that an interrupted earlier run wrote.
    let swapped = meta
        .compare_and_swap(NODE_ID_KEY, None::<&[u8]>, Some(&id.0[..]))
        .map_err(|e| StoreError::db(ctx.db_path, e))?;
    if swapped.is_ok() {
        tracing::info!(node_id = %id, "new data dir: generated node id");
    }
    Ok(())
}
