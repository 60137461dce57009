//! The split step of a long job (see `nommer_core::split`): the source's keyframes read,
//! the cuts chosen, each chunk's piece cut by stream copy and the audio taken out whole,
//! all put in the job's scratch prefix; then the plan recorded on the job, its tasks
//! created and their messages sent to the chunks queue, and the job moved to
//! `encoding`. Run again after a lost worker, it finds the same cuts, rewrites the same
//! objects and keeps the tasks the first run made.

use crate::held::Held;
use crate::source::Prepared;
use crate::{JobFailure, Worker};
use chrono::Utc;
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::split as sx;
use nommer_core::job::{Job, StreamKind};
use nommer_core::split::task::{SplitTask, TaskMessage, TaskName, TaskState};
use nommer_core::split::{cuts, scratch_key, Shape, SplitPlan, SplitSettings};
use nommer_core::Transition;
use nommer_media::runner;
use std::path::Path;
use std::time::Duration;

/// How long reading a source's packets may take.
const KEYFRAMES_TIMEOUT: Duration = Duration::from_secs(900);
/// How far either side of a cut's target scene changes are looked for (seconds).
const SCENE_WINDOW: f64 = 2.0;

/// The scratch key of a chunk's piece.
pub(crate) fn piece_key(job_id: &str, index: u32) -> String {
    scratch_key(job_id, &format!("pieces/{}.mkv", TaskName::Chunk(index)))
}

/// The scratch key of the source's audio, taken out whole.
pub(crate) fn audio_source_key(job_id: &str) -> String {
    scratch_key(job_id, "audio/source.mka")
}

/// What came of trying to split.
pub(crate) enum Split {
    /// The job is split: its tasks carry it now.
    Handed,
    /// It is encoded whole after all (why, for the log).
    Whole(String),
}

impl Worker {
    /// The split settings of the job's backend, when this worker can split at all.
    fn split_settings(&self, job: &Job) -> Option<SplitSettings> {
        self.settings.chunk_queue_url.as_ref()?;
        let routing = &self.settings.config.routing;
        let backend = job.backend.as_deref().unwrap_or(&routing.default);
        routing.backend(backend).and_then(|b| b.split)
    }

    /// Whether this job is split, and how.
    pub(crate) fn split_shape(&self, job: &Job, prepared: &Prepared) -> Result<Shape, String> {
        if let Some(plan) = &job.split {
            // split by an earlier attempt: its tasks (some perhaps done) carry on
            return Ok(Shape {
                chunk_seconds: plan.chunk_seconds,
                segment_seconds: plan.segment_seconds,
            });
        }
        let settings = self
            .split_settings(job)
            .ok_or_else(|| "the backend does not split, or there is no chunks queue".to_string())?;
        if let Some((o, _)) = prepared.outputs.iter().find(|(o, p)| self.wants_quality(o, p)) {
            return Err(format!(
                "output {}: a scored output is encoded whole (it is scored against the whole source)",
                o.name
            ));
        }
        nommer_core::split::shape(&prepared.outputs, &prepared.probe, &settings).map_err(|w| w.to_string())
    }

    /// Splits the job (held, `downloading`, its source in `prepared`).
    pub(crate) async fn split(
        &self,
        held: &Held,
        job: &Job,
        prepared: &Prepared,
        shape: Shape,
        dir: &Path,
    ) -> Result<Split, JobFailure> {
        let probe = &prepared.probe;
        let video = probe
            .video()
            .ok_or_else(|| JobFailure::Permanent(JobErrorCode::MissingStream, "the source has no video".into()))?;
        let limits = &self.settings.limits;
        let keys = self
            .ffprobe(&sx::keyframe_args(&prepared.input, video.index, limits))
            .await?;
        let keys = sx::parse_keyframes(&keys);
        let plan = match job.split.clone() {
            // a re-run (its splitter lost) keeps the plan the first run recorded: the
            // chunks already done were cut by it, and scene detection is best effort
            Some(plan) => plan,
            None => match self.plan(prepared, video.index, &keys, &shape).await? {
                Some(plan) => plan,
                None => {
                    return Ok(Split::Whole(format!(
                        "the source has no keyframe to cut at near a {} s chunk",
                        shape.chunk_seconds
                    )))
                }
            },
        };
        // the plan and its tasks first, then each piece's message as soon as the piece
        // is in scratch: chunks are encoded while the rest of the source is still cut.
        // The audio goes out second, after the first chunk: it is one long task, and
        // sent last it ran alone at the end while every other worker waited for it
        let done = self.open_tasks(held, job, &plan).await?;
        let n = plan.chunks.len();
        for k in 0..n {
            if k == 1 && plan.audio && !done.contains(&TaskName::Audio) {
                self.extract_audio(job, prepared, dir).await?;
                self.send_task(&job.id, TaskName::Audio).await?;
            }
            if !done.contains(&TaskName::Chunk(k as u32)) {
                let to = (k + 1 < n)
                    .then(|| cuts::piece_end(&keys.times, plan.chunks[k].end).map(|t| plan.origin + t))
                    .flatten();
                self.cut_piece(
                    job,
                    prepared,
                    video.index,
                    plan.origin + plan.chunks[k].start,
                    to,
                    k,
                    dir,
                )
                .await?;
                self.send_task(&job.id, TaskName::Chunk(k as u32)).await?;
            }
            let pct = ((k + 1) * 100 / (n + 1)).min(99) as u8;
            if pct > held.snapshot().await.progress {
                held.update(|j| j.progress = pct).await?;
            }
        }
        held.transition(
            Transition::StartEncode,
            Some(format!("split into {n} chunks across the fleet")),
        )
        .await?;
        tracing::info!(job_id = %job.id, chunks = n, "job split; its tasks are on the chunks queue");
        // the chunks that ran during the split: their share as the progress, and the
        // stitch sent if they are all in already (theirs was refused while splitting)
        let tasks = self
            .tasks
            .all(&job.id, &nommer_core::split::task::task_names(&plan))
            .await?;
        let pct = nommer_core::split::task::progress(&tasks);
        if pct > 0 {
            held.update(|j| j.progress = pct).await?;
        }
        self.stitch_if_ready(&job.id, &tasks).await?;
        Ok(Split::Handed)
    }

    /// The cuts for a first split, at keyframes near each multiple of the chunk length
    /// (scene changes preferred); `None` when there are not two chunks to make.
    async fn plan(
        &self,
        prepared: &Prepared,
        index: u32,
        keys: &sx::Keyframes,
        shape: &Shape,
    ) -> Result<Option<SplitPlan>, JobFailure> {
        let duration = prepared.probe.duration_seconds.unwrap_or_default();
        let scenes = self
            .scenes_near_cuts(&prepared.input, index, keys.start, duration, shape.chunk_seconds)
            .await;
        let spans = cuts::cut(&keys.times, duration, shape.chunk_seconds, &scenes);
        if spans.len() < 2 {
            return Ok(None);
        }
        let audio = self.audio_start(prepared, keys.start).await?;
        Ok(Some(SplitPlan {
            chunk_seconds: shape.chunk_seconds,
            segment_seconds: shape.segment_seconds,
            chunks: spans,
            audio: audio.is_some(),
            origin: keys.start,
            audio_offset: audio.unwrap_or_default(),
        }))
    }

    /// Cuts chunk `k`'s piece (from the keyframe at `from` to `to`, absolute seconds) and
    /// puts it in scratch.
    #[allow(clippy::too_many_arguments)]
    async fn cut_piece(
        &self,
        job: &Job,
        prepared: &Prepared,
        index: u32,
        from: f64,
        to: Option<f64>,
        k: usize,
        dir: &Path,
    ) -> Result<(), JobFailure> {
        let piece = dir.join(format!("piece-{k}.mkv"));
        let args = sx::piece_args(&prepared.input, index, from, to, &piece, &self.settings.limits);
        self.encoder
            .encode(&args, |_| {})
            .await
            .map_err(|e| self.encode_failure(e, "cutting the source into chunks"))?;
        self.objects
            .upload_file(
                &self.settings.outbox_bucket,
                &piece_key(&job.id, k as u32),
                &piece,
                "video/x-matroska",
            )
            .await?;
        tokio::fs::remove_file(&piece).await.ok();
        Ok(())
    }

    /// Scene changes (media seconds) a little either side of each cut's target, where a
    /// cut is best placed: only those windows are decoded, a few percent of the source.
    /// Best effort: without them the cuts go to the nearest keyframes.
    async fn scenes_near_cuts(&self, input: &Path, index: u32, origin: f64, duration: f64, target: f64) -> Vec<f64> {
        let reach = SCENE_WINDOW.min(target / 4.0);
        let mut scenes = Vec::new();
        let mut goal = target;
        while goal < duration - target / 2.0 {
            let args = sx::scene_args(input, index, origin + goal - reach, 2.0 * reach, &self.settings.limits);
            match runner::run(&self.settings.ffmpeg, &args, KEYFRAMES_TIMEOUT, |_| {}).await {
                Ok(f) if f.success => scenes.extend(sx::parse_scenes(&f.stderr).into_iter().map(|t| t - origin)),
                Ok(f) => {
                    tracing::warn!(reason = %nommer_core::ffmpeg::reason_from_stderr(&f.stderr), "scene detection failed; cutting at keyframes")
                }
                Err(e) => tracing::warn!(error = %e, "scene detection failed; cutting at keyframes"),
            }
            goal += target;
        }
        scenes
    }

    /// Where the source's audio starts in media time, when an output wants it (`None`:
    /// no audio task).
    async fn audio_start(&self, prepared: &Prepared, origin: f64) -> Result<Option<f64>, JobFailure> {
        let wants = prepared.outputs.iter().any(|(_, p)| p.makes_audio());
        let Some(stream) = prepared.probe.streams.iter().find(|s| s.kind == StreamKind::Audio) else {
            return Ok(None);
        };
        if !wants {
            return Ok(None);
        }
        let starts = sx::parse_stream_starts(
            &self
                .ffprobe(&sx::stream_start_args(&prepared.input, &self.settings.limits))
                .await?,
        );
        let start = starts
            .iter()
            .find(|(i, _)| *i == stream.index)
            .map(|(_, t)| *t)
            .unwrap_or(origin);
        Ok(Some(start - origin))
    }

    /// Takes the source's (first) audio stream out whole into scratch.
    async fn extract_audio(&self, job: &Job, prepared: &Prepared, dir: &Path) -> Result<(), JobFailure> {
        let Some(stream) = prepared.probe.streams.iter().find(|s| s.kind == StreamKind::Audio) else {
            return Ok(());
        };
        let out = dir.join("audio.mka");
        self.encoder
            .encode(
                &sx::audio_args(&prepared.input, stream.index, &out, &self.settings.limits),
                |_| {},
            )
            .await
            .map_err(|e| self.encode_failure(e, "taking the audio out"))?;
        self.objects
            .upload_file(
                &self.settings.outbox_bucket,
                &audio_source_key(&job.id),
                &out,
                "audio/x-matroska",
            )
            .await?;
        tokio::fs::remove_file(&out).await.ok();
        Ok(())
    }

    /// Records the plan on the job and creates its tasks (keeping those a lost run
    /// made); returns the tasks already done, whose pieces need no cutting again.
    async fn open_tasks(&self, held: &Held, job: &Job, plan: &SplitPlan) -> Result<Vec<TaskName>, JobFailure> {
        let now = Utc::now();
        let duration: f64 = plan.seconds();
        let names = nommer_core::split::task::task_names(plan);
        let tasks: Vec<SplitTask> = names
            .iter()
            .map(|&name| {
                let seconds = match name {
                    TaskName::Chunk(i) => plan.chunks[i as usize].seconds(),
                    TaskName::Audio => duration,
                    TaskName::Stitch => 0.0,
                };
                SplitTask::new(&job.id, name, seconds, now)
            })
            .collect();
        self.tasks.create_missing(&tasks).await?;
        held.update(|j| j.split = Some(plan.clone())).await?;
        let stored = self.tasks.all(&job.id, &names).await?;
        Ok(stored
            .into_iter()
            .filter(|t| t.state == TaskState::Done)
            .map(|t| t.name)
            .collect())
    }

    /// Sends a task's message to the chunks queue.
    pub(crate) async fn send_task(&self, job_id: &str, task: TaskName) -> Result<(), JobFailure> {
        let url = self
            .settings
            .chunk_queue_url
            .as_deref()
            .ok_or_else(|| JobFailure::Retryable("no chunks queue".into()))?;
        let body = TaskMessage {
            job_id: job_id.to_string(),
            task,
        }
        .to_body();
        self.queue
            .send(url, &body)
            .await
            .map(|_| ())
            .map_err(|e| JobFailure::Retryable(e.to_string()))
    }

    /// Runs ffprobe for its output.
    async fn ffprobe(&self, args: &[String]) -> Result<String, JobFailure> {
        match runner::run(&self.settings.ffprobe, args, KEYFRAMES_TIMEOUT, |_| {}).await {
            Ok(f) if f.success => Ok(f.stdout),
            Ok(f) => Err(JobFailure::Permanent(
                JobErrorCode::InvalidMedia,
                format!(
                    "ffprobe could not read the source's packets: {}",
                    nommer_core::ffmpeg::reason_from_stderr(&f.stderr)
                ),
            )),
            Err(e) => Err(JobFailure::Retryable(e.to_string())),
        }
    }
}
