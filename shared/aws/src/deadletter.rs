//! The dead-letter sweep: a job whose message ended in a dead-letter queue (it failed
//! every receive) is failed with `dead_lettered`, so no job waits forever for a message
//! that will not come. Malformed messages stay parked in the DLQ for a person to read.

use crate::queue::{QueueError, SqsQueue};
use crate::store::DynamoJobStore;
use nommer_core::error::JobErrorCode;
use nommer_core::job::JobError;
use nommer_core::messages::JobMessage;
use nommer_core::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads up to `max` messages from `dlq_url`; returns the ids of the jobs it failed.
pub async fn sweep(
    queue: &SqsQueue,
    store: &DynamoJobStore,
    dlq_url: &str,
    max: i32,
) -> Result<Vec<String>, SweepError> {
    let mut failed = Vec::new();
    let queue_name = dlq_url.rsplit('/').next().unwrap_or(dlq_url);
    for m in queue
        .receive(dlq_url, max, Duration::ZERO, Some(Duration::from_secs(60)))
        .await?
    {
        let Ok(msg) = JobMessage::from_body(&m.body) else {
            tracing::warn!(queue = queue_name, message_id = %m.message_id, "malformed message parked in the dead-letter queue");
            queue
                .set_visibility(dlq_url, &m.receipt_handle, Duration::from_secs(6 * 3600))
                .await?;
            continue;
        };
        for _ in 0..3 {
            let Some(job) = store.get(&msg.job_id).await? else {
                break;
            };
            if job.state.is_terminal() {
                break;
            }
            let mut next = job.clone();
            let reason = format!(
                "its message reached the dead-letter queue {queue_name} after failing {} times; each attempt's error is in the logs",
                m.receive_count.max(1)
            );
            if next
                .fail(JobError::new(JobErrorCode::DeadLettered, reason), chrono::Utc::now())
                .is_err()
            {
                break;
            }
            match store.replace(&job, next).await {
                Ok(_) => {
                    tracing::warn!(job_id = %job.id, queue = queue_name, "job failed: its message was dead-lettered");
                    failed.push(job.id.clone());
                    break;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        queue.delete(dlq_url, &m.receipt_handle).await?;
    }
    Ok(failed)
}
