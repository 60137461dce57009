//! Dispatch: a `submitted` job's source is sniffed and probed, the routing rules pick a
//! backend, the decision and `queued` are written, and the job is handed over.

use super::{BackendError, Backends};
use crate::error::JobErrorCode;
use crate::job::{Job, JobError, Probe};
use crate::messages::JobMessage;
use crate::ports::ProbeFailure;
use crate::routing::{BackendKind, Facts, Measured};
use crate::state::{JobState, Transition};
use chrono::Utc;
use std::time::Duration;

/// How much of a source is read to tell a playlist or script from media.
pub const SNIFF_BYTES: u64 = 64 * 1024;

impl Backends {
    /// Probes the source over a presigned URL with the input guard, after sniffing its
    /// first bytes. `Err` = refused (a playlist or script); `Ok(None)` = could not probe
    /// (no ffprobe here, unreadable media: the worker will say why).
    pub async fn probe_source(&self, job: &Job) -> Result<Option<Probe>, String> {
        let src = &job.source;
        let (head, size) = match self.ports.objects.head_bytes(&src.bucket, &src.key, SNIFF_BYTES).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "could not read the source's first bytes; routing without a probe");
                return Ok(None);
            }
        };
        crate::ffmpeg::sniff(&head)?;
        match self.probe_object(&src.bucket, &src.key, size).await {
            Ok(p) => Ok(Some(p)),
            Err(ProbeFailure::Unreadable(reason)) => {
                tracing::info!(job_id = %job.id, %reason, "the source did not probe; the worker will report it");
                Ok(None)
            }
            Err(ProbeFailure::Unavailable(reason)) => {
                tracing::warn!(job_id = %job.id, %reason, "cannot probe here; routing on the request's facts");
                Ok(None)
            }
        }
    }

    /// ffprobe on an object through a presigned URL.
    pub async fn probe_object(&self, bucket: &str, key: &str, size: u64) -> Result<Probe, ProbeFailure> {
        let url = self
            .ports
            .objects
            .presign_get(bucket, key, Duration::from_secs(600))
            .await
            .map_err(|e| ProbeFailure::Unavailable(e.to_string()))?;
        self.ports.prober.probe_url(&url, size).await
    }

    /// The facts routing sees: the probe, else the request's hints.
    pub fn facts(job: &Job, probe: Option<&Probe>) -> Facts {
        let mut f = Facts::for_key(&job.source.key);
        f.metadata = job.user_metadata.clone();
        if let Some(p) = probe {
            f.container = Some(p.container.clone());
            f.size = Some(p.size);
            f.duration_seconds = p.duration_seconds;
            // the short side of the displayed picture, as a preset's height bounds it (a
            // portrait 720x1280 phone video is 720p, a 1280x720 one stored rotated too)
            f.height = crate::presets::short_side(p);
            f.measured_by = Measured::Probe;
        } else if let Some(h) = &job.source_hints {
            f.duration_seconds = h.duration_seconds;
            f.height = h.height;
            f.measured_by = Measured::Request;
        }
        f
    }

    /// Dispatch: routes a `submitted` job, writes the decision and `queued`, and hands it
    /// to its backend. Safe to repeat at every step.
    pub async fn dispatch(&self, job_id: &str) -> Result<(), BackendError> {
        let job = self.ports.store.require(job_id).await?;
        let job = match job.state {
            JobState::Submitted => match self.route(job).await? {
                Some(routed) => routed,
                None => return Ok(()),
            },
            // a duplicate of a dispatch that just ran (S3 and SQS deliver at least once):
            // the other dispatch is handing it over; a dispatch that crashed before handing
            // over is retried after the jobs queue's visibility timeout, later than this
            JobState::Queued if Utc::now() - job.updated_at < chrono::Duration::seconds(10) => {
                tracing::info!(job_id, "job was just dispatched; duplicate dispatch ignored");
                return Ok(());
            }
            JobState::Queued => job,
            other => {
                tracing::info!(job_id, state = %other, "job is past dispatch; nothing to do");
                return Ok(());
            }
        };
        self.hand_over(job).await
    }

    /// Routes a `submitted` job and stores it `queued` with the decision; `None` when
    /// the source was refused (the job is failed).
    async fn route(&self, job: Job) -> Result<Option<Job>, BackendError> {
        let probe = match self.probe_source(&job).await {
            Ok(p) => p,
            Err(refusal) => {
                let mut next = job.clone();
                next.fail(JobError::new(JobErrorCode::RefusedSource, refusal), Utc::now())?;
                self.ports.store.replace(&job, next).await?;
                tracing::warn!(job_id = %job.id, "source refused before routing");
                return Ok(None);
            }
        };
        let mut facts = Self::facts(&job, probe.as_ref());
        facts.fleet_libvmaf = self.fleet_libvmaf(&job).await;
        let c = &self.settings.config;
        let decision = crate::routing::route(&c.routing, &c.catalog, &job.outputs, &facts);
        let mut next = job.clone();
        if let Some(why) = decision.unable.get(&decision.backend) {
            // no backend can make it as things stand: say so now, not after a download
            let all: Vec<String> = decision.unable.iter().map(|(b, w)| format!("{b}: {w}")).collect();
            let msg = format!("no backend can make this job ({})", all.join("; "));
            tracing::warn!(job_id = %job.id, backend = %decision.backend, %why, "no able backend");
            next.routing = Some(decision);
            next.fail(JobError::new(JobErrorCode::NoBackend, msg), Utc::now())?;
            self.ports.store.replace(&job, next).await?;
            return Ok(None);
        }
        let cost = decision
            .estimated_cost_usd
            .map(|c| format!("; estimated ${c:.4}"))
            .unwrap_or_default();
        let note = format!("routed to {}: {}{cost}", decision.backend, decision.reason);
        next.apply(Transition::Dispatch, Utc::now(), Some(note))?;
        next.backend = Some(decision.backend.clone());
        if probe.is_some() {
            next.probe = probe;
        }
        next.routing = Some(decision);
        let stored = self.ports.store.replace(&job, next).await?;
        tracing::info!(job_id = %stored.id, backend = ?stored.backend, "job routed");
        Ok(Some(stored))
    }

    /// Whether the fleet can score VMAF now, asked of its heartbeats only when an output
    /// needs it; `None` when no worker is live or the registry does not answer (the
    /// worker then decides).
    async fn fleet_libvmaf(&self, job: &Job) -> Option<bool> {
        let catalog = &self.settings.config.catalog;
        let needed = job
            .outputs
            .iter()
            .filter_map(|o| catalog.find(&o.preset).map(|p| (o, p)))
            .any(|(o, p)| crate::capability::needs_vmaf(p, &o.options));
        if !needed {
            return None;
        }
        match self.ports.fleet.heartbeats().await {
            Ok(beats) => {
                let stale = crate::scaling::ScalingSettings::default().heartbeat_stale;
                crate::scaling::fleet_libvmaf(&beats, Utc::now(), stale)
            }
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "the worker registry did not answer; routing as if the fleet can score");
                None
            }
        }
    }

    /// Gives a `queued` job to its backend: a message on the fleet's queue (duplicates
    /// are harmless), or a remote task unless it has one.
    pub async fn hand_over(&self, job: Job) -> Result<(), BackendError> {
        let backend = job
            .backend
            .clone()
            .unwrap_or_else(|| crate::routing::DEFAULT_BACKEND.into());
        match self.kind_of(&backend) {
            Some(BackendKind::EncodingCom) => {
                if job.remote.as_ref().is_some_and(|r| r.backend == backend) {
                    return Ok(());
                }
                self.add_remote_task(job, &backend).await
            }
            // the fleet, or a backend the config no longer has: the fleet makes anything
            _ => {
                let body = JobMessage::new(&job.id).to_body();
                self.ports.queue.send(&self.settings.work_queue_url, &body).await?;
                Ok(())
            }
        }
    }
}
