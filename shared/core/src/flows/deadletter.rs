//! The dead-letter sweep: a job whose message ended in a dead-letter queue (it failed
//! every receive) is failed with `dead_lettered`, so no job waits forever for a message
//! that will not come. Malformed messages stay parked in the DLQ for a person to read.

use crate::error::{JobErrorCode, StoreError};
use crate::job::JobError;
use crate::messages::JobMessage;
use crate::ports::{DeadLetterQueue, JobStore, QueueError, Taken};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {0} kept changing; its dead-lettered message stays for the next sweep")]
    Busy(String),
}

/// How long a malformed message stays hidden before the next sweep sees it again.
const MALFORMED_HIDDEN: Duration = Duration::from_secs(6 * 3600);

/// Reads up to `max` messages from `dlq_url`; returns the ids of the jobs it failed.
pub async fn sweep(
    queue: &dyn DeadLetterQueue,
    store: &dyn JobStore,
    dlq_url: &str,
    max: i32,
) -> Result<Vec<String>, SweepError> {
    let mut failed = Vec::new();
    let queue_name = dlq_url.rsplit('/').next().unwrap_or(dlq_url);
    for m in queue.take(dlq_url, max, Duration::from_secs(60)).await? {
        let Ok(msg) = JobMessage::from_body(&m.body) else {
            tracing::warn!(queue = queue_name, message_id = %m.message_id, "malformed message parked in the dead-letter queue");
            queue.keep(dlq_url, &m.receipt_handle, MALFORMED_HIDDEN).await?;
            continue;
        };
        if fail_job(store, &msg.job_id, queue_name, &m).await? {
            failed.push(msg.job_id.clone());
        }
        queue.delete(dlq_url, &m.receipt_handle).await?;
    }
    Ok(failed)
}

/// Fails the job of a dead-lettered message unless it has ended; true if it failed it.
async fn fail_job(store: &dyn JobStore, job_id: &str, queue_name: &str, m: &Taken) -> Result<bool, SweepError> {
    for _ in 0..super::RACE_ROUNDS {
        let Some(job) = store.get(job_id).await? else {
            return Ok(false);
        };
        if job.state.is_terminal() {
            return Ok(false);
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
            return Ok(false);
        }
        match store.replace(&job, next).await {
            Ok(_) => {
                tracing::warn!(job_id, queue = queue_name, "job failed: its message was dead-lettered");
                return Ok(true);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // never deleted unswept: the next sweep tries again
    Err(SweepError::Busy(job_id.to_string()))
}
