//! A chunk task: its piece fetched from scratch and read with the input guard like any
//! source, encoded into every video output at once (`nommer_core::ffmpeg::plan::chunk`),
//! each file put back in scratch for the stitch; and the audio task: the source's audio
//! encoded whole, once per output that has audio.

use crate::split::{audio_source_key, piece_key};
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::{self, plan};
use nommer_core::job::{Job, Probe};
use nommer_core::split::task::TaskName;
use nommer_core::split::{scratch_key, SplitPlan};
use std::path::Path;

/// The scratch key of a chunk's file for one output (and rung).
pub(crate) fn chunk_result_key(job_id: &str, index: u32, name: &str) -> String {
    scratch_key(job_id, &format!("chunks/{}/{name}", TaskName::Chunk(index)))
}

/// The scratch key of an output's audio.
pub(crate) fn audio_result_key(job_id: &str, output: usize) -> String {
    scratch_key(job_id, &format!("audio/a{output}.audio"))
}

impl Worker {
    /// The probe of the source the split step recorded.
    pub(crate) fn split_probe(&self, job: &Job) -> Result<Probe, JobFailure> {
        job.probe.clone().ok_or_else(|| {
            JobFailure::Permanent(
                JobErrorCode::Internal,
                "the split job has no probe of its source".into(),
            )
        })
    }

    pub(crate) async fn chunk_task(
        &self,
        job: &Job,
        split: &SplitPlan,
        index: u32,
        dir: &Path,
    ) -> Result<(), JobFailure> {
        let outputs = self.presets_of(job)?;
        let probe = self.split_probe(job)?;
        let span = *split
            .chunks
            .get(index as usize)
            .ok_or_else(|| JobFailure::Permanent(JobErrorCode::Internal, format!("the plan has no chunk {index}")))?;
        let bucket = &self.settings.outbox_bucket;
        let piece = dir.join("piece.mkv");
        let size = self
            .objects
            .download_to_file(bucket, &piece_key(&job.id, index), &piece, None)
            .await
            .map_err(|e| match e {
                // scratch expires (or was deleted): no retry brings it back
                nommer_aws::objects::ObjectError::NotFound { .. } => JobFailure::Permanent(
                    JobErrorCode::Internal,
                    "its piece of the source is missing from scratch (expired or deleted); submit the job again".into(),
                ),
                other => other.into(),
            })?;
        // the piece is read as warily as the source it came from
        let seen = self.prober.probe_file(&piece, size).await?;
        ffmpeg::check_limits(&seen, &self.settings.limits)
            .map_err(|e| JobFailure::Permanent(JobErrorCode::RefusedSource, e))?;
        let out_dir = dir.join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        let cp = plan::chunk(&plan::ChunkInput {
            outputs: &outputs,
            probe: &probe,
            piece: &piece,
            span,
            origin: split.origin,
            first: index == 0,
            last: index as usize + 1 == split.chunks.len(),
            segment: split.segment_seconds,
            out_dir: &out_dir,
            limits: &self.settings.limits,
        })
        .map_err(|e| JobFailure::Permanent(e.code(), e.to_string()))?;
        tracing::info!(job_id = %job.id, chunk = index, argv = %cp.argv.join(" "), "ffmpeg chunk");
        self.encoder
            .encode(&cp.argv, |_| {})
            .await
            .map_err(|e| self.encode_failure(e, "encoding a chunk"))?;
        for f in &cp.files {
            let path = out_dir.join(&f.name);
            let made = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
            if made == 0 {
                return Err(JobFailure::Permanent(
                    JobErrorCode::EncodeFailed,
                    format!("FFmpeg made no {} for this chunk", f.name),
                ));
            }
            self.objects
                .upload_file(bucket, &chunk_result_key(&job.id, index, &f.name), &path, "video/mp4")
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn audio_task(&self, job: &Job, _split: &SplitPlan, dir: &Path) -> Result<(), JobFailure> {
        let outputs = self.presets_of(job)?;
        let bucket = &self.settings.outbox_bucket;
        let source = dir.join("audio-source.mka");
        self.objects
            .download_to_file(bucket, &audio_source_key(&job.id), &source, None)
            .await?;
        for (i, out) in outputs.iter().enumerate() {
            let encoded = dir.join(format!("a{i}.audio"));
            let Some(argv) = plan::audio_plan(out, &source, &encoded, &self.settings.limits) else {
                continue;
            };
            self.encoder
                .encode(&argv, |_| {})
                .await
                .map_err(|e| self.encode_failure(e, "encoding the audio"))?;
            self.objects
                .upload_file(
                    bucket,
                    &audio_result_key(&job.id, i),
                    &encoded,
                    "application/octet-stream",
                )
                .await?;
        }
        Ok(())
    }
}
