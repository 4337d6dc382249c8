//! The deterministic simulation: the real engine ([`crate::node::Node`]) for
//! thousands of nodes in one process, on a simulated network and clock, with
//! churn, loss, duplication, delay, a partition and lying hosts, fully
//! determined by a seed. `examples/simulate.rs` and `tests/simulation.rs`
//! call [`run`].
//!
//! Everything runs on one thread, on a tokio runtime whose clock is paused:
//! when every task waits, tokio moves time to the next timer, so simulated
//! hours take seconds and the order of events depends only on the seed.
//! Chance comes from seeded RNGs only (the engine's through its
//! [`Clock`](crate::node::Clock)); nothing is sent on a real network.
//!
//! It sits beside the binary and the faces: it uses the engine, and the
//! engine knows nothing of it.

mod checks;
mod clock;
mod config;
mod failures;
mod files;
mod liar;
mod lifecycle;
mod measure;
mod net;
mod panics;
mod record;
mod report;
mod scenario;
mod seeds;
mod store;
mod transport;
mod upkeep;
mod world;

pub use config::{Bug, SimConfig};
pub use failures::Check;
pub use files::FilesOutcome;
pub use report::{without_wall, Report};

/// Runs one simulation and reports what it measured.
pub fn run(cfg: &SimConfig) -> Report {
    let wall = std::time::Instant::now();
    let catcher = panics::catch();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let mut report = runtime.block_on(scenario::drive(cfg.clone()));
    drop(runtime);
    for panic in catcher.take() {
        let line = format!("FAIL seed={} panic: {panic}", cfg.seed);
        eprintln!("{line}");
        report.add_failure(Check::Panic, line);
    }
    report.wall_s = wall.elapsed().as_secs_f64();
    report
}
