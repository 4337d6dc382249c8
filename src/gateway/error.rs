//! Why a gateway request failed, as a status code and one plain-text line a
//! person can act on. Nothing local (paths, addresses of our own) goes out.

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::files::{FilesError, Unfetched};
use crate::id::Id;

/// A request the gateway could not answer with content.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("'{0}' is not a key: a key is 64 hex digits, as `dhtfs put` prints it")]
    BadKey(String),
    #[error("{0}")]
    BadFile(String),
    #[error("{0}")]
    WrongKey(String),
    #[error("no node holds {0}: check the key, and that the nodes that stored it are up")]
    NotFound(Id),
    #[error("{0}")]
    NotAManifest(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("the gateway is busy ({0} requests in flight): retry in a moment")]
    Busy(usize),
    #[error("no such path: use /file/<root> or /block/<key>")]
    NoRoute,
}

impl GatewayError {
    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadKey(_) | GatewayError::BadFile(_) => StatusCode::BAD_REQUEST,
            GatewayError::WrongKey(_) => StatusCode::FORBIDDEN,
            GatewayError::NotFound(_) | GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::NotAManifest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A block that no node supplied.
    pub fn unfetched(key: Id, e: Unfetched) -> GatewayError {
        if e.timed_out {
            GatewayError::TimedOut(format!(
                "peers did not deliver {key} in time ({}): retry later",
                e.why
            ))
        } else {
            GatewayError::NotFound(key)
        }
    }

    /// A root manifest that did not resolve.
    pub fn unresolved(root: Id, e: FilesError) -> GatewayError {
        match e {
            FilesError::RootNotFound(_) => GatewayError::NotFound(root),
            e @ FilesError::WrongKey { .. } => GatewayError::WrongKey(e.to_string()),
            FilesError::Manifest(m) => GatewayError::NotAManifest(format!(
                "{m}; if it is a plain block, fetch it as /block/{root}"
            )),
            FilesError::RootTimedOut { why, .. } => GatewayError::TimedOut(format!(
                "peers did not deliver {root} in time ({why}): retry later"
            )),
            FilesError::ChunkNotFound { key, why, .. } => GatewayError::TimedOut(format!(
                "a part of the manifest of {root} ({key}) could not be fetched ({why}): retry later"
            )),
            other => GatewayError::TimedOut(format!("{root} could not be resolved: {other}")),
        }
    }
}

/// A timeout as a person reads it: "30 s", or "1500 ms" when not whole seconds.
pub fn shown(d: std::time::Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{} s", d.as_secs()),
        _ => format!("{} ms", d.as_millis()),
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let line = format!("{self}\n");
        (
            self.status(),
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response()
    }
}
