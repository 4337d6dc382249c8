//! Broken invariants, each with the seed and the simulated time, printed on
//! stderr as they happen and kept (the first ones) for the report.

/// Failures kept in full; later ones are only counted.
const KEEP: usize = 50;

/// The failures of one run.
#[derive(Clone, Debug, Default)]
pub struct Failures {
    seed: u64,
    kept: Vec<String>,
    count: u64,
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
            kept: Vec::new(),
            count: 0,
        }
    }

    /// One invariant broke at simulated `now_ms`.
    pub fn record(&mut self, now_ms: u64, what: String) {
        let line = format!("FAIL seed={} t={}: {what}", self.seed, sim_time(now_ms));
        if self.count < KEEP as u64 {
            eprintln!("{line}");
            self.kept.push(line);
        }
        self.count += 1;
    }

    /// How many broke.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first ones, as printed.
    pub fn lines(&self) -> &[String] {
        &self.kept
    }
}
