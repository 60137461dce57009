//! API keys: a request carries one (`x-api-key`, or `Authorization: Bearer`) whose
//! SHA-256 the deployment lists, when it lists any.

use crate::{ApiState, Problem};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The header that carries an API key (`Authorization: Bearer <key>` works too).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The SHA-256 (hex) of an API key, as `NOMMER_API_KEY_HASHES` lists them.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Refuses requests without a known key, when keys are configured. `/health` (for load
/// balancers) and `/openapi.json` (the API's description) stay open.
pub(crate) async fn authenticate(
    State(state): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let keys = &state.settings.api_key_hashes;
    if keys.is_empty() || matches!(req.uri().path(), "/health" | "/openapi.json") {
        return next.run(req).await;
    }
    let h = req.headers();
    let given = h
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            h.get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim);
    let ok = given.map(|k| {
        let hash = key_hash(k);
        // constant time over the candidates
        keys.iter().fold(false, |acc, want| {
            acc | (want.len() == hash.len() && want.bytes().zip(hash.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0)
        })
    });
    match ok {
        Some(true) => next.run(req).await,
        Some(false) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unknown API key",
            "the key in x-api-key (or Authorization: Bearer) is not one this deployment accepts",
        )
        .into_response(),
        None => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "API key required",
            "send your key in the x-api-key header (or Authorization: Bearer <key>)",
        )
        .into_response(),
    }
}
