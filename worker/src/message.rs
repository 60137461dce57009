//! One work message: what its job needs (nothing, a look later, a take-over, or an
//! attempt), the attempt run while the message stays hidden, and what becomes of the
//! message and the job after it.

use crate::held::{Heartbeat, Held};
use crate::slots::ActiveGuard;
use crate::{JobFailure, Worker};
use chrono::Utc;
use nommer_aws::queue::Received;
use nommer_core::error::JobErrorCode;
use nommer_core::job::{Job, JobError};
use nommer_core::messages::JobMessage;
use nommer_core::ports::JobStore as _;
use nommer_core::{JobState, StoreError, Transition};
use std::time::Duration;

impl Worker {
    /// How old a running job's heartbeat may be before its worker counts as lost. A live
    /// worker refreshes it every third of the visibility timeout; a message comes back
    /// only after a whole timeout without refresh. Two thirds sits midway: a live
    /// holder's heartbeat is a third old at most (plus the time its writes take, which a
    /// loaded machine stretches), a lost one's is a whole timeout old.
    pub(crate) fn stale_after(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.visibility_timeout * 2 / 3).unwrap_or(chrono::Duration::seconds(60))
    }

    pub(crate) async fn handle_message(&self, msg: &Received) -> anyhow::Result<()> {
        let m = match JobMessage::from_body(&msg.body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "malformed work message; leaving it for the dead-letter queue");
                return Ok(());
            }
        };
        let url = &self.settings.work_queue_url;
        let Some(job) = self.store.get(&m.job_id).await? else {
            tracing::warn!(job_id = %m.job_id, "work message for a job that does not exist; deleted");
            self.queue.delete(url, &msg.receipt_handle).await?;
            return Ok(());
        };
        let Some(job) = self.triage(job, msg).await? else {
            return Ok(());
        };
        if job.attempts >= self.settings.max_attempts {
            let err = JobError::new(
                JobErrorCode::AttemptsExhausted,
                format!("gave up after {} attempts", job.attempts),
            );
            let mut next = job.clone();
            next.fail(err, Utc::now())?;
            self.store.replace(&job, next).await?;
            self.queue.delete(url, &msg.receipt_handle).await?;
            return Ok(());
        }
        self.run_job(job, msg).await
    }

    /// The job to attempt for this message, taken over from a lost worker if need be;
    /// `None` when the message was dealt with instead (deleted, or hidden again).
    async fn triage(&self, job: Job, msg: &Received) -> anyhow::Result<Option<Job>> {
        let url = &self.settings.work_queue_url;
        match job.state {
            s if s.is_terminal() => {
                tracing::info!(job_id = %job.id, state = %s, "job already finished; message deleted");
                self.queue.delete(url, &msg.receipt_handle).await?;
                Ok(None)
            }
            JobState::Submitted => {
                tracing::warn!(job_id = %job.id, "job not dispatched yet; will look again");
                self.queue
                    .set_visibility(url, &msg.receipt_handle, Duration::from_secs(5))
                    .await?;
                Ok(None)
            }
            // split and handed over: its tasks on the chunks queue carry it now
            JobState::Encoding | JobState::Uploading if job.split.is_some() => {
                tracing::info!(job_id = %job.id, state = %job.state, "the job is split and its tasks carry it; message deleted");
                self.queue.delete(url, &msg.receipt_handle).await?;
                Ok(None)
            }
            s if s.is_running() && !job.is_abandoned(Utc::now(), self.stale_after()) => {
                if job.message_id.as_deref() == Some(msg.message_id.as_str()) {
                    // the holder is alive but could not extend its message: hide it again
                    tracing::warn!(job_id = %job.id, state = %s, worker = ?job.worker, "the running job's own message came back; hidden again");
                    self.queue
                        .set_visibility(url, &msg.receipt_handle, self.settings.visibility_timeout)
                        .await?;
                } else {
                    tracing::info!(job_id = %job.id, state = %s, worker = ?job.worker, "another worker is on this job; duplicate message deleted");
                    self.queue.delete(url, &msg.receipt_handle).await?;
                }
                Ok(None)
            }
            s if s.is_running() => {
                let note = format!(
                    "worker {} stopped responding during {s}",
                    job.worker.as_deref().unwrap_or("?")
                );
                tracing::warn!(job_id = %job.id, "{note}; taking the job over");
                Ok(Some(
                    self.store.transition(&job, Transition::Requeue, Some(note)).await?,
                ))
            }
            _ => Ok(Some(job)),
        }
    }

    /// Runs one attempt of a `queued` job while keeping the message hidden.
    async fn run_job(&self, job: Job, msg: &Received) -> anyhow::Result<()> {
        let dir = tempfile::Builder::new()
            .prefix("nommer-job-")
            .tempdir_in(&self.settings.work_dir)?;
        self.current
            .lock()
            .unwrap()
            .insert(msg.receipt_handle.clone(), job.id.clone());
        let _active = ActiveGuard::new(self);
        let held = Held::new(
            job,
            self.store.clone(),
            self.settings.worker_id.clone(),
            msg.message_id.clone(),
        );
        let heartbeat = Heartbeat::start(
            self.queue.clone(),
            self.settings.work_queue_url.clone(),
            msg.receipt_handle.clone(),
            self.settings.visibility_timeout,
            held.clone(),
        );
        // a cancel stops the attempt wherever it is (FFmpeg's process group is killed
        // when its future is dropped)
        let result = tokio::select! {
            r = self.attempt(&held, dir.path()) => r,
            _ = held.stopped() => Err(JobFailure::Superseded("the job was cancelled or finished elsewhere".into())),
        };
        heartbeat.stop().await;
        self.current.lock().unwrap().remove(&msg.receipt_handle);
        let job = held.snapshot().await;
        // the scratch folder's path means nothing to the job's owner
        let scrub = |m: String| m.replace(&dir.path().display().to_string(), "");
        let result = result.map_err(|f| match f {
            JobFailure::Permanent(code, message) => JobFailure::Permanent(code, scrub(message)),
            JobFailure::Retryable(reason) => JobFailure::Retryable(scrub(reason)),
            other => other,
        });
        self.settle(&job, msg, result).await?;
        drop(dir);
        Ok(())
    }

    /// After an attempt: the message deleted once the job is terminal, or made visible
    /// again after a pause for a retry, or left to whoever holds the job now.
    async fn settle(&self, job: &Job, msg: &Received, result: Result<(), JobFailure>) -> anyhow::Result<()> {
        let url = &self.settings.work_queue_url;
        match result {
            Ok(()) => {
                self.queue.delete(url, &msg.receipt_handle).await?;
            }
            Err(JobFailure::Permanent(code, message)) => {
                tracing::warn!(job_id = %job.id, code = code.as_str(), %message, "job failed");
                if self.fail_held(job, JobError::new(code, message)).await? {
                    self.queue.delete(url, &msg.receipt_handle).await?;
                }
            }
            Err(JobFailure::Retryable(reason)) => {
                tracing::warn!(job_id = %job.id, %reason, "attempt failed; the job goes back to the queue");
                if job.state.is_running() {
                    self.store
                        .transition(
                            job,
                            Transition::Requeue,
                            Some("retrying after a transient error".into()),
                        )
                        .await?;
                }
                let delay = Duration::from_secs(5 * u64::from(job.attempts.max(1)));
                self.queue.set_visibility(url, &msg.receipt_handle, delay).await?;
            }
            Err(JobFailure::Superseded(reason)) => {
                let current = self.store.get(&job.id).await?;
                tracing::info!(job_id = %job.id, %reason, state = ?current.as_ref().map(|j| j.state), "stopped: the job changed under us");
                if current.map(|j| j.state.is_terminal()).unwrap_or(true) {
                    self.queue.delete(url, &msg.receipt_handle).await?;
                }
            }
        }
        Ok(())
    }

    /// Fails a job this worker holds, re-reading it if another write came first. True
    /// when the job is now terminal (so its message may go), false when it is someone
    /// else's now.
    async fn fail_held(&self, job: &Job, error: JobError) -> anyhow::Result<bool> {
        let mut current = job.clone();
        for _ in 0..5 {
            if current.state.is_terminal() {
                return Ok(true);
            }
            if current.worker.as_deref() != Some(&self.settings.worker_id) {
                return Ok(false);
            }
            let mut next = current.clone();
            next.fail(error.clone(), Utc::now())?;
            match self.store.replace(&current, next).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => current = self.store.require(&job.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("job {} kept changing while being failed", job.id)
    }
}
