//! Upkeep jobs over the stored blocks. Each runs one pass when called: by the
//! admin API on demand, and by [`run`] on the node's schedule.

mod republish;
mod schedule;
mod verify;

pub use republish::{republish_once, RepublishReport};
pub use schedule::{run, Schedule};
pub use verify::{verify_once, VerifyReport};

use crate::id::Id;
use crate::store::{BlockMeta, Store, StoreError};

/// Keys per page when walking the store.
const PAGE: usize = 256;

/// One page of stored keys after `after`, read off the async runtime.
async fn page(store: &Store, after: Option<Id>) -> Result<Vec<(Id, BlockMeta)>, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.list(after, PAGE))
        .await
        .map_err(|e| StoreError::Io {
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?
}
