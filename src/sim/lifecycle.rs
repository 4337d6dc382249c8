//! Hosts coming up (join, then their schedule) and going away: leaving for
//! good, or crashing and restarting on their store, with or without the
//! routing table they had.

use std::time::Duration;

use rand::Rng;

use super::upkeep;
use super::world::{lock, Life, Shared};
use crate::contact::Contact;

/// Join attempts before a host gives up and waits to be found.
const JOIN_TRIES: u32 = 5;
/// Between join attempts.
const JOIN_RETRY: Duration = Duration::from_secs(30);

/// How a host leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// For good; a new host takes its place.
    Leave,
    /// Crash, then restart with the routing table it had.
    CrashKeepRouting,
    /// Crash, then restart knowing only a bootstrap node.
    CrashLoseRouting,
}

/// Boots host `index`, joins through `bootstrap` (or `known` contacts; the
/// very first host, `alone`, through nobody), and starts its schedule.
/// Returns when the join is over.
pub async fn start(
    shared: Shared,
    index: usize,
    mut bootstrap: Vec<Contact>,
    known: Vec<Contact>,
    alone: bool,
) {
    let (node, alive, stop) = {
        let mut w = lock(&shared);
        let node = w.boot(index);
        (node, w.hosts[index].alive.clone(), w.stop.clone())
    };
    for attempt in 0..JOIN_TRIES {
        if alone {
            break;
        }
        let addrs: Vec<_> = bootstrap.iter().map(|c| c.addr).collect();
        let tried = !addrs.is_empty() || !known.is_empty();
        if tried && node.join(&addrs, &known).await > 0 {
            break;
        }
        if attempt + 1 < JOIN_TRIES {
            tokio::time::sleep(JOIN_RETRY).await;
            // Try another door.
            bootstrap = lock(&shared).pick_bootstrap(index).into_iter().collect();
        }
    }
    {
        let mut w = lock(&shared);
        if !alive.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        w.hosts[index].joined = true;
    }
    tokio::spawn(upkeep::run(shared.clone(), index, node, alive, stop));
}

/// One churn event: a random up host departs as `how`.
pub async fn depart(shared: Shared, how: Departure) {
    let (index, down) = {
        let mut w = lock(&shared);
        let Some(index) = w.pick(|_| true) else {
            return;
        };
        let down = Duration::from_millis(w.rng.gen_range(30_000..=600_000));
        (index, down)
    };
    match how {
        Departure::Leave => {
            let (fresh, boot) = {
                let mut w = lock(&shared);
                w.leave(index);
                let liar = w.hosts[index].liar;
                let fresh = w.add_host(liar);
                (fresh, w.pick_bootstrap(fresh))
            };
            start(shared, fresh, boot.into_iter().collect(), Vec::new(), false).await;
        }
        Departure::CrashKeepRouting | Departure::CrashLoseRouting => {
            lock(&shared).crash(index);
            tokio::time::sleep(down).await;
            let (boot, known) = {
                let mut w = lock(&shared);
                if w.stopping() || w.hosts[index].life != Life::Down {
                    return;
                }
                if how == Departure::CrashKeepRouting {
                    (Vec::new(), w.hosts[index].snapshot.clone())
                } else {
                    (w.pick_bootstrap(index).into_iter().collect(), Vec::new())
                }
            };
            start(shared, index, boot, known, false).await;
        }
    }
}
