//! The simulation (src/sim/) in CI: fixed seeds at 2,000 nodes with every
//! fault on, one seed run twice for the same last line, and injected bugs
//! that the simulation must catch (each beside the same run without the bug,
//! which must stay clean).

use dhtfs::sim::{run, Bug, Check, Report, SimConfig};

/// 2,000 nodes for a simulated hour with every fault but liars.
fn every_fault(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 2000,
        seed,
        lookups: 300,
        blocks: 50,
        sim_hours: 1.0,
        churn: 0.2,
        loss: 0.05,
        dup: 0.02,
        delay_ms: (10, 100),
        partition: true,
        liars: 0.0,
        ..SimConfig::default()
    }
}

/// A small network for the determinism and injected-bug runs.
fn small(liars: f64, bug: Option<Bug>) -> SimConfig {
    SimConfig {
        nodes: 300,
        seed: 5,
        lookups: 50,
        blocks: 20,
        sim_hours: 0.5,
        liars,
        bug,
        ..SimConfig::default()
    }
}

fn show(what: &str, r: &Report) {
    println!("{what}:\n{}{}", r.table(), r.last_line());
}

/// The failures that must never happen, whatever the peers do.
fn hard_failures(r: &Report) -> u64 {
    Check::ALL
        .iter()
        .filter(|&&c| c != Check::Found)
        .map(|&c| r.failures_of(c))
        .sum()
}

#[test]
fn ci_seeds_every_fault_but_liars_at_2000_nodes() {
    for seed in [1, 2] {
        let r = run(&every_fault(seed));
        show(&format!("seed {seed}"), &r);
        assert_eq!(r.failures, 0, "seed {seed}: {:#?}", r.failure_lines);
        assert!(r.lookups >= 270, "seed {seed}: only {} lookups", r.lookups);
        assert!(r.found >= 0.99, "seed {seed}: found {}", r.found);
        assert!(
            r.blocks >= 45,
            "seed {seed}: only {} blocks stored",
            r.blocks
        );
        assert!(
            r.blocks_replicated + 1 >= r.blocks,
            "seed {seed}: only {} of {} blocks replicated",
            r.blocks_replicated,
            r.blocks
        );
        assert!(r.hops_p50 <= 4, "seed {seed}: hops_p50 {}", r.hops_p50);
        // Not asserted: exactness. A lookup never retries a peer whose
        // answer was lost, so with 5% loss most miss one of the K closest
        // (see docs/measured/figures.md); the hardening work changes this.
    }
}

#[test]
fn a_clean_network_finds_exactly() {
    // No fault: every lookup must return exactly the K closest, every block
    // must be found; a lookup that stopped early would show here.
    let r = run(&SimConfig {
        nodes: 1000,
        seed: 4,
        lookups: 200,
        blocks: 30,
        sim_hours: 1.0,
        ..SimConfig::default()
    });
    show("clean", &r);
    assert_eq!(r.failures, 0, "{:#?}", r.failure_lines);
    assert_eq!(r.exact, 1.0);
    assert_eq!(r.found, 1.0);
    assert_eq!(r.timeouts_per_lookup, 0.0);
    assert!(r.hops_p99 <= 4, "hops_p99 {}", r.hops_p99);
}

#[test]
fn ci_seed_every_fault_with_liars_at_2000_nodes() {
    // Half an hour, to keep CI short: with liars every made-up id is
    // checked before it is trusted, which costs simulated work.
    let r = run(&SimConfig {
        liars: 0.05,
        sim_hours: 0.5,
        ..every_fault(3)
    });
    show("seed 3 with liars", &r);
    // Nothing may break: no panic, no bound exceeded, no made-up id in a
    // result.
    assert_eq!(hard_failures(&r), 0, "{:#?}", r.failure_lines);
    assert!(r.lookups >= 270, "only {} lookups", r.lookups);
}

/// The acceptance bar with liars: 10,000 nodes take 5-9 minutes on a
/// 2-core machine, too long for every CI run; run it with `--ignored`.
#[test]
#[ignore = "10,000 nodes: 5-9 minutes; run with --ignored"]
fn acceptance_every_fault_with_liars() {
    let r = run(&SimConfig {
        nodes: 10_000,
        seed: 11,
        lookups: 1000,
        blocks: 100,
        sim_hours: 2.0,
        churn: 0.2,
        loss: 0.05,
        liars: 0.05,
        ..SimConfig::default()
    });
    show("acceptance", &r);
    assert_eq!(r.failures, 0, "{:#?}", r.failure_lines);
    assert!(r.exact >= 0.95, "exact {}", r.exact);
    assert!(r.found >= 0.99, "found {}", r.found);
    assert!(r.hops_p50 <= 4, "hops_p50 {}", r.hops_p50);
}

/// Issue 17's acceptance at CI size (the 2,000-node, 48-hour run is in
/// docs/measured/figures.md): 300 nodes, 8 simulated hours of churn 0.2 with
/// repair on, 20 erasure-coded files in the default code beside 20 files
/// with 7 replicas, then 30% of the nodes killed at once and every file
/// read back. Run twice for the same last line.
#[test]
fn erasure_coded_files_outlive_churn_and_a_mass_kill() {
    let cfg = SimConfig {
        nodes: 300,
        seed: 3,
        lookups: 50,
        blocks: 20,
        sim_hours: 8.0,
        churn: 0.2,
        files: 20,
        file_chunks: 2,
        chunk_bytes: 256 << 10,
        repair: true,
        mass_kill: 0.3,
        ..SimConfig::default()
    };
    let r = run(&cfg);
    show("erasure-coded and replicated files", &r);
    // A chunk under its repair threshold at the end is a failure too.
    assert_eq!(r.failures, 0, "{:#?}", r.failure_lines);
    let f = &r.files;
    assert_eq!((f.ec_files, f.rep_files), (20, 20), "every put completed");
    assert_eq!(f.killed, 90);
    assert!(
        f.ec_readable >= f.rep_readable,
        "after the kill: {} erasure-coded, {} replicated files readable",
        f.ec_readable,
        f.rep_readable
    );
    assert_eq!(
        f.ec_readable, 20,
        "every erasure-coded file survived the kill"
    );
    assert!(
        f.stored_per_byte <= 2.5,
        "{} bytes stored per byte",
        f.stored_per_byte
    );
    assert!(f.rep_stored_per_byte >= 7.0);
    assert!(
        f.repair_bytes > 0,
        "8 hours of churn left repair nothing to do"
    );
    assert_eq!(r.repeatable_line(), run(&cfg).repeatable_line());
}

#[test]
fn one_seed_twice_prints_the_same_last_line() {
    let cfg = SimConfig {
        nodes: 300,
        seed: 7,
        lookups: 100,
        blocks: 20,
        sim_hours: 0.5,
        churn: 0.5,
        loss: 0.05,
        dup: 0.05,
        partition: true,
        liars: 0.05,
        ..SimConfig::default()
    };
    let (a, b) = (run(&cfg), run(&cfg));
    show("first", &a);
    assert_eq!(a.repeatable_line(), b.repeatable_line());
    assert_eq!(a.failure_lines, b.failure_lines);
    assert_ne!(
        a.repeatable_line(),
        run(&SimConfig { seed: 8, ..cfg }).repeatable_line()
    );
}

#[test]
fn a_store_that_skips_the_hash_check_is_caught() {
    // Liars ask honest nodes to store made-up keys and serve junk for them.
    let clean = run(&small(0.1, None));
    show("without the bug", &clean);
    assert_eq!(hard_failures(&clean), 0, "{:#?}", clean.failure_lines);
    let buggy = run(&small(0.1, Some(Bug::StoreSkipsHashCheck)));
    show("with the bug", &buggy);
    assert!(
        buggy.failures_of(Check::Integrity) > 0,
        "the simulation missed junk stored by honest nodes"
    );
}

#[test]
fn a_store_that_forgets_blocks_is_caught() {
    let clean = run(&small(0.0, None));
    show("without the bug", &clean);
    assert_eq!(clean.failures, 0, "{:#?}", clean.failure_lines);
    assert_eq!(clean.found, 1.0);
    let buggy = run(&small(0.0, Some(Bug::StoreForgets)));
    show("with the bug", &buggy);
    assert!(
        buggy.failures_of(Check::Found) > 0,
        "the simulation missed blocks acknowledged and then forgotten"
    );
    assert!(buggy.found < 0.99);
}
