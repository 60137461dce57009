//! Uploads into the inbox: `POST /uploads` presigns where to PUT a file (one URL, or one
//! per part for a large file), `POST /uploads/complete` joins a multipart upload's parts.

use crate::request::{invalid, read_json};
use crate::{ApiState, Problem};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use nommer_core::job::S3Uri;
use serde::Deserialize;
use std::sync::Arc;

/// Files above this are uploaded in parts.
const SINGLE_PUT_MAX: u64 = 100 * 1024 * 1024;
/// S3's limits: parts of 5 MiB at least (but the last), 10,000 parts, 5 TiB in all.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3 allows 10,000 parts; 2,000 presigned URLs keep the answer well under Lambda's
/// 6 MB (parts grow instead: 5 TiB / 2,000 is within S3's 5 GiB part limit).
const MAX_PARTS: u64 = 2_000;
const MAX_UPLOAD: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const UPLOAD_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/uploads", post(create_upload))
        .route("/uploads/complete", post(complete_upload))
}

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

/// What a `POST /uploads` body looks like, shown when one is refused.
const UPLOAD_EXAMPLE: &str = r#"{"filename": "talk.mov", "size": 123}"#;

/// Where one upload goes.
struct Target {
    bucket: String,
    key: String,
    /// `s3://bucket/key`, the job's source once the upload is done.
    source: String,
    content_type: String,
    expires_at: DateTime<Utc>,
}

/// `POST /uploads`: where to PUT a file so a job can use it as its source. The key is
/// under `uploads/` in the inbox (not `inbox/`, so the upload itself makes no job).
async fn create_upload(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Response, Problem> {
    let req: UploadRequest = read_json(&body, UPLOAD_EXAMPLE)?;
    let name = file_name(&req.filename)?;
    if req.size == 0 || req.size > MAX_UPLOAD {
        return Err(invalid("size", "the file's size in bytes, 1 B to 5 TiB"));
    }
    let content_type = content_type(req.content_type)?;
    let bucket = state.settings.source_buckets[0].clone();
    let key = format!("uploads/{}/{name}", uuid::Uuid::new_v4().simple());
    let target = Target {
        source: format!("s3://{bucket}/{key}"),
        bucket,
        key,
        content_type,
        expires_at: Utc::now() + chrono::Duration::from_std(UPLOAD_URL_LIFETIME).unwrap(),
    };
    let body = if req.size <= SINGLE_PUT_MAX && !req.multipart {
        single(&state, &target).await?
    } else {
        multipart(&state, &target, req.size).await?
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The file name kept (its last path segment, unsafe characters replaced).
fn file_name(given: &str) -> Result<String, Problem> {
    let name: String = given
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
    Ok(name)
}

/// The content type the upload is signed for: a `type/subtype` of token characters.
fn content_type(given: Option<String>) -> Result<String, Problem> {
    let content_type = given.unwrap_or_else(|| "application/octet-stream".into());
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
    Ok(content_type)
}

/// One presigned PUT.
async fn single(state: &ApiState, t: &Target) -> Result<serde_json::Value, Problem> {
    let url = state
        .objects
        .presign_put(&t.bucket, &t.key, &t.content_type, UPLOAD_URL_LIFETIME)
        .await
        .map_err(Problem::internal)?;
    Ok(serde_json::json!({
        "kind": "single", "source": t.source, "method": "PUT", "url": url,
        "headers": {"content-type": t.content_type}, "expires_at": t.expires_at,
    }))
}

/// A multipart upload: a presigned PUT per part, parts as small as S3 allows within
/// `MAX_PARTS`.
async fn multipart(state: &ApiState, t: &Target, size: u64) -> Result<serde_json::Value, Problem> {
    let part_size = MIN_PART.max(size.div_ceil(MAX_PARTS));
    let parts = size.div_ceil(part_size) as u32;
    let (upload_id, urls) = state
        .objects
        .presign_multipart(&t.bucket, &t.key, &t.content_type, parts, UPLOAD_URL_LIFETIME)
        .await
        .map_err(Problem::internal)?;
    let parts: Vec<serde_json::Value> = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| serde_json::json!({"part_number": i + 1, "url": url}))
        .collect();
    Ok(serde_json::json!({
        "kind": "multipart", "source": t.source, "upload_id": upload_id, "part_size": part_size,
        "parts": parts, "complete": "/uploads/complete", "expires_at": t.expires_at,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteUpload {
    source: String,
    upload_id: String,
    /// Each part's ETag (from its PUT's answer), in part order.
    etags: Vec<String>,
}

/// What a `POST /uploads/complete` body looks like, shown when one is refused.
const COMPLETE_EXAMPLE: &str =
    r#"{"source": "s3://bucket/uploads/<id>/talk.mov", "upload_id": "<upload_id>", "etags": ["<part 1's ETag>"]}"#;

/// `POST /uploads/complete`: joins the parts of a multipart upload.
async fn complete_upload(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Response, Problem> {
    let req: CompleteUpload = read_json(&body, COMPLETE_EXAMPLE)?;
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
