//! A job at a remote encoder (Encoding.com): adding its task, bringing the job in line
//! with the task's status (from callbacks, which are only hints, and from polling), the
//! fallback when a backend fails a job, and cancelling.

use super::collect::{delivery_prefix, Collected};
use super::{BackendError, Backends, RACE_ROUNDS};
use crate::error::{JobErrorCode, StoreError};
use crate::job::{HistoryEntry, Job, JobError, RemoteTask, S3Uri, TaskStatus};
use crate::ports::{JobQuery, RemoteOutput, RemoteRequest, RemoteStatus};
use crate::routing::BackendKind;
use crate::state::{JobState, Transition};
use chrono::{DateTime, Utc};

/// The picture's displayed size; without a probe, the request's height hint read as a
/// landscape picture.
fn source_size(job: &Job) -> Option<(u32, u32)> {
    job.probe.as_ref().and_then(crate::presets::display_size).or_else(|| {
        job.source_hints
            .as_ref()
            .and_then(|h| h.height)
            .map(|h| (h.saturating_mul(16) / 9, h))
    })
}

impl Backends {
    /// Adds the job's task at its remote backend, then records it on the job (or takes
    /// it back if the job was cancelled or moved meanwhile).
    pub(super) async fn add_remote_task(&self, job: Job, backend: &str) -> Result<(), BackendError> {
        let remote = self.ports.remotes.get(backend)?;
        let callback = self.settings.callback_url.clone().ok_or_else(|| {
            BackendError::Config(format!(
                "{} is not set: set it to the URL of the API's /callbacks/encodingcom route",
                crate::settings::CALLBACK_URL
            ))
        })?;
        let delivery_bucket = self.delivery_bucket()?;
        let owner = self.ports.handoff.delivery_owner().await?;
        let stem = job.source.output_stem();
        let mut outputs = Vec::new();
        for o in &job.outputs {
            let Some(preset) = self.settings.config.catalog.find(&o.preset) else {
                let reason = format!("output {}: unknown preset", o.name);
                return self.backend_failed(job.clone(), backend, reason).await;
            };
            outputs.push(RemoteOutput {
                name: &o.name,
                preset,
                options: &o.options,
                destination: S3Uri::new(&delivery_bucket, delivery_prefix(&job, o)),
                stem: stem.clone(),
            });
        }
        // signed with the source reader's long-lived key, not this function's session
        let source_url = self.ports.handoff.source_url(&job.source).await?;
        let request = RemoteRequest {
            source_url,
            callback_url: callback,
            source_size: source_size(&job),
            owner_canonical_id: owner,
            outputs,
        };
        let media_id = match remote.add(&request).await {
            Ok(m) => m,
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => return self.backend_failed(job.clone(), backend, e.to_string()).await,
        };
        drop(request);
        self.ports.store.put_media_link(backend, &media_id, &job.id).await?;
        self.record_task(job, backend, media_id).await
    }

    /// Writes a just-added task on the job, unless the job changed meanwhile: then the
    /// task is cancelled at the backend.
    async fn record_task(&self, job: Job, backend: &str, media_id: String) -> Result<(), BackendError> {
        let now = Utc::now();
        let task = RemoteTask {
            backend: backend.to_string(),
            media_id: media_id.clone(),
            status: TaskStatus::New,
            submitted_at: now,
            checked_at: now,
            notifications: 0,
            moved_at: Some(now),
            collecting_since: None,
        };
        let mut current = job;
        for _ in 0..RACE_ROUNDS {
            let other_task = current
                .remote
                .as_ref()
                .is_some_and(|r| r.backend == backend && r.media_id != media_id);
            if other_task || current.state != JobState::Queued || current.backend.as_deref() != Some(backend) {
                // cancelled (or moved) while the task was being added: take it back
                tracing::info!(job_id = %current.id, media_id, state = %current.state, "job changed during AddMedia; cancelling the task");
                let _ = self.ports.remotes.get(backend)?.cancel(&media_id).await;
                return Ok(());
            }
            let mut next = current.clone();
            next.remote = Some(task.clone());
            match self.ports.store.update(&current, next).await {
                Ok(_) => {
                    tracing::info!(job_id = %current.id, media_id, backend, "remote task added");
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => current = self.ports.store.require(&current.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(current.id))
    }

    /// A backend failed the job for good: its fallback takes it, or it fails.
    pub async fn backend_failed(&self, job: Job, backend: &str, reason: String) -> Result<(), BackendError> {
        let fallback = self
            .settings
            .config
            .routing
            .backend(backend)
            .and_then(|b| b.fallback.clone());
        let mut current = job;
        for _ in 0..RACE_ROUNDS {
            if current.state.is_terminal() || current.backend.as_deref() != Some(backend) {
                return Ok(());
            }
            let next = match &fallback {
                Some(f) => fall_back(&current, backend, f, &reason, Utc::now())?,
                None => {
                    let mut next = current.clone();
                    let error = JobError::new(JobErrorCode::EncodeFailed, format!("{backend}: {reason}"));
                    next.fail(error, Utc::now())?;
                    next
                }
            };
            match self.ports.store.replace(&current, next).await {
                Ok(stored) => {
                    tracing::warn!(job_id = %stored.id, backend, %reason, fallback = ?fallback, "backend failed the job");
                    if fallback.is_some() {
                        return Box::pin(self.hand_over(stored)).await;
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => current = self.ports.store.require(&current.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(current.id))
    }

    /// Brings a job in line with what its remote backend says of its task. Idempotent:
    /// the same status twice changes nothing; a status behind the job's state is ignored.
    pub async fn apply_status(&self, job_id: &str, status: &RemoteStatus, notified: bool) -> Result<Job, BackendError> {
        let mut current = self.ports.store.require(job_id).await?;
        for _ in 0..RACE_ROUNDS {
            let Some(task) = current.remote.clone() else {
                return Ok(current);
            };
            if task.media_id != status.media_id
                || current.backend.as_deref() != Some(task.backend.as_str())
                || current.state.is_terminal()
            {
                return Ok(current);
            }
            let (target, progress) = status.status.ours(status.progress).unwrap_or_else(|| {
                tracing::warn!(job_id, media_id = %task.media_id, status = %status.status, "unknown remote status word; the job stays where it is");
                (current.state, current.progress)
            });
            let now = Utc::now();
            let mut next = current.clone();
            if let Some(t) = next.remote.as_mut() {
                t.status = status.status.clone();
                t.checked_at = now;
                if notified {
                    t.notifications += 1;
                }
            }
            let failed = match target {
                JobState::Failed if status.errors.is_empty() => Some("the task ended in Error".to_string()),
                JobState::Failed => Some(status.errors.join("; ")),
                JobState::Cancelled => Some("the task was stopped or deleted at Encoding.com".to_string()),
                JobState::Complete => match self.finish_remote(&current, next, &task.media_id, now).await? {
                    Collected::Done(job) => return Ok(job),
                    Collected::Elsewhere => return Ok(current),
                    Collected::Raced => {
                        current = self.ports.store.require(job_id).await?;
                        continue;
                    }
                },
                _ => {
                    follow(&mut next, target, progress, now)?;
                    None
                }
            };
            if let Some(reason) = failed {
                self.backend_failed(current.clone(), &task.backend, reason).await?;
                return Ok(self.ports.store.require(job_id).await?);
            }
            let moved =
                next.state != current.state || next.progress != current.progress || task.status != status.status;
            if let (true, Some(t)) = (moved, next.remote.as_mut()) {
                // the task's sign of life: the backend moved it, not that we asked
                t.moved_at = Some(now);
            }
            if next.state == current.state && next.progress == current.progress && !notified {
                // nothing new but the check time: record it without a history entry
                if (now - task.checked_at).num_seconds() < 5 {
                    return Ok(current);
                }
            }
            match self.store_status(&current, next).await {
                Ok(stored) => {
                    if stored.state != current.state {
                        tracing::info!(job_id, state = %stored.state, from = %current.state, media_id = %task.media_id, "job state changed (remote)");
                    }
                    return Ok(stored);
                }
                Err(StoreError::Conflict { .. }) => current = self.ports.store.require(job_id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(job_id.to_string()))
    }

    async fn store_status(&self, current: &Job, next: Job) -> Result<Job, StoreError> {
        if next.state == current.state {
            self.ports.store.update(current, next).await
        } else {
            self.ports.store.replace(current, next).await
        }
    }

    /// Asks the remote backend about a job's task and applies the answer.
    pub async fn refresh(&self, job: &Job, notified: bool) -> Result<Job, BackendError> {
        let Some(task) = &job.remote else {
            return Ok(job.clone());
        };
        let status = self.ports.remotes.get(&task.backend)?.status(&task.media_id).await?;
        self.apply_status(&job.id, &status, notified).await
    }

    /// A remote backend's notification: only its task id is read; the status comes from
    /// the backend itself. `Ok(None)` for a task that is not ours.
    pub async fn on_notify(&self, backend: &str, media_id: &str) -> Result<Option<Job>, BackendError> {
        let Some(job_id) = self.ports.store.job_for_media(backend, media_id).await? else {
            return Ok(None);
        };
        let job = self.ports.store.require(&job_id).await?;
        if job.remote.as_ref().map(|t| t.media_id.as_str()) != Some(media_id) {
            return Ok(Some(job));
        }
        self.refresh(&job, true).await.map(Some)
    }

    /// The scheduled poller: every unfinished remote job not heard of for its backend's
    /// `poll_seconds` is checked; a job that fell back to the fleet and was never handed
    /// over is handed over again. Returns how many jobs it looked at.
    pub async fn poll(&self) -> Result<usize, BackendError> {
        let now = Utc::now();
        let mut looked = 0;
        let running = [
            JobState::Queued,
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading,
        ];
        for job in self.followed_jobs(&running, now).await? {
            let res = match self.look(&job, job.state, now) {
                Some(Look::Refresh) => self.refresh(&job, false).await.map(|_| ()),
                Some(Look::HandOver) => self.hand_over(job.clone()).await,
                None => continue,
            };
            looked += 1;
            if let Err(e) = res {
                tracing::warn!(job_id = %job.id, error = %e, "poll: could not bring the job on");
            }
        }
        Ok(looked)
    }

    /// Every job in `states` the poller follows: at a remote backend, or fallen back from
    /// one (every page: a backlog of fleet jobs must not hide older remote ones). One scan
    /// of all the states, so a job that moves on meanwhile is looked at once.
    async fn followed_jobs(&self, states: &[JobState], now: DateTime<Utc>) -> Result<Vec<Job>, BackendError> {
        let routing = &self.settings.config.routing;
        let followed = |j: &Job| {
            j.backend.as_deref().and_then(|b| routing.backend(b)).is_some_and(|b| {
                b.kind == BackendKind::EncodingCom || j.routing.as_ref().is_some_and(|d| d.fallback_from.is_some())
            })
        };
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let query = JobQuery {
                states,
                from: now - chrono::Duration::days(30),
                to: now,
                before: cursor.as_deref(),
                limit: 100,
            };
            let (page, next) = self.ports.store.list_page(query, &followed).await?;
            jobs.extend(page);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(jobs)
    }

    /// What the poller does with a followed job now, if anything.
    fn look(&self, job: &Job, state: JobState, now: DateTime<Utc>) -> Option<Look> {
        let b = job
            .backend
            .as_deref()
            .and_then(|b| self.settings.config.routing.backend(b))?;
        let poll = b.encodingcom.as_ref().map(|e| e.poll_seconds).unwrap_or(60) as i64;
        let due = match (&b.kind, &job.remote) {
            (BackendKind::EncodingCom, Some(task)) => {
                return ((now - task.checked_at).num_seconds() >= poll).then_some(Look::Refresh)
            }
            // routed but never added (dispatch gave up): add it now
            (BackendKind::EncodingCom, None) => (now - job.updated_at).num_seconds() >= poll * 5,
            // fallen back to the fleet: handed over once, a minute after the fallback (the
            // worker drops duplicates, but a message per poll would pile up behind a backlog)
            (BackendKind::Ffmpeg, _) => {
                state == JobState::Queued
                    && job.routing.as_ref().and_then(|d| d.fallback_from.as_ref()).is_some()
                    && (60..60 + 2 * poll.max(60)).contains(&(now - job.updated_at).num_seconds())
            }
        };
        due.then_some(Look::HandOver)
    }

    /// Cancels a job: a queued one never starts; one at a remote backend has its task
    /// cancelled (a running FFmpeg job stops at its worker's next write). Returns the
    /// job and, for a remote task, whether the backend confirmed.
    pub async fn cancel(&self, job_id: &str, reason: &str) -> Result<(Job, Option<Result<(), String>>), BackendError> {
        let mut current = self.ports.store.require(job_id).await?;
        for _ in 0..RACE_ROUNDS {
            if current.state.is_terminal() {
                return Err(BackendError::Finished(current.state));
            }
            let mut next = current.clone();
            next.apply(Transition::Cancel, Utc::now(), Some(reason.to_string()))?;
            match self.ports.store.replace(&current, next).await {
                Ok(stored) => {
                    let remote = match &current.remote {
                        Some(task) if current.backend.as_deref() == Some(task.backend.as_str()) => {
                            Some(match self.ports.remotes.get(&task.backend) {
                                Ok(r) => r.cancel(&task.media_id).await.map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            })
                        }
                        _ => None,
                    };
                    tracing::info!(job_id, remote = ?remote, "job cancelled");
                    return Ok((stored, remote));
                }
                Err(StoreError::Conflict { .. }) => current = self.ports.store.require(job_id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(job_id.to_string()))
    }
}

/// What the poller does with a job.
enum Look {
    /// Ask the remote backend for the task's status.
    Refresh,
    /// Give the job to its backend (again).
    HandOver,
}

/// The job handed from `backend`, which failed it, to its fallback `to`.
fn fall_back(current: &Job, backend: &str, to: &str, reason: &str, now: DateTime<Utc>) -> Result<Job, BackendError> {
    let mut next = current.clone();
    let note = format!("{backend} failed ({reason}); falling back to {to}");
    if next.state.is_running() {
        next.apply(Transition::Requeue, now, Some(note))?;
    } else {
        next.history.push(HistoryEntry {
            state: next.state,
            at: now,
            note: Some(note),
        });
        next.progress = 0;
    }
    next.backend = Some(to.to_string());
    next.remote = None;
    if let Some(d) = next.routing.as_mut() {
        d.fallback_from = Some(backend.to_string());
        d.backend = to.to_string();
        d.estimated_cost_usd = d.facts.duration_seconds.and_then(|_| d.estimates.get(to).copied());
    }
    Ok(next)
}

/// Moves a job toward what the remote backend reports: forward along the path, or only
/// progress at the same state; a status behind ours (a late callback) changes nothing.
fn follow(next: &mut Job, target: JobState, progress: u8, now: DateTime<Utc>) -> Result<(), BackendError> {
    if target.rank() > next.state.rank() {
        next.advance_to(target, now, "Encoding.com")?;
        next.progress = progress;
    } else if target == next.state {
        next.progress = progress.max(next.progress);
    }
    Ok(())
}
