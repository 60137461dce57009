//! The ingest function: S3 `ObjectCreated` notifications (through the ingest SQS queue,
//! or straight from S3) become jobs.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::DynamoJobStore;
use nommer_core::error::JobErrorCode;
use nommer_core::flows::submit;
use nommer_core::ids;
use nommer_core::job::{Job, JobError, Origin, OutputSpec, S3Uri};
use nommer_core::settings::IngestSettings;
use serde::Deserialize;
use serde_json::Value;

/// Object metadata key (`x-amz-meta-preset`) that picks a preset for an upload.
pub const PRESET_METADATA: &str = "preset";
/// Uploads under `inbox/<preset>/` get that preset.
pub const INBOX_PREFIX: &str = "inbox/";

/// What the handler needs, built once per cold start.
#[derive(Clone)]
pub struct Ingest {
    pub settings: IngestSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
}

impl Ingest {
    pub fn new(settings: IngestSettings, config: &aws_config::SdkConfig) -> Self {
        Ingest {
            store: DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            objects: S3ObjectStore::new(nommer_aws::sdk::s3_client(config)),
            queue: SqsQueue::new(nommer_aws::sdk::sqs_client(config)),
            settings,
        }
    }
}

/// An S3 event notification, read leniently: only the fields ingest uses are required,
/// so notifications from S3-compatible emitters that leave out `userIdentity` and the
/// like still work.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Notification {
    #[serde(rename = "Records")]
    pub records: Vec<S3Record>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Record {
    #[serde(default)]
    pub event_name: Option<String>,
    pub s3: S3Entity,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default, rename = "eTag")]
    pub e_tag: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub sequencer: Option<String>,
}

/// What became of one S3 record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Created(String),
    Duplicate(String),
    Skipped(String),
}

/// Handles an SQS batch of S3 notifications (returning partial batch failures) or a
/// direct S3 event.
pub async fn function_handler(ctx: &Ingest, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let payload = event.payload;
    let source = payload
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match source.as_str() {
        "aws:sqs" => {
            let sqs: SqsEvent = serde_json::from_value(payload)?;
            Ok(serde_json::to_value(handle_sqs(ctx, sqs).await)?)
        }
        "aws:s3" => {
            let s3: S3Notification = serde_json::from_value(payload)?;
            let mut outcomes = Vec::new();
            for record in &s3.records {
                outcomes.push(format!("{:?}", handle_record(ctx, record).await?));
            }
            Ok(serde_json::json!({ "outcomes": outcomes }))
        }
        other => Err(format!(
            "ingest takes S3 notifications (directly or through SQS); got an event with eventSource {other:?}"
        )
        .into()),
    }
}

/// One span per message; a message that fails is reported alone, so SQS retries only it.
pub async fn handle_sqs(ctx: &Ingest, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id);
        let _e = span.enter();
        let body = message.body.as_deref().unwrap_or_default();
        let result = match parse_notification(body) {
            Ok(None) => {
                tracing::info!("S3 test event; nothing to do");
                Ok(())
            }
            Ok(Some(s3)) => {
                let mut r = Ok(());
                for record in &s3.records {
                    if let Err(e) = handle_record(ctx, record).await {
                        r = Err(e);
                        break;
                    }
                }
                r
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "message failed; SQS will retry it, then park it in the dead-letter queue");
            response.add_failure(id);
        }
    }
    response
}

/// Parses an S3 notification body; `None` for S3's `s3:TestEvent`.
pub fn parse_notification(body: &str) -> Result<Option<S3Notification>, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("message body is not JSON ({e}): {}", nommer_core::text::clip(body, 200)))?;
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(None);
    }
    if v.get("Records").is_none() {
        return Err(format!(
            "message body is not an S3 notification: {}",
            nommer_core::text::clip(body, 200)
        ));
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| format!("malformed S3 notification: {e}"))
}

/// Decodes an S3 event key (URL-encoded, `+` for space).
pub fn decode_key(raw: &str) -> String {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// The preset named by the key's `inbox/<preset>/` prefix, if it names one.
pub fn preset_from_key<'a>(key: &str, catalog: &'a nommer_core::presets::Catalog) -> Option<&'a str> {
    let rest = key.strip_prefix(INBOX_PREFIX)?;
    let (segment, file) = rest.split_once('/')?;
    if file.is_empty() {
        return None;
    }
    catalog.find(segment).map(|p| p.name.as_str())
}

#[tracing::instrument(skip_all, fields(bucket, key))]
pub async fn handle_record(ctx: &Ingest, record: &S3Record) -> Result<RecordOutcome, lambda_runtime::Error> {
    let event_name = record.event_name.as_deref().unwrap_or_default();
    let bucket = record.s3.bucket.name.clone();
    let key = decode_key(&record.s3.object.key);
    tracing::Span::current()
        .record("bucket", bucket.as_str())
        .record("key", key.as_str());
    if !event_name.starts_with("ObjectCreated:") {
        tracing::info!(event_name, "not an ObjectCreated event; skipped");
        return Ok(RecordOutcome::Skipped(format!("event {event_name}")));
    }
    if bucket.is_empty() || key.is_empty() {
        return Err("S3 record without a bucket or key".into());
    }
    if key.ends_with('/') {
        tracing::info!("folder marker; skipped");
        return Ok(RecordOutcome::Skipped("folder marker".into()));
    }
    if record.s3.object.size == Some(0) {
        tracing::info!("zero-byte object; skipped");
        return Ok(RecordOutcome::Skipped("zero bytes".into()));
    }
    let Some(info) = ctx.objects.head(&bucket, &key).await? else {
        tracing::info!("object is gone (deleted after upload); skipped");
        return Ok(RecordOutcome::Skipped("object gone".into()));
    };
    if info.size == 0 {
        tracing::info!("zero-byte object; skipped");
        return Ok(RecordOutcome::Skipped("zero bytes".into()));
    }
    let revision = record
        .s3
        .object
        .version_id
        .clone()
        .filter(|v| !v.is_empty() && v != "null")
        .or_else(|| record.s3.object.e_tag.clone().filter(|e| !e.is_empty()))
        .or_else(|| record.s3.object.sequencer.clone())
        .or(info.etag.clone())
        .unwrap_or_default();
    let id = ids::for_upload(&bucket, &key, &revision);
    let now = chrono::Utc::now();

    let from_meta = info.metadata.get(PRESET_METADATA).map(|p| p.trim().to_string());
    let preset = preset_from_key(&key, &ctx.settings.config.catalog)
        .map(str::to_string)
        .or(from_meta.clone())
        .unwrap_or_else(|| ctx.settings.default_preset.clone());
    let mut job = Job::new(
        id.clone(),
        Origin::Upload,
        S3Uri::new(&bucket, &key),
        vec![OutputSpec::new(preset.clone(), preset.clone())],
        now,
    );
    job.source_etag = record
        .s3
        .object
        .e_tag
        .clone()
        .filter(|e| !e.is_empty())
        .or(info.etag.clone());
    job.user_metadata = info
        .metadata
        .into_iter()
        .filter(|(k, _)| k != PRESET_METADATA)
        .collect();
    if ctx.settings.config.catalog.find(&preset).is_none() {
        job.fail(
            JobError::new(
                JobErrorCode::UnknownPreset,
                format!(
                    "object metadata preset: {}",
                    ctx.settings.config.catalog.unknown(&preset)
                ),
            ),
            now,
        )?;
    } else if let Some(why) =
        nommer_core::settings::over_source_limit("the upload", info.size, ctx.settings.max_source_bytes)
    {
        // failed at once, so the uploader sees why; nothing downloads it
        job.fail(JobError::new(JobErrorCode::SourceTooLarge, why), now)?;
    }
    match submit::create_and_enqueue(&ctx.store, &ctx.queue, &ctx.settings.jobs_queue_url, &job).await? {
        nommer_aws::store::Created::New(_) => Ok(RecordOutcome::Created(id)),
        nommer_aws::store::Created::Existing(_) => Ok(RecordOutcome::Duplicate(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_like_s3_encodes_them() {
        assert_eq!(decode_key("inbox/my+clip%281%29.mov"), "inbox/my clip(1).mov");
        assert_eq!(decode_key("a%2Bb.mov"), "a+b.mov");
        assert_eq!(decode_key("bad%zz%"), "bad%zz%");
        assert_eq!(decode_key("caf%C3%A9.mp4"), "café.mp4");
    }

    #[test]
    fn preset_comes_from_the_inbox_prefix_only_when_it_is_one() {
        let c = nommer_core::presets::Catalog::builtin();
        assert_eq!(preset_from_key("inbox/mp4-480p/a.mov", &c), Some("mp4-480p"));
        assert_eq!(preset_from_key("inbox/holiday/a.mov", &c), None);
        assert_eq!(preset_from_key("inbox/mp4-480p/", &c), None);
        assert_eq!(preset_from_key("mp4-480p/a.mov", &c), None);
    }

    #[test]
    fn notifications_parse_test_events_and_refuse_garbage() {
        let body = include_str!("../tests/fixtures/s3-notification.json");
        let ev = parse_notification(body).unwrap().unwrap();
        assert_eq!(ev.records.len(), 1);
        assert_eq!(ev.records[0].s3.object.key, "inbox/mp4-720p/my+clip.mov");
        assert_eq!(ev.records[0].s3.object.size, Some(1024));
        assert!(parse_notification(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#)
            .unwrap()
            .is_none());
        assert!(parse_notification("not json").unwrap_err().contains("not JSON"));
        assert!(parse_notification(r#"{"hello":1}"#)
            .unwrap_err()
            .contains("not an S3 notification"));
    }
}
