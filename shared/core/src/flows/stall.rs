//! The stall sweep: a running job that has made no progress and given no heartbeat for
//! longer than the stall time is failed `stalled`, naming its last known step, so stuck
//! work cannot hide in `encoding` forever (see [`crate::liveness`] for the rule and why
//! it leaves a lost worker's retry room). Queued jobs are waiting, not stuck: the sweep
//! only reports how long the oldest has waited, with a warning past a threshold.
//!
//! Every failure is a conditional write through the state machine: a job that moved on
//! meanwhile (a progress write, a takeover, a cancel) is re-read and judged again, so a
//! live job is never failed and a late write of the stuck worker loses.

use crate::error::{JobErrorCode, StoreError};
use crate::job::{Job, JobError};
use crate::liveness::{self, LivenessSettings};
use crate::ports::{JobQuery, JobStore};
use crate::state::JobState;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The states a job is worked on in (by a worker, or at a remote backend).
const RUNNING: [JobState; 3] = [JobState::Downloading, JobState::Encoding, JobState::Uploading];

/// How many of the oldest-created queued jobs are read for the queue's age (a retried
/// job waits again from its requeue, so the oldest-created is not always the longest
/// waiting).
const QUEUE_SAMPLE: usize = 25;

/// How long the queue has waited: its longest-waiting job.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueAge {
    pub job_id: String,
    pub waited: Duration,
    /// Over the warning threshold.
    pub warn: bool,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    /// The jobs it failed `stalled`.
    pub failed: Vec<String>,
    /// None when no job is queued.
    pub queue_age: Option<QueueAge>,
}

/// Fails every stalled running job; measures the queue's age.
pub async fn sweep(store: &dyn JobStore, s: &LivenessSettings, now: DateTime<Utc>) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for job in stalled_jobs(store, s, now).await? {
        match fail_stalled(store, job, s, now).await {
            Ok(Some(id)) => swept.failed.push(id),
            Ok(None) => {}
            // one job's trouble never hides the others; the next sweep tries it again
            Err(e) => tracing::warn!(error = %e, "stall sweep: could not fail a stalled job"),
        }
    }
    swept.queue_age = queue_age(store, s, now).await?;
    if let Some(q) = &swept.queue_age {
        let waited = liveness::span(q.waited);
        if q.warn {
            tracing::warn!(job_id = %q.job_id, waited_secs = q.waited.as_secs(), "the oldest queued job has waited {waited}, longer than {}: the fleet or backend is not keeping up", liveness::span(s.queue_age_warn));
        } else {
            tracing::info!(job_id = %q.job_id, waited_secs = q.waited.as_secs(), "the oldest queued job has waited {waited}");
        }
    }
    Ok(swept)
}

/// How long the longest-waiting queued job has waited (None: nothing is queued).
pub async fn queue_age(
    store: &dyn JobStore,
    s: &LivenessSettings,
    now: DateTime<Utc>,
) -> Result<Option<QueueAge>, StoreError> {
    let oldest = store.oldest(JobState::Queued, QUEUE_SAMPLE).await?;
    Ok(oldest
        .iter()
        .map(|j| (j, (now - liveness::queued_since(j)).to_std().unwrap_or_default()))
        .max_by_key(|(_, waited)| *waited)
        .map(|(j, waited)| QueueAge {
            job_id: j.id.clone(),
            waited,
            warn: waited > s.queue_age_warn,
        }))
}

/// Every running job the rule calls stalled now, all pages of them.
async fn stalled_jobs(store: &dyn JobStore, s: &LivenessSettings, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
    let keep = |j: &Job| liveness::stalled(j, now, s).is_some();
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    // running jobs are bounded by the fleet's slots and the remote tasks: a few pages
    for _ in 0..50 {
        let query = JobQuery {
            states: &RUNNING,
            from: DateTime::<Utc>::UNIX_EPOCH,
            to: now,
            before: cursor.as_deref(),
            limit: 100,
        };
        let (page, next) = store.list_page(query, &keep).await?;
        jobs.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(jobs)
}

/// Fails one stalled job, judging it again on every re-read; the job's id if it failed
/// it, `None` when the job turned out alive or finished.
async fn fail_stalled(
    store: &dyn JobStore,
    mut job: Job,
    s: &LivenessSettings,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    for _ in 0..super::RACE_ROUNDS {
        let Some(why) = liveness::stalled(&job, now, s) else {
            return Ok(None);
        };
        let mut next = job.clone();
        next.fail(JobError::new(JobErrorCode::Stalled, why.clone()), now)?;
        match store.replace(&job, next).await {
            Ok(_) => {
                tracing::warn!(job_id = %job.id, state = %job.state, worker = ?job.worker, reason = %why, "job failed: stalled");
                return Ok(Some(job.id));
            }
            Err(StoreError::Conflict { .. }) => match store.get(&job.id).await? {
                Some(j) => job = j,
                None => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict {
        id: job.id.clone(),
        expected_state: job.state,
        expected_version: job.version,
    })
}
