//! What the compaction worker keeps and shows: the value it saves in the
//! store (an operator's pause, kept across restarts, and the last pass), and
//! its state as the admin API and the metrics read it through a
//! [`CompactionControl`].

use serde::{Deserialize, Serialize};

use super::control::{Control, Shown};

/// Compaction's key in the store's upkeep tree.
pub const COMPACTION_JOB: &str = "compaction";

/// What one pass got through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionCounts {
    /// Segments found worth rewriting when the pass measured.
    pub segments_due: u64,
    /// Of those, segments rewritten and removed.
    pub segments_removed: u64,
    /// Live bytes copied out of them.
    pub bytes_moved: u64,
    /// Disk bytes the removed segments took.
    pub bytes_freed: u64,
}

/// The last pass that ran to its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionPass {
    /// When it ended, unix milliseconds.
    pub finished_unix_ms: u64,
    pub duration_ms: u64,
    pub counts: CompactionCounts,
}

/// Compaction's saved value (JSON in the upkeep tree, key [`COMPACTION_JOB`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionSaved {
    /// Paused by an operator: stays paused across restarts until resumed.
    pub paused: bool,
    pub last: Option<CompactionPass>,
}

/// What the worker is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompactionState {
    /// Turned off (`compaction_interval_secs = 0`), or not started yet.
    #[default]
    Off,
    /// Measuring the segments or rewriting them.
    Running,
    /// Paused by an operator: a pass under way stopped after its batch in
    /// flight and starts over on resume.
    Paused,
    /// Between passes.
    Idle,
}

/// The worker's state as the admin API and the metrics show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionStatus {
    pub state: CompactionState,
    /// Live bytes a second it moves at most (0: unpaced).
    pub rate_bytes_per_sec: u64,
    /// A pass starts this long after the previous one ended, ms.
    pub interval_ms: u64,
    /// The segment being rewritten, if one is.
    pub segment: Option<u64>,
    /// The pass under way (zeros between passes).
    pub pass: CompactionCounts,
    /// When the pass under way started, unix milliseconds; 0 between passes.
    pub pass_started_unix_ms: u64,
    /// Passes completed since the node started.
    pub passes: u64,
    /// The last pass completed (kept across restarts).
    pub last: Option<CompactionPass>,
    /// When the next pass is due, unix milliseconds; 0 while one runs or
    /// while paused.
    pub next_pass_unix_ms: u64,
    /// Disk bytes of the segment files, and of those the dead ones, as the
    /// last measure found.
    pub segment_bytes: u64,
    pub dead_bytes: u64,
}

impl Shown for CompactionStatus {
    const OFF: &'static str = "compaction is off (compaction_interval_secs = 0)";

    fn is_off(&self) -> bool {
        self.state == CompactionState::Off
    }

    fn show_paused(&mut self) {
        self.state = CompactionState::Paused;
        self.next_pass_unix_ms = 0;
    }
}

/// A cheap-to-clone handle on the compaction worker.
pub type CompactionControl = Control<CompactionStatus>;

#[cfg(test)]
mod tests {
    use super::super::control::IsOff;
    use super::*;

    #[test]
    fn off_refuses_a_pause_and_a_paused_worker_shows_no_next_pass() {
        let c = CompactionControl::default();
        assert_eq!(c.pause(), Err(IsOff(CompactionStatus::OFF)));
        c.update(|s| {
            s.state = CompactionState::Idle;
            s.next_pass_unix_ms = 9;
        });
        let paused = c.pause().unwrap();
        assert_eq!(paused.state, CompactionState::Paused);
        assert_eq!(paused.next_pass_unix_ms, 0);
        assert!(c.restore_paused(false), "the operator's word wins");
        let resumed = c.resume().unwrap();
        assert_eq!(resumed.state, CompactionState::Idle);
        assert_eq!(resumed.next_pass_unix_ms, 9);
    }

    #[test]
    fn the_saved_value_round_trips() {
        let v = CompactionSaved {
            paused: true,
            last: Some(CompactionPass {
                finished_unix_ms: 5,
                duration_ms: 2,
                counts: CompactionCounts {
                    segments_due: 3,
                    segments_removed: 2,
                    bytes_moved: 7,
                    bytes_freed: 11,
                },
            }),
        };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<CompactionSaved>(&json).unwrap(), v);
    }
}
