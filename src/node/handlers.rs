//! Incoming datagrams: requests are answered (one small function per type),
//! responses and errors are handed to the pending request they answer.

use std::net::SocketAddr;

use serde_json::Value;

use super::Node;
use crate::contact::Contact;
use crate::routing::Observed;
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
        // The address the datagram came from wins over the one it claims.
        let requester = Contact::new(req.requester.id, from);
        // A short-lived client is answered but not remembered: it will be
        // gone soon, and dead entries slow every lookup that meets them.
        if requester.id != self.inner.me.id && !req.read_only {
            self.observe(requester);
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
            RequestBody::StoreValue(key) => {
                // Pulling takes a while: answer from a task of its own.
                let node = self.clone();
                tokio::spawn(async move { node.handle_store(from, req.magic, key).await });
                return;
            }
        };
        self.reply(from, req.magic, kind, result);
    }

    /// The K closest we know to `target`, closest first, leaving out the one
    /// who asked. Entries whose last request failed go only where no healthy
    /// one is left: a dead peer in an answer costs the asker a timeout.
    fn closest_for(&self, target: &crate::id::Id, requester: &Contact) -> Vec<Contact> {
        let k = self.inner.cfg.lookup.k;
        let table = self.table();
        let (mut healthy, failing): (Vec<Contact>, Vec<Contact>) = table
            .closest(target, 2 * k + 1)
            .into_iter()
            .filter(|c| c.id != requester.id)
            .partition(|c| table.get(&c.id).is_none_or(|e| e.failures == 0));
        drop(table);
        let missing = k.saturating_sub(healthy.len());
        healthy.extend(failing.into_iter().take(missing));
        healthy.sort_by_key(|c| c.id.distance(target));
        healthy.truncate(k);
        healthy
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

    /// Adds or refreshes a contact we heard from; a full bucket makes us ping
    /// its least-recently-seen entry, which stays if it answers.
    pub(super) fn observe(&self, contact: Contact) {
        let now = self.inner.clock.now_ms();
        let outcome = self.table().observe(contact, now);
        if let Observed::Pending { ping } = outcome {
            let node = self.clone();
            tokio::spawn(async move {
                let alive = node.ping_contact(&ping).await.is_ok();
                let now = node.inner.clock.now_ms();
                node.table().on_ping_result(&ping.id, alive, now);
            });
        }
    }
}
