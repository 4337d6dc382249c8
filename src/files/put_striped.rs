//! `dhtfs put --ec k/n`: each chunk's block (sealed first, when the file
//! is) is erasure-coded into `n` shard blocks, each stored on its own
//! closest nodes with a request to keep `shard_copies` of it, and a stripe
//! block naming them is stored like a manifest, on the K closest nodes of
//! its key (who check and repair the chunk later). The shards of a chunk
//! live in memory only while they are stored: a few chunks at a time.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::progress::Counters;
use super::put::{store_block, Placement};
use super::source::FileSource;
use crate::erasure::Code;
use crate::id::Id;
use crate::node::Node;
use crate::store::BlockStore;
use crate::stripe::Stripe;

/// How a put stripes its chunks.
#[derive(Clone, Copy, Debug)]
pub struct Striping {
    pub code: Code,
    /// Nodes each shard is kept on.
    pub shard_copies: usize,
    /// Nodes each stripe is kept on (the put's replicas).
    pub stripe_copies: usize,
    /// Stores in flight at once, as a replicated put's chunks: a stripe's
    /// shards count together as one.
    pub parallel: usize,
}

/// One result per distinct chunk: its index, its block's key, and the
/// stripe's key with how many of its blocks are on fewer nodes than asked.
pub type StripeResult = (usize, Id, Result<(Id, usize), String>);

/// Stripes and stores every chunk of `distinct` (index, block key).
pub async fn store_striped(
    node: &Node,
    source: &Arc<FileSource>,
    distinct: &[(usize, Id)],
    how: &Striping,
    (counters, placement): (&Arc<Counters>, &Placement),
    sizes: &HashMap<Id, u64>,
) -> Vec<StripeResult> {
    // A stripe in flight holds n/k of its chunk in memory and n stores: a
    // few at a time keep both near a replicated put's.
    let at_once = how.parallel.div_ceil(4).max(2);
    // Shard stores in flight across the put: each is a lookup and a pull,
    // and a wider burst of datagrams overflowed socket buffers on loopback
    // (8 nodes, 24/56: one store in 224 lost, a 30 s wait; none at 32).
    let slots = Arc::new(Semaphore::new(how.parallel.max(1) * 2));
    let mut out = Vec::new();
    let mut running = JoinSet::new();
    let mut queue = distinct.iter().copied();
    loop {
        while running.len() < at_once {
            let Some((index, key)) = queue.next() else {
                break;
            };
            let (node, source, counters, how) =
                (node.clone(), source.clone(), counters.clone(), *how);
            let (slots, placement) = (slots.clone(), placement.clone());
            let size = sizes.get(&key).copied().unwrap_or(0);
            running.spawn(async move {
                let r = store_one(&node, &source, key, &how, (&counters, &slots, &placement)).await;
                if r.is_ok() {
                    Counters::add(&counters.bytes, size);
                    Counters::add(&counters.chunks, 1);
                }
                (index, key, r)
            });
        }
        match running.join_next().await {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => tracing::warn!(error = %e, "stripe task failed"),
            None => break,
        }
    }
    out
}

/// Encodes chunk block `key` and stores its shards and then its stripe.
async fn store_one(
    node: &Node,
    source: &Arc<FileSource>,
    key: Id,
    how: &Striping,
    (counters, slots, placement): (&Arc<Counters>, &Arc<Semaphore>, &Placement),
) -> Result<(Id, usize), String> {
    let (src, code) = (source.clone(), how.code);
    let copies = u8::try_from(how.shard_copies).unwrap_or(u8::MAX);
    let made = tokio::task::spawn_blocking(move || {
        let block = src
            .get(&key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the chunk is no longer in the source".to_string())?;
        if Id::of_block(&block) != key {
            return Err("the file changed while it was being put".to_string());
        }
        Ok(Stripe::make(code, copies, &block))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (stripe, shards) = made;
    let stripe_bytes = stripe.encode();
    let stripe_key = Id::of_block(&stripe_bytes);
    for (id, shard) in stripe.shards.iter().zip(shards) {
        source.add(*id, shard);
    }
    source.add(stripe_key, stripe_bytes);
    let result = store_blocks(node, &stripe, stripe_key, how, (counters, slots, placement)).await;
    for id in &stripe.shards {
        source.remove(id);
    }
    source.remove(&stripe_key);
    result.map(|short| (stripe_key, short))
}

/// Every shard of `stripe` on `shard_copies` nodes, then the stripe itself
/// on `stripe_copies`: the stripe names only shards that were stored.
async fn store_blocks(
    node: &Node,
    stripe: &Stripe,
    stripe_key: Id,
    how: &Striping,
    (counters, slots, placement): (&Arc<Counters>, &Arc<Semaphore>, &Placement),
) -> Result<usize, String> {
    let copies = stripe.copies;
    let mut running = JoinSet::new();
    for (position, &id) in stripe.shards.iter().enumerate() {
        let (node, counters, slots) = (node.clone(), counters.clone(), slots.clone());
        let placement = placement.clone();
        let want = how.shard_copies;
        running.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let r = store_block(&node, id, (want, copies), &counters, &placement).await;
            (position, r)
        });
    }
    let mut short = 0;
    while let Some(joined) = running.join_next().await {
        let (position, r) = joined.map_err(|e| e.to_string())?;
        match r {
            Ok(saved) if saved < how.shard_copies => short += 1,
            Ok(_) => {}
            Err(why) => return Err(format!("shard {position}: {why}")),
        }
    }
    match store_block(
        node,
        stripe_key,
        (how.stripe_copies, 0),
        counters,
        placement,
    )
    .await
    {
        Ok(saved) if saved < how.stripe_copies => short += 1,
        Ok(_) => {}
        Err(why) => return Err(format!("stripe {stripe_key}: {why}")),
    }
    Ok(short)
}
