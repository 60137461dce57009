//! The notify functions.
//!
//! - `notify`: the jobs table's DynamoDB stream (NEW_AND_OLD_IMAGES). Each job write's
//!   events go to SNS and to the webhooks queue; other items (markers, links) are skipped.
//!   Records are handled in order; the first that fails is reported, so the stream
//!   retries from it and never skips an event.
//! - `notify-deliver`: the webhooks queue. Each message is one delivery attempt; retries
//!   and parking are its own messages, so a batch reports a failure only when the next
//!   step could not be queued.

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use nommer_core::deliveries::Delivery;
use nommer_core::flows::notify::Notifications;
use nommer_core::job::Job;

/// The job in a stream image, if the item is a job.
fn job_of(image: &serde_json::Value) -> Result<Option<Job>, String> {
    if image.get("kind").and_then(|k| k.get("S")).and_then(|k| k.as_str()) != Some("job") {
        return Ok(None);
    }
    let doc = image
        .get("doc")
        .and_then(|d| d.get("S"))
        .and_then(|d| d.as_str())
        .ok_or("a job item without `doc`")?;
    serde_json::from_str(doc)
        .map(Some)
        .map_err(|e| format!("a job item whose doc does not parse: {e}"))
}

/// One stream record's events. `Ok(0)` for items that are not jobs.
pub async fn on_record(ctx: &Notifications, record: &EventRecord) -> Result<usize, String> {
    let new = serde_json::to_value(&record.change.new_image).map_err(|e| e.to_string())?;
    let old = serde_json::to_value(&record.change.old_image).map_err(|e| e.to_string())?;
    let Some(new_job) = job_of(&new)? else {
        return Ok(0);
    };
    let old_job = job_of(&old).unwrap_or(None);
    ctx.on_change(old_job.as_ref(), &new_job)
        .await
        .map_err(|e| e.to_string())
}

pub async fn stream_handler(
    ctx: &Notifications,
    event: LambdaEvent<DynamoDbEvent>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let mut response = DynamoDbEventResponse::default();
    for record in &event.payload.records {
        if record.event_name == "REMOVE" {
            continue;
        }
        if let Err(e) = on_record(ctx, record).await {
            let seq = record.change.sequence_number.clone();
            tracing::error!(error = %e, sequence = ?seq, "stream record failed; the stream retries from it");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = seq;
            response.batch_item_failures.push(failure);
            break;
        }
    }
    Ok(response)
}

pub async fn deliver_handler(
    ctx: &Notifications,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let id = message.message_id.clone().unwrap_or_default();
        let body = message.body.as_deref().unwrap_or_default();
        let d: Delivery = match serde_json::from_str(body) {
            Ok(d) => d,
            Err(e) => {
                // malformed: fail it so the queue's redrive parks it in the DLQ
                tracing::error!(error = %e, message_id = %id, "malformed delivery message; it goes to the dead-letter queue");
                response.add_failure(id);
                continue;
            }
        };
        if let Err(e) = ctx.deliver(d).await {
            tracing::error!(error = %e, message_id = %id, "could not queue the next step; SQS will redeliver");
            response.add_failure(id);
        }
    }
    Ok(response)
}
