//! The ingest function: S3 `ObjectCreated` notifications (through the ingest SQS queue,
//! or straight from S3) become jobs.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::DynamoJobStore;
pub use nommer_core::flows::ingest::{preset_from_key, RecordOutcome, Upload, INBOX_PREFIX, PRESET_METADATA};
use nommer_core::settings::IngestSettings;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// What the handler needs, built once per cold start: the ingest flow on AWS.
#[derive(Clone)]
pub struct Ingest {
    pub flow: nommer_core::flows::ingest::Ingest,
}

impl Ingest {
    pub fn new(settings: IngestSettings, config: &aws_config::SdkConfig) -> Self {
        let flow = nommer_core::flows::ingest::Ingest {
            store: Arc::new(DynamoJobStore::new(
                nommer_aws::sdk::dynamodb_client(config),
                &settings.table,
            )),
            objects: Arc::new(S3ObjectStore::new(nommer_aws::sdk::s3_client(config))),
            queue: Arc::new(SqsQueue::new(nommer_aws::sdk::sqs_client(config))),
            settings,
        };
        Ingest { flow }
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

/// One S3 record, as the ingest flow reads it.
pub fn upload_of(record: &S3Record) -> Upload {
    let o = &record.s3.object;
    Upload {
        event_name: record.event_name.clone().unwrap_or_default(),
        bucket: record.s3.bucket.name.clone(),
        key: decode_key(&o.key),
        size: o.size,
        version_id: o.version_id.clone(),
        e_tag: o.e_tag.clone(),
        sequencer: o.sequencer.clone(),
    }
}

#[tracing::instrument(skip_all, fields(bucket, key))]
pub async fn handle_record(ctx: &Ingest, record: &S3Record) -> Result<RecordOutcome, lambda_runtime::Error> {
    let upload = upload_of(record);
    tracing::Span::current()
        .record("bucket", upload.bucket.as_str())
        .record("key", upload.key.as_str());
    Ok(ctx.flow.upload(&upload).await?)
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
