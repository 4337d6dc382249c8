//! What the protocol engine sees of the store: [`BlockStore`] for [`Store`].

use super::types::PendingPut;
use super::{BlockStore, Origin, PutOutcome, Refresh, Serving, Store, StoreError};
use crate::id::Id;

impl BlockStore for Store {
    fn contains(&self, key: &Id) -> bool {
        Store::contains(self, key)
    }

    fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Store::get(self, key)
    }

    fn get_for_serving(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Store::get_for_serving(self, key)
    }

    fn serving(&self, key: &Id) -> Result<Option<Serving>, StoreError> {
        Store::serving(self, key)
    }

    /// The engine stores what another node's store_value sent: a replica.
    fn put_verified(&self, key: &Id, data: &[u8]) -> Result<PutOutcome, StoreError> {
        Store::put_as(self, key, data, Origin::Replica)
    }

    fn put_copies(&self, key: &Id, data: &[u8], copies: u8) -> Result<PutOutcome, StoreError> {
        Store::put_with(self, key, data, Origin::Replica, copies)
    }

    /// Through the batch writer a client's PutBlocks share: no thread
    /// of the blocking pool waits on each pulled block.
    fn put_copies_queued(&self, key: Id, data: Vec<u8>, copies: u8) -> PendingPut {
        Box::pin(self.put_queued(key, data, Origin::Replica, copies))
    }

    fn drop_replica(&self, key: &Id) -> Result<bool, StoreError> {
        Store::delete_replica(self, key)
    }

    fn check_room(&self, size: u64) -> Result<(), StoreError> {
        Store::check_room(self, size)
    }

    fn stored_again(&self, key: &Id) {
        if let Err(e) = self.mark_refreshed(key, Refresh::StoredAgain) {
            tracing::warn!(key = %key, error = %e, "cannot record a block's refresh");
        }
    }
}
