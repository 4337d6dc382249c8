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

/// Runs a pass `every` after the previous one ended, until `stop`.
pub async fn run_compaction(
    node: Node,
    store: Store,
    every: Duration,
    bytes_per_sec: u64,
    mut stop: watch::Receiver<bool>,
) {
    let clock = node.clock().clone();
    let stats = node.stats();
    // The first pass soon after the start: until one measures, dead bytes
    // left from before the start are not known to the shedding pressure.
    let mut wait = every.min(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = clock.sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = every;
        // Told to stop: the pass ends after its batch in flight.
        let halt = Arc::new(AtomicBool::new(false));
        let (s, st, h) = (store.clone(), stats.clone(), halt.clone());
        let pass = tokio::task::spawn_blocking(move || compaction_pass(&s, &st, bytes_per_sec, &h));
        tokio::pin!(pass);
        let result = tokio::select! {
            r = &mut pass => r,
            _ = stop.changed() => {
                halt.store(true, Ordering::SeqCst);
                let _ = pass.await;
                return;
            }
        };
        match result {
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction pass failed"),
            Err(e) => tracing::warn!(error = %e, "compaction pass panicked"),
            Ok(Ok(())) => {}
        }
    }
}

/// One pass, on a blocking thread: measure, then rewrite each segment worth
/// it, paced to `bytes_per_sec` and stopped by `halt`.
pub fn compaction_pass(
    store: &Store,
    stats: &Stats,
    bytes_per_sec: u64,
    halt: &AtomicBool,
) -> Result<(), crate::store::StoreError> {
    let uses = store.segment_use()?;
    let gauge = |uses: &[SegmentUse]| {
        store.note_segment_dead(uses.iter().map(SegmentUse::dead).sum());
        stats
            .segment_bytes
            .store(uses.iter().map(|u| u.allocated).sum(), Ordering::Relaxed);
        stats
            .segment_dead_bytes
            .store(uses.iter().map(SegmentUse::dead).sum(), Ordering::Relaxed);
    };
    gauge(&uses);
    let mut todo: Vec<SegmentUse> = uses.iter().copied().filter(worth_compacting).collect();
    todo.sort_by_key(|u| std::cmp::Reverse(u.dead()));
    let started = Instant::now();
    let mut moved = 0u64;
    for u in todo {
        if halt.load(Ordering::SeqCst) {
            return Ok(());
        }
        let done = store.compact_segment(u.seg, &mut |bytes| {
            moved += bytes;
            Stats::add(&stats.compaction_bytes_moved, bytes);
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
            Stats::inc(&stats.compaction_segments_removed);
            Stats::add(&stats.compaction_bytes_freed, done.bytes_freed);
            tracing::info!(
                segment = u.seg,
                blocks_moved = done.blocks_moved,
                bytes_moved = done.bytes_moved,
                bytes_freed = done.bytes_freed,
                "compacted a segment"
            );
        }
    }
    gauge(&store.segment_use()?);
    Stats::inc(&stats.compaction_passes);
    Ok(())
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
