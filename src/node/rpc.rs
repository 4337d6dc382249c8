//! Outgoing requests to one peer: send, wait for the answer with a deadline,
//! and feed the outcome back into the routing table.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

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

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer answered with an error: {0}")]
    Remote(String),
    #[error("the peer's answer does not parse: {0}")]
    BadAnswer(#[from] WireError),
    #[error("too many requests already waiting for answers")]
    Busy,
}

impl Node {
    /// Sends `body` to `to` and waits for the result, at most `timeout`.
    async fn request(
        &self,
        to: SocketAddr,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let kind = body.kind();
        let stats = &self.inner.stats;
        let clock = &self.inner.clock;
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
        let mut hard = self.inner.clock.sleep(timeout);
        // A datagram lost on the way costs a soft timeout, not the whole
        // request: unanswered, the same request (same magic) goes again after
        // each soft timeout, up to RESENDS times. A store_value's answer waits
        // on a pull, so it is never resent.
        let soft = self.soft_timeout();
        let may_resend = kind != crate::wire::RequestType::StoreValue;
        let mut resent = 0;
        let mut waiter = waiter;
        // A closed channel (the map torn down) counts as no answer.
        let answer: Option<super::pending::Answer> = loop {
            let nap = self.inner.clock.sleep(soft);
            tokio::select! {
                // In order, not at random: a simulation must repeat exactly.
                biased;
                answer = &mut waiter.rx => break answer.ok(),
                _ = &mut hard => break None,
                _ = nap, if may_resend && resent < RESENDS => {
                    resent += 1;
                    Stats::inc(&stats.requests_resent);
                    self.send(to, &bytes);
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
    ) -> Result<Value, RequestError> {
        let result = self.request(to.addr, body, timeout).await;
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
        let timeout = self.inner.cfg.request_timeout;
        let value = self
            .request_contact(to, RequestBody::FindNode(target), timeout)
            .await?;
        Ok(decode_nodes(&value)?)
    }

    /// Asks `to` whether it holds `key`, or which nodes are closer.
    pub async fn find_value_rpc(
        &self,
        to: &Contact,
        key: Id,
    ) -> Result<FindValueResult, RequestError> {
        let timeout = self.inner.cfg.request_timeout;
        let value = self
            .request_contact(to, RequestBody::FindValue(key), timeout)
            .await?;
        Ok(decode_find_value(&value)?)
    }

    /// Asks `to` to pull `key` from us and store it; Ok only on "saved".
    pub async fn store_rpc(&self, to: &Contact, key: Id) -> Result<(), RequestError> {
        let timeout = self.inner.cfg.store_timeout;
        let value = self
            .request_contact(to, RequestBody::StoreValue(key), timeout)
            .await?;
        Ok(decode_saved(&value)?)
    }
}
