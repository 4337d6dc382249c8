//! Incoming datagrams: requests are answered (one small function per type),
//! responses and errors are handed to the pending request they answer.

use std::net::SocketAddr;

use serde_json::Value;

use super::{lock, Node};
use crate::contact::Contact;
use crate::routing::{Heard, Observed};
use crate::stats::{Outcome, Stats};
use crate::wire::message::{self, encode_error, encode_response, node_json, nodes_json};
use crate::wire::{Message, Request, RequestBody, RequestType};

impl Node {
    /// Handles one datagram that arrived from `from`. Never panics on any
    /// input; malformed requests are answered with an error and counted.
    pub fn handle_datagram(&self, from: SocketAddr, bytes: &[u8]) {
        let stats = &self.inner.stats;
        Stats::add(&stats.udp_bytes_received, bytes.len() as u64);
        match message::parse(bytes) {
            Err(failure) => {
                Stats::inc(&stats.datagrams_malformed);
                tracing::debug!(%from, error = %failure.error, "malformed datagram");
                // Responses and errors are never answered: no reflection loops.
                if failure.answerable {
                    self.send(
                        from,
                        &encode_error(failure.magic, &failure.error.to_string()),
                    );
                }
            }
            Ok(Message::Response(resp)) => {
                let matched = self.inner.pending.complete(
                    resp.magic,
                    from,
                    resp.kind.as_deref(),
                    Ok(resp.result),
                );
                if !matched {
                    Stats::inc(&stats.responses_unmatched);
                }
            }
            Ok(Message::Error(err)) => {
                let matched = err.magic.is_some_and(|m| {
                    self.inner
                        .pending
                        .complete(m, from, None, Err(err.error.clone()))
                });
                if !matched {
                    Stats::inc(&stats.responses_unmatched);
                    tracing::debug!(%from, error = %err.error, "unmatched error reply");
                }
            }
            Ok(Message::Request(req)) => self.handle_request(from, req),
        }
    }

    fn handle_request(&self, from: SocketAddr, req: Request) {
        // Per-source limit first, so a flood neither gets answers nor churns
        // the table. Dropped without a word: an error reply is traffic too.
        let now = self.inner.clock.now_ms();
        let source = crate::addr::source(from);
        if !lock(&self.inner.limiter).allow(&source, 1.0, now) {
            Stats::inc(&self.inner.stats.requests_limited);
            return;
        }
        // The address the datagram came from wins over the one it claims.
        let requester = Contact::new(req.requester.id, from);
        // A short-lived client is answered but not remembered: it will be
        // gone soon, and dead entries slow every lookup that meets them.
        if requester.id != self.inner.me.id && !req.read_only {
            self.observe(requester, Heard::Request);
        }
        let kind = req.body.kind();
        let result = match req.body {
            RequestBody::Ping => node_json(&self.inner.me),
            RequestBody::FindNode(target) => nodes_json(&self.closest_for(&target, &requester)),
            RequestBody::FindValue(key) => {
                if self.inner.blocks.contains(&key) {
                    node_json(&self.inner.me)
                } else {
                    nodes_json(&self.closest_for(&key, &requester))
                }
            }
            RequestBody::StoreValue(key, copies) => {
                // Pulling takes a while: answer from a task of its own.
                let node = self.clone();
                tokio::spawn(
                    async move { node.handle_store(requester, req.magic, key, copies).await },
                );
                return;
            }
        };
        self.reply(from, req.magic, kind, result);
    }

    /// The K closest we know to `target`, closest first, leaving out the one
    /// who asked; with the lookup's spread rule on, also the K it would pick
    /// among the nodes we know near the target (at most 2K in all): where a
    /// /24 crowds the target, the asker hears of the other prefixes too.
    /// Only verified entries whose last request did not fail are handed
    /// out: an unproven id may be made up, and a dead peer in an answer
    /// costs the asker a timeout.
    fn closest_for(&self, target: &crate::id::Id, requester: &Contact) -> Vec<Contact> {
        let (k, spread) = (self.inner.cfg.lookup.k, self.inner.cfg.lookup.spread);
        let mut known = self.table().closest_good(target, 4 * (k + 1));
        known.retain(|c| c.id != requester.id && c.addr != requester.addr);
        let mut out: Vec<Contact> = known.iter().take(k).copied().collect();
        if spread.per_prefix > 0 {
            for c in spread.closest_of(target, &known, k) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            out.sort_by_key(|c| target.distance(&c.id));
        }
        out
    }

    /// Sends a response and counts it as served.
    pub(super) fn reply(&self, to: SocketAddr, magic: u64, kind: RequestType, result: Value) {
        self.inner.stats.served.add(kind, Outcome::Ok);
        self.send(to, &encode_response(magic, kind, result));
    }

    /// Sends an error reply to a well-formed request and counts it.
    pub(super) fn reply_error(&self, to: SocketAddr, magic: u64, kind: RequestType, text: &str) {
        self.inner.stats.served.add(kind, Outcome::Error);
        self.send(to, &encode_error(Some(magic), text));
    }

    /// Sends one datagram and counts its bytes.
    pub(super) fn send(&self, to: SocketAddr, bytes: &[u8]) {
        Stats::add(&self.inner.stats.udp_bytes_sent, bytes.len() as u64);
        self.inner.transport.send_datagram(to, bytes);
    }

    /// Adds or refreshes a contact we heard from, `how` saying what that
    /// proves. A newcomer whose id is unproven is checked by a ping; a full
    /// bucket makes us ping its least-recently-seen entry, which stays if it
    /// answers; a claim on another node's address or id is checked too.
    pub(super) fn observe(&self, contact: Contact, how: Heard) {
        let now = self.inner.clock.now_ms();
        let outcome = self.table().observe(contact, how, now);
        let stats = &self.inner.stats;
        match outcome {
            Observed::Pending { ping } => {
                let node = self.clone();
                tokio::spawn(async move {
                    let alive = node.ping_contact(&ping).await.is_ok();
                    let now = node.inner.clock.now_ms();
                    node.table().on_ping_result(&ping.id, alive, now);
                });
            }
            Observed::Inserted if how != Heard::Pong => {
                self.check(contact);
            }
            Observed::Conflict { known } => {
                Stats::inc(&stats.address_conflicts);
                if how != Heard::Pong {
                    self.check_conflict(known, contact);
                }
            }
            Observed::Rejected => Stats::inc(&stats.contacts_rejected),
            _ => {}
        }
    }
}
