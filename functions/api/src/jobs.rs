//! The jobs: `POST /jobs` makes one (honouring `Idempotency-Key`), `GET /jobs/{id}` reads
//! one with its webhook deliveries, `POST /jobs/{id}/retry` makes a new job from a failed
//! one, `POST /jobs/{id}/cancel` cancels one; `GET /jobs` is in [`crate::listing`].

use crate::listing;
use crate::request::{check_notify_url, invalid, parse_request};
use crate::{ApiState, Problem};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nommer_aws::store::Created;
use nommer_core::flows::submit;
use nommer_core::flows::BackendError;
use nommer_core::ids;
use nommer_core::job::{Job, Origin};
use std::sync::Arc;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/jobs", post(create_job).get(listing::list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/retry", post(retry_job))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| invalid("Idempotency-Key", "must be printable ASCII"))?
        .trim();
    if s.is_empty() || s.len() > 255 {
        return Err(invalid("Idempotency-Key", "must be 1-255 characters"));
    }
    Ok(Some(s.to_string()))
}

async fn create_job(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let (req, source, outputs) = parse_request(&body, &state.settings)?;
    if let Some(url) = &req.notify_url {
        check_notify_url(url, &state.settings)
            .await
            .map_err(|why| invalid("notify_url", format!("{why}; no delivery could reach it")))?;
    }
    let head = state
        .objects
        .head(&source.bucket, &source.key)
        .await
        .map_err(Problem::internal)?;
    let Some(head) = head else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "source-not-found",
            "Source not found",
            format!("{source} does not exist; upload it first"),
        )
        .with_field("source"));
    };
    if let Some(why) =
        nommer_core::settings::over_source_limit(&source.to_string(), head.size, state.settings.max_source_bytes)
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "source-too-large",
            "Source too large",
            format!("{why}; no job was made"),
        )
        .with_field("source"));
    }
    let id = key.as_deref().map(ids::for_idempotency_key).unwrap_or_else(ids::random);
    let mut job = Job::new(id, Origin::Api, source, outputs, chrono::Utc::now());
    job.notify_url = req.notify_url.clone();
    job.source_etag = head.etag.clone();
    job.user_metadata = req.user_metadata.clone().unwrap_or_default();
    job.source_hints = req.source_info.clone();
    job.request_fingerprint = Some(ids::fingerprint(&serde_json::to_vec(&req).expect("request serialises")));
    let created = submit::create_and_enqueue(&state.store, &state.queue, &state.settings.jobs_queue_url, &job)
        .await
        .map_err(Problem::internal)?;
    match created {
        Created::New(j) => {
            let location = format!("/jobs/{}", j.id);
            Ok((
                StatusCode::CREATED,
                [(axum::http::header::LOCATION, location)],
                Json(j.public()),
            )
                .into_response())
        }
        Created::Existing(j) if j.request_fingerprint == job.request_fingerprint => {
            Ok((StatusCode::OK, Json(j.public())).into_response())
        }
        Created::Existing(_) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used for a different request; use a new key for a new job",
        )
        .with_field("Idempotency-Key")),
    }
}

/// `POST /jobs/{id}/retry`: a new job with the failed job's source, outputs, notify URL
/// and metadata (`retry_of` names the old one). Jobs are never revived: a finished job
/// stays as it ended. With `Idempotency-Key`, a repeated request returns the same retry.
async fn retry_job(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let not_found = || Problem::job_not_found(&id);
    if !ids::looks_valid(&id) {
        return Err(not_found());
    }
    let old = state
        .store
        .get(&id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(not_found)?;
    if !matches!(
        old.state,
        nommer_core::JobState::Failed | nommer_core::JobState::Cancelled
    ) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "job-not-failed",
            "Only failed or cancelled jobs can be retried",
            format!("the job is {}", old.state),
        ));
    }
    if let Some(url) = &old.notify_url {
        // the config may have changed since the job was made
        check_notify_url(url, &state.settings).await.map_err(|why| {
            invalid(
                "notify_url",
                format!("the job's notify_url is refused by this deployment's config: {why}; submit a new job (POST /jobs) with a notify_url it allows"),
            )
        })?;
    }
    let new_id = match &key {
        Some(k) => ids::for_idempotency_key(&format!("retry:{id}:{k}")),
        None => ids::random(),
    };
    let mut job = Job::new(
        new_id,
        Origin::Api,
        old.source.clone(),
        old.outputs.clone(),
        chrono::Utc::now(),
    );
    job.source_etag = old.source_etag.clone();
    job.notify_url = old.notify_url.clone();
    job.user_metadata = old.user_metadata.clone();
    job.source_hints = old.source_hints.clone();
    job.retry_of = Some(old.id.clone());
    let created = submit::create_and_enqueue(&state.store, &state.queue, &state.settings.jobs_queue_url, &job)
        .await
        .map_err(Problem::internal)?;
    let (status, j) = match created {
        Created::New(j) => (StatusCode::CREATED, j),
        Created::Existing(j) => (StatusCode::OK, j),
    };
    let location = format!("/jobs/{}", j.id);
    Ok((status, [(axum::http::header::LOCATION, location)], Json(j.public())).into_response())
}

async fn cancel_job(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Response, Problem> {
    if !ids::looks_valid(&id) {
        return Err(Problem::job_not_found(&id));
    }
    match state.backends.cancel(&id, "cancelled through the API").await {
        Ok((job, remote)) => {
            let mut body = serde_json::to_value(job.public()).map_err(Problem::internal)?;
            if let Some(r) = remote {
                body["backend_cancel"] = match r {
                    Ok(()) => serde_json::json!({"ok": true}),
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                };
            }
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        Err(BackendError::Store(nommer_core::StoreError::NotFound(_))) => Err(Problem::job_not_found(&id)),
        Err(BackendError::Finished(s)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "job-finished",
            "Job already finished",
            format!("the job is {s}; only unfinished jobs can be cancelled"),
        )),
        Err(BackendError::Busy(_)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "job-busy",
            "The job is changing",
            "the job kept changing while it was being cancelled; try again",
        )),
        Err(e) => Err(Problem::internal(e)),
    }
}

async fn get_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let not_found = || Problem::job_not_found(&id);
    if !ids::looks_valid(&id) {
        return Err(not_found());
    }
    match state.store.get(&id).await.map_err(Problem::internal)? {
        Some(job) => {
            let mut v = serde_json::to_value(job.public()).map_err(Problem::internal)?;
            // webhook attempts, recorded beside the job (never on it: the job's writers
            // would lose their conditional writes to them)
            let deliveries = nommer_aws::notify::deliveries(state.store.client(), state.store.table(), &id)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not read the job's deliveries");
                    Vec::new()
                });
            if !deliveries.is_empty() {
                v["deliveries"] = serde_json::to_value(deliveries).map_err(Problem::internal)?;
            }
            Ok(Json(v))
        }
        None => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any header value is a key (1-255 printable characters, making a valid job id)
        /// or a refusal naming the header, never a panic.
        #[test]
        fn idempotency_keys_are_read_or_refused(raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            "[ -~]{0,300}".prop_map(String::into_bytes),
        ]) {
            let Ok(v) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(IDEMPOTENCY_KEY, v);
            match idempotency_key(&h) {
                Ok(Some(k)) => {
                    prop_assert!((1..=255).contains(&k.len()) && k == k.trim());
                    prop_assert!(ids::looks_valid(&ids::for_idempotency_key(&k)));
                }
                Ok(None) => prop_assert!(false, "the header is there"),
                Err(p) => prop_assert_eq!(p.field.as_deref(), Some("Idempotency-Key")),
            }
        }
    }

    #[test]
    fn no_header_no_key() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }
}
