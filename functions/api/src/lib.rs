//! The HTTP API (API Gateway HTTP API → Lambda): an axum router.
//!
//! - `POST /jobs` creates a job (`Idempotency-Key` honoured)
//! - `GET /jobs/{id}` reads one; `GET /jobs` lists them (filters, cursor pagination)
//! - `POST /jobs/{id}/retry` makes a new job from a failed one
//! - `POST /uploads` presigns PUTs into the inbox (multipart for large files);
//!   `POST /uploads/complete` finishes a multipart one
//! - `GET /presets` lists the presets; `GET /health` says whether the table answers
//!   and how long the oldest queued job has waited
//! - `POST /jobs/{id}/cancel` cancels one (a queued job never starts; an Encoding.com
//!   task gets `CancelMedia`)
//!
//! Errors are RFC 9457 `application/problem+json`; a bad field is named in `field`.
//!
//! Each resource has its module and its `router()`: [`jobs`] (with the listing in
//! [`listing`]), [`uploads`], [`presets`], [`health`], [`openapi`]; a `POST /jobs` body is
//! read and checked in [`request`] (an output's options in [`options`]); [`auth`] guards
//! every route but the open ones.

pub mod auth;
pub mod health;
pub mod jobs;
pub mod listing;
pub mod openapi;
pub mod options;
pub mod presets;
pub mod problem;
pub mod request;
pub mod uploads;

use axum::http::StatusCode;
use axum::Router;
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::DynamoJobStore;
use nommer_core::flows::Backends;
use nommer_core::liveness::LivenessSettings;
use nommer_core::settings::ApiSettings;
use std::sync::Arc;

pub use auth::key_hash;
pub use problem::Problem;

/// Everything the routes share.
pub struct ApiState {
    pub settings: ApiSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
    /// For cancelling at a backend.
    pub backends: Backends,
    /// When the queue's age (in `GET /health`) is a warning.
    pub liveness: LivenessSettings,
}

impl ApiState {
    pub fn new(settings: ApiSettings, backends: Backends, config: &aws_config::SdkConfig) -> Self {
        ApiState {
            store: DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            objects: S3ObjectStore::new(nommer_aws::sdk::s3_client(config)),
            queue: SqsQueue::new(nommer_aws::sdk::sqs_client(config)),
            backends,
            settings,
            liveness: LivenessSettings::default(),
        }
    }

    /// The queue-age threshold (read apart from [`ApiSettings`]: the scaler reads it too).
    pub fn with_liveness(mut self, liveness: LivenessSettings) -> Self {
        self.liveness = liveness;
        self
    }
}

/// The whole API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .merge(jobs::router())
        .merge(presets::router())
        .merge(uploads::router())
        .merge(health::router())
        .merge(openapi::router())
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such route",
                "See the README for the API's routes.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .with_state(state)
}
