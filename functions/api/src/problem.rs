//! RFC 9457 problem details: the API's one error type.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault (JSON path, or a header name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:nommer:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.field = (!f.is_empty()).then_some(f);
        self
    }

    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "Invalid request", detail).with_field(field)
    }

    /// Logs the internal error and returns a 500 that does not leak it.
    /// 404 for a job id that names no job (or is not a job id at all).
    pub fn job_not_found(id: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "job-not-found",
            "Job not found",
            format!("no job has id {id:?}; `GET /jobs` lists them"),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        let id = uuid_like();
        tracing::error!(error = %e, error_id = %id, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("something went wrong on our side; try again, and quote error id {id} if it persists"),
        )
    }
}

fn uuid_like() -> String {
    nommer_core::ids::random()[1..13].to_string()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problem serialises");
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}
