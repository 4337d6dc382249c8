//! A contact: a node's id and the address it answers on (UDP and TCP share the port).

use std::net::SocketAddr;

use crate::id::Id;

/// A node as the routing table and lookups know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    pub id: Id,
    pub addr: SocketAddr,
}

impl Contact {
    pub fn new(id: Id, addr: SocketAddr) -> Contact {
        Contact { id, addr }
    }
}
