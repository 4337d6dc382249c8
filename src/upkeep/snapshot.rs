//! Routing snapshots. Every change to the table's contacts is recorded in
//! sled within [`NOTE_EVERY`] of it, without an fsync of its own: the next
//! group commit of blocks makes it durable with them, so a node that said
//! `saved` and is then killed (SIGKILL, a power cut) rejoins with the table
//! it had. A flushed snapshot follows `after_change` after a change, and
//! every `every` as a backstop.
//!
//! "Changed" means the set of contacts (id and address) differs from the one
//! last written; entries merely heard from again do not count. A change is
//! written `after_change` after it was first seen, whatever happens meanwhile,
//! so churn costs at most one write per `after_change` and no change waits
//! longer than that (plus one tick). An empty table never replaces a snapshot:
//! a node whose peers are all down still holds the hint it needs once they
//! are back.

use std::time::Duration;

use tokio::sync::watch;

use crate::contact::Contact;
use crate::node::Node;
use crate::store::{Store, StoreError};

/// How often the table is compared with what sled holds, and a change
/// recorded: a change costs a few hundred bytes of sled's log (one entry per
/// contact that changed), at most this often.
pub(crate) const NOTE_EVERY: Duration = Duration::from_millis(250);

/// When to write, as a pure function of what the job saw and when.
#[derive(Debug)]
pub(crate) struct SnapshotPolicy {
    every_ms: u64,
    after_change_ms: Option<u64>,
    last_write_ms: u64,
    /// When the table was first seen to differ from the last snapshot.
    dirty_since_ms: Option<u64>,
}

impl SnapshotPolicy {
    pub(crate) fn new(every: Duration, after_change: Option<Duration>, now: u64) -> Self {
        SnapshotPolicy {
            every_ms: every.as_millis() as u64,
            after_change_ms: after_change.map(|d| d.as_millis() as u64),
            last_write_ms: now,
            dirty_since_ms: None,
        }
    }

    /// Whether to write at `now`, given whether the table differs from the
    /// last snapshot and whether it is empty.
    pub(crate) fn should_write(&mut self, now: u64, changed: bool, empty: bool) -> bool {
        if !changed {
            self.dirty_since_ms = None;
        } else if self.dirty_since_ms.is_none() {
            self.dirty_since_ms = Some(now);
        }
        if empty {
            return false;
        }
        let periodic = now.saturating_sub(self.last_write_ms) >= self.every_ms;
        let settled = match (self.after_change_ms, self.dirty_since_ms) {
            (Some(wait), Some(since)) => now.saturating_sub(since) >= wait,
            _ => false,
        };
        periodic || settled
    }

    /// A snapshot was written at `now`.
    pub(crate) fn written(&mut self, now: u64) {
        self.last_write_ms = now;
        self.dirty_since_ms = None;
    }
}

/// The table's contacts in a canonical order, to compare snapshots.
fn sorted_contacts(node: &Node) -> Vec<Contact> {
    let mut contacts = node.routing_contacts();
    contacts.sort_by_key(|c| (c.id, c.addr));
    contacts
}

/// Writes `contacts` as the snapshot (off the async runtime) unless the table
/// is empty; returns how many were written.
pub async fn save_snapshot(store: &Store, contacts: Vec<Contact>) -> Result<usize, StoreError> {
    if contacts.is_empty() {
        return Ok(0);
    }
    let n = contacts.len();
    off_runtime(store, contacts, true).await?;
    Ok(n)
}

/// Records `contacts` in sled without flushing.
async fn note_snapshot(store: &Store, contacts: Vec<Contact>) -> Result<(), StoreError> {
    off_runtime(store, contacts, false).await
}

/// Writes `contacts` as the snapshot on the blocking pool: flushed if
/// `durable`, else left for the next flush.
async fn off_runtime(
    store: &Store,
    contacts: Vec<Contact>,
    durable: bool,
) -> Result<(), StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || match durable {
        true => store.save_routing(&contacts),
        false => store.note_routing(&contacts),
    })
    .await
    .map_err(|e| StoreError::Io {
        path: Default::default(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Writes the snapshot when the policy says so, until `stop` turns true.
pub(super) async fn run_snapshots(
    node: Node,
    store: Store,
    every: Duration,
    after_change: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = node.clock().clone();
    let mut policy = SnapshotPolicy::new(every, after_change, clock.now_ms());
    // What is on disk now: a table rebuilt to the same contacts is no change.
    let mut saved = {
        let store = store.clone();
        let mut c = tokio::task::spawn_blocking(move || store.load_routing())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        c.sort_by_key(|c| (c.id, c.addr));
        c
    };
    // What sled holds, flushed or not.
    let mut noted = saved.clone();
    // Look every NOTE_EVERY (or more often for a shorter wait): a change is
    // recorded then, and flushed at most that much later than asked.
    let tick = after_change
        .unwrap_or(every)
        .min(every)
        .min(NOTE_EVERY)
        .max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = clock.sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let contacts = sorted_contacts(&node);
        let now = clock.now_ms();
        if !policy.should_write(now, contacts != saved, contacts.is_empty()) {
            if contacts != noted && !contacts.is_empty() {
                match note_snapshot(&store, contacts.clone()).await {
                    Ok(()) => noted = contacts,
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a routing change failed; will try again")
                    }
                }
            }
            continue;
        }
        match save_snapshot(&store, contacts.clone()).await {
            Ok(n) => {
                tracing::debug!(peers = n, "routing snapshot written");
                noted = contacts.clone();
                saved = contacts;
            }
            Err(e) => tracing::warn!(error = %e, "routing snapshot failed; will try again"),
        }
        // A failed write waits for the next turn too, rather than retrying every tick.
        policy.written(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SnapshotPolicy {
        SnapshotPolicy::new(Duration::from_secs(300), Some(Duration::from_secs(10)), 0)
    }

    #[test]
    fn a_change_is_written_once_it_is_as_old_as_the_wait() {
        let mut p = policy();
        assert!(!p.should_write(1_000, false, false));
        assert!(!p.should_write(2_000, true, false), "first seen at 2 s");
        // Later changes do not postpone the write: churn cannot starve it.
        assert!(!p.should_write(8_000, true, false));
        assert!(!p.should_write(11_999, true, false));
        assert!(p.should_write(12_000, true, false));
        p.written(12_000);
        assert!(!p.should_write(13_000, false, false));
    }

    #[test]
    fn a_change_undone_before_the_wait_is_not_written() {
        let mut p = policy();
        assert!(!p.should_write(1_000, true, false));
        assert!(!p.should_write(2_000, false, false));
        assert!(
            !p.should_write(11_500, true, false),
            "a new change, a new wait"
        );
        assert!(p.should_write(21_500, true, false));
    }

    #[test]
    fn an_empty_table_never_replaces_a_snapshot() {
        let mut p = policy();
        assert!(!p.should_write(1_000, true, true));
        assert!(!p.should_write(20_000, true, true));
        assert!(
            !p.should_write(400_000, true, true),
            "not even the periodic one"
        );
        // Once peers are back, the change (seen since 1 s) is due at once.
        assert!(p.should_write(400_100, true, false));
    }

    #[test]
    fn the_periodic_write_still_runs_without_changes_and_with_no_wait() {
        let mut p = SnapshotPolicy::new(Duration::from_secs(300), None, 0);
        assert!(
            !p.should_write(10_000, true, false),
            "no write after a change"
        );
        assert!(!p.should_write(299_999, false, false));
        assert!(p.should_write(300_000, false, false));
        p.written(300_000);
        assert!(!p.should_write(300_100, false, false));
    }
}
