//! `GET /block/<key>` (and HEAD): one raw block, verified.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::error::shown;
use super::names::OCTET_STREAM;
use super::{cache_headers, etag, not_modified, parse_key, unchanged, Gateway, GatewayError};
use crate::files::MAX_BLOCK;

/// The route's handler.
pub(super) async fn get_block(
    State(gw): State<Gateway>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    match serve_block(&gw, &key, &headers).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn serve_block(
    gw: &Gateway,
    key: &str,
    headers: &HeaderMap,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let key = parse_key(key)?;
    let tag = etag(&key);
    if not_modified(headers, &tag) {
        return Ok(unchanged(&tag));
    }
    let _permit = gw.permit()?;
    let fetcher = gw.fetcher();
    let fetched = tokio::time::timeout(gw.resolve_timeout, fetcher.block(key, MAX_BLOCK))
        .await
        .map_err(|_| {
            GatewayError::TimedOut(format!(
                "block {key} was not fetched within {}: retry later",
                shown(gw.resolve_timeout)
            ))
        })?;
    gw.metrics.take_rejected(&fetcher.counters);
    let data = fetched.map_err(|e| GatewayError::unfetched(key, e))?;
    gw.metrics.first_byte(started.elapsed().as_secs_f64());
    gw.metrics.sent(data.len());
    let mut resp = data.into_response();
    cache_headers(resp.headers_mut(), &tag);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    Ok(resp)
}
