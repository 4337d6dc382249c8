//! The wire formats, as pure functions over bytes: JSON datagrams for the DHT
//! ([`message`]) and the TCP block frame ([`block_frame`]).

pub mod block_frame;
pub mod message;

pub use message::{
    parse, ErrorReply, Message, NodeObj, Request, RequestBody, RequestType, Response, WireError,
    MAX_DATAGRAM,
};
