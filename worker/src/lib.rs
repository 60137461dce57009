//! The FFmpeg worker: long-polls the work queue, and for each job downloads the source,
//! probes it, encodes every output with FFmpeg, uploads the results and completes the
//! job, extending the message's visibility all the while. The message is deleted only
//! once the job is terminal.
//!
//! The worker is a loop ([`Worker::run`], `slots.rs`) around one public step,
//! [`Worker::try_execute_task`]: one message, triaged and run (`message.rs`) as one
//! attempt (`attempt.rs`: the source in `source.rs`, the encode in `encode.rs`, the
//! output check in `outputs.rs`, the disk in `disk.rs`), the job held and heartbeaten in
//! `held.rs`. FFmpeg and ffprobe run through `nommer_media`.

mod attempt;
mod chunk;
mod disk;
mod encode;
mod failure;
mod held;
pub mod imds;
mod message;
mod outputs;
mod per_title;
mod quality;
mod slots;
mod source;
mod split;
mod stitch;
mod target;
mod tasks;

pub use failure::JobFailure;

use chrono::Utc;
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::registry::DynamoWorkerRegistry;
use nommer_aws::store::DynamoJobStore;
use nommer_aws::tasks::DynamoTaskStore;
use nommer_core::settings::WorkerSettings;
use nommer_media::{runner, FfmpegEncoder, FfprobeProber, RunError};
use std::time::Duration;

/// What one step of the loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A message was handled (whatever became of its job).
    Done,
    /// The queue was empty.
    Empty,
}

pub struct Worker {
    pub settings: WorkerSettings,
    pub store: DynamoJobStore,
    pub objects: S3ObjectStore,
    pub queue: SqsQueue,
    pub registry: DynamoWorkerRegistry,
    /// Split jobs' tasks.
    pub tasks: DynamoTaskStore,
    /// ffprobe on sources and outputs, and `idet`.
    pub prober: FfprobeProber,
    /// FFmpeg's encode passes.
    pub encoder: FfmpegEncoder,
    /// The message and job in hand, to give back at shutdown.
    current: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// The task messages in hand (receipt → job and task), to give back at shutdown.
    current_tasks: std::sync::Mutex<std::collections::HashMap<String, (String, nommer_core::split::task::TaskName)>>,
    /// Which queue a slot tries first, in turn.
    turn: std::sync::atomic::AtomicUsize,
    active: std::sync::atomic::AtomicU32,
    draining: std::sync::atomic::AtomicBool,
    idle_since: std::sync::Mutex<Option<chrono::DateTime<Utc>>>,
    started_at: chrono::DateTime<Utc>,
    /// What the scoring FFmpeg can score with, read at start.
    caps: std::sync::OnceLock<nommer_core::quality::Capabilities>,
}

impl Worker {
    pub fn new(settings: WorkerSettings, config: &aws_config::SdkConfig) -> Self {
        Worker {
            store: DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            objects: S3ObjectStore::new(nommer_aws::sdk::s3_client(config)),
            queue: SqsQueue::new(nommer_aws::sdk::sqs_client(config)),
            registry: DynamoWorkerRegistry::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            tasks: DynamoTaskStore::new(nommer_aws::sdk::dynamodb_client(config), &settings.table),
            prober: FfprobeProber::new(&settings.ffprobe, &settings.ffmpeg, settings.limits.clone()),
            encoder: FfmpegEncoder::new(&settings.ffmpeg, settings.encode_timeout),
            settings,
            current: std::sync::Mutex::new(Default::default()),
            current_tasks: std::sync::Mutex::new(Default::default()),
            turn: Default::default(),
            active: Default::default(),
            draining: Default::default(),
            idle_since: std::sync::Mutex::new(Some(Utc::now())),
            started_at: Utc::now(),
            caps: std::sync::OnceLock::new(),
        }
    }

    /// Checks that FFmpeg and ffprobe run, so a misconfigured worker stops at start
    /// instead of failing every job it takes.
    pub async fn preflight(&self) -> anyhow::Result<()> {
        for program in [&self.settings.ffmpeg, &self.settings.ffprobe] {
            let out = runner::run(program, &["-version".into()], Duration::from_secs(30), |_| {})
                .await
                .map_err(|e| match e {
                    RunError::Spawn { source, .. } => anyhow::anyhow!("cannot run {program}: {source}; install FFmpeg (apt-get install ffmpeg) or set NOMMER_FFMPEG/NOMMER_FFPROBE"),
                    other => other.into(),
                })?;
            anyhow::ensure!(out.success, "{program} -version failed: {}", out.stderr);
            tracing::info!(program = %program, version = %out.stdout.lines().next().unwrap_or(""), "using");
        }
        let caps = quality::capabilities(&self.settings.score_ffmpeg).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the filters of {} (NOMMER_SCORE_FFMPEG): {e}",
                self.settings.score_ffmpeg
            )
        })?;
        if !caps.libvmaf {
            tracing::warn!(ffmpeg = %self.settings.score_ffmpeg, "no libvmaf: quality scores will be PSNR and SSIM only; set NOMMER_SCORE_FFMPEG to an FFmpeg built with libvmaf");
        }
        tracing::info!(ffmpeg = %self.settings.score_ffmpeg, ?caps, "scoring with");
        let _ = self.caps.set(caps);
        std::fs::create_dir_all(&self.settings.work_dir)
            .map_err(|e| anyhow::anyhow!("work dir {}: {e}", self.settings.work_dir.display()))?;
        Ok(())
    }

    /// Receives at most one message and handles it: from the work queue and the chunks
    /// queue in turn, so a long job's chunks and short jobs share the fleet fairly.
    pub async fn try_execute_task(&self) -> anyhow::Result<Outcome> {
        let work = self.settings.work_queue_url.as_str();
        let queues: Vec<&str> = match self.settings.chunk_queue_url.as_deref() {
            None => vec![work],
            Some(chunks) if self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 0 => vec![work, chunks],
            Some(chunks) => vec![chunks, work],
        };
        for (k, url) in queues.iter().enumerate() {
            // only the last queue tried waits for a message
            let wait = if k + 1 == queues.len() {
                self.settings.poll_wait
            } else {
                Duration::ZERO
            };
            let messages = self
                .queue
                .receive(url, 1, wait, Some(self.settings.visibility_timeout))
                .await?;
            let Some(msg) = messages.into_iter().next() else {
                continue;
            };
            let span = tracing::info_span!("message", message_id = %msg.message_id, receive_count = msg.receive_count);
            let handled = if *url == work {
                tracing::Instrument::instrument(self.handle_message(&msg), span).await
            } else {
                tracing::Instrument::instrument(self.handle_task_message(&msg), span).await
            };
            if let Err(e) = handled {
                // the message comes back after its visibility timeout; pause before the next
                tracing::error!(message_id = %msg.message_id, error = %e, "handling the message failed; it will be retried");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            return Ok(Outcome::Done);
        }
        Ok(Outcome::Empty)
    }
}
