//! dhtfs: a storage node for a decentralized, content-addressed block store on a
//! Kademlia DHT, wire-compatible with the original DHTFileStore.
//!
//! Layers, bottom to top (an import may point down, never up):
//! - core, pure, no I/O or clocks (time is passed in): [`id`], [`contact`],
//!   [`addr`], [`wire`], [`routing`], [`lookup`], [`region`], [`manifest`],
//!   [`spread`], [`limits`], [`pacing`], [`rtt`], [`hedge`], [`seal`] (the crypto of
//!   confidential files), [`erasure`] (a chunk's shards); and [`stats`], the plain
//!   counters every layer above bumps
//! - shells: [`net`] (UDP and TCP sockets), [`store`] (sled and block files)
//! - engine: [`node`], which reaches the network and time only through the
//!   [`node::Transport`] and [`node::Clock`] it is given; its one verified
//!   block fetch ([`node::Node::fetch_verified`]) serves every reader
//! - upkeep: [`upkeep`], jobs over the stored blocks on the node's schedule
//! - faces: [`files`] (put, get, pin), [`gateway`] (HTTP), [`admin`] (gRPC),
//!   [`metrics`] (Prometheus), [`devnet`], [`notify`] (systemd)
//! - binary: [`config`], [`daemon`], and `main.rs`; beside it, behind the
//!   `sim` feature, `sim`: the simulation of many engines on a fake network,
//!   which runs the engine's and upkeep's own code

pub mod addr;
pub mod admin;
pub mod config;
pub mod contact;
pub mod daemon;
pub mod devnet;
pub mod erasure;
pub mod files;
pub mod gateway;
pub mod hedge;
pub mod id;
pub mod limits;
pub mod lookup;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod node;
pub mod notify;
pub mod pacing;
pub mod region;
pub mod routing;
pub mod rtt;
pub mod seal;
#[cfg(feature = "sim")]
pub mod sim;
pub mod spread;
pub mod stats;
pub mod store;
pub mod stripe;
pub mod upkeep;
pub mod wire;
