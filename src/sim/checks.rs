//! Invariants over every live node: its pending requests, routing table and
//! store stay within their bounds and well-formed; honest stores hold only
//! blocks whose bytes hash to their keys.

use std::collections::HashSet;

use super::failures::Check;
use super::world::{Life, World};
use crate::id::ID_BITS;

/// Checks every up host, recording each broken invariant; also tracks the
/// largest table and pending map seen.
pub fn check_all(world: &mut World) {
    let mut problems = Vec::new();
    let stored = world.blocks.len() + world.file_blocks;
    for host in world.hosts.iter().filter(|h| h.life == Life::Up) {
        let Some(node) = &host.node else {
            problems.push(format!("host {} is up without an engine", host.addr));
            continue;
        };
        let cfg = node.config();
        let pending = node.pending_requests();
        world.max_pending = world.max_pending.max(pending);
        if pending > cfg.max_pending {
            problems.push(format!(
                "{}: {pending} pending requests, over the bound {}",
                host.addr, cfg.max_pending
            ));
        }
        let entries = node.table().entries();
        world.max_table = world.max_table.max(entries.len());
        let bucket_size = cfg.routing.k.max(1);
        if entries.len() > ID_BITS * bucket_size {
            problems.push(format!(
                "{}: routing table of {} entries",
                host.addr,
                entries.len()
            ));
        }
        let mut per_bucket = vec![0usize; ID_BITS];
        let mut ids = HashSet::new();
        for (i, e) in &entries {
            per_bucket[*i] += 1;
            if host.id.bucket_index(&e.contact.id) != Some(*i) {
                problems.push(format!(
                    "{}: {} sits in bucket {i}, not its own",
                    host.addr,
                    e.contact.id.short()
                ));
            }
            if !ids.insert(e.contact.id) {
                problems.push(format!(
                    "{}: {} is in the table twice",
                    host.addr,
                    e.contact.id.short()
                ));
            }
        }
        if let Some(i) = per_bucket.iter().position(|&n| n > bucket_size) {
            problems.push(format!(
                "{}: bucket {i} holds {} entries, over {bucket_size}",
                host.addr, per_bucket[i]
            ));
        }
        if !host.liar && host.store.len() > stored {
            problems.push(format!(
                "{}: holds {} blocks, more than the {stored} ever stored",
                host.addr,
                host.store.len()
            ));
        }
    }
    for p in problems {
        world.fail(Check::Bound, p);
    }
}

/// Checks only the pending maps of every up host (cheap, so done often).
pub fn check_pending(world: &mut World) {
    let mut problems = Vec::new();
    for host in world.hosts.iter().filter(|h| h.life == Life::Up) {
        if let Some(node) = &host.node {
            let (pending, bound) = (node.pending_requests(), node.config().max_pending);
            world.max_pending = world.max_pending.max(pending);
            if pending > bound {
                problems.push(format!(
                    "{}: {pending} pending requests, over the bound {bound}",
                    host.addr
                ));
            }
        }
    }
    for p in problems {
        world.fail(Check::Bound, p);
    }
}

/// Every honest store (up or down: a disk) holds only good blocks.
pub fn check_stores(world: &mut World) {
    let mut problems = Vec::new();
    for host in world.hosts.iter().filter(|h| !h.liar) {
        for key in host.store.corrupt_keys() {
            problems.push(format!(
                "{}: holds bytes under {} that do not hash to it",
                host.addr,
                key.short()
            ));
        }
    }
    for p in problems {
        world.fail(Check::Integrity, p);
    }
}
