//! What the scrub worker keeps and shows: the progress value it saves in the
//! store (so a restart resumes where it stopped, paused or not), and the
//! shared handle (`control.rs`) through which the admin API and the metrics
//! read its state and pause or resume it. The worker is the only writer of
//! the saved value; a pause asked through the handle reaches it at once and
//! is saved by it.

use serde::{Deserialize, Serialize};

use super::control::{Control, Shown};
use crate::id::Id;

/// The scrub's key in the store's upkeep tree.
pub const SCRUB_JOB: &str = "scrub";

/// What one pass (or the worker since the node started) got through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassCounts {
    /// Blocks checked.
    pub blocks: u64,
    /// Bytes read to check them.
    pub bytes: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Blocks that could not be read (I/O error) and were skipped.
    pub unreadable: u64,
}

/// The last pass that ran to its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedPass {
    /// When it ended, unix milliseconds.
    pub finished_unix_ms: u64,
    /// From its start to its end, pauses and restarts included.
    pub duration_ms: u64,
    pub counts: PassCounts,
}

/// The pass under way, as saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassProgress {
    /// The last key checked, hex; `None` before the first.
    pub after: Option<String>,
    pub counts: PassCounts,
}

/// The scrub's saved value (JSON in the upkeep tree, key [`SCRUB_JOB`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubProgress {
    /// Paused by an operator: stays paused across restarts until resumed.
    pub paused: bool,
    /// When the latest pass started (or, before the first, when the worker
    /// first ran), unix milliseconds; the next pass starts an interval later.
    pub started_unix_ms: u64,
    /// The pass under way, if one is.
    pub pass: Option<PassProgress>,
    /// The last pass completed, if any.
    pub last: Option<CompletedPass>,
}

impl ScrubProgress {
    /// The key the pass under way stopped after; `None` to start at the first.
    pub fn resume_after(&self) -> Option<Id> {
        let hex = self.pass.as_ref()?.after.as_deref()?;
        match Id::from_hex(hex) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "saved scrub position is not a key; starting the pass over");
                None
            }
        }
    }
}

/// What the worker is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScrubState {
    /// Turned off (`verify_interval_secs = 0`), or not started yet.
    #[default]
    Off,
    /// Reading through a pass.
    Running,
    /// Paused by an operator, in a pass or between passes.
    Paused,
    /// Between passes, waiting for the next one to be due.
    Idle,
}

/// The worker's state as the admin API and the metrics show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrubStatus {
    pub state: ScrubState,
    /// Bytes a second it reads at most.
    pub rate_bytes_per_sec: u64,
    /// A pass starts this long after the previous one started, ms; 0 while off.
    pub interval_ms: u64,
    /// The last key checked in the pass under way.
    pub position: Option<Id>,
    /// Where that key lies in the keyspace, 0..1 (0 between passes).
    pub position_ratio: f64,
    /// The pass under way (or the last one, between passes: zeros).
    pub pass: PassCounts,
    /// When the pass under way started, unix milliseconds; 0 between passes.
    pub pass_started_unix_ms: u64,
    /// Since the node started.
    pub total: PassCounts,
    /// Passes completed since the node started.
    pub passes: u64,
    pub last: Option<CompletedPass>,
    /// When the next pass is due, unix milliseconds; 0 while one runs.
    pub next_pass_unix_ms: u64,
}

/// Where `key` lies in the keyspace, 0..1, from its top 64 bits.
pub fn keyspace_ratio(key: &Id) -> f64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&key.0[..8]);
    u64::from_be_bytes(top) as f64 / 18_446_744_073_709_551_616.0
}

impl Shown for ScrubStatus {
    const OFF: &'static str = "the scrub is off (verify_interval_secs = 0)";

    fn is_off(&self) -> bool {
        self.state == ScrubState::Off
    }

    fn show_paused(&mut self) {
        self.state = ScrubState::Paused;
    }
}

/// A cheap-to-clone handle on the scrub worker.
pub type ScrubControl = Control<ScrubStatus>;

#[cfg(test)]
mod tests {
    use super::super::control::IsOff;
    use super::*;

    #[test]
    fn keyspace_ratio_spans_zero_to_one() {
        assert_eq!(keyspace_ratio(&Id([0; 32])), 0.0);
        let mut half = [0u8; 32];
        half[0] = 0x80;
        assert_eq!(keyspace_ratio(&Id(half)), 0.5);
        assert!(keyspace_ratio(&Id([0xff; 32])) <= 1.0);
    }

    #[test]
    fn an_operators_word_beats_the_saved_flag_and_off_refuses_it() {
        let c = ScrubControl::default();
        assert_eq!(c.pause(), Err(IsOff(ScrubStatus::OFF)));
        c.update(|s| s.state = ScrubState::Idle);
        assert!(c.restore_paused(true));
        assert_eq!(c.status().state, ScrubState::Paused);
        assert_eq!(c.resume().map(|s| s.state), Ok(ScrubState::Idle));
        // A saved flag restored after the operator resumed does not pause it.
        assert!(!c.restore_paused(true));
    }

    #[test]
    fn progress_round_trips_and_a_bad_position_starts_over() {
        let p = ScrubProgress {
            paused: true,
            started_unix_ms: 5,
            pass: Some(PassProgress {
                after: Some(Id([7; 32]).to_hex()),
                counts: PassCounts {
                    blocks: 3,
                    ..PassCounts::default()
                },
            }),
            last: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        let back: ScrubProgress = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.resume_after(), Some(Id([7; 32])));
        let bad = ScrubProgress {
            pass: Some(PassProgress {
                after: Some("nonsense".into()),
                counts: PassCounts::default(),
            }),
            ..p
        };
        assert_eq!(bad.resume_after(), None);
    }
}
