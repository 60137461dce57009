//! Following jobs at Encoding.com.
//!
//! - `POST /callbacks/encodingcom[?backend=<name>]`: Encoding.com's notify POST (a form
//!   with a `json` or `xml` field). Callbacks are unsigned, so only the MediaID is read
//!   from it; the job changes only after `GetStatus` confirms.
//! - the poller (on a schedule) asks `GetStatus` for every unfinished job it has not heard
//!   of for a while, so a lost callback delays a job, never strands it.
//!
//! Both are idempotent: the same news twice changes nothing.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use nommer_core::flows::Backends;
use nommer_core::routing::BackendKind;
use nommer_encodingcom as encodingcom;
use std::collections::HashMap;
use std::sync::Arc;

pub const CALLBACK_PATH: &str = "/callbacks/encodingcom";

/// The callback route, to merge into an API router.
pub fn router(backends: Arc<Backends>) -> Router {
    Router::new().route(CALLBACK_PATH, post(callback)).with_state(backends)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [("content-type", "text/plain; charset=utf-8")], body.into()).into_response()
}

async fn callback(
    State(ctx): State<Arc<Backends>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > 256 * 1024 {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "notification too large");
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let media_id = match encodingcom::parse_notify(content_type, &body) {
        Ok(m)
            if !m.is_empty()
                && m.len() <= 64
                && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            m
        }
        Ok(_) => return text(StatusCode::BAD_REQUEST, "the notification's mediaid is not an id"),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable Encoding.com notification");
            return text(StatusCode::BAD_REQUEST, e);
        }
    };
    // which backend: named in the notify URL, else the only Encoding.com backend
    let routing = &ctx.settings.config.routing;
    let backend = match q.get("backend") {
        Some(b) if routing.backend(b).map(|x| x.kind) == Some(BackendKind::EncodingCom) => b.clone(),
        Some(_) => return text(StatusCode::BAD_REQUEST, "unknown backend"),
        None => match routing.of_kind(BackendKind::EncodingCom).next() {
            Some(b) => b.name.clone(),
            None => return text(StatusCode::NOT_FOUND, "no Encoding.com backend is configured"),
        },
    };
    match ctx.on_notify(&backend, &media_id).await {
        Ok(Some(job)) => {
            tracing::info!(media_id, job_id = %job.id, state = %job.state, "Encoding.com notification confirmed and applied");
            text(StatusCode::OK, "ok")
        }
        // not ours (or long gone): say so, so Encoding.com stops retrying
        Ok(None) => {
            tracing::warn!(media_id, "notification for a MediaID we do not know; ignored");
            text(StatusCode::OK, "unknown media; ignored")
        }
        // GetStatus or the table failed: a 5xx makes Encoding.com retry; the poller also will
        Err(e) => {
            tracing::error!(media_id, error = %e, "could not apply the notification; Encoding.com will retry and the poller will catch up");
            text(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// One run of the poller.
pub async fn poll(ctx: &Backends) -> Result<usize, lambda_runtime::Error> {
    let n = ctx.poll().await?;
    tracing::info!(jobs = n, "Encoding.com poll done");
    Ok(n)
}
