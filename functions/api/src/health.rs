//! `GET /health`: whether the job table answers, and how long the oldest queued job has
//! waited (open without an API key, so a load balancer or an alarm can read it). A long
//! wait is a warning, not ill health: the service answers; the fleet or backend is not
//! keeping up.

use crate::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    // the table is what every request needs: the queue's age is read from it
    let age = nommer_core::flows::stall::queue_age(&state.store, &state.liveness, chrono::Utc::now()).await;
    match age {
        Ok(age) => {
            let warn = age.as_ref().is_some_and(|q| q.warn);
            let queue = json!({
                // no job id: the route is open
                "oldest_queued_secs": age.map(|q| q.waited.as_secs()),
                "warn_after_secs": state.liveness.queue_age_warn.as_secs(),
                "warning": warn,
            });
            (
                StatusCode::OK,
                Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "queue": queue })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health: the table does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "detail": "the job table does not answer" })),
            )
                .into_response()
        }
    }
}
