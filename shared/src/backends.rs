//! Handing jobs to backends and following them there: routing at dispatch (probe, rules,
//! decision on the job), the FFmpeg fleet's queue, Encoding.com tasks (submit, status
//! from callbacks and polling, fallback, cancel). Every change goes through the job
//! store's conditional writes; a lost race re-reads and tries again, so callbacks and
//! the poller can run at once and any of them can be repeated.

use crate::encodingcom::{self, MediaStatus};
use crate::error::{JobErrorCode, StoreError};
use crate::job::{Job, JobError, OutputFile, Probe, RemoteTask, S3Uri};
use crate::messages::JobMessage;
use crate::objects::S3ObjectStore;
use crate::queue::SqsQueue;
use crate::routing::{BackendKind, Credentials, Facts};
use crate::settings::BackendSettings;
use crate::state::{JobState, Transition};
use crate::store::DynamoJobStore;
use chrono::Utc;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectError),
    #[error(transparent)]
    EncodingCom(#[from] encodingcom::Error),
    #[error("{0}")]
    Config(String),
    #[error("job {0} kept changing; try again")]
    Busy(String),
    #[error("the job is already {0}")]
    Finished(JobState),
}

/// Why an object could not be probed.
#[derive(Debug)]
pub enum ProbeFailure {
    /// Not media FFmpeg can read (the reason is FFmpeg's).
    Unreadable(String),
    /// No ffprobe here, or no URL: nothing is known either way.
    Unavailable(String),
}

/// Clients of the remote backends, by backend name, and what delivering to Encoding.com
/// needs (read when the first task is added, so functions that add none never read it).
#[derive(Clone, Debug, Default)]
pub struct Remotes {
    clients: BTreeMap<String, encodingcom::Client>,
    handoff: Handoff,
}

/// The long-lived source reader and the delivery bucket's owner, looked up once.
#[derive(Clone, Default)]
struct Handoff {
    sdk: Option<aws_config::SdkConfig>,
    reader_secret: Option<String>,
    delivery_bucket: Option<String>,
    cell: std::sync::Arc<tokio::sync::OnceCell<Delivery>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("reader_secret", &self.reader_secret)
            .field("delivery_bucket", &self.delivery_bucket)
            .field("delivery", &self.cell.get())
            .finish()
    }
}

/// What adding a task needs beyond the API client.
#[derive(Clone)]
pub struct Delivery {
    /// S3 with the read-only source reader's own long-lived access key: URLs it
    /// presigns live up to 7 days, whatever the function's session credentials do.
    reader: S3ObjectStore,
    pub reader_access_key_id: String,
    /// The delivery bucket owner's canonical id, granted FULL_CONTROL of every object
    /// Encoding.com writes there (`canonical_id` in the destination).
    pub owner_canonical_id: String,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("reader_access_key_id", &self.reader_access_key_id)
            .field("owner_canonical_id", &self.owner_canonical_id)
            .finish_non_exhaustive()
    }
}

/// How long a source URL for Encoding.com lives: SigV4's maximum, 7 days, so a task that
/// waits hours in Encoding.com's queue can still fetch it.
pub const SOURCE_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl Remotes {
    /// The source reader (from its secret) and the delivery bucket's owner, read once.
    pub async fn delivery(&self) -> Result<&Delivery, String> {
        let h = &self.handoff;
        h.cell
            .get_or_try_init(|| async {
                let sdk = h.sdk.as_ref().ok_or("no AWS configuration for Encoding.com delivery")?;
                let name = h.reader_secret.as_deref().ok_or_else(|| {
                    format!(
                        "set {} to the secret with the source reader's access key",
                        crate::settings::ENCODINGCOM_SOURCE_SECRET
                    )
                })?;
                let bucket = h.delivery_bucket.as_deref().ok_or_else(|| {
                    format!(
                        "set {} to the bucket Encoding.com delivers into",
                        crate::settings::DELIVERY_BUCKET
                    )
                })?;
                let v = read_secret_json(sdk, name).await?;
                let field = |k: &str| {
                    v.get(k)
                        .and_then(|x| x.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| format!("secret `{name}` has no `{k}` string (the source reader's access key)"))
                };
                let (id, key) = (field("access_key_id")?, field("secret_access_key")?);
                let mut b = aws_sdk_s3::config::Builder::from(sdk).credentials_provider(
                    aws_sdk_s3::config::Credentials::new(&id, key, None, None, "nommer-source-reader"),
                );
                if sdk.endpoint_url().is_some() {
                    b = b.force_path_style(true);
                }
                let reader = S3ObjectStore::new(aws_sdk_s3::Client::from_conf(b.build()));
                let acl = crate::aws::s3_client(sdk)
                    .get_bucket_acl()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "reading the owner of delivery bucket `{bucket}`: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    })?;
                let owner = acl
                    .owner()
                    .and_then(|o| o.id())
                    .ok_or_else(|| format!("delivery bucket `{bucket}` has no owner id"))?
                    .to_string();
                Ok(Delivery {
                    reader,
                    reader_access_key_id: id,
                    owner_canonical_id: owner,
                })
            })
            .await
    }
}

/// A Secrets Manager secret's JSON.
async fn read_secret_json(sdk: &aws_config::SdkConfig, name: &str) -> Result<serde_json::Value, String> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading secret `{name}`: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            )
        })?;
    serde_json::from_str(out.secret_string().unwrap_or_default()).map_err(|_| format!("secret `{name}` is not JSON"))
}

impl Remotes {
    /// Resolves every Encoding.com backend's credentials (Secrets Manager or the
    /// environment). Fails with what to set when they are missing.
    pub async fn load(settings: &BackendSettings, sdk: &aws_config::SdkConfig) -> Result<Remotes, String> {
        let mut clients = BTreeMap::new();
        for b in settings.config.routing.of_kind(BackendKind::EncodingCom) {
            let e = b.encodingcom.as_ref().expect("encodingcom settings");
            let (userid, userkey) = match &e.credentials {
                Credentials::Env => {
                    match &settings.encodingcom_env {
                        Some((i, k)) => (i.clone(), k.expose().to_string()),
                        None => {
                            return Err(format!(
                                "backend `{}`: set {} and {}, or `secret` in the config file to a Secrets Manager secret with userid and userkey",
                                b.name,
                                encodingcom::USERID_ENV,
                                encodingcom::USERKEY_ENV
                            ))
                        }
                    }
                }
                Credentials::SecretsManager(name) => {
                    let sm = aws_sdk_secretsmanager::Client::new(sdk);
                    let out = sm
                        .get_secret_value()
                        .secret_id(name)
                        .send()
                        .await
                        .map_err(|e| {
                            format!(
                                "backend `{}`: reading secret `{name}`: {}",
                                b.name,
                                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                            )
                        })?;
                    let v: serde_json::Value = serde_json::from_str(out.secret_string().unwrap_or_default())
                        .map_err(|_| format!("backend `{}`: secret `{name}` is not JSON", b.name))?;
                    let field = |k: &str| {
                        v.get(k).and_then(|x| x.as_str()).map(str::to_string).ok_or_else(|| {
                            format!("backend `{}`: secret `{name}` has no `{k}` string", b.name)
                        })
                    };
                    (field("userid")?, field("userkey")?)
                }
            };
            clients.insert(
                b.name.clone(),
                encodingcom::Client::new(
                    settings.encodingcom_endpoint.as_deref().unwrap_or(&e.endpoint),
                    &userid,
                    encodingcom::UserKey::new(userkey),
                ),
            );
        }
        Ok(Remotes {
            clients,
            handoff: Handoff {
                sdk: Some(sdk.clone()),
                reader_secret: settings.source_reader_secret.clone(),
                delivery_bucket: settings.delivery_bucket.clone(),
                cell: Default::default(),
            },
        })
    }

    pub fn client(&self, backend: &str) -> Option<&encodingcom::Client> {
        self.clients.get(backend)
    }
}

/// What handing jobs over needs.
#[derive(Clone)]
pub struct Backends {
    pub settings: BackendSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
    pub remotes: Remotes,
}

impl Backends {
    pub async fn new(settings: BackendSettings, sdk: &aws_config::SdkConfig) -> Result<Backends, String> {
        let remotes = Remotes::load(&settings, sdk).await?;
        Ok(Backends {
            store: DynamoJobStore::new(crate::aws::dynamodb_client(sdk), &settings.table),
            objects: S3ObjectStore::new(crate::aws::s3_client(sdk)),
            queue: SqsQueue::new(crate::aws::sqs_client(sdk)),
            remotes,
            settings,
        })
    }

    fn kind_of(&self, backend: &str) -> Option<BackendKind> {
        self.settings.config.routing.backend(backend).map(|b| b.kind)
    }

    /// Probes the source over a presigned URL with the input guard, after sniffing its
    /// first bytes. `Err` = refused (a playlist or script); `Ok(None)` = could not probe
    /// (no ffprobe here, unreadable media: the worker will say why).
    pub async fn probe_source(&self, job: &Job) -> Result<Option<Probe>, String> {
        let (head, size) = match self
            .objects
            .head_bytes(&job.source.bucket, &job.source.key, 64 * 1024)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "could not read the source's first bytes; routing without a probe");
                return Ok(None);
            }
        };
        crate::ffmpeg::sniff(&head)?;
        match self.probe_object(&job.source.bucket, &job.source.key, size).await {
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

    /// ffprobe on an object through a presigned URL, with the input guard.
    pub async fn probe_object(&self, bucket: &str, key: &str, size: u64) -> Result<Probe, ProbeFailure> {
        let url = self
            .objects
            .presign_get(bucket, key, Duration::from_secs(600))
            .await
            .map_err(|e| ProbeFailure::Unavailable(e.to_string()))?;
        let args = crate::ffmpeg::url_probe_args(&url, &self.settings.limits);
        let run = tokio::process::Command::new(&self.settings.ffprobe)
            .args(&args)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(60), run).await {
            Ok(Ok(out)) if out.status.success() => {
                crate::ffmpeg::parse_probe(&String::from_utf8_lossy(&out.stdout), size)
                    .map_err(ProbeFailure::Unreadable)
            }
            Ok(Ok(out)) => Err(ProbeFailure::Unreadable(crate::ffmpeg::reason_from_stderr(
                &String::from_utf8_lossy(&out.stderr),
            ))),
            Ok(Err(e)) => Err(ProbeFailure::Unavailable(format!(
                "cannot run {}: {e}",
                self.settings.ffprobe
            ))),
            Err(_) => Err(ProbeFailure::Unavailable("ffprobe timed out".into())),
        }
    }

    /// The facts routing sees: the probe, else the request's hints.
    pub fn facts(job: &Job, probe: Option<&Probe>) -> Facts {
        let mut f = Facts::for_key(&job.source.key);
        f.metadata = job.user_metadata.clone();
        if let Some(p) = probe {
            f.container = Some(p.container.clone());
            f.size = Some(p.size);
            f.duration_seconds = p.duration_seconds;
            f.height = Facts::height_of(p);
            f.measured_by = "probe".into();
        } else if let Some(h) = &job.source_hints {
            f.duration_seconds = h.duration_seconds;
            f.height = h.height;
            f.measured_by = "request".into();
        }
        f
    }

    /// Dispatch: routes a `submitted` job, writes the decision and `queued`, and hands it
    /// to its backend. Safe to repeat at every step.
    pub async fn dispatch(&self, job_id: &str) -> Result<(), BackendError> {
        let job = self.store.require(job_id).await?;
        let job = match job.state {
            JobState::Submitted => {
                let probe = match self.probe_source(&job).await {
                    Ok(p) => p,
                    Err(refusal) => {
                        let mut next = job.clone();
                        next.fail(JobError::new(JobErrorCode::RefusedSource, refusal), Utc::now())
                            .map_err(StoreError::from)?;
                        self.store.replace(&job, next).await?;
                        tracing::warn!(job_id, "source refused before routing");
                        return Ok(());
                    }
                };
                let facts = Self::facts(&job, probe.as_ref());
                let c = &self.settings.config;
                let decision = crate::routing::route(&c.routing, &c.catalog, &job.outputs, &facts);
                let mut next = job.clone();
                let note = format!(
                    "routed to {}: {}{}",
                    decision.backend,
                    decision.reason,
                    decision
                        .estimated_cost_usd
                        .map(|c| format!("; estimated ${c:.4}"))
                        .unwrap_or_default()
                );
                next.apply(Transition::Dispatch, Utc::now(), Some(note))
                    .map_err(StoreError::from)?;
                next.backend = Some(decision.backend.clone());
                if probe.is_some() {
                    next.probe = probe;
                }
                next.routing = Some(decision);
                let stored = self.store.replace(&job, next).await?;
                tracing::info!(job_id, backend = ?stored.backend, "job routed");
                stored
            }
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

    /// Gives a `queued` job to its backend: a message on the fleet's queue (duplicates
    /// are harmless), or an Encoding.com task unless it has one.
    pub async fn hand_over(&self, job: Job) -> Result<(), BackendError> {
        let backend = job
            .backend
            .clone()
            .unwrap_or_else(|| crate::routing::DEFAULT_BACKEND.into());
        match self.kind_of(&backend) {
            Some(BackendKind::EncodingCom) => {
                if job.remote.as_ref().map(|r| r.backend == backend).unwrap_or(false) {
                    return Ok(());
                }
                self.submit_encodingcom(job, &backend).await
            }
            // the fleet, or a backend the config no longer has: the fleet makes anything
            _ => {
                self.queue
                    .send(&self.settings.work_queue_url, &JobMessage::new(&job.id).to_body())
                    .await?;
                Ok(())
            }
        }
    }

    fn output_prefix(&self, job: &Job, output: &crate::job::OutputSpec) -> (String, String) {
        let stem = job.source.output_stem();
        let key = crate::config::render_key_template(
            &self.settings.config.key_template,
            &job.id,
            &output.name,
            &output.preset,
            &stem,
            &job.created_at.format("%Y-%m-%d").to_string(),
        );
        (key, stem)
    }

    async fn submit_encodingcom(&self, job: Job, backend: &str) -> Result<(), BackendError> {
        let client = self
            .remotes
            .client(backend)
            .ok_or_else(|| BackendError::Config(format!("no Encoding.com client for backend `{backend}`")))?;
        let callback = self
            .settings
            .callback_url
            .clone()
            .ok_or_else(|| BackendError::Config("NOMMER_ENCODINGCOM_CALLBACK_URL is not set".into()))?;
        let delivery_bucket = self.delivery_bucket()?;
        let delivery = self.remotes.delivery().await.map_err(BackendError::Config)?;
        // the picture's displayed size; without a probe, the request's height hint read as
        // a landscape picture
        let source = job.probe.as_ref().and_then(crate::presets::display_size).or_else(|| {
            job.source_hints
                .as_ref()
                .and_then(|h| h.height)
                .map(|h| (h.saturating_mul(16) / 9, h))
        });
        let mut formats = Vec::new();
        for o in &job.outputs {
            let Some(preset) = self.settings.config.catalog.find(&o.preset) else {
                return self
                    .backend_failed(job.clone(), backend, format!("output {}: unknown preset", o.name))
                    .await;
            };
            let (_, stem) = self.output_prefix(&job, o);
            match encodingcom::format_for(
                preset,
                &o.options,
                source,
                &S3Uri::new(&delivery_bucket, delivery_prefix(&job, o)),
                &stem,
                Some(&delivery.owner_canonical_id),
            ) {
                Ok(f) => formats.push(f),
                Err(e) => {
                    return self
                        .backend_failed(job.clone(), backend, format!("output {}: {e}", o.name))
                        .await
                }
            }
        }
        // signed with the source reader's long-lived key, not this function's session
        let url = delivery
            .reader
            .presign_get(&job.source.bucket, &job.source.key, SOURCE_URL_LIFETIME)
            .await?;
        let media_id = match client.add_media(&url, &callback, formats).await {
            Ok(m) => m,
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => return self.backend_failed(job, backend, e.to_string()).await,
        };
        self.store.put_media_link(backend, &media_id, &job.id).await?;
        let now = Utc::now();
        let task = RemoteTask {
            backend: backend.to_string(),
            media_id: media_id.clone(),
            status: "New".into(),
            submitted_at: now,
            checked_at: now,
            notifications: 0,
        };
        let mut current = job;
        for _ in 0..5 {
            let other_task = current
                .remote
                .as_ref()
                .is_some_and(|r| r.backend == backend && r.media_id != media_id);
            if other_task || current.state != JobState::Queued || current.backend.as_deref() != Some(backend) {
                // cancelled (or moved) while the task was being added: take it back
                tracing::info!(job_id = %current.id, media_id, state = %current.state, "job changed during AddMedia; cancelling the task");
                let _ = client.cancel_media(&media_id).await;
                return Ok(());
            }
            let mut next = current.clone();
            next.remote = Some(task.clone());
            match self.store.update(&current, |j| *j = next).await {
                Ok(_) => {
                    tracing::info!(job_id = %current.id, media_id, backend, "Encoding.com task added");
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => current = self.store.require(&current.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(current.id))
    }

    /// A backend failed the job for good: its fallback takes it, or it fails.
    async fn backend_failed(&self, job: Job, backend: &str, reason: String) -> Result<(), BackendError> {
        let fallback = self
            .settings
            .config
            .routing
            .backend(backend)
            .and_then(|b| b.fallback.clone());
        let mut current = job;
        for _ in 0..5 {
            if current.state.is_terminal() || current.backend.as_deref() != Some(backend) {
                return Ok(());
            }
            let now = Utc::now();
            let mut next = current.clone();
            match &fallback {
                Some(f) => {
                    let note = format!("{backend} failed ({reason}); falling back to {f}");
                    if next.state.is_running() {
                        next.apply(Transition::Requeue, now, Some(note))
                            .map_err(StoreError::from)?;
                    } else {
                        next.history.push(crate::job::HistoryEntry {
                            state: next.state,
                            at: now,
                            note: Some(note),
                        });
                        next.progress = 0;
                    }
                    next.backend = Some(f.clone());
                    next.remote = None;
                    if let Some(d) = next.routing.as_mut() {
                        d.fallback_from = Some(backend.to_string());
                        d.backend = f.clone();
                        d.estimated_cost_usd = d.facts.duration_seconds.and_then(|_| d.estimates.get(f).copied());
                    }
                }
                None => {
                    next.fail(
                        JobError::new(JobErrorCode::EncodeFailed, format!("{backend}: {reason}")),
                        now,
                    )
                    .map_err(StoreError::from)?;
                }
            }
            match self.store.replace(&current, next).await {
                Ok(stored) => {
                    tracing::warn!(job_id = %stored.id, backend, %reason, fallback = ?fallback, "backend failed the job");
                    if fallback.is_some() {
                        return Box::pin(self.hand_over(stored)).await;
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => current = self.store.require(&current.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(current.id))
    }

    /// Brings a job in line with what Encoding.com says of its task. Idempotent: the
    /// same status twice changes nothing; a status behind the job's state is ignored.
    pub async fn apply_status(&self, job_id: &str, status: &MediaStatus, notified: bool) -> Result<Job, BackendError> {
        let mut current = self.store.require(job_id).await?;
        for _ in 0..5 {
            let Some(task) = current.remote.clone() else {
                return Ok(current);
            };
            if task.media_id != status.media_id
                || current.backend.as_deref() != Some(task.backend.as_str())
                || current.state.is_terminal()
            {
                return Ok(current);
            }
            let (target, progress) = match status.status.ours(status.progress) {
                Some(t) => t,
                None => {
                    tracing::warn!(job_id, media_id = %task.media_id, status = status.status.as_str(), "unknown Encoding.com status word; the job stays where it is");
                    (current.state, current.progress)
                }
            };
            let now = Utc::now();
            let mut next = current.clone();
            if let Some(t) = next.remote.as_mut() {
                t.status = status.status.as_str().to_string();
                t.checked_at = now;
                if notified {
                    t.notifications += 1;
                }
            }
            match target {
                JobState::Failed => {
                    let reason = if status.errors.is_empty() {
                        "the task ended in Error".to_string()
                    } else {
                        status.errors.join("; ")
                    };
                    self.backend_failed(current.clone(), &task.backend, reason).await?;
                    return Ok(self.store.require(job_id).await?);
                }
                JobState::Cancelled => {
                    let reason = "the task was stopped or deleted at Encoding.com".to_string();
                    self.backend_failed(current.clone(), &task.backend, reason).await?;
                    return Ok(self.store.require(job_id).await?);
                }
                JobState::Complete => match self.collect_outputs(&current).await? {
                    Ok(manifest) => {
                        step_to(&mut next, JobState::Uploading, now)?;
                        next.manifest = manifest;
                        next.apply(
                            Transition::Finish,
                            now,
                            Some(format!("Encoding.com task {} finished", task.media_id)),
                        )
                        .map_err(StoreError::from)?;
                    }
                    Err(missing) => {
                        self.backend_failed(current.clone(), &task.backend, missing).await?;
                        return Ok(self.store.require(job_id).await?);
                    }
                },
                _ => {
                    if order(target) > order(next.state) {
                        step_to(&mut next, target, now)?;
                        next.progress = progress;
                    } else if target == next.state {
                        next.progress = progress.max(next.progress);
                    }
                    // a status behind ours (a late callback): only the check time moves
                }
            }
            if next.state == current.state && next.progress == current.progress && !notified {
                // nothing new but the check time: record it without a history entry
                if (now - task.checked_at).num_seconds() < 5 {
                    return Ok(current);
                }
            }
            let res = if next.state == current.state {
                let n = next.clone();
                self.store.update(&current, |j| *j = n).await
            } else {
                self.store.replace(&current, next).await
            };
            match res {
                Ok(stored) => {
                    if stored.state != current.state {
                        tracing::info!(job_id, state = %stored.state, from = %current.state, media_id = %task.media_id, "job state changed (Encoding.com)");
                    }
                    return Ok(stored);
                }
                Err(StoreError::Conflict { .. }) => current = self.store.require(job_id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(job_id.to_string()))
    }

    /// The bucket Encoding.com delivers into (settings refuse an Encoding.com backend
    /// without one).
    fn delivery_bucket(&self) -> Result<String, BackendError> {
        self.settings.delivery_bucket.clone().ok_or_else(|| {
            BackendError::Config(format!(
                "{} is not set: set it to the bucket Encoding.com delivers into (the template's DeliveryBucket)",
                crate::settings::DELIVERY_BUCKET
            ))
        })
    }

    /// Copies every output's files from the delivery bucket into the outbox (server-side,
    /// under the output's prefix) and returns the manifest of the copies, or why the
    /// delivery is not usable: an output with no files, or a tar (Nommer asks for
    /// `pack_files: no`, so a tar means the request was not honoured: it is refused with
    /// that reason rather than unpacked, so nothing unchecked reaches the outbox).
    /// Repeating it copies the same objects again, so a lost race is harmless.
    async fn collect_outputs(&self, job: &Job) -> Result<Result<Vec<OutputFile>, String>, BackendError> {
        let delivery_bucket = self.delivery_bucket()?;
        let mut manifest = Vec::new();
        for o in &job.outputs {
            let (prefix, _) = self.output_prefix(job, o);
            let from = delivery_prefix(job, o);
            let delivered = self.objects.list(&delivery_bucket, &from).await?;
            if delivered.is_empty() {
                return Ok(Err(format!(
                    "Encoding.com reported Finished but output {} has no files under s3://{delivery_bucket}/{from}",
                    o.name
                )));
            }
            if let Some((tar, _)) = delivered
                .iter()
                .find(|(k, _)| [".tar", ".tar.gz", ".tgz", ".zip"].iter().any(|x| k.ends_with(x)))
            {
                return Ok(Err(format!(
                    "Encoding.com delivered output {} packed as one archive ({tar}) although `pack_files: no` was asked; its playlists cannot be checked, so it is not accepted",
                    o.name
                )));
            }
            let mut files = Vec::new();
            for (key, size) in delivered {
                let rel = &key[from.len()..];
                let to = format!("{prefix}{rel}");
                self.objects
                    .copy_object(&delivery_bucket, &key, &self.settings.outbox_bucket, &to)
                    .await?;
                files.push((to, size));
            }
            // a ladder's manifest lists its playlists, not every segment (as the fleet's
            // does): a long ladder has thousands of segments
            let ladder = self
                .settings
                .config
                .catalog
                .find(&o.preset)
                .is_some_and(|p| matches!(p.kind, crate::presets::PresetKind::Ladder { .. }));
            let files: Vec<(String, u64)> = if ladder {
                files
                    .into_iter()
                    .filter(|(k, _)| k.ends_with(".m3u8") || k.ends_with(".mpd"))
                    .collect()
            } else {
                files
            };
            if files.is_empty() {
                return Ok(Err(format!(
                    "Encoding.com reported Finished but output {} has no playlist under s3://{delivery_bucket}/{from}",
                    o.name
                )));
            }
            for (key, size) in files {
                let mut entry = OutputFile {
                    output: o.name.clone(),
                    bucket: self.settings.outbox_bucket.clone(),
                    key: key.clone(),
                    size,
                    duration_seconds: None,
                    width: None,
                    height: None,
                    bit_rate: None,
                };
                // media files are checked as the fleet's are: readable, and as long as asked
                let ext = key.rsplit('.').next().unwrap_or("");
                if ["mp4", "webm", "m4a", "mp3"].contains(&ext) {
                    match self.probe_object(&self.settings.outbox_bucket, &key, size).await {
                        Ok(p) => {
                            let v = p.streams.iter().find(|s| s.kind == "video");
                            entry.duration_seconds = p.duration_seconds;
                            entry.width = v.and_then(|s| s.width);
                            entry.height = v.and_then(|s| s.height);
                            entry.bit_rate = p.bit_rate;
                            let expected = match &o.options.trim {
                                Some(t) => t.end_seconds.map(|e| e - t.start_seconds),
                                None => job.probe.as_ref().and_then(|p| p.duration_seconds),
                            };
                            if let (Some(want), Some(got)) = (expected, p.duration_seconds) {
                                if (want - got).abs() > (want * 0.05).max(0.5) {
                                    return Ok(Err(format!(
                                        "output {} from Encoding.com lasts {got:.1} s, expected {want:.1} s",
                                        o.name
                                    )));
                                }
                            }
                        }
                        Err(ProbeFailure::Unreadable(r)) => {
                            return Ok(Err(format!(
                                "output {} from Encoding.com is not readable media: {r}",
                                o.name
                            )))
                        }
                        Err(ProbeFailure::Unavailable(r)) => {
                            tracing::warn!(job_id = %job.id, key, reason = %r, "output not checked: cannot probe here");
                        }
                    }
                }
                manifest.push(entry);
            }
        }
        Ok(Ok(manifest))
    }

    /// Asks Encoding.com about a job's task and applies the answer.
    pub async fn refresh(&self, job: &Job, notified: bool) -> Result<Job, BackendError> {
        let Some(task) = &job.remote else {
            return Ok(job.clone());
        };
        let client = self
            .remotes
            .client(&task.backend)
            .ok_or_else(|| BackendError::Config(format!("no Encoding.com client for backend `{}`", task.backend)))?;
        let status = client.get_status(&task.media_id).await?;
        self.apply_status(&job.id, &status, notified).await
    }

    /// An Encoding.com notification: only its MediaID is read; the status comes from
    /// `GetStatus`. `Ok(None)` for a MediaID that is not ours.
    pub async fn on_notify(&self, backend: &str, media_id: &str) -> Result<Option<Job>, BackendError> {
        let Some(job_id) = self.store.job_for_media(backend, media_id).await? else {
            return Ok(None);
        };
        let job = self.store.require(&job_id).await?;
        if job.remote.as_ref().map(|t| t.media_id.as_str()) != Some(media_id) {
            return Ok(Some(job));
        }
        self.refresh(&job, true).await.map(Some)
    }

    /// The scheduled poller: every unfinished Encoding.com job not heard of for its
    /// backend's `poll_seconds` is checked; a job that fell back to the fleet and was
    /// never handed over is handed over again. Returns how many jobs it looked at.
    pub async fn poll(&self) -> Result<usize, BackendError> {
        let now = Utc::now();
        let mut looked = 0;
        for state in [
            JobState::Queued,
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading,
        ] {
            // every page: a backlog of fleet jobs must not hide older Encoding.com ones
            let routing = &self.settings.config.routing;
            let followed = |j: &Job| {
                j.backend.as_deref().and_then(|b| routing.backend(b)).is_some_and(|b| {
                    b.kind == BackendKind::EncodingCom || j.routing.as_ref().is_some_and(|d| d.fallback_from.is_some())
                })
            };
            let mut jobs = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..50 {
                let (page, next) = self
                    .store
                    .list_page(
                        &[state],
                        now - chrono::Duration::days(30),
                        now,
                        cursor.as_deref(),
                        100,
                        followed,
                    )
                    .await?;
                jobs.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            for job in jobs {
                let Some(backend) = job.backend.clone() else { continue };
                let Some(b) = self.settings.config.routing.backend(&backend) else {
                    continue;
                };
                let poll = b.encodingcom.as_ref().map(|e| e.poll_seconds).unwrap_or(60) as i64;
                match (&b.kind, &job.remote) {
                    (BackendKind::EncodingCom, Some(task)) if (now - task.checked_at).num_seconds() >= poll => {
                        looked += 1;
                        if let Err(e) = self.refresh(&job, false).await {
                            tracing::warn!(job_id = %job.id, error = %e, "poll: could not refresh the job");
                        }
                    }
                    (BackendKind::EncodingCom, None) if (now - job.updated_at).num_seconds() >= poll * 5 => {
                        // routed but never added (dispatch gave up): add it now
                        looked += 1;
                        if let Err(e) = self.hand_over(job.clone()).await {
                            tracing::warn!(job_id = %job.id, error = %e, "poll: could not hand the job over");
                        }
                    }
                    (BackendKind::Ffmpeg, _)
                        if state == JobState::Queued
                            && job.routing.as_ref().and_then(|d| d.fallback_from.as_ref()).is_some()
                            // once, a minute after the fallback: the worker drops duplicates,
                            // but a message per poll would pile up behind a backlog
                            && (60..60 + 2 * poll.max(60)).contains(&(now - job.updated_at).num_seconds()) =>
                    {
                        looked += 1;
                        if let Err(e) = self.hand_over(job.clone()).await {
                            tracing::warn!(job_id = %job.id, error = %e, "poll: could not hand the job over");
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(looked)
    }

    /// Cancels a job: a queued one never starts; one at Encoding.com gets `CancelMedia`
    /// (a running FFmpeg job stops at its worker's next write). Returns the job and, for
    /// a remote task, whether the backend confirmed.
    pub async fn cancel(&self, job_id: &str, reason: &str) -> Result<(Job, Option<Result<(), String>>), BackendError> {
        let mut current = self.store.require(job_id).await?;
        for _ in 0..5 {
            if current.state.is_terminal() {
                return Err(BackendError::Finished(current.state));
            }
            let mut next = current.clone();
            next.apply(Transition::Cancel, Utc::now(), Some(reason.to_string()))
                .map_err(StoreError::from)?;
            match self.store.replace(&current, next).await {
                Ok(stored) => {
                    let remote = match &current.remote {
                        Some(task) if current.backend.as_deref() == Some(task.backend.as_str()) => {
                            Some(match self.remotes.client(&task.backend) {
                                Some(c) => c.cancel_media(&task.media_id).await.map_err(|e| e.to_string()),
                                None => Err(format!("no client for backend {}", task.backend)),
                            })
                        }
                        _ => None,
                    };
                    tracing::info!(job_id, remote = ?remote, "job cancelled");
                    return Ok((stored, remote));
                }
                Err(StoreError::Conflict { .. }) => current = self.store.require(job_id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::Busy(job_id.to_string()))
    }
}

fn order(s: JobState) -> u8 {
    match s {
        JobState::Submitted => 0,
        JobState::Queued => 1,
        JobState::Downloading => 2,
        JobState::Encoding => 3,
        JobState::Uploading => 4,
        JobState::Complete | JobState::Failed | JobState::Cancelled => 5,
    }
}

/// Walks a job forward to `target`, one transition at a time, each in its history.
fn step_to(job: &mut Job, target: JobState, now: chrono::DateTime<Utc>) -> Result<(), StoreError> {
    while order(job.state) < order(target) {
        let t = match job.state {
            JobState::Queued => Transition::StartDownload,
            JobState::Downloading => Transition::StartEncode,
            JobState::Encoding => Transition::StartUpload,
            JobState::Uploading => Transition::Finish,
            _ => break,
        };
        job.apply(t, now, Some("Encoding.com".into()))?;
    }
    Ok(())
}

/// Where Encoding.com delivers one output: `<job id>/<output name>/` in the delivery bucket.
pub fn delivery_prefix(job: &Job, output: &crate::job::OutputSpec) -> String {
    format!("{}/{}/", job.id, output.name)
}
