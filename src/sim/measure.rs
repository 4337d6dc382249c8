//! Judging a lookup against brute force over the live nodes.

use super::record::{LookupRecord, Phase};
use super::world::{Life, World};
use crate::id::{Distance, Id};
use crate::lookup::LookupResult;

/// The ids of the `k` live nodes closest to `target` that a node on `side`
/// can reach (all of them unless the network is split), closest first.
pub fn truth(world: &World, target: &Id, side: bool, k: usize) -> Vec<Id> {
    let split = world.net.partitioned();
    let mut live: Vec<(Distance, Id)> = world
        .hosts
        .iter()
        .filter(|h| h.life == Life::Up && (!split || h.side == side))
        .map(|h| (h.id.distance(target), h.id))
        .collect();
    if live.len() > k {
        live.select_nth_unstable(k);
        live.truncate(k);
    }
    live.sort_unstable();
    live.into_iter().map(|(_, id)| id).collect()
}

/// Judges `result`, a lookup for `target` by a node on `side`; also returns
/// what is wrong with its shape, if anything.
pub fn judge(
    world: &World,
    target: &Id,
    side: bool,
    result: &LookupResult,
) -> (LookupRecord, Option<String>) {
    let k = world.node_cfg.lookup.k;
    let want = truth(world, target, side, k);
    let got: Vec<Id> = result.closest.iter().map(|c| c.id).collect();
    let made_up = got.iter().any(|id| !world.by_id.contains_key(id));
    let mut wrong = None;
    if got.len() > k {
        wrong = Some(format!("lookup returned {} nodes, over K={k}", got.len()));
    } else if !got
        .windows(2)
        .all(|w| w[0].distance(target) < w[1].distance(target))
    {
        wrong = Some(format!(
            "lookup for {} returned nodes out of order or twice",
            target.short()
        ));
    }
    let phase = if world.net.partitioned() {
        Phase::During
    } else if world.healed {
        Phase::After
    } else {
        Phase::Before
    };
    let record = LookupRecord {
        phase,
        exact: got == want && !made_up,
        made_up,
        hops: result.hops,
        requests: result.contacted,
        failed: result.failed,
    };
    (record, wrong)
}
