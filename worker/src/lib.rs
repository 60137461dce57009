//! The FFmpeg worker: long-polls the work queue, and for each job downloads the source,
//! probes it, encodes every output with FFmpeg, uploads the results and completes the
//! job, extending the message's visibility all the while. The message is deleted only
//! once the job is terminal.

pub mod imds;
pub mod process;

use chrono::Utc;
use nommer_shared::error::JobErrorCode;
use nommer_shared::ffmpeg;
use nommer_shared::job::OutputSpec;
use nommer_shared::job::{Job, JobError, OutputFile, Probe};
use nommer_shared::messages::JobMessage;
use nommer_shared::objects::{ObjectError, S3ObjectStore};
use nommer_shared::plan;
use nommer_shared::presets::{LadderFormat, Preset, PresetKind};
use nommer_shared::queue::{Received, SqsQueue};
use nommer_shared::registry::{Beat, DynamoWorkerRegistry};
use nommer_shared::settings::WorkerSettings;
use nommer_shared::store::DynamoJobStore;
use nommer_shared::{check, content_type};
use nommer_shared::{JobState, StoreError, Transition};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What one step of the loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A message was handled (whatever became of its job).
    Done,
    /// The queue was empty.
    Empty,
}

/// How a job attempt ended, short of success.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// The job cannot succeed: fail it, delete the message.
    #[error("{0:?}: {1}")]
    Permanent(JobErrorCode, String),
    /// Something outside the job went wrong (S3, DynamoDB, the disk): try again later.
    #[error("{0}")]
    Retryable(String),
    /// Someone else changed the job (cancelled it, or another worker took it): stop.
    #[error("job changed under us: {0}")]
    Superseded(String),
}

impl From<StoreError> for JobFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::InvalidTransition(_) => JobFailure::Superseded(e.to_string()),
            StoreError::Corrupt { .. } => JobFailure::Permanent(JobErrorCode::Internal, e.to_string()),
            StoreError::NotFound(_) | StoreError::Aws(_) => JobFailure::Retryable(e.to_string()),
        }
    }
}

impl From<ObjectError> for JobFailure {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound { .. } | ObjectError::Replaced { .. } => {
                JobFailure::Permanent(JobErrorCode::SourceNotFound, e.to_string())
            }
            _ => JobFailure::Retryable(e.to_string()),
        }
    }
}

pub struct Worker {
    pub settings: WorkerSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
    /// The message and job in hand, to give back at shutdown.
    current: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub registry: DynamoWorkerRegistry,
    active: std::sync::atomic::AtomicU32,
    draining: std::sync::atomic::AtomicBool,
    idle_since: std::sync::Mutex<Option<chrono::DateTime<Utc>>>,
    started_at: chrono::DateTime<Utc>,
}

/// The job as this worker last stored it; every write goes through here so progress,
/// heartbeats and transitions never race each other.
#[derive(Clone)]
struct Held {
    job: Arc<Mutex<Job>>,
    store: DynamoJobStore,
    worker_id: String,
    message_id: String,
    /// Set when the job turns out to be finished by someone else (a cancel): whatever
    /// runs for it stops.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Held {
    /// After a lost conditional write: if the job is now terminal (cancelled, or failed
    /// by another hand), everything working on it is told to stop.
    async fn on_conflict(&self, e: &StoreError) {
        if let StoreError::Conflict { id, .. } = e {
            if let Ok(Some(now)) = self.store.get(id).await {
                if now.state.is_terminal() {
                    tracing::info!(job_id = %id, state = %now.state, "the job was finished elsewhere (cancelled?); stopping its work");
                    self.stop.send_replace(true);
                }
            }
        }
    }

    /// Resolves once the job must stop.
    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    async fn transition(&self, t: Transition, note: Option<String>) -> Result<Job, StoreError> {
        let mut guard = self.job.lock().await;
        let mut next = guard.clone();
        next.apply(t, Utc::now(), note)?;
        next.heartbeat_at = Some(Utc::now());
        next.worker = Some(self.worker_id.clone());
        next.message_id = Some(self.message_id.clone());
        let stored = match self.store.replace(&guard, next).await {
            Ok(s) => s,
            Err(e) => {
                self.on_conflict(&e).await;
                return Err(e);
            }
        };
        tracing::info!(job_id = %stored.id, state = %stored.state, "job state changed");
        *guard = stored.clone();
        Ok(stored)
    }

    async fn update(&self, change: impl FnOnce(&mut Job)) -> Result<Job, StoreError> {
        let mut guard = self.job.lock().await;
        let stored = match self
            .store
            .update(&guard, |j| {
                change(j);
                j.heartbeat_at = Some(Utc::now());
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.on_conflict(&e).await;
                return Err(e);
            }
        };
        *guard = stored.clone();
        Ok(stored)
    }

    async fn snapshot(&self) -> Job {
        self.job.lock().await.clone()
    }
}

/// Keeps the message hidden and the job's heartbeat fresh while a job runs; stopped
/// between writes (never halfway through one), or aborted if dropped.
struct Heartbeat {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(queue: SqsQueue, url: String, receipt: String, vt: Duration, held: Held) -> Heartbeat {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tokio::time::sleep(vt / 3) => {}
                }
                if let Err(e) = queue.set_visibility(&url, &receipt, vt).await {
                    tracing::warn!(error = %e, "could not extend the message's visibility");
                }
                if let Err(e) = held.update(|_| {}).await {
                    tracing::warn!(error = %e, "could not record a heartbeat on the job");
                }
            }
        });
        Heartbeat {
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Worker {
    pub fn new(settings: WorkerSettings, config: &aws_config::SdkConfig) -> Self {
        Worker {
            store: DynamoJobStore::new(nommer_shared::aws::dynamodb_client(config), &settings.table),
            objects: S3ObjectStore::new(nommer_shared::aws::s3_client(config)),
            queue: SqsQueue::new(nommer_shared::aws::sqs_client(config)),
            registry: DynamoWorkerRegistry::new(nommer_shared::aws::dynamodb_client(config), &settings.table),
            settings,
            current: std::sync::Mutex::new(Default::default()),
            active: Default::default(),
            draining: Default::default(),
            idle_since: std::sync::Mutex::new(Some(Utc::now())),
            started_at: Utc::now(),
        }
    }

    /// How old a running job's heartbeat may be before its worker counts as lost. A live
    /// worker refreshes it every third of the visibility timeout; a message comes back
    /// only after a whole timeout without refresh. Two thirds sits midway: a live
    /// holder's heartbeat is a third old at most (plus the time its writes take, which a
    /// loaded machine stretches), a lost one's is a whole timeout old.
    fn stale_after(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.visibility_timeout * 2 / 3).unwrap_or(chrono::Duration::seconds(60))
    }

    /// Gives the job in hand back at shutdown: the job `queued`, and only then its message
    /// visible again at once. If the job cannot be requeued, the message stays hidden and
    /// comes back after the visibility timeout, when the next worker sees this one's
    /// heartbeat stale and takes the job over.
    async fn release_current(&self) {
        let held: Vec<(String, String)> = self.current.lock().unwrap().drain().collect();
        for (receipt, job_id) in held {
            self.release(receipt, job_id).await;
        }
    }

    async fn release(&self, receipt: String, job_id: String) {
        let released = match self.store.get(&job_id).await {
            Ok(Some(job)) if job.state.is_running() && job.worker.as_deref() == Some(&self.settings.worker_id) => {
                let note = format!("worker {} shut down", self.settings.worker_id);
                match self.store.transition(&job, Transition::Requeue, Some(note)).await {
                    Ok(_) => {
                        tracing::info!(job_id, "job given back to the queue");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(job_id, error = %e, "could not requeue the job; its message comes back after the visibility timeout");
                        false
                    }
                }
            }
            // not started yet, or no longer ours: the message can go back as it is
            Ok(Some(job)) => !job.state.is_running(),
            _ => false,
        };
        if released {
            if let Err(e) = self
                .queue
                .set_visibility(&self.settings.work_queue_url, &receipt, Duration::ZERO)
                .await
            {
                tracing::warn!(error = %e, "could not release the message; it comes back after its visibility timeout");
            }
        }
    }

    /// Runs until `shutdown` resolves: `capacity` jobs at once, a heartbeat in the
    /// registry, no new work once the scaler asks it to drain. Jobs in progress at
    /// shutdown are given back to the queue at once (message visible again, job `queued`).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(
            worker_id = %self.settings.worker_id,
            capacity = self.settings.capacity,
            queue = %self.settings.work_queue_url,
            "worker polling"
        );
        let mut tasks = tokio::task::JoinSet::new();
        {
            let me = self.clone();
            tasks.spawn(async move { me.registry_loop().await });
        }
        for _ in 0..self.settings.capacity.max(1) {
            let me = self.clone();
            tasks.spawn(async move { me.slot_loop().await });
        }
        shutdown.await;
        tracing::info!("shutting down");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.release_current().await;
        let _ = self.beat().await;
    }

    /// One job slot: takes work while the worker is not draining.
    async fn slot_loop(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.draining.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            match self.try_execute_task().await {
                Ok(_) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::error!(error = %e, "polling the work queue failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(20));
                }
            }
        }
    }

    async fn beat(&self) -> Result<bool, nommer_shared::registry::RegistryError> {
        use std::sync::atomic::Ordering;
        let b = Beat {
            worker_id: self.settings.worker_id.clone(),
            capacity: self.settings.capacity,
            active_jobs: self.active.load(Ordering::SeqCst),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            idle_since: *self.idle_since.lock().unwrap(),
        };
        self.registry.beat(&b).await
    }

    /// Heartbeats into the registry and picks up the draining flag.
    async fn registry_loop(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        loop {
            match self.beat().await {
                Ok(draining) => {
                    if draining && !self.draining.swap(true, Ordering::SeqCst) {
                        tracing::info!("asked to drain: finishing the jobs in hand, taking no new ones");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not record the worker's heartbeat"),
            }
            tokio::time::sleep(self.settings.heartbeat_interval).await;
        }
    }

    /// Checks that FFmpeg and ffprobe run, so a misconfigured worker stops at start
    /// instead of failing every job it takes.
    pub async fn preflight(&self) -> anyhow::Result<()> {
        for program in [&self.settings.ffmpeg, &self.settings.ffprobe] {
            let out = tokio::process::Command::new(program)
                .arg("-version")
                .output()
                .await
                .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}; install FFmpeg (apt-get install ffmpeg) or set NOMMER_FFMPEG/NOMMER_FFPROBE"))?;
            anyhow::ensure!(
                out.status.success(),
                "{program} -version failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let version = String::from_utf8_lossy(&out.stdout);
            tracing::info!(program = %program, version = %version.lines().next().unwrap_or(""), "using");
        }
        std::fs::create_dir_all(&self.settings.work_dir)
            .map_err(|e| anyhow::anyhow!("work dir {}: {e}", self.settings.work_dir.display()))?;
        Ok(())
    }

    /// Receives at most one message and handles it.
    pub async fn try_execute_task(&self) -> anyhow::Result<Outcome> {
        let messages = self
            .queue
            .receive(
                &self.settings.work_queue_url,
                1,
                self.settings.poll_wait,
                Some(self.settings.visibility_timeout),
            )
            .await?;
        let Some(msg) = messages.into_iter().next() else {
            return Ok(Outcome::Empty);
        };
        let span = tracing::info_span!("message", message_id = %msg.message_id, receive_count = msg.receive_count);
        if let Err(e) = tracing::Instrument::instrument(self.handle_message(&msg), span).await {
            // the message comes back after its visibility timeout; pause before the next
            tracing::error!(message_id = %msg.message_id, error = %e, "handling the work message failed; it will be retried");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(Outcome::Done)
    }

    async fn handle_message(&self, msg: &Received) -> anyhow::Result<()> {
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
        let now = Utc::now();
        let stale = self.stale_after();
        let job = match job.state {
            s if s.is_terminal() => {
                tracing::info!(job_id = %job.id, state = %s, "job already finished; message deleted");
                self.queue.delete(url, &msg.receipt_handle).await?;
                return Ok(());
            }
            JobState::Submitted => {
                tracing::warn!(job_id = %job.id, "job not dispatched yet; will look again");
                self.queue
                    .set_visibility(url, &msg.receipt_handle, Duration::from_secs(5))
                    .await?;
                return Ok(());
            }
            s if s.is_running() && !job.is_abandoned(now, stale) => {
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
                return Ok(());
            }
            s if s.is_running() => {
                let note = format!(
                    "worker {} stopped responding during {s}",
                    job.worker.as_deref().unwrap_or("?")
                );
                tracing::warn!(job_id = %job.id, "{note}; taking the job over");
                self.store.transition(&job, Transition::Requeue, Some(note)).await?
            }
            _ => job,
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

    /// Runs one attempt of a `queued` job while keeping the message hidden.
    async fn run_job(&self, job: Job, msg: &Received) -> anyhow::Result<()> {
        let url = self.settings.work_queue_url.clone();
        let dir = tempfile::Builder::new()
            .prefix("nommer-job-")
            .tempdir_in(&self.settings.work_dir)?;
        self.current
            .lock()
            .unwrap()
            .insert(msg.receipt_handle.clone(), job.id.clone());
        let _active = ActiveGuard::new(self);
        let held = Held {
            job: Arc::new(Mutex::new(job)),
            store: self.store.clone(),
            worker_id: self.settings.worker_id.clone(),
            message_id: msg.message_id.clone(),
            stop: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let heartbeat = Heartbeat::start(
            self.queue.clone(),
            url.clone(),
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
        let scrub = |m: String| m.replace(&dir.path().display().to_string(), "");
        match result {
            Ok(()) => {
                self.queue.delete(&url, &msg.receipt_handle).await?;
            }
            Err(JobFailure::Permanent(code, message)) => {
                let message = scrub(message);
                tracing::warn!(job_id = %job.id, code = code.as_str(), %message, "job failed");
                if self.fail_held(&job, JobError::new(code, message)).await? {
                    self.queue.delete(&url, &msg.receipt_handle).await?;
                }
            }
            Err(JobFailure::Retryable(reason)) => {
                tracing::warn!(job_id = %job.id, reason = %scrub(reason), "attempt failed; the job goes back to the queue");
                if job.state.is_running() {
                    self.store
                        .transition(
                            &job,
                            Transition::Requeue,
                            Some("retrying after a transient error".into()),
                        )
                        .await?;
                }
                let delay = Duration::from_secs(5 * u64::from(job.attempts.max(1)));
                self.queue.set_visibility(&url, &msg.receipt_handle, delay).await?;
            }
            Err(JobFailure::Superseded(reason)) => {
                let current = self.store.get(&job.id).await?;
                tracing::info!(job_id = %job.id, %reason, state = ?current.as_ref().map(|j| j.state), "stopped: the job changed under us");
                if current.map(|j| j.state.is_terminal()).unwrap_or(true) {
                    self.queue.delete(&url, &msg.receipt_handle).await?;
                }
            }
        }
        drop(dir);
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

    async fn attempt(&self, held: &Held, dir: &Path) -> Result<(), JobFailure> {
        let job = held.transition(Transition::StartDownload, None).await?;
        let catalog = &self.settings.config.catalog;
        let outputs: Vec<(OutputSpec, Preset)> = job
            .outputs
            .iter()
            .map(|o| {
                catalog
                    .find(&o.preset)
                    .map(|p| (o.clone(), p.clone()))
                    .ok_or_else(|| JobFailure::Permanent(JobErrorCode::UnknownPreset, catalog.unknown(&o.preset)))
            })
            .collect::<Result<_, _>>()?;

        // the source's size, from a HEAD, before a byte is downloaded
        let info = self
            .objects
            .head(&job.source.bucket, &job.source.key)
            .await?
            .ok_or_else(|| {
                JobFailure::Permanent(JobErrorCode::SourceNotFound, format!("{} does not exist", job.source))
            })?;
        self.check_room(info.size, dir)?;

        // download (streamed to disk), only the revision the job was made for
        let ext = Path::new(job.source.file_name())
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()));
        let input = dir.join(match ext {
            Some(e) => format!("source.{e}"),
            None => "source".into(),
        });
        let started = Instant::now();
        let size = self
            .objects
            .download_to_file(&job.source.bucket, &job.source.key, &input, job.source_etag.as_deref())
            .await
            .map_err(|e| match e {
                ObjectError::Io(io) if is_disk_full(&io) => self.disk_full("downloading the source"),
                other => other.into(),
            })?;
        tracing::info!(job_id = %job.id, bytes = size, secs = started.elapsed().as_secs_f64(), "source downloaded");

        // refuse playlists and scripts before FFmpeg sees them, then probe within limits
        let head = read_head(&input)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        ffmpeg::sniff(&head).map_err(|e| JobFailure::Permanent(JobErrorCode::RefusedSource, e))?;
        if ffmpeg::is_avi(&head) {
            let path = input.clone();
            let embeds =
                tokio::task::spawn_blocking(move || std::fs::File::open(path).and_then(ffmpeg::avi_embeds_files))
                    .await
                    .map_err(|e| JobFailure::Retryable(e.to_string()))?
                    .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            if embeds {
                return Err(JobFailure::Permanent(
                    JobErrorCode::RefusedSource,
                    "the source is an AVI with an embedded subtitle file (GAB2), a known way to smuggle a playlist past a media check; refused".into(),
                ));
            }
        }
        let probe = self.probe(&input, size).await?;
        ffmpeg::check_limits(&probe, &self.settings.limits)
            .map_err(|e| JobFailure::Permanent(JobErrorCode::RefusedSource, e))?;
        for (o, p) in &outputs {
            if p.needs_video() && !probe.has("video") {
                let cover = probe.streams.iter().any(|s| s.attached_pic);
                return Err(JobFailure::Permanent(
                    JobErrorCode::MissingStream,
                    format!(
                        "output {} ({}) needs video but the source has no video stream{}; use an audio preset",
                        o.name,
                        p.name,
                        if cover {
                            " (its only picture is attached cover art, which is not video)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            if p.needs_audio() && !probe.has("audio") {
                return Err(JobFailure::Permanent(
                    JobErrorCode::MissingStream,
                    format!(
                        "output {} ({}) is audio only but the source has no audio stream",
                        o.name, p.name
                    ),
                ));
            }
        }
        let mut probe = probe;
        if outputs.iter().any(|(_, p)| p.needs_video()) {
            probe.interlacing = self.interlacing(&input, &probe).await?;
        }
        held.update(|j| j.probe = Some(probe.clone())).await?;

        // watermark images, each checked to be a picture
        let mut marks: Vec<Option<PathBuf>> = Vec::new();
        for (i, (o, _)) in outputs.iter().enumerate() {
            marks.push(match &o.options.watermark {
                None => None,
                Some(w) => Some(
                    self.fetch_watermark(&w.image, &dir.join(format!("watermark-{i}")))
                        .await?,
                ),
            });
        }

        // encode, each output into its own folder
        held.transition(Transition::StartEncode, None).await?;
        let stem = job.source.output_stem();
        let n = outputs.len();
        let mut done: Vec<(usize, PathBuf, plan::Plan)> = Vec::new();
        for (i, (o, preset)) in outputs.iter().enumerate() {
            let out_dir = dir.join(format!("out-{i}"));
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let pl = plan::plan(&plan::PlanInput {
                preset,
                options: &o.options,
                probe: &probe,
                input: &input,
                watermark: marks[i].as_deref(),
                out_dir: &out_dir,
                stem: &stem,
                limits: &self.settings.limits,
            })
            .map_err(|e| JobFailure::Permanent(JobErrorCode::EncodeFailed, format!("output {}: {e}", o.name)))?;
            let passes = pl.passes.len();
            for (k, args) in pl.passes.iter().enumerate() {
                let span = pl.expected_duration.or(probe.duration_seconds);
                self.run_ffmpeg(held, &preset.name, args, span, (i * passes + k, n * passes))
                    .await?;
            }
            if let Some(layout) = &pl.sprite {
                let vtt = plan::sprite_vtt(layout, "sprite.jpg");
                tokio::fs::write(out_dir.join("sprite.vtt"), vtt)
                    .await
                    .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            }
            done.push((i, out_dir, pl));
        }

        // validate every output before anything is uploaded
        let date = job.created_at.format("%Y-%m-%d").to_string();
        let mut manifest = Vec::new();
        let mut uploads: Vec<(PathBuf, String)> = Vec::new();
        for (i, out_dir, pl) in &done {
            let (o, preset) = &outputs[*i];
            let prefix = nommer_shared::config::render_key_template(
                &self.settings.config.key_template,
                &job.id,
                &o.name,
                &preset.name,
                &stem,
                &date,
            );
            let files = list_files(out_dir).map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let entries = self
                .validate(preset, &probe, out_dir, pl, &files)
                .await
                .map_err(|m| match m {
                    JobFailure::Permanent(_, m) => {
                        JobFailure::Permanent(JobErrorCode::InvalidOutput, format!("output {}: {m}", o.name))
                    }
                    other => other,
                })?;
            for (rel, mut entry) in entries {
                entry.output = o.name.clone();
                entry.bucket = self.settings.outbox_bucket.clone();
                entry.key = format!("{prefix}{rel}");
                manifest.push(entry);
            }
            for (rel, _) in files {
                uploads.push((out_dir.join(&rel), format!("{prefix}{rel}")));
            }
        }

        // upload
        held.transition(Transition::StartUpload, None).await?;
        let total = uploads.len().max(1);
        let mut last = 0u8;
        for (k, (path, key)) in uploads.iter().enumerate() {
            self.objects
                .upload_file(&self.settings.outbox_bucket, key, path, content_type::of(key))
                .await?;
            let pct = (((k + 1) * 100) / total).min(99) as u8;
            if pct >= last.saturating_add(10) {
                last = pct;
                held.update(|j| j.progress = pct).await?;
            }
        }
        held.update(|j| j.manifest = manifest.clone()).await?;
        held.transition(Transition::Finish, None).await?;
        Ok(())
    }

    /// Checks one output's files against its plan; returns its manifest entries (with
    /// their paths relative to the output folder).
    async fn validate(
        &self,
        preset: &Preset,
        source: &Probe,
        out_dir: &Path,
        pl: &plan::Plan,
        files: &[(String, u64)],
    ) -> Result<Vec<(String, OutputFile)>, JobFailure> {
        let bad = |m: String| JobFailure::Permanent(JobErrorCode::InvalidOutput, m);
        let size_of = |rel: &str| files.iter().find(|(r, _)| r == rel).map(|(_, s)| *s).unwrap_or(0);
        let entry = |size: u64| OutputFile {
            output: String::new(),
            bucket: String::new(),
            key: String::new(),
            size,
            duration_seconds: None,
            width: None,
            height: None,
            bit_rate: None,
        };
        match &preset.kind {
            PresetKind::File { .. } => {
                let p = self.probe_own(&out_dir.join(&pl.main), size_of(&pl.main)).await?;
                check::validate_file(preset, source, pl.expected_duration, &p).map_err(bad)?;
                let video = p.streams.iter().find(|s| s.kind == "video");
                let mut e = entry(p.size);
                e.duration_seconds = p.duration_seconds;
                e.width = video.and_then(|v| v.width);
                e.height = video.and_then(|v| v.height);
                e.bit_rate = p.bit_rate;
                Ok(vec![(pl.main.clone(), e)])
            }
            PresetKind::Ladder {
                format: LadderFormat::Hls,
                ..
            } => {
                let variants = check::validate_hls(out_dir, pl).map_err(bad)?;
                let total: u64 = files.iter().map(|(_, s)| s).sum();
                let mut master = entry(total);
                master.duration_seconds = variants.first().map(|(_, d)| *d);
                let mut out = vec![(pl.main.clone(), master)];
                for (v, d) in variants {
                    let dir = v.uri.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
                    let mut e = entry(files.iter().filter(|(r, _)| r.starts_with(&dir)).map(|(_, s)| s).sum());
                    e.duration_seconds = Some(d);
                    e.width = Some(v.width);
                    e.height = Some(v.height);
                    e.bit_rate = Some(v.bandwidth);
                    out.push((v.uri, e));
                }
                Ok(out)
            }
            PresetKind::Ladder {
                format: LadderFormat::Dash,
                ..
            } => {
                let text = tokio::fs::read_to_string(out_dir.join(&pl.main))
                    .await
                    .map_err(|e| bad(format!("no MPD: {e}")))?;
                let mpd = check::parse_mpd(&text).map_err(bad)?;
                let planned: Vec<u32> = pl.rungs.iter().map(|r| r.height).collect();
                let shorts: Vec<u32> = mpd.heights.iter().zip(&mpd.widths).map(|(h, w)| *h.min(w)).collect();
                if shorts != planned {
                    return Err(bad(format!(
                        "the MPD lists representations of short side {shorts:?}, planned {planned:?}"
                    )));
                }
                let p = self.probe_own(&out_dir.join(&pl.main), 0).await?;
                if p.streams.iter().filter(|s| s.kind == "video").count() != planned.len() {
                    return Err(bad("the MPD's video representations do not all decode".into()));
                }
                let mut e = entry(files.iter().map(|(_, s)| s).sum());
                e.duration_seconds = mpd.duration_seconds;
                e.width = mpd.widths.first().copied();
                e.height = mpd.heights.first().copied();
                Ok(vec![(pl.main.clone(), e)])
            }
            PresetKind::Thumbnails(_) => {
                let images: Vec<&(String, u64)> = files.iter().filter(|(r, _)| r.ends_with(".jpg")).collect();
                if images.len() as u32 != pl.images {
                    return Err(bad(format!("{} images made, {} asked for", images.len(), pl.images)));
                }
                let mut out = Vec::new();
                for (rel, size) in images {
                    let p = self.probe_own(&out_dir.join(rel), *size).await?;
                    let v = p
                        .streams
                        .iter()
                        .find(|s| s.kind == "video")
                        .ok_or_else(|| bad(format!("{rel} is not a picture")))?;
                    let mut e = entry(*size);
                    e.width = v.width;
                    e.height = v.height;
                    out.push((rel.clone(), e));
                }
                if let Some(layout) = &pl.sprite {
                    let rows = layout.count.div_ceil(layout.columns);
                    let (w, h) = (out[0].1.width, out[0].1.height);
                    if (w, h)
                        != (
                            Some(layout.columns * layout.tile_width),
                            Some(rows * layout.tile_height),
                        )
                    {
                        return Err(bad(format!(
                            "the sprite is {w:?}x{h:?}, not {} tiles of {}x{}",
                            layout.count, layout.tile_width, layout.tile_height
                        )));
                    }
                    out.push(("sprite.vtt".to_string(), entry(size_of("sprite.vtt"))));
                }
                Ok(out)
            }
        }
    }

    /// Refuses a source over the byte limit, or one the scratch disk cannot hold with
    /// outputs of its size and the headroom, before anything is downloaded. Only a disk
    /// full of this worker's other jobs makes it a retry (another worker, or later).
    fn check_room(&self, size: u64, dir: &Path) -> Result<(), JobFailure> {
        if let Some(why) =
            nommer_shared::settings::over_source_limit("the source", size, self.settings.max_source_bytes)
        {
            return Err(JobFailure::Permanent(
                JobErrorCode::SourceTooLarge,
                format!("{why}; it was not downloaded"),
            ));
        }
        let free = free_bytes(dir)
            .map_err(|e| JobFailure::Retryable(format!("cannot read the scratch disk's free space: {e}")))?;
        let need = size
            .saturating_mul(2)
            .saturating_add(self.settings.scratch_headroom_bytes);
        tracing::info!(
            source_bytes = size,
            free_bytes = free,
            need_bytes = need,
            "scratch space checked"
        );
        if need <= free {
            return Ok(());
        }
        let reason = format!(
            "the source is {size} bytes; this worker's scratch disk ({}) has {free} bytes free and needs {need} (the source, outputs up to its size, and {} bytes of headroom: NOMMER_SCRATCH_HEADROOM_BYTES); it was not downloaded. Give workers a larger disk (NOMMER_WORK_DIR, or the launch template's volume)",
            self.settings.work_dir.display(),
            self.settings.scratch_headroom_bytes
        );
        if self.others_active() {
            Err(JobFailure::Retryable(format!(
                "{reason}; other jobs on this worker hold space now"
            )))
        } else {
            Err(JobFailure::Permanent(JobErrorCode::SourceTooLarge, reason))
        }
    }

    /// Whether jobs besides the caller's are running on this worker.
    fn others_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst) > 1
    }

    /// "No space left on device": permanent for this disk, unless this worker's other
    /// jobs are what fills it.
    fn disk_full(&self, during: &str) -> JobFailure {
        let reason = format!(
            "the worker's scratch disk ({}) filled up while {during} (No space left on device); the job needs a worker with a larger disk (NOMMER_WORK_DIR, or the launch template's volume)",
            self.settings.work_dir.display()
        );
        if self.others_active() {
            JobFailure::Retryable(format!("{reason}; other jobs on this worker hold space now"))
        } else {
            JobFailure::Permanent(JobErrorCode::DiskFull, reason)
        }
    }

    /// Downloads a watermark image and checks it is a single PNG or JPEG picture.
    async fn fetch_watermark(&self, image: &nommer_shared::S3Uri, dest: &Path) -> Result<PathBuf, JobFailure> {
        let size = self
            .objects
            .download_to_file(&image.bucket, &image.key, dest, None)
            .await
            .map_err(|e| match e {
                nommer_shared::objects::ObjectError::NotFound { .. } => JobFailure::Permanent(
                    JobErrorCode::SourceNotFound,
                    format!("watermark image {image} does not exist"),
                ),
                other => other.into(),
            })?;
        let head = read_head(dest)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        let is_png = head.starts_with(b"\x89PNG\r\n\x1a\n");
        let is_jpeg = head.starts_with(&[0xff, 0xd8, 0xff]);
        if !(is_png || is_jpeg) || size > 20 * 1024 * 1024 {
            return Err(JobFailure::Permanent(
                JobErrorCode::RefusedSource,
                format!("watermark image {image} is not a PNG or JPEG of at most 20 MB"),
            ));
        }
        let named = dest.with_extension(if is_png { "png" } else { "jpg" });
        tokio::fs::rename(dest, &named)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        Ok(named)
    }

    /// Whether the source's video is interlaced: its `field_order` when it says, else
    /// FFmpeg's `idet` on its first frames.
    async fn interlacing(
        &self,
        input: &Path,
        probe: &Probe,
    ) -> Result<Option<nommer_shared::job::Interlacing>, JobFailure> {
        let Some(video) = probe.video() else {
            return Ok(None);
        };
        if let Some(i) = ffmpeg::interlacing_from_field_order(video.field_order.as_deref()) {
            return Ok(Some(i));
        }
        let args = ffmpeg::idet_args(input, video.index, &self.settings.limits);
        tracing::info!(argv = %args.join(" "), "ffmpeg idet");
        let r = process::run(&self.settings.ffmpeg, &args, Duration::from_secs(120), |_| {}).await;
        match r {
            Ok(f) if f.success => match ffmpeg::parse_idet(&f.stderr) {
                Some(c) => Ok(Some(ffmpeg::interlacing_from_idet(c))),
                None => Err(JobFailure::Permanent(
                    JobErrorCode::InvalidMedia,
                    format!(
                        "FFmpeg's interlace detector gave no verdict on the source: {}",
                        ffmpeg::reason_from_stderr(&f.stderr)
                    ),
                )),
            },
            Ok(f) => Err(JobFailure::Permanent(
                JobErrorCode::InvalidMedia,
                format!(
                    "FFmpeg could not decode the start of the source: {}",
                    ffmpeg::reason_from_stderr(&f.stderr)
                ),
            )),
            Err(e @ process::RunError::TimedOut { .. }) => {
                Err(JobFailure::Permanent(JobErrorCode::InvalidMedia, e.to_string()))
            }
            Err(e) => Err(JobFailure::Retryable(e.to_string())),
        }
    }

    async fn probe(&self, path: &Path, size: u64) -> Result<Probe, JobFailure> {
        self.run_probe(&ffmpeg::probe_args(path, &self.settings.limits), size, "the source")
            .await
    }

    async fn probe_own(&self, path: &Path, size: u64) -> Result<Probe, JobFailure> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.run_probe(&ffmpeg::own_output_probe_args(path), size, &name).await
    }

    async fn run_probe(&self, args: &[String], size: u64, what: &str) -> Result<Probe, JobFailure> {
        let r = process::run(&self.settings.ffprobe, args, Duration::from_secs(60), |_| {}).await;
        match r {
            Ok(f) if f.success => {
                ffmpeg::parse_probe(&f.stdout, size).map_err(|e| JobFailure::Permanent(JobErrorCode::InvalidMedia, e))
            }
            Ok(f) => Err(JobFailure::Permanent(
                JobErrorCode::InvalidMedia,
                format!(
                    "ffprobe could not read {what}: {}",
                    ffmpeg::reason_from_stderr(&f.stderr)
                ),
            )),
            Err(e @ process::RunError::TimedOut { .. }) => {
                Err(JobFailure::Permanent(JobErrorCode::InvalidMedia, e.to_string()))
            }
            Err(e) => Err(JobFailure::Retryable(e.to_string())),
        }
    }

    /// Runs one FFmpeg pass, turning its `-progress` into the job's progress: step
    /// `step.0` of `step.1` for the whole job.
    async fn run_ffmpeg(
        &self,
        held: &Held,
        preset: &str,
        args: &[String],
        duration: Option<f64>,
        step: (usize, usize),
    ) -> Result<(), JobFailure> {
        tracing::info!(preset, argv = %args.join(" "), "ffmpeg");
        let (tx, mut rx) = tokio::sync::watch::channel(0u8);
        let writer = {
            let held = held.clone();
            tokio::spawn(async move {
                let mut last = 0u8;
                while rx.changed().await.is_ok() {
                    let pct = *rx.borrow_and_update();
                    if pct != last {
                        last = pct;
                        if let Err(e) = held.update(|j| j.progress = pct).await {
                            tracing::warn!(error = %e, "could not record progress");
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
            })
        };
        let started = Instant::now();
        let (index, count) = step;
        let r = process::run(&self.settings.ffmpeg, args, self.settings.encode_timeout, |tick| {
            let within = ffmpeg::percent(tick.out_time_seconds, duration) as usize;
            let overall = ((index * 100 + within) / count.max(1)).min(99) as u8;
            let _ = tx.send(overall);
        })
        .await;
        drop(tx);
        let _ = writer.await;
        match r {
            // FFmpeg 5.1 can exit 0 when the disk fills at the trailer, leaving a file
            // without its index: that is the disk's fault, not the output's
            Ok(f) if f.success && f.stderr.contains("No space left on device") => Err(self.disk_full("encoding")),
            Ok(f) if f.success => {
                tracing::info!(preset, secs = started.elapsed().as_secs_f64(), "encoded");
                Ok(())
            }
            Ok(f) => {
                let reason = format!(
                    "ffmpeg exited with {:?}: {}",
                    f.code,
                    ffmpeg::reason_from_stderr(&f.stderr)
                );
                // out of disk: this disk will not grow by trying again
                if f.stderr.contains("No space left on device") {
                    Err(self.disk_full("encoding"))
                // killed by a signal (OOM killer): the machine's fault, not the media's
                } else if f.code.is_none() {
                    Err(JobFailure::Retryable(reason))
                } else {
                    Err(JobFailure::Permanent(JobErrorCode::EncodeFailed, reason))
                }
            }
            Err(e @ process::RunError::TimedOut { .. }) => {
                Err(JobFailure::Permanent(JobErrorCode::EncodeFailed, e.to_string()))
            }
            Err(e) => Err(JobFailure::Retryable(e.to_string())),
        }
    }
}

/// Counts a job in hand for the registry; when the last one ends, the worker is idle.
struct ActiveGuard<'a>(&'a Worker);

impl<'a> ActiveGuard<'a> {
    fn new(w: &'a Worker) -> Self {
        w.active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *w.idle_since.lock().unwrap() = None;
        ActiveGuard(w)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap() = Some(Utc::now());
        }
    }
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether an I/O error is "No space left on device" (or a quota).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(libc::ENOSPC)
}

/// The first 4 KiB of a file.
async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    Ok(head)
}

/// Every file under `dir` (relative path with `/`, size), sorted; no symlinks followed.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                walk(base, &e.path(), out)?;
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .replace('\\', "/");
                // FFmpeg's two-pass logs stay on the worker
                if !rel.starts_with("ffmpeg2pass") {
                    out.push((rel, e.metadata()?.len()));
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}
