//! Progress and totals of a transfer: a bar on a terminal, a line every few
//! seconds otherwise, nothing with --quiet; and the counters the summary uses.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters of one transfer, shared by its tasks.
#[derive(Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub chunks: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    /// Asks started because an earlier ask for the same block fell far behind.
    pub hedged: AtomicU64,
    /// Waits before another lookup round, after one that found nothing.
    pub backoffs: AtomicU64,
    peers: Mutex<HashSet<SocketAddr>>,
}

impl Counters {
    /// A peer took part.
    pub fn peer(&self, addr: SocketAddr) {
        if let Ok(mut p) = self.peers.lock() {
            p.insert(addr);
        }
    }

    /// Peers that took part.
    pub fn peers(&self) -> usize {
        self.peers.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Adds to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// How a transfer shows its progress.
pub struct Progress {
    pub counters: Arc<Counters>,
    verb: &'static str,
    total_bytes: u64,
    total_chunks: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing a transfer of `total_bytes` in `total_chunks`.
    pub fn start(verb: &'static str, total_bytes: u64, total_chunks: u64, quiet: bool) -> Progress {
        let counters = Arc::new(Counters::default());
        let mut p = Progress {
            counters: counters.clone(),
            verb,
            total_bytes,
            total_chunks,
            started: Instant::now(),
            bar: None,
            ticker: None,
        };
        if quiet {
            return p;
        }
        if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(verb);
            let b = bar.clone();
            let total = total_chunks;
            p.ticker = Some(tokio::spawn(async move {
                loop {
                    b.set_position(Counters::get(&counters.bytes));
                    b.set_message(format!(
                        "chunks {}/{total} peers {}",
                        Counters::get(&counters.chunks),
                        counters.peers()
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
            p.bar = Some(bar);
        } else {
            let (total_bytes, started) = (total_bytes, p.started);
            p.ticker = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let done = Counters::get(&counters.bytes);
                    eprintln!(
                        "{verb}: {} of {} ({}%), chunks {}/{total_chunks}, peers {}, {}",
                        mib(done),
                        mib(total_bytes),
                        (done * 100).checked_div(total_bytes).unwrap_or(100),
                        Counters::get(&counters.chunks),
                        counters.peers(),
                        rate(done, started.elapsed())
                    );
                }
            }));
        }
        p
    }

    /// Stops the display and returns the summary line.
    pub fn finish(self) -> String {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let c = &self.counters;
        let elapsed = self.started.elapsed();
        format!(
            "{}: {} in {} chunks, {:.2} s, {}, {} retries, {} hedged, {} backoffs, {} bad chunks rejected, {} peers",
            self.verb,
            mib(self.total_bytes),
            self.total_chunks,
            elapsed.as_secs_f64(),
            rate(self.total_bytes, elapsed),
            Counters::get(&c.retries),
            Counters::get(&c.hedged),
            Counters::get(&c.backoffs),
            Counters::get(&c.rejected),
            c.peers()
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!("{:.1} MiB/s", bytes as f64 / (1 << 20) as f64 / secs)
}
