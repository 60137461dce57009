//! Creating a job and handing it to the dispatcher: the one path both the upload
//! (ingest) and the API take, safe to repeat for the same job id.

use crate::error::StoreError;
use crate::job::Job;
use crate::messages::JobMessage;
use crate::ports::{Created, JobStore, QueueError, WorkQueue};
use crate::state::JobState;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Stores `job` unless it exists, and queues it for dispatch while it is `submitted`
/// (so a crash between the two steps is repaired by the redelivered event or the
/// replayed request). Returns what the store holds.
pub async fn create_and_enqueue(
    store: &dyn JobStore,
    queue: &dyn WorkQueue,
    jobs_queue_url: &str,
    job: &Job,
) -> Result<Created, SubmitError> {
    let created = store.create(job).await?;
    let current = match &created {
        Created::New(j) => {
            tracing::info!(job_id = %j.id, state = %j.state, source = %j.source, "job created");
            j
        }
        Created::Existing(j) => {
            tracing::info!(job_id = %j.id, state = %j.state, "job already exists; not creating it again");
            j
        }
    };
    if current.state == JobState::Submitted {
        queue
            .send(jobs_queue_url, &JobMessage::new(&current.id).to_body())
            .await?;
    }
    Ok(created)
}
