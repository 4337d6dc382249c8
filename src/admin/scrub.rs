//! The paced workers' state as the admin API says it: the scrub's and
//! compaction's.

use tonic::{Response, Status};

use super::pb;
use crate::upkeep::{
    CompactionCounts, CompactionState, CompactionStatus, IsOff, PassCounts, ScrubState, ScrubStatus,
};

fn scrub_counts(c: PassCounts) -> pb::ScrubCounts {
    pb::ScrubCounts {
        blocks: c.blocks,
        bytes: c.bytes,
        corrupt: c.corrupt,
        repaired: c.repaired,
        unreadable: c.unreadable,
    }
}

/// The scrub's state as the API says it.
pub(super) fn scrub_status(
    s: Result<ScrubStatus, IsOff>,
) -> Result<Response<pb::ScrubStatusResponse>, Status> {
    let s = s.map_err(|e| Status::failed_precondition(e.to_string()))?;
    let state = match s.state {
        ScrubState::Off => pb::ScrubState::Off,
        ScrubState::Running => pb::ScrubState::Running,
        ScrubState::Paused => pb::ScrubState::Paused,
        ScrubState::Idle => pb::ScrubState::Idle,
    };
    let last = s.last.unwrap_or_default();
    Ok(Response::new(pb::ScrubStatusResponse {
        state: state as i32,
        position: s.position.map(|k| k.to_hex()).unwrap_or_default(),
        position_ratio: s.position_ratio,
        pass: Some(scrub_counts(s.pass)),
        pass_started_at: s.pass_started_unix_ms / 1000,
        total: Some(scrub_counts(s.total)),
        passes: s.passes,
        last_pass_completed_at: last.finished_unix_ms / 1000,
        last_pass_duration_seconds: last.duration_ms as f64 / 1000.0,
        last_pass: Some(scrub_counts(last.counts)),
        next_pass_at: s.next_pass_unix_ms / 1000,
        rate_bytes_per_second: s.rate_bytes_per_sec,
    }))
}

fn compaction_counts(c: CompactionCounts) -> pb::CompactionCounts {
    pb::CompactionCounts {
        segments_due: c.segments_due,
        segments_removed: c.segments_removed,
        bytes_moved: c.bytes_moved,
        bytes_freed: c.bytes_freed,
    }
}

/// Compaction's state as the API says it.
pub(super) fn compaction_status(
    s: Result<CompactionStatus, IsOff>,
) -> Result<Response<pb::CompactionStatusResponse>, Status> {
    let s = s.map_err(|e| Status::failed_precondition(e.to_string()))?;
    let state = match s.state {
        CompactionState::Off => pb::CompactionState::Off,
        CompactionState::Running => pb::CompactionState::Running,
        CompactionState::Paused => pb::CompactionState::Paused,
        CompactionState::Idle => pb::CompactionState::Idle,
    };
    let last = s.last.unwrap_or_default();
    Ok(Response::new(pb::CompactionStatusResponse {
        state: state as i32,
        segment: s.segment.unwrap_or(0),
        pass: Some(compaction_counts(s.pass)),
        pass_started_at: s.pass_started_unix_ms / 1000,
        passes: s.passes,
        last_pass_completed_at: last.finished_unix_ms / 1000,
        last_pass_duration_seconds: last.duration_ms as f64 / 1000.0,
        last_pass: Some(compaction_counts(last.counts)),
        next_pass_at: s.next_pass_unix_ms / 1000,
        rate_bytes_per_second: s.rate_bytes_per_sec,
        segment_bytes: s.segment_bytes,
        dead_bytes: s.dead_bytes,
    }))
}
