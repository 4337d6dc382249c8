//! The figures of a run: a table for people, and one `key=value` line for
//! scripts (identical for the same flags and seed, but for `wall_s`).

use std::fmt::Write;

use super::config::SimConfig;
use super::failures::Check;
use super::net::NetCounters;
use super::record::{quantile, Phase};
use super::world::{Totals, World};

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub cfg: SimConfig,
    /// Lookups measured, and those whose origin died before they ended.
    pub lookups: usize,
    pub lookups_aborted: u64,
    /// Shares of the measured lookups that were exact, and that returned a made-up id.
    pub exact: f64,
    pub made_up: f64,
    /// Exact share and count of lookups before, during and after the partition.
    pub exact_by_phase: Vec<(Phase, f64, usize)>,
    pub hops_p50: u32,
    pub hops_p99: u32,
    /// Requests a lookup sent, and of those failed (timeouts, nearly all), on average.
    pub msgs_per_lookup: f64,
    pub timeouts_per_lookup: f64,
    /// Blocks stored; those that also got an honest "saved" from a node
    /// other than their origin; those checked at the end (all stored), found,
    /// and lost (no live honest node held them any more).
    pub blocks_stored: usize,
    pub blocks_replicated: usize,
    pub blocks: usize,
    pub found: f64,
    pub lost: usize,
    /// Largest routing table and pending map seen; most tasks alive at once.
    pub max_table: usize,
    pub max_pending: usize,
    pub max_tasks: usize,
    /// Hosts that ever lived.
    pub hosts: usize,
    pub net: NetCounters,
    pub totals: Totals,
    pub sim_s: f64,
    pub failures: u64,
    /// Of those, how many of each kind, in [`Check::ALL`] order.
    pub failures_by: Vec<(Check, u64)>,
    pub failure_lines: Vec<String>,
    /// What the files came to (all zero when the run put none).
    pub files: super::files::FilesOutcome,
    /// Filled in by the caller: real seconds the run took.
    pub wall_s: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

impl Report {
    /// Builds the report from the world at the end.
    pub fn build(w: &World, found: usize, eligible: usize, lost: usize) -> Report {
        let n = w.lookups.len();
        let mut hops: Vec<u32> = w.lookups.iter().map(|l| l.hops).collect();
        hops.sort_unstable();
        let mean = |f: &dyn Fn(&super::record::LookupRecord) -> usize| {
            if n == 0 {
                0.0
            } else {
                w.lookups.iter().map(f).sum::<usize>() as f64 / n as f64
            }
        };
        let mut totals = w.retired.clone();
        for node in w.hosts.iter().filter_map(|h| h.node.as_ref()) {
            totals.add(node.stats());
        }
        Report {
            cfg: w.cfg.clone(),
            lookups: n,
            lookups_aborted: w.lookups_aborted,
            exact: ratio(w.lookups.iter().filter(|l| l.exact).count(), n),
            exact_by_phase: [Phase::Before, Phase::During, Phase::After]
                .into_iter()
                .map(|p| {
                    let of: Vec<_> = w.lookups.iter().filter(|l| l.phase == p).collect();
                    let exact = of.iter().filter(|l| l.exact).count();
                    (p, ratio(exact, of.len()), of.len())
                })
                .collect(),
            made_up: if n == 0 {
                0.0
            } else {
                ratio(w.lookups.iter().filter(|l| l.made_up).count(), n)
            },
            hops_p50: quantile(&hops, 0.5),
            hops_p99: quantile(&hops, 0.99),
            msgs_per_lookup: mean(&|l| l.requests),
            timeouts_per_lookup: mean(&|l| l.failed),
            blocks_stored: w.blocks.len(),
            blocks_replicated: w.blocks.iter().filter(|b| b.honest_saved > 0).count(),
            blocks: eligible,
            found: ratio(found, eligible),
            lost,
            max_table: w.max_table,
            max_pending: w.max_pending,
            max_tasks: w.max_tasks,
            hosts: w.hosts.len(),
            net: w.net.counters(),
            totals,
            sim_s: w.now_ms() as f64 / 1000.0,
            failures: w.failures.count(),
            failures_by: Check::ALL
                .iter()
                .map(|&c| (c, w.failures.count_of(c)))
                .collect(),
            failure_lines: w.failures.lines().to_vec(),
            files: w.files_outcome.clone(),
            wall_s: 0.0,
        }
    }

    /// The last line: `key=value` pairs separated by spaces.
    pub fn last_line(&self) -> String {
        let c = &self.cfg;
        format!(
            "nodes={} seed={} sim_hours={} lookups={} exact={:.4} found={:.4} hops_p50={} \
             hops_p99={} msgs_per_lookup={:.2} timeouts_per_lookup={:.3} max_table={} \
             churn={} loss={} dup={} delay_ms={}-{} partition={} liars={} made_up={:.4} \
             blocks={} replicated={} lost={} datagrams={} failures={} ec={} ec_files={} \
             ec_readable={} rep_files={} rep_readable={} killed={} stored_per_byte={:.3} \
             rep_stored_per_byte={:.3} repair_bytes={} wall_s={:.1}",
            c.nodes,
            c.seed,
            c.sim_hours,
            self.lookups,
            self.exact,
            self.found,
            self.hops_p50,
            self.hops_p99,
            self.msgs_per_lookup,
            self.timeouts_per_lookup,
            self.max_table,
            c.churn,
            c.loss,
            c.dup,
            c.delay_ms.0,
            c.delay_ms.1,
            u8::from(c.partition),
            c.liars,
            self.made_up,
            self.blocks,
            self.blocks_replicated,
            self.lost,
            self.net.sent,
            self.failures,
            c.ec,
            self.files.ec_files,
            self.files.ec_readable,
            self.files.rep_files,
            self.files.rep_readable,
            self.files.killed,
            self.files.stored_per_byte,
            self.files.rep_stored_per_byte,
            self.files.repair_bytes,
            self.wall_s,
        )
    }

    /// How many failures of kind `check` there were.
    pub fn failures_of(&self, check: Check) -> u64 {
        self.failures_by
            .iter()
            .find(|(c, _)| *c == check)
            .map_or(0, |(_, n)| *n)
    }

    /// Records a failure found after the run (a panic).
    pub fn add_failure(&mut self, check: Check, line: String) {
        self.failures += 1;
        if let Some((_, n)) = self.failures_by.iter_mut().find(|(c, _)| *c == check) {
            *n += 1;
        }
        self.failure_lines.push(line);
    }

    fn failures_text(&self) -> String {
        let kinds: Vec<String> = self
            .failures_by
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{} {n}", c.as_str()))
            .collect();
        if kinds.is_empty() {
            "0".into()
        } else {
            format!("{} ({})", self.failures, kinds.join(", "))
        }
    }

    /// The last line without `wall_s`, which alone may differ between runs.
    pub fn repeatable_line(&self) -> String {
        without_wall(&self.last_line())
    }

    /// The figures as a table, for people.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let per_node_hour = self.net.sent as f64 / (self.cfg.nodes as f64 * self.sim_s / 3600.0);
        let rows: Vec<(&str, String)> = vec![
            (
                "nodes (ever lived)",
                format!("{} ({})", self.cfg.nodes, self.hosts),
            ),
            ("simulated time", format!("{:.0} s", self.sim_s)),
            (
                "lookups measured (origin died)",
                format!("{} ({})", self.lookups, self.lookups_aborted),
            ),
            ("exact", format!("{:.4}", self.exact)),
            (
                "exact before / in / after partition",
                self.exact_by_phase
                    .iter()
                    .map(|(_, e, n)| format!("{e:.4} ({n})"))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ),
            ("with a made-up id", format!("{:.4}", self.made_up)),
            (
                "hops p50 / p99",
                format!("{} / {}", self.hops_p50, self.hops_p99),
            ),
            (
                "requests per lookup",
                format!("{:.2}", self.msgs_per_lookup),
            ),
            (
                "failed per lookup",
                format!("{:.3}", self.timeouts_per_lookup),
            ),
            (
                "blocks stored / saved by another honest node",
                format!("{} / {}", self.blocks_stored, self.blocks_replicated),
            ),
            ("found after heal", format!("{:.4}", self.found)),
            ("lost (no live honest holder)", self.lost.to_string()),
            ("max routing table", self.max_table.to_string()),
            ("max pending requests", self.max_pending.to_string()),
            ("max tasks alive", self.max_tasks.to_string()),
            (
                "datagrams sent (per node-hour)",
                format!("{} ({per_node_hour:.0})", self.net.sent),
            ),
            (
                "lost / cut / duplicated / to nobody",
                format!(
                    "{} / {} / {} / {}",
                    self.net.lost, self.net.cut, self.net.duplicated, self.net.to_nobody
                ),
            ),
            (
                "max datagrams in flight",
                self.net.max_in_flight.to_string(),
            ),
            (
                "block fetches (failed)",
                format!("{} ({})", self.net.fetches, self.net.fetches_failed),
            ),
            (
                "requests sent (timed out)",
                format!("{} ({})", self.totals.requests, self.totals.timeouts),
            ),
            (
                "stores saved / bad hash refused",
                format!(
                    "{} / {}",
                    self.totals.stores_saved, self.totals.stores_bad_hash
                ),
            ),
            (
                "refused (pending full) / unmatched answers",
                format!(
                    "{} / {}",
                    self.totals.refused_pending_full, self.totals.unmatched
                ),
            ),
            (
                "files erasure-coded / replicated",
                format!(
                    "{} ({}) / {}",
                    self.files.ec_files, self.cfg.ec, self.files.rep_files
                ),
            ),
            (
                "readable after killing nodes at once",
                format!(
                    "{} / {} (killed {})",
                    self.files.ec_readable, self.files.rep_readable, self.files.killed
                ),
            ),
            (
                "bytes stored per file byte",
                format!(
                    "{:.3} / {:.3}",
                    self.files.stored_per_byte, self.files.rep_stored_per_byte
                ),
            ),
            (
                "chunks under repair threshold / repair bytes",
                format!(
                    "{} / {}",
                    self.files.below_threshold, self.files.repair_bytes
                ),
            ),
            ("invariant failures", self.failures_text()),
            ("wall time", format!("{:.1} s", self.wall_s)),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<width$}  {v}");
        }
        t
    }
}

/// `line` without its `wall_s=` pair.
pub fn without_wall(line: &str) -> String {
    line.split(' ')
        .filter(|kv| !kv.starts_with("wall_s="))
        .collect::<Vec<_>>()
        .join(" ")
}
