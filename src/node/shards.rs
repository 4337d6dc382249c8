//! The shards of a stripe (see `stripe.rs`), fetched in parallel from
//! whichever nodes hold them: `want` and a few spares at a time, in stripe
//! order (data shards first, which decode without arithmetic), the next
//! asked when one fails or none came for a while. A dead holder costs a
//! spare, a slow one nothing while `want` others answer: the fetches still
//! running when `want` are in are dropped. Reading a chunk and repairing
//! one both fetch through here, each shard through [`Node::fetch_verified`]
//! (or this node's own store, when it holds the shard intact).

use std::time::Duration;

use tokio::task::JoinSet;

use super::{Node, Tally, Transfer, Unfetched};
use crate::id::Id;
use crate::stripe::Stripe;

/// Shards fetched beyond `want` from the start, as a share of `want` (at
/// least 2): the spares that make one slow or dead holder cost nothing.
const SPARE_PER_WANT: usize = 5;
/// With no shard in for this long, one more is asked for.
const HEDGE_AFTER: Duration = Duration::from_millis(400);

/// One shard's fetch: its bytes and what it met, or why none came.
type Fetch = Result<(Vec<u8>, Tally), Unfetched>;

/// Verified shard blocks with their stripe positions, and what their
/// fetches met.
pub struct Shards {
    pub blocks: Vec<(usize, Vec<u8>)>,
    pub tally: Tally,
}

impl Node {
    /// At least `want` verified shard blocks of `stripe`, asking for
    /// positions in order but those in `skip` (known missing).
    pub async fn fetch_shards(
        &self,
        stripe: &Stripe,
        want: usize,
        skip: &[usize],
        transfer: &std::sync::Arc<Transfer>,
    ) -> Result<Shards, Unfetched> {
        let (k, n) = (stripe.code.k(), stripe.code.n());
        let max = stripe.shard_block_len();
        let spare = (want / SPARE_PER_WANT).max(2).min(n.saturating_sub(k));
        let mut order = (0..n).filter(|i| !skip.contains(i));
        let mut running: JoinSet<(usize, Fetch)> = JoinSet::new();
        let launch = |running: &mut JoinSet<_>, position: usize| {
            let (node, transfer, id) = (self.clone(), transfer.clone(), stripe.shards[position]);
            running.spawn(async move { (position, node.shard(id, max, &transfer).await) });
        };
        for position in order.by_ref().take(want + spare) {
            launch(&mut running, position);
        }
        let mut got = Shards {
            blocks: Vec::with_capacity(want),
            tally: Tally::default(),
        };
        let (mut last_error, mut timed_out) = (String::new(), false);
        let clock = self.clock().clone();
        while got.blocks.len() < want {
            if running.is_empty() {
                return Err(Unfetched {
                    why: format!(
                        "{} of the {want} shards needed were found of this {} stripe; the last try: {last_error}",
                        got.blocks.len(),
                        stripe.code
                    ),
                    timed_out,
                    tally: got.tally,
                });
            }
            let joined = tokio::select! {
                biased;
                joined = running.join_next() => joined,
                _ = clock.sleep(HEDGE_AFTER) => {
                    if let Some(position) = order.next() {
                        launch(&mut running, position);
                    }
                    continue;
                }
            };
            let Some(Ok((position, result))) = joined else {
                continue;
            };
            match result {
                Ok((block, tally)) => {
                    add(&mut got.tally, tally);
                    got.blocks.push((position, block));
                }
                Err(e) => {
                    add(&mut got.tally, e.tally);
                    timed_out |= e.timed_out;
                    last_error = format!("shard {position}: {}", e.why);
                    if let Some(next) = order.next() {
                        launch(&mut running, next);
                    }
                }
            }
        }
        running.abort_all();
        Ok(got)
    }

    /// Shard `id`, verified: from this node's own store when it holds it
    /// intact, else from the network.
    async fn shard(
        &self,
        id: Id,
        max: u64,
        transfer: &Transfer,
    ) -> Result<(Vec<u8>, Tally), Unfetched> {
        if self.inner.cfg.is_holder && self.inner.blocks.contains(&id) {
            let blocks = self.inner.blocks.clone();
            let local = match blocks.puts_may_block() {
                true => tokio::task::spawn_blocking(move || blocks.get(&id))
                    .await
                    .ok(),
                false => Some(blocks.get(&id)),
            };
            if let Some(Ok(Some(data))) = local {
                if Id::of_block(&data) == id {
                    return Ok((data, Tally::default()));
                }
            }
        }
        let fetched = self.fetch_verified(id, max, transfer).await?;
        Ok((fetched.data, fetched.tally))
    }
}

fn add(total: &mut Tally, t: Tally) {
    total.rejected += t.rejected;
    total.retries += t.retries;
    total.hedged += t.hedged;
}
