//! What one simulation run is asked to do: the flags of `examples/simulate.rs`.

use std::time::Duration;

use crate::erasure::Code;

/// A bug the simulation can inject into its own parts (never into the
/// daemon), to show that the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The in-memory store keeps whatever bytes it is given, as a store that
    /// skipped the hash check of `put_verified` would.
    StoreSkipsHashCheck,
    /// The in-memory store answers "stored" for a block it then forgets, as a
    /// store that acknowledged before making bytes durable would.
    StoreForgets,
}

/// One run's settings; every outcome but wall time is a function of these.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes at any time (those that leave are replaced).
    pub nodes: usize,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Lookups measured after warm-up.
    pub lookups: usize,
    /// Blocks stored during the run (through random honest nodes).
    pub blocks: usize,
    /// Simulated time of the run, in hours.
    pub sim_hours: f64,
    /// Fraction of the nodes replaced per simulated hour.
    pub churn: f64,
    /// Chance that a datagram is lost.
    pub loss: f64,
    /// Chance that a datagram is delivered twice.
    pub dup: f64,
    /// One-way delay of a datagram, uniform in this range (ms).
    pub delay_ms: (u64, u64),
    /// Split the network in two for a while, then heal.
    pub partition: bool,
    /// Fraction of the nodes that lie.
    pub liars: f64,
    /// Files put of each kind, erasure-coded and replicated (0: none).
    pub files: usize,
    /// Chunks per file, and bytes per chunk.
    pub file_chunks: usize,
    pub chunk_bytes: usize,
    /// The code of the erasure-coded files (each shard on one node).
    pub ec: Code,
    /// Hosts run the daemon's repair of erasure-coded chunks.
    pub repair: bool,
    /// At the end, this share of the up nodes is killed at once before the
    /// files are read back (no time for repair).
    pub mass_kill: f64,
    /// A bug to inject, to check that the checks catch it.
    pub bug: Option<Bug>,
    /// Print a progress line on stderr now and then.
    pub progress: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1000,
            seed: 1,
            lookups: 500,
            blocks: 100,
            sim_hours: 2.0,
            churn: 0.0,
            loss: 0.0,
            dup: 0.0,
            delay_ms: (10, 100),
            partition: false,
            liars: 0.0,
            files: 0,
            file_chunks: 4,
            chunk_bytes: 16 << 10,
            ec: crate::stripe::DEFAULT_CODE,
            repair: false,
            mass_kill: 0.0,
            bug: None,
            progress: false,
        }
    }
}

impl SimConfig {
    /// Simulated length of the run.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.sim_hours.max(0.0) * 3600.0)
    }

    /// Nodes join during this first stretch, one after another.
    pub fn join_window(&self) -> Duration {
        Duration::from_secs(600).min(self.duration() / 4)
    }

    /// Measuring, storing, churn and the partition start here.
    pub fn warm_up(&self) -> Duration {
        (self.join_window() + Duration::from_secs(300)).min(self.duration() / 3)
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("--{name} {v} is not a fraction between 0 and 1"))
            }
        };
        share("loss", self.loss)?;
        share("dup", self.dup)?;
        share("liars", self.liars)?;
        share("mass-kill", self.mass_kill)?;
        if self.files > 0 && (self.file_chunks == 0 || !(64..=1 << 20).contains(&self.chunk_bytes))
        {
            return Err(format!(
                "--file-chunks {} and --chunk-bytes {}: a file needs at least one chunk of 64 bytes to 1 MiB",
                self.file_chunks, self.chunk_bytes
            ));
        }
        if !(0.0..=100.0).contains(&self.churn) {
            return Err(format!("--churn {} must be between 0 and 100", self.churn));
        }
        if self.nodes < 2 {
            return Err(format!("--nodes {} must be at least 2", self.nodes));
        }
        if self.nodes > 1 << 22 {
            return Err(format!(
                "--nodes {} is over the 4,194,304 addresses",
                self.nodes
            ));
        }
        if self.delay_ms.0 > self.delay_ms.1 {
            return Err(format!(
                "--delay-ms {}-{}: the low end is over the high end",
                self.delay_ms.0, self.delay_ms.1
            ));
        }
        if !(self.sim_hours > 0.0 && self.sim_hours <= 1000.0) {
            return Err(format!(
                "--sim-hours {} must be over 0 and at most 1000",
                self.sim_hours
            ));
        }
        Ok(())
    }
}
