//! The HTTP API (API Gateway HTTP API → Lambda): an axum router.
//!
//! - `POST /jobs` creates a job (`Idempotency-Key` honoured)
//! - `GET /jobs/{id}` reads one; `GET /jobs` lists them (filters, cursor pagination)
//! - `POST /jobs/{id}/retry` makes a new job from a failed one
//! - `POST /uploads` presigns PUTs into the inbox (multipart for large files);
//!   `POST /uploads/complete` finishes a multipart one
//! - `GET /presets` lists the presets; `GET /health` says whether the table answers
//! - `POST /jobs/{id}/cancel` cancels one (a queued job never starts; an Encoding.com
//!   task gets `CancelMedia`)
//!
//! Errors are RFC 9457 `application/problem+json`; a bad field is named in `field`.

pub mod problem;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::{Created, DynamoJobStore};
use nommer_core::flows::submit;
use nommer_core::flows::{BackendError, Backends};
use nommer_core::ids;
use nommer_core::job::{Job, Origin, OutputOptions, OutputSpec, S3Uri, SourceHints};
use nommer_core::presets::{Preset, PresetKind, VideoCodec};
use nommer_core::settings::ApiSettings;
pub use problem::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_OUTPUTS: usize = 20;
const MAX_METADATA_ENTRIES: usize = 20;
const MAX_BODY: usize = 64 * 1024;

/// Everything the routes share.
pub struct ApiState {
    pub settings: ApiSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
    /// For cancelling at a backend.
    pub backends: Backends,
}

impl ApiState {
    pub fn new(settings: ApiSettings, backends: Backends, config: &aws_config::SdkConfig) -> Self {
        ApiState {
            store: DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            objects: S3ObjectStore::new(nommer_aws::sdk::s3_client(config)),
            queue: SqsQueue::new(nommer_aws::sdk::sqs_client(config)),
            backends,
            settings,
        }
    }
}

/// The header that carries an API key (`Authorization: Bearer <key>` works too).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The SHA-256 (hex) of an API key, as `NOMMER_API_KEY_HASHES` lists them.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Refuses requests without a known key, when keys are configured. `/health` stays open.
async fn authenticate(
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
            "the key in x-api-key is not one this deployment accepts",
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

/// The whole API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .merge(jobs_router())
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such route",
                "See the README for the API's routes.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

fn jobs_router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/jobs", post(create_job).get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/presets", get(list_presets))
        .route("/uploads", post(create_upload))
        .route("/uploads/complete", post(complete_upload))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
}

/// `POST /jobs` body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// `s3://bucket/key` in a bucket the API accepts sources from.
    pub source: String,
    /// One preset for one output (default: the configured default preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Several outputs, each with a preset and an optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<OutputRequest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// What the caller knows of the source (duration, height), for routing rules when
    /// the source cannot be probed before routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceHints>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    pub preset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Typed options on top of the preset (trim, frame-rate cap, bit rate or quality,
    /// two-pass, loudness, watermark, thumbnail count/time/width, allow-listed advanced
    /// flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<OutputOptions>,
}

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem::invalid_field(field, detail)
}

/// Parses and checks a body; every refusal names the field.
pub fn parse_request(
    body: &[u8],
    settings: &ApiSettings,
) -> Result<(CreateJobRequest, S3Uri, Vec<OutputSpec>), Problem> {
    if body.len() > MAX_BODY {
        return Err(invalid("", format!("the body is larger than {MAX_BODY} bytes")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "",
            "the body is empty; send a JSON object such as {\"source\": \"s3://bucket/key\"}",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid("", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid(
            "",
            "the body must be a JSON object such as {\"source\": \"s3://bucket/key\"}",
        ));
    }
    let req: CreateJobRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde names an unknown or missing field in its message, not in the path
        let field = if let Some(f) = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            if path.ends_with(f) {
                path
            } else {
                join(&path, f)
            }
        } else if let Some(f) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            join(&path, f)
        } else if path == "." {
            String::new()
        } else {
            path
        };
        invalid(field, msg)
    })?;
    let source = S3Uri::parse(req.source.trim()).map_err(|e| invalid("source", e))?;
    if !settings.source_buckets.contains(&source.bucket) {
        return Err(invalid(
            "source",
            format!(
                "sources are accepted only from these buckets: {}",
                settings.source_buckets.join(", ")
            ),
        ));
    }
    let outputs = match (&req.preset, &req.outputs) {
        (Some(_), Some(_)) => return Err(invalid("outputs", "give either `preset` or `outputs`, not both")),
        (None, None) => vec![output(settings, &settings.default_preset, None, None, "preset")?],
        (Some(p), None) => vec![output(settings, p, None, None, "preset")?],
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid("outputs", "must list at least one output"));
            }
            if list.len() > MAX_OUTPUTS {
                return Err(invalid("outputs", format!("at most {MAX_OUTPUTS} outputs per job")));
            }
            let mut v: Vec<OutputSpec> = Vec::new();
            for (i, o) in list.iter().enumerate() {
                let spec = output(
                    settings,
                    &o.preset,
                    o.name.as_deref(),
                    o.options.as_ref(),
                    &format!("outputs[{i}]"),
                )?;
                if v.iter().any(|x| x.name == spec.name) {
                    return Err(invalid(
                        format!("outputs[{i}].name"),
                        format!("`{}` is used by another output; names must be unique", spec.name),
                    ));
                }
                v.push(spec);
            }
            v
        }
    };
    if let Some(url) = &req.notify_url {
        if url.len() > 2048 || url.contains(char::is_whitespace) {
            return Err(invalid(
                "notify_url",
                "must be an http(s) URL of at most 2048 characters, without spaces",
            ));
        }
    }
    if let Some(meta) = &req.user_metadata {
        if meta.len() > MAX_METADATA_ENTRIES {
            return Err(invalid(
                "user_metadata",
                format!("at most {MAX_METADATA_ENTRIES} entries"),
            ));
        }
        for (k, v) in meta {
            if k.is_empty() || k.len() > 128 || v.len() > 1024 {
                return Err(invalid(
                    format!("user_metadata.{k}"),
                    "keys are 1-128 characters, values at most 1024",
                ));
            }
        }
    }
    if let Some(h) = &req.source_info {
        if h.duration_seconds
            .is_some_and(|d| !(d.is_finite() && d > 0.0 && d < 1e6))
        {
            return Err(invalid(
                "source_info.duration_seconds",
                "must be a positive number of seconds",
            ));
        }
        if h.height.is_some_and(|x| !(16..=8640).contains(&x)) {
            return Err(invalid("source_info.height", "must be within 16-8640"));
        }
    }
    Ok((req, source, outputs))
}

/// How long the API waits for DNS when it checks a `notify_url`.
const NOTIFY_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Refuses a `notify_url` that no delivery would ever call: the very check each delivery
/// runs ([`nommer_aws::notify::vet_url`]: scheme, credentials, and every address the
/// host resolves to). A host that does not resolve now (or not within 3 s) is let
/// through: DNS may fail for a while, and each delivery checks again.
pub async fn check_notify_url(url: &str, settings: &ApiSettings) -> Result<(), String> {
    match tokio::time::timeout(
        NOTIFY_LOOKUP_TIMEOUT,
        nommer_aws::notify::vet_url(url, &settings.config.webhooks),
    )
    .await
    {
        Ok(Err((why, true))) => Err(why),
        Ok(Err((why, false))) => {
            tracing::info!(url, reason = %why, "notify_url not resolvable now; accepted, checked again at delivery");
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
        Err(_) => {
            tracing::info!(url, "notify_url lookup timed out; accepted, checked again at delivery");
            Ok(())
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn output(
    settings: &ApiSettings,
    preset: &str,
    name: Option<&str>,
    options: Option<&OutputOptions>,
    field: &str,
) -> Result<OutputSpec, Problem> {
    let pfield = if field == "preset" {
        "preset".to_string()
    } else {
        format!("{field}.preset")
    };
    let Some(p) = settings.config.catalog.find(preset) else {
        return Err(invalid(pfield, settings.config.catalog.unknown(preset)));
    };
    let name = name.unwrap_or(preset).to_string();
    let safe = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if !safe {
        return Err(invalid(
            format!("{field}.name"),
            "1-64 characters of A-Z a-z 0-9 - _ . (not starting with .)",
        ));
    }
    let options = options.cloned().unwrap_or_default();
    check_options(settings, p, &options).map_err(|(f, m)| invalid(format!("{field}.options.{f}"), m))?;
    Ok(OutputSpec {
        name,
        preset: preset.to_string(),
        options,
    })
}

/// Range checks on an output's options; the error names the option.
fn check_options(settings: &ApiSettings, preset: &Preset, o: &OutputOptions) -> Result<(), (String, String)> {
    let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
    let is_file = matches!(preset.kind, PresetKind::File { .. });
    let is_thumbs = matches!(preset.kind, PresetKind::Thumbnails(_));
    if let Some(t) = &o.trim {
        if !(t.start_seconds.is_finite() && t.start_seconds >= 0.0) {
            return err("trim.start_seconds", "must be 0 or more");
        }
        if let Some(e) = t.end_seconds {
            if !(e.is_finite() && e > t.start_seconds) {
                return err("trim.end_seconds", "must be after start_seconds");
            }
        }
    }
    if let Some(r) = o.max_frame_rate {
        if !(1.0..=240.0).contains(&r) {
            return err("max_frame_rate", "must be within 1-240");
        }
    }
    if let Some(b) = o.video_bitrate_kbps {
        if !(50..=100_000).contains(&b) {
            return err("video_bitrate_kbps", "must be within 50-100000");
        }
        if !is_file || !preset.needs_video() {
            return err(
                "video_bitrate_kbps",
                "applies to video file presets (ladders set a rate per rendition)",
            );
        }
    }
    if let Some(c) = o.crf {
        if c > 63 || !is_file || !preset.needs_video() {
            return err("crf", "is 0-63 and applies to video file presets");
        }
        if o.video_bitrate_kbps.is_some() {
            return err("crf", "give either crf or video_bitrate_kbps, not both");
        }
    }
    if o.two_pass && (o.video_bitrate_kbps.is_none() || !is_file) {
        return err("two_pass", "needs video_bitrate_kbps, on a video file preset");
    }
    if o.two_pass {
        if let PresetKind::File { video: Some(v), .. } = &preset.kind {
            if v.codec == VideoCodec::H265 {
                return err("two_pass", "is not offered for H.265 presets");
            }
        }
    }
    if let Some(l) = &o.loudness {
        if !(-70.0..=-5.0).contains(&l.integrated_lufs) {
            return err("loudness.integrated_lufs", "must be within -70 to -5 LUFS");
        }
        if !(-9.0..=0.0).contains(&l.true_peak_db) {
            return err("loudness.true_peak_db", "must be within -9 to 0 dBTP");
        }
        if !(1.0..=50.0).contains(&l.range_lu) {
            return err("loudness.range_lu", "must be within 1-50 LU");
        }
        if is_thumbs {
            return err("loudness", "thumbnails have no audio");
        }
    }
    if let Some(w) = &o.watermark {
        if !settings.source_buckets.contains(&w.image.bucket) {
            return err(
                "watermark.image",
                &format!("images are accepted only from: {}", settings.source_buckets.join(", ")),
            );
        }
        if !(0.01..=1.0).contains(&w.width_fraction) {
            return err("watermark.width_fraction", "must be within 0.01-1");
        }
        if w.margin > 1000 {
            return err("watermark.margin", "must be at most 1000");
        }
        if is_thumbs || !preset.needs_video() {
            return err("watermark", "applies to video outputs");
        }
    }
    let thumbs_only = [
        ("at_seconds", o.at_seconds.is_some()),
        ("count", o.count.is_some()),
        ("width", o.width.is_some()),
    ];
    for (f, set) in thumbs_only {
        if set && !is_thumbs {
            return err(f, "applies to thumbnail presets");
        }
    }
    if o.at_seconds.map(|a| !(a.is_finite() && a >= 0.0)).unwrap_or(false) {
        return err("at_seconds", "must be 0 or more");
    }
    if o.count.map(|c| !(1..=500).contains(&c)).unwrap_or(false) {
        return err("count", "must be within 1-500");
    }
    if o.width.map(|w| !(16..=3840).contains(&w)).unwrap_or(false) {
        return err("width", "must be within 16-3840");
    }
    if !o.advanced.is_empty() && !is_file {
        return err("advanced", "applies to file presets");
    }
    nommer_core::advanced::check(&o.advanced)
}

/// The job as users see it: without the request fingerprint and the queue message id,
/// which are bookkeeping.
pub fn public(mut job: Job) -> Job {
    job.request_fingerprint = None;
    job.message_id = None;
    job
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
                Json(public(j)),
            )
                .into_response())
        }
        Created::Existing(j) if j.request_fingerprint == job.request_fingerprint => {
            Ok((StatusCode::OK, Json(public(j))).into_response())
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

/// `GET /jobs?state=…&created_after=…&created_before=…&metadata.<key>=<value>&limit=…&cursor=…`:
/// newest first. `state` may repeat or be comma-separated; `cursor` is the
/// `next_cursor` of the previous page.
async fn list_jobs(
    State(state): State<Arc<ApiState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, Problem> {
    use base64::Engine;
    let mut states: Vec<nommer_core::JobState> = Vec::new();
    let mut after = chrono::DateTime::<chrono::Utc>::from_timestamp(0, 0).expect("epoch");
    let mut before = chrono::Utc::now() + chrono::Duration::days(1);
    let mut meta: Vec<(String, String)> = Vec::new();
    let mut limit = 20usize;
    let mut cursor: Option<String> = None;
    let time = |field: &str, v: &str| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| invalid(field, "an RFC 3339 time such as 2026-11-25T10:00:00Z"))
    };
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |x: &str| {
            percent_encoding::percent_decode_str(&x.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (k, v) = (dec(k), dec(v));
        match k.as_str() {
            "state" => {
                for st in v.split(',').filter(|x| !x.is_empty()) {
                    states.push(nommer_core::JobState::parse(st).ok_or_else(|| {
                        invalid("state", format!("`{st}` is not a state; states: submitted, queued, downloading, encoding, uploading, complete, failed, cancelled"))
                    })?);
                }
            }
            "created_after" => after = time("created_after", &v)?,
            "created_before" => before = time("created_before", &v)?,
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| invalid("limit", "a number from 1 to 100"))?
            }
            "cursor" => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|c| c.contains('#') && c.len() < 200)
                    .ok_or_else(|| invalid("cursor", "not a cursor this API gave; start again without it"))?;
                cursor = Some(raw);
            }
            other => {
                match other.strip_prefix("metadata.") {
                    Some(key) if !key.is_empty() => meta.push((key.to_string(), v)),
                    _ => return Err(invalid(
                        other,
                        "unknown parameter; known: state, created_after, created_before, metadata.<key>, limit, cursor",
                    )),
                }
            }
        }
    }
    if after > before {
        return Err(invalid("created_after", "is after created_before"));
    }
    if states.is_empty() {
        states = nommer_core::JobState::ALL.to_vec();
    }
    // in lifecycle order (the store's listing depends on it), each once
    states.sort_by_key(|s| nommer_core::JobState::ALL.iter().position(|x| x == s));
    states.dedup();
    let (jobs, next) = state
        .store
        .list_page(&states, after, before, cursor.as_deref(), limit, |j| {
            meta.iter().all(|(k, v)| j.user_metadata.get(k) == Some(v))
        })
        .await
        .map_err(Problem::internal)?;
    let next = next.map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c));
    Ok(Json(serde_json::json!({
        "jobs": jobs.into_iter().map(public).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// Files above this are uploaded in parts.
const SINGLE_PUT_MAX: u64 = 100 * 1024 * 1024;
/// S3's limits: parts of 5 MiB at least (but the last), 10,000 parts, 5 TiB in all.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3 allows 10,000 parts; 2,000 presigned URLs keep the answer well under Lambda's
/// 6 MB (parts grow instead: 5 TiB / 2,000 is within S3's 5 GiB part limit).
const MAX_PARTS: u64 = 2_000;
const MAX_UPLOAD: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const UPLOAD_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRequest {
    filename: String,
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
    /// Ask for a multipart upload even under the size where it is chosen anyway.
    #[serde(default)]
    multipart: bool,
}

/// `POST /uploads`: where to PUT a file so a job can use it as its source. The key is
/// under `uploads/` in the inbox (not `inbox/`, so the upload itself makes no job).
async fn create_upload(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Response, Problem> {
    let req: UploadRequest = serde_json::from_slice(&body).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).filter(|_| msg.contains("field")).unwrap_or("");
        invalid(
            field,
            format!("{msg}; send {{\"filename\": \"talk.mov\", \"size\": 123}}"),
        )
    })?;
    let name: String = req
        .filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return Err(invalid("filename", "a file name such as talk.mov"));
    }
    if req.size == 0 || req.size > MAX_UPLOAD {
        return Err(invalid("size", "the file's size in bytes, 1 B to 5 TiB"));
    }
    let content_type = req.content_type.unwrap_or_else(|| "application/octet-stream".into());
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let mime_ok = content_type
        .split_once('/')
        .map(|(a, b)| token(a) && token(b))
        .unwrap_or(false);
    if content_type.len() > 100 || !mime_ok {
        return Err(invalid("content_type", "a MIME type such as video/mp4"));
    }
    let bucket = state.settings.source_buckets[0].clone();
    let key = format!("uploads/{}/{name}", uuid::Uuid::new_v4().simple());
    let source = format!("s3://{bucket}/{key}");
    let expires_at = chrono::Utc::now() + chrono::Duration::from_std(UPLOAD_URL_LIFETIME).unwrap();
    if req.size <= SINGLE_PUT_MAX && !req.multipart {
        let url = state
            .objects
            .presign_put(&bucket, &key, &content_type, UPLOAD_URL_LIFETIME)
            .await
            .map_err(Problem::internal)?;
        return Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({
                "kind": "single", "source": source, "method": "PUT", "url": url,
                "headers": {"content-type": content_type}, "expires_at": expires_at,
            })),
        )
            .into_response());
    }
    let part_size = MIN_PART.max(req.size.div_ceil(MAX_PARTS));
    let parts = req.size.div_ceil(part_size) as u32;
    let (upload_id, urls) = state
        .objects
        .presign_multipart(&bucket, &key, &content_type, parts, UPLOAD_URL_LIFETIME)
        .await
        .map_err(Problem::internal)?;
    let parts: Vec<serde_json::Value> = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| serde_json::json!({"part_number": i + 1, "url": url}))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "kind": "multipart", "source": source, "upload_id": upload_id, "part_size": part_size,
            "parts": parts, "complete": "/uploads/complete", "expires_at": expires_at,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteUpload {
    source: String,
    upload_id: String,
    /// Each part's ETag (from its PUT's answer), in part order.
    etags: Vec<String>,
}

/// `POST /uploads/complete`: joins the parts of a multipart upload.
async fn complete_upload(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Response, Problem> {
    let req: CompleteUpload = serde_json::from_slice(&body).map_err(|e| invalid("", e.to_string()))?;
    let src = S3Uri::parse(&req.source).map_err(|e| invalid("source", e))?;
    if src.bucket != state.settings.source_buckets[0] || !src.key.starts_with("uploads/") {
        return Err(invalid("source", "not an upload this API started"));
    }
    if req.etags.is_empty() || req.etags.len() as u64 > MAX_PARTS {
        return Err(invalid("etags", "one ETag per part, in order"));
    }
    state
        .objects
        .complete_multipart(&src.bucket, &src.key, &req.upload_id, &req.etags)
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "upload-incomplete",
                "The upload could not be completed",
                format!("{e}; upload every part, then send their ETags in order"),
            )
        })?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "source": req.source }))).into_response())
}

/// The API's OpenAPI 3.1 document (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn list_presets(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let presets: Vec<&Preset> = state.settings.config.catalog.iter().collect();
    Json(serde_json::json!({ "default": state.settings.default_preset, "presets": presets }))
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
    Ok((status, [(axum::http::header::LOCATION, location)], Json(public(j))).into_response())
}

async fn cancel_job(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Response, Problem> {
    if !ids::looks_valid(&id) {
        return Err(Problem::job_not_found(&id));
    }
    match state.backends.cancel(&id, "cancelled through the API").await {
        Ok((job, remote)) => {
            let mut body = serde_json::to_value(public(job)).map_err(Problem::internal)?;
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
            let mut v = serde_json::to_value(public(job)).map_err(Problem::internal)?;
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

    fn settings() -> ApiSettings {
        ApiSettings {
            table: "t".into(),
            jobs_queue_url: "q".into(),
            default_preset: "mp4-720p".into(),
            source_buckets: vec!["inbox".into()],
            config: Default::default(),
            api_key_hashes: Vec::new(),
            max_source_bytes: nommer_core::settings::DEFAULT_MAX_SOURCE_BYTES,
        }
    }

    fn field_of(body: &str) -> Option<String> {
        parse_request(body.as_bytes(), &settings())
            .err()
            .map(|p| p.field.unwrap_or_default())
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(field_of(""), Some("".into()));
        assert_eq!(field_of("[1]"), Some("".into()));
        assert_eq!(field_of("{}"), Some("source".into()));
        assert_eq!(field_of(r#"{"source":"s3://inbox/a","x":1}"#), Some("x".into()));
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p","size":1}]}"#),
            Some("outputs[0].size".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[]}"#),
            Some("outputs".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","preset":"mp4-720p","outputs":[{"preset":"mp4-720p"}]}"#),
            Some("outputs".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p"},{"preset":"mp4-720p"}]}"#),
            Some("outputs[1].name".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p","name":"../x"}]}"#),
            Some("outputs[0].name".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","user_metadata":{"k":5}}"#),
            Some("user_metadata.k".into())
        );
    }

    #[test]
    fn options_are_typed_and_range_checked() {
        let f = |o: &str| {
            field_of(&format!(
                r#"{{"source":"s3://inbox/a","outputs":[{{"preset":"mp4-720p","options":{o}}}]}}"#
            ))
        };
        assert_eq!(
            f(r#"{"trim":{"start_seconds":5,"end_seconds":2}}"#),
            Some("outputs[0].options.trim.end_seconds".into())
        );
        assert_eq!(
            f(r#"{"max_frame_rate":1000}"#),
            Some("outputs[0].options.max_frame_rate".into())
        );
        assert_eq!(f(r#"{"two_pass":true}"#), Some("outputs[0].options.two_pass".into()));
        assert_eq!(
            f(r#"{"crf":20,"video_bitrate_kbps":1000}"#),
            Some("outputs[0].options.crf".into())
        );
        assert_eq!(f(r#"{"count":3}"#), Some("outputs[0].options.count".into()));
        assert_eq!(
            f(r#"{"loudness":{"integrated_lufs":3}}"#),
            Some("outputs[0].options.loudness.integrated_lufs".into())
        );
        assert_eq!(
            f(r#"{"watermark":{"image":"s3://other-bucket/logo.png"}}"#),
            Some("outputs[0].options.watermark.image".into())
        );
        assert_eq!(
            f(r#"{"advanced":[{"output":["-vf","movie=/etc/passwd"]}]}"#),
            Some("outputs[0].options.advanced[0].output[0]".into())
        );
        assert_eq!(f(r#"{"colour":"red"}"#), Some("outputs[0].options.colour".into()));
        assert_eq!(
            f(
                r#"{"trim":{"start_seconds":1},"two_pass":true,"video_bitrate_kbps":900,"loudness":{},"watermark":{"image":"s3://inbox/logo.png"},"advanced":[{"output":["-tune","film"]}]}"#
            ),
            None
        );
        let t = |o: &str| {
            field_of(&format!(
                r#"{{"source":"s3://inbox/a","outputs":[{{"preset":"sprite","options":{o}}}]}}"#
            ))
        };
        assert_eq!(t(r#"{"count":20,"width":120}"#), None);
        assert_eq!(t(r#"{"count":0}"#), Some("outputs[0].options.count".into()));
    }

    #[test]
    fn a_good_request_gets_its_outputs() {
        let (_, src, outs) = parse_request(br#"{"source":"s3://inbox/a/b.mov"}"#, &settings()).unwrap();
        assert_eq!(src.key, "a/b.mov");
        assert_eq!(outs, [OutputSpec::new("mp4-720p", "mp4-720p")]);
        let (_, _, outs) = parse_request(
            br#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-360p","name":"small"},{"preset":"mp4-1080p"}]}"#,
            &settings(),
        )
        .unwrap();
        assert_eq!(
            outs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            ["small", "mp4-1080p"]
        );
    }

    /// Every (method, path) the router serves, read from this file's `.route(...)` calls.
    fn served() -> std::collections::BTreeSet<(String, String)> {
        let src = include_str!("lib.rs");
        let mut out = std::collections::BTreeSet::new();
        for part in src.split(".route(\"").skip(1) {
            let path = part.split('"').next().unwrap().to_string();
            let call = part.split(')').take(3).collect::<Vec<_>>().join(")");
            for m in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!(" {m}(")) || call.contains(&format!(".{m}(")) {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
        // the Encoding.com callback is served beside the API (functions/encodingcom)
        out.insert(("post".into(), "/callbacks/encodingcom".into()));
        out
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                documented.insert((m.clone(), path.clone()));
            }
        }
        let served = served();
        assert!(served.len() >= 11, "{served:?}");
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
