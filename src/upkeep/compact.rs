//! The compaction worker: every interval, measures what each segment file
//! holds (one walk of the index), and rewrites the sealed ones a quarter or
//! more dead (`store/compact.rs` does the rewriting,
//! crash-safe), moving at most a set rate of live bytes a second so serving
//! keeps the disk. A stop ends a pass between batches; a pass stopped or
//! killed part-way is finished by the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::compact_status::{
    CompactionControl, CompactionCounts, CompactionPass, CompactionSaved, CompactionState,
    COMPACTION_JOB,
};
use crate::node::Node;
use crate::stats::Stats;
use crate::store::{SegmentUse, Store};

/// A segment is rewritten once its dead bytes are this part of what it
/// takes on disk (a quarter: sealed segments then take at most 4/3 of their
/// live bytes, for at most 3 bytes rewritten per byte won back) and at least
/// this many bytes.
const DEAD_PART: u64 = 4;
const MIN_DEAD: u64 = 256 << 10;

/// Whether segment `u` is worth rewriting.
pub fn worth_compacting(u: &SegmentUse) -> bool {
    !u.active && u.dead() >= MIN_DEAD && u.dead().saturating_mul(DEAD_PART) >= u.allocated
}

/// Where a pass stands, for whoever shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassProgress {
    /// The segment being rewritten, if one is.
    pub segment: Option<u64>,
    pub counts: CompactionCounts,
    /// Disk bytes of the segment files, and of those the dead ones, as the
    /// pass last measured.
    pub segment_bytes: u64,
    pub dead_bytes: u64,
}

/// Runs a pass `every` after the previous one ended, until `stop`; shows its
/// state and takes pause and resume through `control`. A pause stops a pass
/// after its batch in flight; on resume the pass starts over at once.
pub async fn run_compaction(
    node: Node,
    store: Store,
    every: Duration,
    bytes_per_sec: u64,
    control: CompactionControl,
    mut stop: watch::Receiver<bool>,
) {
    let clock = node.clock().clone();
    let stats = node.stats();
    let mut saved = load(&store).await;
    let mut paused = control.watch_paused();
    control.update(|s| {
        s.state = CompactionState::Idle;
        s.rate_bytes_per_sec = bytes_per_sec;
        s.interval_ms = every.as_millis() as u64;
        s.last = saved.last;
    });
    control.restore_paused(saved.paused);
    // The first pass soon after the start: until one measures, dead bytes
    // left from before the start are not known to the shedding pressure.
    let mut wait = every.min(Duration::from_secs(60));
    loop {
        let due = clock.now_ms() + wait.as_millis() as u64;
        control.update(|s| s.next_pass_unix_ms = clock.unix_ms() + wait.as_millis() as u64);
        loop {
            let is_paused = *paused.borrow_and_update();
            if is_paused != saved.paused {
                saved.paused = is_paused;
                save(&store, &saved).await;
            }
            let left = due.saturating_sub(clock.now_ms());
            if !is_paused && left == 0 {
                break;
            }
            tokio::select! {
                _ = clock.sleep(Duration::from_millis(left)), if !is_paused => {}
                r = paused.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
        wait = every;
        let started = clock.unix_ms();
        control.update(|s| {
            s.state = CompactionState::Running;
            s.pass = CompactionCounts::default();
            s.pass_started_unix_ms = started;
            s.next_pass_unix_ms = 0;
        });
        // Told to stop or to pause: the pass ends after its batch in flight.
        let halt = Arc::new(AtomicBool::new(false));
        let (s, st, h, c) = (store.clone(), stats.clone(), halt.clone(), control.clone());
        let pass = tokio::task::spawn_blocking(move || {
            compaction_pass(&s, &st, bytes_per_sec, &h, &mut |p| {
                c.update(|s| {
                    s.segment = p.segment;
                    s.pass = p.counts;
                    s.segment_bytes = p.segment_bytes;
                    s.dead_bytes = p.dead_bytes;
                })
            })
        });
        tokio::pin!(pass);
        let result = loop {
            let halted = halt.load(Ordering::SeqCst);
            tokio::select! {
                r = &mut pass => break r,
                _ = stop.changed() => {
                    halt.store(true, Ordering::SeqCst);
                    let _ = pass.await;
                    return;
                }
                r = paused.changed(), if !halted => {
                    if r.is_err() || *paused.borrow() {
                        halt.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        control.update(|s| {
            s.state = CompactionState::Idle;
            s.segment = None;
            s.pass_started_unix_ms = 0;
        });
        match result {
            Ok(Ok(Some(counts))) => {
                let now = clock.unix_ms();
                let last = CompactionPass {
                    finished_unix_ms: now,
                    duration_ms: now.saturating_sub(started),
                    counts,
                };
                saved.last = Some(last);
                control.update(|s| {
                    s.passes += 1;
                    s.last = Some(last);
                    s.pass = CompactionCounts::default();
                });
                save(&store, &saved).await;
            }
            // Paused part-way: the pass starts over once resumed.
            Ok(Ok(None)) => wait = Duration::ZERO,
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction pass failed"),
            Err(e) => tracing::warn!(error = %e, "compaction pass panicked"),
        }
    }
}

/// The saved value, or a fresh one.
async fn load(store: &Store) -> CompactionSaved {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.load_progress::<CompactionSaved>(COMPACTION_JOB))
        .await
    {
        Ok(Ok(saved)) => saved.unwrap_or_default(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read compaction's saved state; starting afresh");
            CompactionSaved::default()
        }
        Err(e) => {
            tracing::warn!(error = %e, "compaction load task failed; starting afresh");
            CompactionSaved::default()
        }
    }
}

/// Saves the value (off the runtime); a failure is logged.
async fn save(store: &Store, saved: &CompactionSaved) {
    let (store, value) = (store.clone(), saved.clone());
    match tokio::task::spawn_blocking(move || store.save_progress(COMPACTION_JOB, &value)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot save compaction's state"),
        Err(e) => tracing::warn!(error = %e, "compaction save task failed"),
    }
}

/// One pass, on a blocking thread: measure, then rewrite each segment worth
/// it, paced to `bytes_per_sec`, showing where it stands through `show`.
/// `None` when `halt` stopped it part-way.
pub fn compaction_pass(
    store: &Store,
    stats: &Stats,
    bytes_per_sec: u64,
    halt: &AtomicBool,
    show: &mut dyn FnMut(&PassProgress),
) -> Result<Option<CompactionCounts>, crate::store::StoreError> {
    let mut progress = PassProgress::default();
    let measure = |uses: &[SegmentUse], progress: &mut PassProgress| {
        let (total, dead) = (
            uses.iter().map(|u| u.allocated).sum(),
            uses.iter().map(SegmentUse::dead).sum(),
        );
        store.note_segment_dead(dead);
        stats.segment_bytes.store(total, Ordering::Relaxed);
        stats.segment_dead_bytes.store(dead, Ordering::Relaxed);
        progress.segment_bytes = total;
        progress.dead_bytes = dead;
    };
    let uses = store.segment_use()?;
    measure(&uses, &mut progress);
    let mut todo: Vec<SegmentUse> = uses.iter().copied().filter(worth_compacting).collect();
    todo.sort_by_key(|u| std::cmp::Reverse(u.dead()));
    progress.counts.segments_due = todo.len() as u64;
    show(&progress);
    let started = Instant::now();
    let mut moved = 0u64;
    for u in todo {
        if halt.load(Ordering::SeqCst) {
            return Ok(None);
        }
        progress.segment = Some(u64::from(u.seg));
        show(&progress);
        let done = store.compact_segment(u.seg, &mut |bytes| {
            moved += bytes;
            progress.counts.bytes_moved += bytes;
            Stats::add(&stats.compaction_bytes_moved, bytes);
            show(&progress);
            // Paced: never ahead of the rate since the pass began.
            if bytes_per_sec > 0 {
                let due = Duration::from_secs_f64(moved as f64 / bytes_per_sec as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            !halt.load(Ordering::SeqCst)
        })?;
        if done.removed {
            progress.counts.segments_removed += 1;
            progress.counts.bytes_freed += done.bytes_freed;
            Stats::inc(&stats.compaction_segments_removed);
            Stats::add(&stats.compaction_bytes_freed, done.bytes_freed);
            tracing::info!(
                segment = u.seg,
                blocks_moved = done.blocks_moved,
                bytes_moved = done.bytes_moved,
                bytes_freed = done.bytes_freed,
                "compacted a segment"
            );
        } else if halt.load(Ordering::SeqCst) {
            return Ok(None);
        }
    }
    progress.segment = None;
    measure(&store.segment_use()?, &mut progress);
    show(&progress);
    Stats::inc(&stats.compaction_passes);
    Ok(Some(progress.counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(allocated: u64, live: u64, active: bool) -> SegmentUse {
        SegmentUse {
            seg: 1,
            allocated,
            live,
            active,
        }
    }

    #[test]
    fn only_a_sealed_segment_a_quarter_dead_is_rewritten() {
        assert!(worth_compacting(&seg(64 << 20, 10 << 20, false)));
        assert!(
            worth_compacting(&seg(64 << 20, 48 << 20, false)),
            "a quarter dead"
        );
        assert!(!worth_compacting(&seg(64 << 20, 10 << 20, true)), "active");
        assert!(
            !worth_compacting(&seg(64 << 20, 49 << 20, false)),
            "mostly live"
        );
        assert!(
            !worth_compacting(&seg(1 << 17, 0, false)),
            "too little to win"
        );
        assert!(worth_compacting(&seg(1 << 20, 0, false)), "all dead");
    }
}
