//! `GET /file/<root or capability>` (and HEAD): the file a root manifest
//! names, or a sealed file opened by its capability, streamed in order,
//! whole or one range of it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE,
    RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::names::{content_disposition, content_type};
use super::range::{content_range, parse_range, unsatisfied_range, Wanted};
use super::{cache_headers, etag, not_modified, unchanged, Gateway, GatewayError};
use crate::files::stream::{pieces, read_pieces};
use crate::files::FileRef;
use crate::stats::Stats;

/// The route's handler.
pub(super) async fn get_file(
    State(gw): State<Gateway>,
    Path(root): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    match serve_file(&gw, &root, &method, &headers).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn serve_file(
    gw: &Gateway,
    root: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let file_ref: FileRef = root
        .parse()
        .map_err(|e: crate::files::BadFileRef| GatewayError::BadFile(e.to_string()))?;
    let root = file_ref.root();
    // A root's content never changes, and a capability opens one content
    // or none: the root names it either way.
    let tag = etag(&root);
    // What a root names never changes: no lookup needed to say so.
    if not_modified(headers, &tag) {
        return Ok(unchanged(&tag));
    }
    let permit = gw.permit()?;
    let fetcher = gw.fetcher();
    // Cached by the whole capability, never by the root alone: a request
    // with the root and a wrong key must not be served what the right key
    // opened.
    let file = match gw.cached(&file_ref) {
        Some(file) => file,
        // Shared with the requests for the same file meanwhile.
        None => gw.resolve(file_ref).await?,
    };
    let size = file.size;

    // If-Range with another validator: the client's copy is of something
    // else, so it gets the whole file.
    let range_applies = headers
        .get(IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == tag));
    let wanted = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        Some(h) if range_applies => parse_range(h, size),
        _ => Wanted::Whole,
    };
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    cache_headers(h, &tag);
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(file.name.as_deref())),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(file.name.as_deref())) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    let (start, end) = match wanted {
        Wanted::Whole => (0, size),
        Wanted::Part { start, end } => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&content_range(start, end, size)) {
                resp.headers_mut().insert(CONTENT_RANGE, v);
            }
            (start, end)
        }
        Wanted::Unsatisfiable => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            h.remove(CONTENT_DISPOSITION);
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&unsatisfied_range(size)) {
                h.insert(CONTENT_RANGE, v);
            }
            let line = format!("the range asked for is outside the file's {size} bytes\n");
            h.insert(CONTENT_LENGTH, HeaderValue::from(line.len()));
            *resp.body_mut() = Body::from(line);
            return Ok(resp);
        }
    };
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(end - start));
    let stats = fetcher.node.stats();
    Stats::inc(match file_ref.is_sealed() {
        true => &stats.files_read_sealed,
        false => &stats.files_read_plain,
    });
    if *method == Method::HEAD || start == end {
        return Ok(resp);
    }

    let (metrics, counters) = (gw.metrics.clone(), fetcher.counters.clone());
    let mut first = true;
    // The root's copy of the file's first bytes goes out at once, verified
    // with the root; the chunks' pieces follow it (a file within its head
    // needs no chunk at all).
    let head_end = (file.head.len() as u64).min(end);
    let early = (start < head_end).then(|| Ok(file.head.slice(start as usize..head_end as usize)));
    let wanted = pieces(
        &file.chunks,
        (file.chunk_size, file.stripes),
        start.max(head_end),
        end,
    );
    let rest = read_pieces(fetcher, wanted, gw.read_ahead, file.head.clone());
    let body = futures::stream::iter(early).chain(rest).map(
        move |piece| {
            // The request's slot is held for as long as its body streams.
            let _held = &permit;
            metrics.take_rejected(&counters);
            match &piece {
                Ok(bytes) => {
                    if std::mem::take(&mut first) {
                        metrics.first_byte(started.elapsed().as_secs_f64());
                    }
                    metrics.sent(bytes.len());
                }
                Err(e) => {
                    metrics.cut();
                    tracing::warn!(%root, error = %e, "gateway response cut short: a chunk could not be fetched");
                }
            }
            piece
        },
    );
    *resp.body_mut() = Body::from_stream(body);
    Ok(resp)
}
