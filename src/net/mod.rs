//! The socket shells: they move bytes between the network and the engine, and
//! bound everything (datagram size, line length, connections, idle time).

pub mod bind;
pub mod connect;
pub mod per_ip;
pub mod send_file;
pub mod tcp_client;
pub mod tcp_server;
pub mod udp;

pub use bind::{advertise_ip, bind_pair, bind_tcp, BindError};
pub use per_ip::{IpSlot, PerIp};
pub use tcp_client::TcpClient;
pub use tcp_server::{serve_blocks, TcpLimits};
pub use udp::{run_udp, NetTransport};
