//! The HTTP gateway: files and blocks by key for curl, browsers and `<img>`
//! tags, on its own address beside /metrics. `GET /file/<root>` resolves the
//! manifest and streams the file in order from any holder, each chunk
//! verified before a byte of it goes out, with range requests; `GET
//! /block/<key>` answers one verified block.
//!
//! - `range.rs`: the Range header, pure
//! - `names.rs`: Content-Type and Content-Disposition from the file's name, pure
//! - `file.rs`, `block.rs`: the two routes
//! - `error.rs`: failures as a status and one line
//! - `manifest_cache.rs`: resolved manifests kept by root, bounded by bytes, pure
//! - `listener.rs`: connection caps and idle timeouts
//! - `metrics.rs`: requests, bytes, time to first byte, the manifest cache

mod block;
mod error;
mod file;
mod listener;
pub mod manifest_cache;
pub mod metrics;
pub mod names;
pub mod range;
mod resolving;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, ETAG};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub use error::GatewayError;
pub use listener::ConnLimits;
pub use manifest_cache::ManifestCache;
pub use metrics::GatewayMetrics;

use crate::files::{Fetcher, FileRef, Resolved};
use crate::id::Id;
use crate::node::Node;

/// Content addressing: what a key names never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// How long a stopping node lets responses in flight finish.
const DRAIN: Duration = Duration::from_secs(5);

/// The gateway's settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Requests served at once; more are answered 503.
    pub max_requests: usize,
    pub conns: ConnLimits,
    /// Chunks fetched ahead of the one being sent.
    pub read_ahead: usize,
    /// Longest wait for a file's manifest (tree included) or a block.
    pub resolve_timeout: Duration,
    /// Bytes of resolved manifests kept (0: none).
    pub manifest_cache_bytes: u64,
}

/// What every request shares.
#[derive(Clone)]
struct Gateway {
    node: Node,
    metrics: GatewayMetrics,
    requests: Arc<Semaphore>,
    max_requests: usize,
    read_ahead: usize,
    resolve_timeout: Duration,
    manifests: Arc<Mutex<ManifestCache>>,
    /// Resolves under way, shared by the requests for their file.
    resolving: resolving::InFlight,
}

impl Gateway {
    /// A fetcher for one request: its own liars and counts.
    fn fetcher(&self) -> Fetcher {
        Fetcher::new(self.node.clone())
    }

    /// A slot among the requests served at once.
    fn permit(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        self.requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Busy(self.max_requests))
    }

    /// The file `root` names, if its manifest is cached (counted either way).
    fn cached(&self, root: &FileRef) -> Option<Arc<Resolved>> {
        let hit = self.manifests.lock().ok()?.get(root);
        self.metrics.manifest_lookup(hit.is_some());
        hit
    }

    /// Keeps a file just resolved for the next requests for it.
    fn keep(&self, root: FileRef, file: Arc<Resolved>) {
        if let Ok(mut cache) = self.manifests.lock() {
            cache.insert(root, file);
            self.metrics
                .manifest_cache_held(cache.held_bytes(), cache.len());
        }
    }
}

/// The key in a path, or a 400 naming it.
fn parse_key(text: &str) -> Result<Id, GatewayError> {
    Id::from_hex(text).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        GatewayError::BadKey(shown)
    })
}

/// The ETag of what `key` names.
fn etag(key: &Id) -> String {
    format!("\"{key}\"")
}

/// Whether `If-None-Match` lists `etag` (weakly compared, as RFC 9110 says).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// The headers every answer about `key` carries.
fn cache_headers(headers: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
}

/// The 304 for a client that has `etag` already.
fn unchanged(etag: &str) -> Response {
    let mut resp = axum::http::StatusCode::NOT_MODIFIED.into_response();
    cache_headers(resp.headers_mut(), etag);
    resp
}

/// Counts every answer by its status.
async fn count(
    axum::extract::State(gw): axum::extract::State<Gateway>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    gw.metrics.answered(resp.status());
    resp
}

/// Serves the gateway on `listener` until `shutdown` turns true; responses
/// in flight then get a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    cfg: GatewayConfig,
    metrics: GatewayMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let gw = Gateway {
        node,
        metrics: metrics.clone(),
        requests: Arc::new(Semaphore::new(cfg.max_requests.max(1))),
        max_requests: cfg.max_requests.max(1),
        read_ahead: cfg.read_ahead.max(1),
        resolve_timeout: cfg.resolve_timeout,
        manifests: Arc::new(Mutex::new(ManifestCache::new(cfg.manifest_cache_bytes))),
        resolving: Arc::default(),
    };
    let app = Router::new()
        .route("/file/{root}", get(file::get_file))
        .route("/block/{key}", get(block::get_block))
        .route(
            "/",
            get(|| async { "dhtfs gateway: GET /file/<root> or /block/<key>\n" }),
        )
        .fallback(|| async { GatewayError::NoRoute })
        .layer(axum::middleware::from_fn_with_state(gw.clone(), count))
        .with_state(gw);
    let listener = listener::CappedListener::new(listener, cfg.conns, metrics);
    let mut stop = shutdown.clone();
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    tokio::select! {
        result = served => result,
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(DRAIN).await;
        } => Ok(()),
    }
}
