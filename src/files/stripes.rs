//! Reading an erasure-coded chunk: its stripe names `n` shard blocks, which
//! the engine fetches in parallel from whichever nodes hold them
//! ([`Node::fetch_shards`](crate::node::Node::fetch_shards)); the chunk's
//! block is decoded from the first `k` that verify and checked against the
//! hash the stripe gives.

use super::fetch::{Fetcher, Unfetched};
use super::progress::Counters;
use crate::id::Id;
use crate::node::Tally;
use crate::stripe::Stripe;

fn failed(why: String) -> Unfetched {
    Unfetched {
        why,
        timed_out: false,
        tally: Tally::default(),
    }
}

/// Chunk block of at most `max` bytes decoded from the shards that stripe
/// block `stripe_bytes` (fetched and verified under `key`) lists.
pub async fn fetch_striped(
    fetcher: &Fetcher,
    key: Id,
    stripe_bytes: &[u8],
    max: u64,
) -> Result<Vec<u8>, Unfetched> {
    let stripe = Stripe::parse(key, stripe_bytes).map_err(|e| failed(e.to_string()))?;
    if stripe.len > max {
        return Err(failed(format!(
            "stripe {key} describes a block of {} bytes, its manifest allows {max}",
            stripe.len
        )));
    }
    let k = stripe.code.k();
    let shards = fetcher
        .node
        .fetch_shards(&stripe, k, &[], &fetcher.transfer)
        .await;
    let tally = match &shards {
        Ok(s) => s.tally,
        Err(e) => e.tally,
    };
    let counters = &fetcher.counters;
    Counters::add(&counters.rejected, tally.rejected);
    Counters::add(&counters.retries, tally.retries);
    Counters::add(&counters.hedged, tally.hedged);
    let shards = shards?.blocks;
    tokio::task::spawn_blocking(move || {
        let views: Vec<(usize, &[u8])> = shards.iter().map(|(i, b)| (*i, &b[..])).collect();
        stripe.decode(&views)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|why| failed(format!("stripe {key}: {why}")))
}
