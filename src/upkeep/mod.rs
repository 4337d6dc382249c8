//! Upkeep jobs over the stored blocks. Each runs one pass when called: by the
//! admin API on demand, and by [`run`] on the node's schedule.

mod compact;
mod compact_status;
mod control;
mod handoff;
mod metrics;
mod repair;
mod republish;
mod schedule;
mod scrub;
mod scrub_status;
mod shed;
mod snapshot;
mod sweep;
mod verify;

pub use compact::{compaction_pass, run_compaction, worth_compacting, PassProgress};
pub use compact_status::{
    CompactionControl, CompactionCounts, CompactionPass, CompactionSaved, CompactionState,
    CompactionStatus, COMPACTION_JOB,
};
pub use control::{Control, IsOff, Shown};
pub use handoff::{hand_off, run_handoff, HandoffReport};
pub use metrics::register_metrics;
pub use repair::{repair_keys, repair_once, run_repair, Backoff, RepairReport};
pub use republish::{republish_keys, republish_once, RepublishReport};
pub use schedule::{run, Schedule};
pub use scrub::{run_scrub, ScrubSettings};
pub use scrub_status::{
    CompletedPass, PassCounts, ScrubControl, ScrubProgress, ScrubState, ScrubStatus, SCRUB_JOB,
};
pub use shed::{run_shed, shed_once, ShedReport};
pub use snapshot::save_snapshot;
pub use sweep::{run_sweep, sweep_progress, SweepProgress};
pub use verify::{verify_once, VerifyReport};

use crate::id::Id;
use crate::store::{BlockMeta, Store, StoreError};

/// Keys per page when walking the store.
const PAGE: usize = 256;

/// Walks every stored key in order, a page at a time, reading off the async
/// runtime; keys stored or deleted during the walk may or may not be seen.
struct Keys {
    store: Store,
    after: Option<Id>,
    page: std::vec::IntoIter<(Id, BlockMeta)>,
    done: bool,
}

impl Keys {
    fn new(store: &Store) -> Keys {
        Keys::after(store, None)
    }

    /// Keys strictly after `after` (all of them for `None`).
    fn after(store: &Store, after: Option<Id>) -> Keys {
        Keys {
            store: store.clone(),
            after,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<Id>, StoreError> {
        Ok(self.next_with_meta().await?.map(|(key, _)| key))
    }

    /// The next key with what the store knows of its block.
    async fn next_with_meta(&mut self) -> Result<Option<(Id, BlockMeta)>, StoreError> {
        if let Some(item) = self.page.next() {
            return Ok(Some(item));
        }
        if self.done {
            return Ok(None);
        }
        let (store, after) = (self.store.clone(), self.after);
        let page = tokio::task::spawn_blocking(move || store.list(after, PAGE))
            .await
            .map_err(|e| StoreError::Io {
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            })??;
        self.done = page.len() < PAGE;
        self.after = page.last().map(|(k, _)| *k);
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}
