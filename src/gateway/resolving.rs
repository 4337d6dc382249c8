//! One resolve per file at a time: requests for a file whose manifest is not
//! cached share the resolve already under way rather than each looking it
//! up (a video posted somewhere is asked for by many players at once, and
//! each would otherwise fetch its manifest tree from the network).
//!
//! The resolve runs as a task of its own, bounded by the resolve timeout,
//! so it ends (and leaves the map) even when every request waiting on it
//! went away; a file that resolved is cached before its entry goes, and
//! one that failed is not kept, so the next request tries again. Entries
//! are bounded by the requests in flight that started them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::error::shown;
use super::{Gateway, GatewayError};
use crate::files::{FileRef, Resolved};

/// A resolve under way, awaited by every request for its file.
pub(super) type Resolving = Shared<BoxFuture<'static, Result<Arc<Resolved>, GatewayError>>>;

/// The resolves under way, by the file (the whole capability) they open.
pub(super) type InFlight = Arc<Mutex<HashMap<FileRef, Resolving>>>;

impl Gateway {
    /// The file `file_ref` names, resolved from the network: by the resolve
    /// already under way for it, or by one started here.
    pub(super) async fn resolve(&self, file_ref: FileRef) -> Result<Arc<Resolved>, GatewayError> {
        // Started under the lock: the task's own removal waits for the insert.
        let resolving = self
            .resolving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(file_ref)
            .or_insert_with(|| self.start_resolve(file_ref))
            .clone();
        resolving.await
    }

    fn start_resolve(&self, file_ref: FileRef) -> Resolving {
        self.metrics.resolve_started();
        let gw = self.clone();
        let task = tokio::spawn(async move {
            let fetcher = gw.fetcher();
            let root = file_ref.root();
            let resolved = tokio::time::timeout(gw.resolve_timeout, fetcher.resolve(file_ref))
                .await
                .map_err(|_| {
                    GatewayError::TimedOut(format!(
                        "the manifest of {root} was not resolved within {}: retry later",
                        shown(gw.resolve_timeout)
                    ))
                })
                .and_then(|r| r.map_err(|e| GatewayError::unresolved(root, e)))
                .map(Arc::new);
            gw.metrics.take_rejected(&fetcher.counters);
            if let Ok(file) = &resolved {
                gw.keep(file_ref, file.clone());
            }
            gw.resolving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&file_ref);
            resolved
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(GatewayError::TimedOut(format!(
                    "resolving the manifest failed ({e}): retry later"
                )))
            })
        }
        .boxed()
        .shared()
    }
}
