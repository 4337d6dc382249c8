//! Requests we sent and are waiting on, keyed by magic. Bounded, and each entry
//! is removed by its waiter's guard when it is answered, times out or is
//! dropped, so the map never grows without bound (the original leaks them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::wire::RequestType;

/// What a waiter receives: the response's result, or a peer's error text.
pub type Answer = Result<Value, String>;

struct Entry {
    to: SocketAddr,
    kind: RequestType,
    tx: oneshot::Sender<Answer>,
}

/// The pending-request map.
#[derive(Clone)]
pub struct Pending {
    map: Arc<Mutex<HashMap<u64, Entry>>>,
    capacity: usize,
}

/// Removes its entry when dropped.
pub struct Waiter {
    pub magic: u64,
    pub rx: oneshot::Receiver<Answer>,
    map: Arc<Mutex<HashMap<u64, Entry>>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&self.magic);
        }
    }
}

impl Pending {
    /// An empty map holding at most `capacity` requests.
    pub fn new(capacity: usize) -> Pending {
        Pending {
            map: Arc::new(Mutex::new(HashMap::new())),
            capacity,
        }
    }

    /// Registers a request to `to`; `None` when the map is full.
    pub fn register(&self, to: SocketAddr, kind: RequestType) -> Option<Waiter> {
        self.register_with(to, kind, &mut rand::random)
    }

    /// [`register`](Self::register), drawing magics from `draw` (the node's
    /// clock, which a simulation seeds).
    pub fn register_with(
        &self,
        to: SocketAddr,
        kind: RequestType,
        draw: &mut dyn FnMut() -> u64,
    ) -> Option<Waiter> {
        let mut map = self.map.lock().ok()?;
        if map.len() >= self.capacity {
            return None;
        }
        // Magics are u32 on the wire, as the original's are.
        let magic = loop {
            let m = draw() & u64::from(u32::MAX);
            if !map.contains_key(&m) {
                break m;
            }
        };
        let (tx, rx) = oneshot::channel();
        map.insert(magic, Entry { to, kind, tx });
        Some(Waiter {
            magic,
            rx,
            map: self.map.clone(),
        })
    }

    /// Hands an answer to the waiter for `magic`, if it was sent to `from` and
    /// (when the answer names one) of the same type. Returns whether it matched.
    pub fn complete(
        &self,
        magic: u64,
        from: SocketAddr,
        kind: Option<&str>,
        answer: Answer,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        let matches = map
            .get(&magic)
            .is_some_and(|e| e.to == from && kind.is_none_or(|k| k == e.kind.as_str()));
        if !matches {
            return false;
        }
        match map.remove(&magic) {
            Some(entry) => entry.tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn answer_reaches_waiter_only_from_the_right_address_and_type() {
        let p = Pending::new(10);
        let mut w = p.register(addr(1), RequestType::Ping).unwrap();
        assert!(!p.complete(w.magic, addr(2), None, Ok(json!(1))));
        assert!(!p.complete(w.magic, addr(1), Some("find_node"), Ok(json!(1))));
        assert!(p.complete(w.magic, addr(1), Some("ping_node"), Ok(json!(1))));
        assert_eq!(w.rx.try_recv().unwrap(), Ok(json!(1)));
        assert!(!p.complete(w.magic, addr(1), None, Ok(json!(1))));
    }

    #[test]
    fn map_is_bounded_and_waiters_clean_up() {
        let p = Pending::new(2);
        let a = p.register(addr(1), RequestType::Ping).unwrap();
        let _b = p.register(addr(1), RequestType::Ping).unwrap();
        assert!(p.register(addr(1), RequestType::Ping).is_none());
        drop(a);
        assert_eq!(p.len(), 1);
        assert!(p.register(addr(1), RequestType::Ping).is_some());
    }
}
