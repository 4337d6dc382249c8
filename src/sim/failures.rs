//! Broken invariants, each with the seed and the simulated time, printed on
//! stderr as they happen and kept (the first ones) for the report.

/// Failures kept in full; later ones are only counted.
const KEEP: usize = 50;

/// Which kind of invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Code panicked.
    Panic,
    /// A pending map, routing table or store outgrew its bound, or is malformed.
    Bound,
    /// A lookup result is out of order, too long or has an id twice.
    Shape,
    /// An honest store holds bytes that do not hash to their key.
    Integrity,
    /// Tasks or pending requests left after everything stopped.
    Leak,
    /// A block a live honest node holds was not found after the network healed.
    Found,
}

impl Check {
    /// Every kind, in report order.
    pub const ALL: [Check; 6] = [
        Check::Panic,
        Check::Bound,
        Check::Shape,
        Check::Integrity,
        Check::Leak,
        Check::Found,
    ];

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Panic => "panic",
            Check::Bound => "bound",
            Check::Shape => "shape",
            Check::Integrity => "integrity",
            Check::Leak => "leak",
            Check::Found => "found",
        }
    }
}

/// The failures of one run.
#[derive(Clone, Debug, Default)]
pub struct Failures {
    seed: u64,
    kept: Vec<String>,
    counts: [u64; 6],
}

/// `h:mm:ss.mmm` of simulated milliseconds.
pub fn sim_time(ms: u64) -> String {
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Failures {
    /// None yet, for a run seeded by `seed`.
    pub fn new(seed: u64) -> Failures {
        Failures {
            seed,
            ..Failures::default()
        }
    }

    /// An invariant of kind `check` broke at simulated `now_ms`.
    pub fn record(&mut self, now_ms: u64, check: Check, what: String) {
        let line = format!(
            "FAIL seed={} t={} {}: {what}",
            self.seed,
            sim_time(now_ms),
            check.as_str()
        );
        if self.kept.len() < KEEP {
            eprintln!("{line}");
            self.kept.push(line);
        }
        self.counts[check as usize] += 1;
    }

    /// How many broke in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// How many of kind `check` broke.
    pub fn count_of(&self, check: Check) -> u64 {
        self.counts[check as usize]
    }

    /// The first ones, as printed.
    pub fn lines(&self) -> &[String] {
        &self.kept
    }
}
