//! Joining the network and keeping the routing table fresh.

use std::net::SocketAddr;

use tokio::task::JoinSet;

use super::Node;
use crate::contact::Contact;

impl Node {
    /// Joins through `addrs` (bootstrap addresses) and `known` (contacts from
    /// a routing snapshot): pings them all, looks up our own id, then refreshes
    /// the buckets beyond our nearest neighbour. Returns how many answered.
    pub async fn join(&self, addrs: &[SocketAddr], known: &[Contact]) -> usize {
        let all = addrs.iter().copied().chain(known.iter().map(|c| c.addr));
        let answered = self.ping_all(all).await;
        if answered > 0 {
            self.look_around().await;
        }
        answered
    }

    /// Asks again the bootstrap peers `addrs` not in the table, and the
    /// entries it dropped for failing that are not back (see
    /// `RoutingTable::departed`); when one answers, looks around as a join
    /// does. After a split of the network is mended, each side dropped the
    /// other and nothing else would bring them together. Returns how many
    /// answered.
    pub async fn rejoin(&self, addrs: &[SocketAddr]) -> usize {
        let me = self.inner.me.addr;
        let asked: Vec<SocketAddr> = {
            let mut table = self.table();
            let departed = table.departed();
            let missing = addrs.iter().copied().filter(|a| !table.has_addr(*a));
            let mut asked: Vec<SocketAddr> = missing.collect();
            for c in departed {
                if !asked.contains(&c.addr) {
                    asked.push(c.addr);
                }
            }
            asked.retain(|a| *a != me);
            asked
        };
        if asked.is_empty() {
            return 0;
        }
        let answered = self.ping_all(asked.into_iter()).await;
        if answered > 0 {
            tracing::info!(
                answered,
                "peers lost or missing answered again; looking around"
            );
            self.look_around().await;
        }
        answered
    }

    /// Pings every address at once; how many answered.
    async fn ping_all(&self, addrs: impl Iterator<Item = SocketAddr>) -> usize {
        let mut pings = JoinSet::new();
        for addr in addrs {
            let node = self.clone();
            pings.spawn(async move { node.ping_addr(addr).await.is_ok() });
        }
        let mut answered = 0;
        while let Some(joined) = pings.join_next().await {
            if joined.unwrap_or(false) {
                answered += 1;
            }
        }
        answered
    }

    /// A joining node's look around: its own neighbourhood, then the
    /// buckets beyond its nearest neighbour.
    async fn look_around(&self) {
        let me = self.inner.me.id;
        if self.inner.cfg.is_holder {
            // The paper's self-lookup is for a bucket's worth of nodes, not
            // K: every node it asks learns of us, and the holders of keys we
            // are now among the K closest of must, to hand them to us
            // (handoff). With K below the bucket size (say 3 of 20), a
            // K-wide lookup asked too few of them.
            self.lookup_wide(me, self.inner.cfg.routing.k).await;
        } else {
            // A short-lived client holds nothing: its own neighbourhood is
            // no one's business, and a get should not wait on it.
            self.lookup(me, crate::lookup::LookupKind::FindNode).await;
        }
        self.refresh_buckets(0).await;
    }

    /// Looks up a random id in every bucket whose range saw no lookup for
    /// `max_age_ms`; returns how many were refreshed.
    pub async fn refresh_buckets(&self, max_age_ms: u64) -> usize {
        let now = self.inner.clock.now_ms();
        let stale = self.table().buckets_to_refresh(now, max_age_ms);
        let me = self.inner.me.id;
        let mut lookups = JoinSet::new();
        for index in &stale {
            let node = self.clone();
            let target = me.in_bucket_from(*index, self.random_id());
            lookups.spawn(async move { node.find_closest(target).await });
        }
        while lookups.join_next().await.is_some() {}
        stale.len()
    }

    /// A random id drawn from the clock's chance (seeded in a simulation).
    fn random_id(&self) -> crate::id::Id {
        let mut bytes = [0u8; crate::id::ID_LEN];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.inner.clock.random_u64().to_le_bytes());
        }
        crate::id::Id(bytes)
    }
}
