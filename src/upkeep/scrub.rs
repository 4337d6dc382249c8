//! The scrub worker: reads every stored block in key order at a bounded rate,
//! re-hashing each and replacing a corrupt one with a good copy fetched from
//! the network (see `verify.rs`), so rot is found while other copies exist.
//!
//! A pass starts an interval after the previous one started (one that takes
//! longer just ends, and the next starts at once). Where the pass stands is
//! saved in the store every second or 256 blocks, on pause, on stop and at
//! its end, so a restart goes on after the last key checked, and the pass
//! still counts as one. Reads are paced by bytes: the long-run average stays
//! under the rate, with at most one second's worth (or one block) at once.
//! Nothing here ends the node: a failed read or save is logged, and the
//! worker tries again later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::scrub_status::{
    keyspace_ratio, CompletedPass, PassCounts, PassProgress, ScrubControl, ScrubProgress,
    ScrubState, SCRUB_JOB,
};
use super::verify::{check_block, Checked};
use super::Keys;
use crate::id::Id;
use crate::limits::Pacer;
use crate::node::{Clock, Node};
use crate::stats::Stats;
use crate::store::{BlockMeta, Store};

/// How the worker runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubSettings {
    /// A pass starts this long after the previous one started; `None`: off.
    pub every: Option<Duration>,
    /// Bytes read a second at most.
    pub bytes_per_sec: u64,
}

/// The position is saved at least this often during a pass...
const SAVE_EVERY_MS: u64 = 1_000;
/// ...and at least every this many blocks.
const SAVE_EVERY_BLOCKS: u64 = 256;
/// No wait lasts longer than this without looking again.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// Runs the scrub until `stop` turns true; with `every` unset it only leaves
/// the state at off.
pub async fn run_scrub(
    node: Node,
    store: Store,
    settings: ScrubSettings,
    control: ScrubControl,
    stop: watch::Receiver<bool>,
) {
    let Some(every) = settings.every else {
        return;
    };
    let clock = node.clock().clone();
    let saved = load(&store, clock.unix_ms()).await;
    let mut worker = Worker {
        pacer: Pacer::new(settings.bytes_per_sec, clock.now_ms()),
        paused: control.watch_paused(),
        node,
        store,
        clock,
        every_ms: every.as_millis() as u64,
        control,
        stop,
        saved,
        total: PassCounts::default(),
        passes: 0,
        last_save_ms: 0,
        unsaved_blocks: 0,
    };
    worker.control.update(|s| {
        s.rate_bytes_per_sec = settings.bytes_per_sec;
        s.interval_ms = every.as_millis() as u64;
    });
    worker.show();
    worker.control.restore_paused(worker.saved.paused);
    // A first run saves its start, so restarts never put off the first pass.
    worker.save().await;
    worker.run().await;
}

/// The saved progress, or a fresh one starting the wait for a first pass now.
async fn load(store: &Store, now_unix_ms: u64) -> ScrubProgress {
    let s = store.clone();
    let fresh = || ScrubProgress {
        started_unix_ms: now_unix_ms,
        ..ScrubProgress::default()
    };
    match tokio::task::spawn_blocking(move || s.load_progress::<ScrubProgress>(SCRUB_JOB)).await {
        Ok(Ok(Some(saved))) => saved,
        Ok(Ok(None)) => fresh(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read where the scrub stood; starting afresh");
            fresh()
        }
        Err(e) => {
            tracing::warn!(error = %e, "scrub load task failed; starting afresh");
            fresh()
        }
    }
}

/// How a walk through the pass ended.
enum Walk {
    Done,
    Stopped,
    Failed,
}

struct Worker {
    node: Node,
    store: Store,
    clock: Arc<dyn Clock>,
    every_ms: u64,
    control: ScrubControl,
    stop: watch::Receiver<bool>,
    paused: watch::Receiver<bool>,
    pacer: Pacer,
    saved: ScrubProgress,
    /// Since the node started.
    total: PassCounts,
    passes: u64,
    last_save_ms: u64,
    unsaved_blocks: u64,
}

impl Worker {
    async fn run(&mut self) {
        loop {
            if self.saved.pass.is_none() {
                if !self.wait_for_pass().await {
                    return;
                }
                self.begin_pass().await;
            }
            match self.walk().await {
                Walk::Done => self.finish_pass().await,
                Walk::Stopped => {
                    self.save().await;
                    return;
                }
                Walk::Failed => {
                    // The store could not be listed: try again a while later.
                    self.save().await;
                    if self.nap(LONGEST_WAIT).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits until a pass is due and the worker not paused; false on stop.
    async fn wait_for_pass(&mut self) -> bool {
        loop {
            if !self.hold().await {
                return false;
            }
            // A clock set back delays a pass by one interval at most.
            let now = self.clock.unix_ms();
            let due = self.saved.started_unix_ms.min(now) + self.every_ms;
            if now >= due {
                return true;
            }
            let wait = Duration::from_millis(due - now).min(LONGEST_WAIT);
            if self.nap(wait).await {
                return false;
            }
        }
    }

    async fn begin_pass(&mut self) {
        Stats::inc(&self.node.stats().verify_runs);
        self.saved.started_unix_ms = self.clock.unix_ms();
        self.saved.pass = Some(PassProgress::default());
        tracing::info!("scrub pass started");
        self.show();
        self.save().await;
    }

    async fn finish_pass(&mut self) {
        let now = self.clock.unix_ms();
        let counts = self.pass_counts();
        self.saved.pass = None;
        self.saved.last = Some(CompletedPass {
            finished_unix_ms: now,
            duration_ms: now.saturating_sub(self.saved.started_unix_ms),
            counts,
        });
        self.passes += 1;
        Stats::inc(&self.node.stats().scrub_passes);
        if counts.corrupt > 0 || counts.unreadable > 0 {
            tracing::warn!(
                checked = counts.blocks,
                corrupt = counts.corrupt,
                repaired = counts.repaired,
                unreadable = counts.unreadable,
                "scrub pass done: corrupt or unreadable blocks found"
            );
        } else {
            tracing::info!(
                checked = counts.blocks,
                bytes = counts.bytes,
                "scrub pass done"
            );
        }
        self.show();
        self.save().await;
    }

    /// Checks the blocks after the saved position, to the end of the store.
    async fn walk(&mut self) -> Walk {
        let mut keys = Keys::after(&self.store, self.saved.resume_after());
        loop {
            if !self.hold().await {
                return Walk::Stopped;
            }
            let (key, meta) = match keys.next_with_meta().await {
                Ok(Some(block)) => block,
                Ok(None) => return Walk::Done,
                Err(e) => {
                    tracing::warn!(error = %e, "scrub cannot list the store; will try again");
                    return Walk::Failed;
                }
            };
            if !self.pace(meta.size).await {
                return Walk::Stopped;
            }
            let checked = check_block(&self.node, &self.store, key, true).await;
            self.count(key, &meta, checked);
            self.save_now_and_then().await;
        }
    }

    /// Waits until the rate allows reading `bytes`; false on stop.
    async fn pace(&mut self, bytes: u64) -> bool {
        loop {
            match self.pacer.wait_ms(bytes, self.clock.now_ms()) {
                0 => return true,
                ms => {
                    if self.nap(Duration::from_millis(ms)).await || !self.hold().await {
                        return false;
                    }
                }
            }
        }
    }

    /// Returns at once unless paused; while paused, saves that and waits for
    /// a resume. False on stop.
    async fn hold(&mut self) -> bool {
        loop {
            if *self.stop.borrow() {
                return false;
            }
            let paused = self.control.is_paused();
            if self.saved.paused != paused {
                self.saved.paused = paused;
                tracing::info!(paused, "scrub paused or resumed");
                self.save().await;
            }
            if !paused {
                return true;
            }
            if self.nap(LONGEST_WAIT).await {
                return false;
            }
        }
    }

    /// Sleeps up to `d`, waking early on a pause or resume; true on stop.
    async fn nap(&mut self, d: Duration) -> bool {
        let sleep = self.clock.sleep(d);
        tokio::select! {
            _ = sleep => {}
            _ = self.paused.changed() => {}
            changed = self.stop.changed() => {
                if changed.is_err() {
                    return true;
                }
            }
        }
        *self.stop.borrow()
    }

    fn count(&mut self, key: Id, meta: &BlockMeta, checked: Checked) {
        Stats::add(&self.node.stats().scrub_bytes_read, meta.size);
        let (corrupt, repaired, unreadable) = match checked {
            Checked::Good => (0, 0, 0),
            Checked::Corrupt { repaired } => (1, u64::from(repaired), 0),
            Checked::Unreadable => (0, 0, 1),
        };
        let add = |c: &mut PassCounts| {
            c.blocks += 1;
            c.bytes += meta.size;
            c.corrupt += corrupt;
            c.repaired += repaired;
            c.unreadable += unreadable;
        };
        add(&mut self.total);
        if let Some(pass) = self.saved.pass.as_mut() {
            add(&mut pass.counts);
            pass.after = Some(key.to_hex());
        }
        self.unsaved_blocks += 1;
        self.show();
    }

    fn pass_counts(&self) -> PassCounts {
        self.saved
            .pass
            .as_ref()
            .map(|p| p.counts)
            .unwrap_or_default()
    }

    /// Shows the worker's state through the control.
    fn show(&self) {
        let position = self.saved.resume_after();
        let in_pass = self.saved.pass.is_some();
        let (total, passes, last) = (self.total, self.passes, self.saved.last);
        let pass = self.pass_counts();
        let started = self.saved.started_unix_ms;
        let next = if in_pass { 0 } else { started + self.every_ms };
        self.control.update(|s| {
            s.state = if in_pass {
                ScrubState::Running
            } else {
                ScrubState::Idle
            };
            s.position = position;
            s.position_ratio = position.as_ref().map_or(0.0, keyspace_ratio);
            s.pass = pass;
            s.pass_started_unix_ms = if in_pass { started } else { 0 };
            s.total = total;
            s.passes = passes;
            s.last = last;
            s.next_pass_unix_ms = next;
        });
    }

    async fn save_now_and_then(&mut self) {
        let due = self.clock.now_ms().saturating_sub(self.last_save_ms) >= SAVE_EVERY_MS;
        if due || self.unsaved_blocks >= SAVE_EVERY_BLOCKS {
            self.save().await;
        }
    }

    /// Saves the progress value (off the runtime); a failure is logged.
    async fn save(&mut self) {
        self.last_save_ms = self.clock.now_ms();
        self.unsaved_blocks = 0;
        let (store, value) = (self.store.clone(), self.saved.clone());
        match tokio::task::spawn_blocking(move || store.save_progress(SCRUB_JOB, &value)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save where the scrub stands"),
            Err(e) => tracing::warn!(error = %e, "scrub save task failed"),
        }
    }
}
