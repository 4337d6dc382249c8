//! Outgoing requests to one peer: send, wait for the answer with a deadline,
//! and feed the outcome back into the routing table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{lock, Node};
use crate::contact::Contact;
use crate::id::Id;
use crate::routing::Heard;
use crate::stats::{Outcome, Stats};
use crate::wire::message::{
    decode_find_value, decode_node, decode_nodes, decode_saved, encode_request, FindValueResult,
};
use crate::wire::{Request, RequestBody, WireError};

/// Times an unanswered request is sent again, a soft timeout apart.
const RESENDS: u32 = 2;
/// An unanswered store_value goes again after a soft timeout, then after
/// twice the wait before, up to this wait, until its timeout.
const STORE_RESEND_MAX: Duration = Duration::from_secs(2);

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer answered with an error: {0}")]
    Remote(String),
    #[error("the peer's answer does not parse: {0}")]
    BadAnswer(#[from] WireError),
    #[error(
        "too many requests already waiting for answers or for their turn to this peer; retry later"
    )]
    Busy,
}

/// A request's turn to go to a peer: how long it waits first, or why it may not.
pub(super) type Turn = Result<Duration, RequestError>;

impl Node {
    /// Sends `body` to `to` at its turn and waits for the result, at most
    /// `timeout` in all (the wait for the turn included).
    async fn request(
        &self,
        to: SocketAddr,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let turn = self.take_turn(to, timeout);
        self.request_at(to, body, timeout, turn).await
    }

    /// Takes the next turn to send `to` a request that may take `timeout`,
    /// keeping within the peer's budget (`send_rate`). Busy when
    /// `send_max_waiting` requests already wait for `to`, or when the turn
    /// would come after half of `timeout`: too little would be left for
    /// the answer. Synchronous, so a lookup knows the wait when it asks.
    pub(super) fn take_turn(&self, to: SocketAddr, timeout: Duration) -> Turn {
        let now = self.inner.clock.now_ms();
        let max_wait = timeout.as_millis() as u64 / 2;
        match lock(&self.inner.pacer).take_turn(&to, max_wait, now) {
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => {
                Stats::inc(&self.inner.stats.requests_refused_paced);
                Err(RequestError::Busy)
            }
        }
    }

    /// [`request`](Self::request) at a turn already taken.
    async fn request_at(
        &self,
        to: SocketAddr,
        body: RequestBody,
        timeout: Duration,
        turn: Turn,
    ) -> Result<Value, RequestError> {
        let wait = turn?;
        let stats = &self.inner.stats;
        let clock = &self.inner.clock;
        // Waiting for the turn before registering: a waiting request holds
        // no slot in the pending map, and its round trip starts when it goes.
        if !wait.is_zero() {
            Stats::inc(&stats.requests_paced);
            clock.sleep(wait).await;
        }
        let timeout_left = timeout.saturating_sub(wait);
        let kind = body.kind();
        let Some(waiter) = self
            .inner
            .pending
            .register_with(to, kind, &mut || clock.random_u64())
        else {
            Stats::inc(&stats.requests_refused_pending_full);
            return Err(RequestError::Busy);
        };
        let req = Request {
            magic: waiter.magic,
            body,
            requester: self.inner.me,
            read_only: !self.inner.cfg.is_holder,
        };
        let started = self.inner.clock.now_us();
        let bytes = encode_request(&req);
        self.send(to, &bytes);
        let mut hard = self.inner.clock.sleep(timeout_left);
        // A datagram lost on the way costs a soft timeout, not the whole
        // request: unanswered, the same request (same magic) goes again after
        // each soft timeout, up to RESENDS times. A store_value's answer waits
        // on a pull of unknown length, and its loss would cost the whole
        // store timeout: it goes again after a soft timeout, then after
        // doubling waits (at most STORE_RESEND_MAX) until the timeout; the
        // peer answers a copy of a store it is still running with that
        // store's answer, and one it finished with "saved" from its store.
        // A resend goes only if the peer's budget has a turn free at once:
        // waiting for one would throw the soft timeouts off, and a peer we
        // keep that busy is not losing datagrams but answering late.
        let soft = self.soft_timeout();
        let store = kind == crate::wire::RequestType::StoreValue;
        let max_resends = if store { u32::MAX } else { RESENDS };
        let mut naps = 0;
        let mut resent = 0;
        let mut waiter = waiter;
        // A closed channel (the map torn down) counts as no answer.
        let answer: Option<super::pending::Answer> = loop {
            let wait = match store {
                true => soft
                    .saturating_mul(1 << naps.min(16))
                    .min(STORE_RESEND_MAX.max(soft)),
                false => soft,
            };
            let nap = self.inner.clock.sleep(wait);
            tokio::select! {
                // In order, not at random: a simulation must repeat exactly.
                biased;
                answer = &mut waiter.rx => break answer.ok(),
                _ = &mut hard => break None,
                _ = nap, if naps < max_resends => {
                    naps += 1;
                    let now = self.inner.clock.now_ms();
                    if lock(&self.inner.pacer).try_now(&to, now) {
                        resent += 1;
                        Stats::inc(&stats.requests_resent);
                        self.send(to, &bytes);
                    } else {
                        Stats::inc(&stats.resends_skipped);
                    }
                }
            }
        };
        let elapsed = self.inner.clock.now_us().saturating_sub(started);
        stats.observe_request(kind, elapsed as f64 / 1e6);
        let Some(answer) = answer else {
            stats.sent.add(kind, Outcome::Timeout);
            return Err(RequestError::Timeout(timeout));
        };
        self.clear_suspect(&to);
        // A store_value's answer waits for a pull: not a round trip; nor is
        // the answer to a resent request, which may answer either send
        // (Karn's rule).
        if kind != crate::wire::RequestType::StoreValue && resent == 0 {
            lock(&self.inner.rtt).sample(Duration::from_micros(elapsed));
        }
        match answer {
            Ok(value) => {
                stats.sent.add(kind, Outcome::Ok);
                Ok(value)
            }
            Err(text) => {
                stats.sent.add(kind, Outcome::Error);
                Err(RequestError::Remote(text))
            }
        }
    }

    /// Sends a request to a known contact and keeps the routing table honest:
    /// an answer refreshes it, a timeout counts against it.
    async fn request_contact(
        &self,
        to: &Contact,
        body: RequestBody,
        timeout: Duration,
        turn: Turn,
    ) -> Result<Value, RequestError> {
        let result = self.request_at(to.addr, body, timeout, turn).await;
        let now = self.inner.clock.now_ms();
        match &result {
            // An answer proves the address alive, not the id: only a ping's
            // answer names the responder.
            Ok(_) => self.observe(*to, Heard::Answer),
            Err(RequestError::Timeout(_)) => {
                self.table().on_failure(&to.id, now);
            }
            // An error reply or a garbled answer still proves it is alive.
            Err(RequestError::Remote(_)) | Err(RequestError::BadAnswer(_)) => {
                self.observe(*to, Heard::Answer)
            }
            Err(RequestError::Busy) => {}
        }
        result
    }

    /// Pings an address (a bootstrap peer, say) and learns the id behind it,
    /// adding it to the routing table.
    pub async fn ping_addr(&self, addr: SocketAddr) -> Result<Contact, RequestError> {
        let timeout = self.inner.cfg.request_timeout;
        let value = self.request(addr, RequestBody::Ping, timeout).await?;
        // Trust the id it gives, but the address we reached it at.
        let contact = Contact::new(decode_node(&value)?.id, addr);
        if contact.id != self.inner.me.id {
            self.observe(contact, Heard::Pong);
        }
        Ok(contact)
    }

    /// Pings a known contact: is it alive, and still the same node? The
    /// caller decides what a failure means (an eviction check, say).
    pub async fn ping_contact(&self, to: &Contact) -> Result<(), RequestError> {
        let timeout = self.inner.cfg.request_timeout;
        let value = self.request(to.addr, RequestBody::Ping, timeout).await?;
        if decode_node(&value)?.id == to.id {
            Ok(())
        } else {
            Err(RequestError::Remote("answered with another node id".into()))
        }
    }

    /// Asks `to` for the nodes it knows closest to `target`.
    pub async fn find_node_rpc(
        &self,
        to: &Contact,
        target: Id,
    ) -> Result<Vec<Contact>, RequestError> {
        let turn = self.take_turn(to.addr, self.inner.cfg.request_timeout);
        self.find_node_at(to, target, turn).await
    }

    /// [`find_node_rpc`](Self::find_node_rpc) at a turn already taken.
    pub(super) async fn find_node_at(
        &self,
        to: &Contact,
        target: Id,
        turn: Turn,
    ) -> Result<Vec<Contact>, RequestError> {
        let timeout = self.inner.cfg.request_timeout;
        let value = self
            .request_contact(to, RequestBody::FindNode(target), timeout, turn)
            .await?;
        Ok(self.reachable(decode_nodes(&value)?))
    }

    /// `nodes` less those this node's socket cannot send to (an IPv6
    /// contact named to an IPv4-only node): asking them would only time out.
    fn reachable(&self, mut nodes: Vec<Contact>) -> Vec<Contact> {
        let transport = &self.inner.transport;
        nodes.retain(|c| transport.reaches(c.addr));
        nodes
    }

    /// Asks `to` whether it holds `key`, or which nodes are closer.
    pub async fn find_value_rpc(
        &self,
        to: &Contact,
        key: Id,
    ) -> Result<FindValueResult, RequestError> {
        let turn = self.take_turn(to.addr, self.inner.cfg.request_timeout);
        self.find_value_at(to, key, turn).await
    }

    /// [`find_value_rpc`](Self::find_value_rpc) at a turn already taken.
    pub(super) async fn find_value_at(
        &self,
        to: &Contact,
        key: Id,
        turn: Turn,
    ) -> Result<FindValueResult, RequestError> {
        let timeout = self.inner.cfg.request_timeout;
        let value = self
            .request_contact(to, RequestBody::FindValue(key), timeout, turn)
            .await?;
        Ok(match decode_find_value(&value)? {
            FindValueResult::Closer(nodes) => FindValueResult::Closer(self.reachable(nodes)),
            holder => holder,
        })
    }

    /// Asks `to` to pull `key` from us and store it; Ok only on "saved".
    /// At most `send_stores_per_peer` go to one peer at once (it refuses
    /// more as busy); the wait for a slot counts against the store's timeout.
    pub async fn store_rpc(&self, to: &Contact, key: Id) -> Result<(), RequestError> {
        self.store_copies_rpc(to, key, 0).await
    }

    /// [`store_rpc`](Self::store_rpc) of a block the network should keep
    /// on `copies` nodes (0: its K).
    pub async fn store_copies_rpc(
        &self,
        to: &Contact,
        key: Id,
        copies: u8,
    ) -> Result<(), RequestError> {
        let timeout = self.inner.cfg.store_timeout;
        let started = self.inner.clock.now_ms();
        let _slot = self.store_slot(to.addr, timeout).await?;
        let waited = Duration::from_millis(self.inner.clock.now_ms().saturating_sub(started));
        let timeout = timeout.saturating_sub(waited);
        let turn = self.take_turn(to.addr, timeout);
        let value = self
            .request_contact(to, RequestBody::StoreValue(key, copies), timeout, turn)
            .await?;
        Ok(decode_saved(&value)?)
    }

    /// Waits, at most `timeout`, for one of `to`'s store slots. Busy when
    /// `send_max_waiting` stores already wait for one.
    async fn store_slot(
        &self,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<StoreSlot<'_>, RequestError> {
        let cfg = &self.inner.cfg;
        let per_peer = cfg.send_stores_per_peer.max(1);
        let sem = {
            let mut slots = lock(&self.inner.store_slots);
            let peer = slots.entry(to).or_insert_with(|| PeerSlots {
                sem: Arc::new(Semaphore::new(per_peer)),
                users: 0,
            });
            if peer.users >= per_peer + cfg.send_max_waiting {
                Stats::inc(&self.inner.stats.requests_refused_paced);
                return Err(RequestError::Busy);
            }
            peer.users += 1;
            peer.sem.clone()
        };
        // Counted from here, so a wait given up (a timeout, a dropped
        // caller) is uncounted on drop.
        let mut slot = StoreSlot {
            node: self,
            to,
            _permit: None,
        };
        if let Ok(permit) = sem.clone().try_acquire_owned() {
            slot._permit = Some(permit);
            return Ok(slot);
        }
        Stats::inc(&self.inner.stats.requests_paced);
        tokio::select! {
            // In order, not at random: a simulation must repeat exactly.
            biased;
            permit = sem.acquire_owned() => {
                // Never closed: the semaphore is ours and never closed.
                slot._permit = permit.ok();
                Ok(slot)
            }
            _ = self.inner.clock.sleep(timeout) => Err(RequestError::Timeout(timeout)),
        }
    }
}

/// One peer's store slots: a semaphore of `send_stores_per_peer` permits and
/// how many stores hold or wait for one (the entry goes when none does).
pub(super) struct PeerSlots {
    sem: Arc<Semaphore>,
    users: usize,
}

/// A store_value of ours holding (or waiting for) one of a peer's slots;
/// freed when dropped.
struct StoreSlot<'a> {
    node: &'a Node,
    to: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for StoreSlot<'_> {
    fn drop(&mut self) {
        let mut slots = lock(&self.node.inner.store_slots);
        if let Some(peer) = slots.get_mut(&self.to) {
            peer.users = peer.users.saturating_sub(1);
            if peer.users == 0 {
                slots.remove(&self.to);
            }
        }
    }
}
