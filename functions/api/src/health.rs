//! `GET /health`: whether the job table answers (open without an API key).

use crate::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    // the table is what every request needs; a read of a key that never exists proves it answers
    match state.store.get("health#probe").await {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health: the table does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "detail": "the job table does not answer" })),
            )
                .into_response()
        }
    }
}
