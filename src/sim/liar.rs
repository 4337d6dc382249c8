//! A hostile host. It runs the real engine for its own requests (so it joins
//! and sits in routing tables like anyone), but answers every request itself,
//! as a liar would: lookups get made-up ids at its own address, store_value
//! gets "saved" and nothing is kept, and any block it is asked for is junk.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::contact::Contact;
use crate::id::{Id, ID_LEN};
use crate::wire::message::{encode_response, node_json, nodes_json};
use crate::wire::{parse, Message, RequestBody};

/// Keys a liar remembers claiming, at most.
const CLAIMS: usize = 256;
/// Leading bytes a made-up id shares with the target: closer than any real
/// node of a network under 2^64 nodes.
const SHARED: usize = 8;

/// What to do with a datagram that reached a liar.
pub enum Verdict {
    /// Send this answer back.
    Reply(Vec<u8>),
    /// Not a request: hand it to the liar's engine (answers to its requests).
    Pass,
}

/// One hostile host's behaviour.
pub struct Liar {
    me: Contact,
    k: usize,
    claimed: Mutex<VecDeque<Id>>,
}

fn digest(parts: &[&[u8]]) -> [u8; ID_LEN] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl Liar {
    /// A liar that is `me` and answers with `k` made-up contacts.
    pub fn new(me: Contact, k: usize) -> Liar {
        Liar {
            me,
            k,
            claimed: Mutex::new(VecDeque::new()),
        }
    }

    /// Answers a request with lies; anything else passes.
    pub fn answer(&self, bytes: &[u8]) -> Verdict {
        let Ok(Message::Request(req)) = parse(bytes) else {
            return Verdict::Pass;
        };
        let result = match req.body {
            RequestBody::Ping => node_json(&self.me),
            RequestBody::FindNode(target) => nodes_json(&self.made_up(&target)),
            // It claims the blocks it said it saved (and serves junk for
            // them); for others it leads the lookup astray.
            RequestBody::FindValue(key) if self.claims(&key) => node_json(&self.me),
            RequestBody::FindValue(key) => nodes_json(&self.made_up(&key)),
            RequestBody::StoreValue(key, _) => {
                self.claim(key);
                json!("saved")
            }
        };
        Verdict::Reply(encode_response(req.magic, req.body.kind(), result))
    }

    /// `k` ids nobody has, nearer `target` than any real node, all at our address.
    pub fn made_up(&self, target: &Id) -> Vec<Contact> {
        (0..self.k as u32)
            .map(|i| {
                let mut id = digest(&[&self.me.id.0, &target.0, &i.to_le_bytes()]);
                id[..SHARED].copy_from_slice(&target.0[..SHARED]);
                Contact::new(Id(id), self.me.addr)
            })
            .collect()
    }

    /// The bytes a liar serves for `key`: 1 KiB that do not hash to it.
    pub fn junk(key: &Id) -> Vec<u8> {
        let seed = digest(&[&key.0, b"junk"]);
        seed.iter().cycle().take(1024).copied().collect()
    }

    /// The `n`th key the liar `me` asks others to store (and then serves junk for).
    pub fn bogus_key(me: &Id, n: u64) -> Id {
        Id(digest(&[&me.0, b"bogus", &n.to_le_bytes()]))
    }

    fn claims(&self, key: &Id) -> bool {
        self.claimed
            .lock()
            .map(|c| c.contains(key))
            .unwrap_or(false)
    }

    fn claim(&self, key: Id) {
        if let Ok(mut c) = self.claimed.lock() {
            if !c.contains(&key) {
                if c.len() >= CLAIMS {
                    c.pop_front();
                }
                c.push_back(key);
            }
        }
    }
}
