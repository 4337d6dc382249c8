//! The DHT's JSON datagrams, exactly as the original DHTFileStore sends them
//! (see docs/protocol/wire.md):
//!
//! request  `{"magic": M, "type": T, "params": {"id": HEX}, "requester": NODE}`
//! response `{"magic": M, "type": T, "resp": true, "result": ANY}`
//! error    `{"error": TEXT}` (ours add `"magic": M` whenever the request had one)
//! node     `{"node_id": HEX, "ip": "a.b.c.d", "port": P}`
//!
//! This is the one place that knows the JSON shape. Everything from the network
//! is parsed defensively: size-bounded, every field checked, errors precise.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Map, Value};

use crate::contact::Contact;
use crate::id::Id;

/// Largest datagram we read or parse. A response of 7 nodes is ~800 bytes.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Most nodes we accept in one list; the protocol sends 7, 64 leaves room for
/// peers configured wider while bounding what a hostile peer makes us hold.
pub const MAX_NODES_IN_LIST: usize = 64;
/// Longest error text we keep from a peer.
const MAX_ERROR_TEXT: usize = 512;

/// The four request types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestType {
    Ping,
    FindNode,
    FindValue,
    StoreValue,
}

impl RequestType {
    /// Every type, for metrics labels.
    pub const ALL: [RequestType; 4] = [
        RequestType::Ping,
        RequestType::FindNode,
        RequestType::FindValue,
        RequestType::StoreValue,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Ping => "ping_node",
            RequestType::FindNode => "find_node",
            RequestType::FindValue => "find_value",
            RequestType::StoreValue => "store_value",
        }
    }

    /// Parses a wire name.
    pub fn from_wire(s: &str) -> Option<RequestType> {
        RequestType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Index 0..4, for per-type counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A node object as it travels: id and address.
pub type NodeObj = Contact;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    Ping,
    FindNode(Id),
    FindValue(Id),
    /// A block, and how many nodes should keep it: 0 for the network's K,
    /// fewer for a shard of an erasure-coded chunk (our extension,
    /// `"copies"` in params; the original ignores it and keeps K).
    StoreValue(Id, u8),
}

impl RequestBody {
    /// The request's type.
    pub fn kind(&self) -> RequestType {
        match self {
            RequestBody::Ping => RequestType::Ping,
            RequestBody::FindNode(_) => RequestType::FindNode,
            RequestBody::FindValue(_) => RequestType::FindValue,
            RequestBody::StoreValue(..) => RequestType::StoreValue,
        }
    }
}

/// A request datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub magic: u64,
    pub body: RequestBody,
    pub requester: NodeObj,
    /// Our extension, after BitTorrent's BEP 43: `"ro": 1` marks a short-lived
    /// client (put/get) that must not enter routing tables, since it will be
    /// gone soon. The original ignores the field.
    pub read_only: bool,
}

/// A response datagram. `result` stays JSON until the caller, who knows what it
/// asked, decodes it with [`decode_node`], [`decode_nodes`] or [`decode_saved`].
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub magic: u64,
    pub kind: Option<String>,
    pub result: Value,
}

/// An error datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    pub magic: Option<u64>,
    pub error: String,
}

/// Any datagram we understand.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    Response(Response),
    Error(ErrorReply),
}

/// Why a datagram or a result is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram of {0} bytes is over the {MAX_DATAGRAM}-byte limit")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("missing field '{0}'")]
    Missing(&'static str),
    #[error("field '{field}' {problem}")]
    Bad {
        field: &'static str,
        problem: String,
    },
    #[error("unknown request type '{0}'")]
    UnknownType(String),
}

/// A parse failure, with what could be salvaged for the error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailure {
    /// The request's magic, when it had a readable one.
    pub magic: Option<u64>,
    /// Whether the datagram looked like a request (and so deserves an error
    /// reply) rather than a response or error (which are never answered).
    pub answerable: bool,
    pub error: WireError,
}

/// Parses one datagram.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseFailure> {
    let fail = |magic, answerable, error| ParseFailure {
        magic,
        answerable,
        error,
    };
    if bytes.len() > MAX_DATAGRAM {
        return Err(fail(None, true, WireError::TooLarge(bytes.len())));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| fail(None, true, WireError::NotJson(e.to_string())))?;
    let Value::Object(obj) = value else {
        return Err(fail(None, true, WireError::NotObject));
    };
    let magic = obj.get("magic").and_then(Value::as_u64);
    let is_response = obj.get("resp").and_then(Value::as_bool) == Some(true);
    if is_response {
        return parse_response(&obj, magic)
            .map(Message::Response)
            .map_err(|e| fail(magic, false, e));
    }
    if let Some(error) = obj.get("error") {
        if !obj.contains_key("type") {
            let text = match error {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Ok(Message::Error(ErrorReply {
                magic,
                error: truncate(text, MAX_ERROR_TEXT),
            }));
        }
    }
    parse_request(&obj)
        .map(Message::Request)
        .map_err(|e| fail(magic, true, e))
}

fn parse_response(obj: &Map<String, Value>, magic: Option<u64>) -> Result<Response, WireError> {
    let magic =
        magic.ok_or_else(|| bad_or_missing(obj, "magic", "must be a non-negative integer"))?;
    let kind = match obj.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(truncate(s.clone(), 32)),
        Some(_) => return Err(bad("type", "must be a string")),
    };
    let result = obj.get("result").cloned().unwrap_or(Value::Null);
    Ok(Response {
        magic,
        kind,
        result,
    })
}

fn parse_request(obj: &Map<String, Value>) -> Result<Request, WireError> {
    let magic = obj
        .get("magic")
        .ok_or(WireError::Missing("magic"))?
        .as_u64()
        .ok_or_else(|| bad("magic", "must be a non-negative integer"))?;
    let kind = match obj.get("type").ok_or(WireError::Missing("type"))? {
        Value::String(s) => RequestType::from_wire(s)
            .ok_or_else(|| WireError::UnknownType(truncate(s.clone(), 32)))?,
        _ => return Err(bad("type", "must be a string")),
    };
    // The original's code spells it `requester`; its README says `requestor`.
    let requester = obj
        .get("requester")
        .or_else(|| obj.get("requestor"))
        .ok_or(WireError::Missing("requester"))?;
    let requester = decode_node_field(requester, "requester")?;
    let id = |obj: &Map<String, Value>| -> Result<Id, WireError> {
        let params = match obj.get("params") {
            Some(Value::Object(p)) => p,
            Some(_) => return Err(bad("params", "must be an object")),
            None => return Err(WireError::Missing("params")),
        };
        match params.get("id") {
            Some(Value::String(s)) => Id::from_hex(s).map_err(|e| bad("params.id", &e.to_string())),
            Some(_) => Err(bad("params.id", "must be a 64-hex string")),
            None => Err(WireError::Missing("params.id")),
        }
    };
    let body = match kind {
        RequestType::Ping => RequestBody::Ping,
        RequestType::FindNode => RequestBody::FindNode(id(obj)?),
        RequestType::FindValue => RequestBody::FindValue(id(obj)?),
        RequestType::StoreValue => {
            // Anything but a small count (absent, junk, 0) is the network's K.
            let copies = obj
                .get("params")
                .and_then(|p| p.get("copies"))
                .and_then(Value::as_u64)
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(0);
            RequestBody::StoreValue(id(obj)?, copies)
        }
    };
    let read_only = matches!(obj.get("ro"), Some(Value::Bool(true)))
        || obj.get("ro").and_then(Value::as_u64) == Some(1);
    Ok(Request {
        magic,
        body,
        requester,
        read_only,
    })
}

fn bad(field: &'static str, problem: &str) -> WireError {
    WireError::Bad {
        field,
        problem: problem.to_string(),
    }
}

fn bad_or_missing(obj: &Map<String, Value>, field: &'static str, problem: &str) -> WireError {
    if obj.contains_key(field) {
        bad(field, problem)
    } else {
        WireError::Missing(field)
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn decode_node_field(v: &Value, field: &'static str) -> Result<Contact, WireError> {
    let Value::Object(o) = v else {
        return Err(bad(field, "must be a node object"));
    };
    let id = match o.get("node_id") {
        Some(Value::String(s)) => {
            Id::from_hex(s).map_err(|e| bad(field, &format!("has a bad node_id: {e}")))?
        }
        _ => return Err(bad(field, "needs node_id as 64 hex digits")),
    };
    let ip: IpAddr = match o.get("ip") {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| bad(field, "has an ip that is not an IP address"))?,
        _ => return Err(bad(field, "needs ip as a string")),
    };
    let port = match o.get("port").and_then(Value::as_u64) {
        Some(p) if (1..=65535).contains(&p) => p as u16,
        _ => return Err(bad(field, "needs port as an integer 1..65535")),
    };
    // A mapped IPv4 address names the IPv4 host: one host, one address.
    Ok(Contact::new(
        id,
        SocketAddr::new(crate::addr::canonical(ip), port),
    ))
}

/// Decodes a result that should be one node object (ping_node, and find_value
/// from a holder).
pub fn decode_node(v: &Value) -> Result<Contact, WireError> {
    decode_node_field(v, "result")
}

/// Decodes a result that should be a list of node objects (find_node, and
/// find_value from a non-holder). Undecodable entries are skipped; a list
/// longer than [`MAX_NODES_IN_LIST`] is cut.
pub fn decode_nodes(v: &Value) -> Result<Vec<Contact>, WireError> {
    let Value::Array(items) = v else {
        return Err(bad("result", "must be a list of nodes"));
    };
    Ok(items
        .iter()
        .take(MAX_NODES_IN_LIST)
        .filter_map(|n| decode_node(n).ok())
        .collect())
}

/// What a find_value answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindValueResult {
    /// The responder holds the block.
    Holder(Contact),
    /// The responder does not; these are closer.
    Closer(Vec<Contact>),
}

/// Decodes a find_value result: a node object (holder) or a list (closer).
pub fn decode_find_value(v: &Value) -> Result<FindValueResult, WireError> {
    match v {
        Value::Array(_) => decode_nodes(v).map(FindValueResult::Closer),
        _ => decode_node(v).map(FindValueResult::Holder),
    }
}

/// Whether a store_value result says "saved".
pub fn decode_saved(v: &Value) -> Result<(), WireError> {
    match v {
        Value::String(s) if s == "saved" => Ok(()),
        _ => Err(bad("result", "is not \"saved\"")),
    }
}

/// Encodes a node object.
pub fn node_json(c: &Contact) -> Value {
    json!({"node_id": c.id.to_hex(), "ip": c.addr.ip().to_string(), "port": c.addr.port()})
}

/// Encodes a request.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let params = match req.body {
        RequestBody::Ping => json!({}),
        RequestBody::FindNode(id) | RequestBody::FindValue(id) | RequestBody::StoreValue(id, 0) => {
            json!({"id": id.to_hex()})
        }
        RequestBody::StoreValue(id, copies) => json!({"id": id.to_hex(), "copies": copies}),
    };
    let mut v = json!({
        "magic": req.magic,
        "type": req.body.kind().as_str(),
        "params": params,
        "requester": node_json(&req.requester),
    });
    if req.read_only {
        v["ro"] = json!(1);
    }
    v.to_string().into_bytes()
}

/// Encodes a response to a request of `kind` with `magic`.
pub fn encode_response(magic: u64, kind: RequestType, result: Value) -> Vec<u8> {
    json!({"magic": magic, "type": kind.as_str(), "resp": true, "result": result})
        .to_string()
        .into_bytes()
}

/// The result of a list of nodes.
pub fn nodes_json(nodes: &[Contact]) -> Value {
    Value::Array(nodes.iter().map(node_json).collect())
}

/// Encodes an error reply.
pub fn encode_error(magic: Option<u64>, error: &str) -> Vec<u8> {
    let v = match magic {
        Some(m) => json!({"error": error, "magic": m}),
        None => json!({"error": error}),
    };
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8, port: u16) -> Contact {
        Contact::new(Id([n; 32]), SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn request_round_trips() {
        for body in [
            RequestBody::Ping,
            RequestBody::FindNode(Id([1; 32])),
            RequestBody::FindValue(Id([2; 32])),
            RequestBody::StoreValue(Id([3; 32]), 0),
            RequestBody::StoreValue(Id([3; 32]), 1),
        ] {
            let req = Request {
                magic: 4_000_000_000,
                body,
                requester: node(9, 7400),
                read_only: body == RequestBody::Ping,
            };
            assert_eq!(parse(&encode_request(&req)).unwrap(), Message::Request(req));
        }
    }

    #[test]
    fn original_request_bytes_parse() {
        let raw = br#"{"magic": 12, "type": "find_node", "params": {"id": "AB00000000000000000000000000000000000000000000000000000000000000"}, "requester": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "127.0.0.1", "port": 5000}}"#;
        let Message::Request(r) = parse(raw).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.magic, 12);
        let mut want = [0u8; 32];
        want[0] = 0xab;
        assert_eq!(r.body, RequestBody::FindNode(Id(want)));
        assert_eq!(r.requester.addr.port(), 5000);
    }

    #[test]
    fn requestor_spelling_is_accepted() {
        let raw = br#"{"magic": 1, "type": "ping_node", "params": {}, "requestor": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "127.0.0.1", "port": 5000}}"#;
        assert!(matches!(parse(raw), Ok(Message::Request(_))));
    }

    #[test]
    fn responses_and_errors_are_recognised() {
        let raw = encode_response(7, RequestType::Ping, node_json(&node(1, 1)));
        let Message::Response(r) = parse(&raw).unwrap() else {
            panic!()
        };
        assert_eq!(r.magic, 7);
        assert_eq!(decode_node(&r.result).unwrap(), node(1, 1));
        assert_eq!(
            parse(&encode_error(Some(3), "nope")).unwrap(),
            Message::Error(ErrorReply {
                magic: Some(3),
                error: "nope".into()
            })
        );
        assert!(matches!(
            parse(br#"{"error": "x"}"#),
            Ok(Message::Error(ErrorReply { magic: None, .. }))
        ));
    }

    #[test]
    fn malformed_datagrams_fail_precisely() {
        let cases: &[(&[u8], bool)] = &[
            (b"not json", true),
            (b"[1,2,3]", true),
            (b"{}", true),
            (br#"{"magic": -1, "type": "ping_node"}"#, true),
            (br#"{"magic": 1, "type": "dance", "params": {}}"#, true),
            (br#"{"magic": 1, "type": "ping_node", "params": {}}"#, true),
            (br#"{"magic": 1, "type": 5, "params": {}}"#, true),
            (br#"{"magic": 1, "type": "find_node", "params": {"id": "xyz"}, "requester": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "127.0.0.1", "port": 5000}}"#, true),
            (br#"{"magic": 1, "type": "find_node", "params": {}, "requester": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "127.0.0.1", "port": 5000}}"#, true),
            (br#"{"magic": 1, "type": "ping_node", "params": {}, "requester": {"node_id": "01", "ip": "127.0.0.1", "port": 5000}}"#, true),
            (br#"{"magic": 1, "type": "ping_node", "params": {}, "requester": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "nowhere", "port": 5000}}"#, true),
            (br#"{"magic": 1, "type": "ping_node", "params": {}, "requester": {"node_id": "0000000000000000000000000000000000000000000000000000000000000001", "ip": "127.0.0.1", "port": 70000}}"#, true),
            (br#"{"resp": true, "result": 1}"#, false),
        ];
        for (raw, answerable) in cases {
            let err = parse(raw).expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(
                err.answerable,
                *answerable,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let big = vec![b' '; MAX_DATAGRAM + 1];
        assert_eq!(
            parse(&big).unwrap_err().error,
            WireError::TooLarge(MAX_DATAGRAM + 1)
        );
    }

    #[test]
    fn magic_is_salvaged_for_the_error_reply() {
        let err = parse(br#"{"magic": 77, "type": "dance"}"#).unwrap_err();
        assert_eq!(err.magic, Some(77));
    }

    #[test]
    fn node_lists_are_bounded_and_lenient() {
        let mut items: Vec<Value> = (0..100).map(|i| node_json(&node(i, 1000))).collect();
        items.insert(0, json!("junk"));
        let nodes = decode_nodes(&Value::Array(items)).unwrap();
        assert_eq!(nodes.len(), MAX_NODES_IN_LIST - 1);
        assert!(decode_nodes(&json!({"a": 1})).is_err());
    }

    #[test]
    fn find_value_result_tells_holder_from_closer() {
        assert_eq!(
            decode_find_value(&node_json(&node(1, 2))).unwrap(),
            FindValueResult::Holder(node(1, 2))
        );
        assert_eq!(
            decode_find_value(&nodes_json(&[node(1, 2)])).unwrap(),
            FindValueResult::Closer(vec![node(1, 2)])
        );
        assert!(decode_saved(&json!("saved")).is_ok());
        assert!(decode_saved(&json!("nope")).is_err());
    }
}
