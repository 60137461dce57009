//! The stitch task: every output's chunk files and its audio fetched from scratch,
//! joined without re-encoding (`nommer_core::ffmpeg::plan::stitch`), then checked,
//! uploaded and the job completed exactly as an unchunked job is (`Worker::deliver`);
//! the scratch prefix is emptied after.

use crate::chunk::{audio_result_key, chunk_result_key};
use crate::encode::Encoded;
use crate::held::Held;
use crate::source::Prepared;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::plan;
use nommer_core::job::{Job, OutputSpec, Probe};
use nommer_core::ports::JobStore as _;
use nommer_core::presets::{ladder_for, short_side, Preset, PresetKind};
use nommer_core::split::{scratch_key, Span, SplitPlan};
use std::path::{Path, PathBuf};

impl Worker {
    pub(crate) async fn stitch_task(
        &self,
        job: &Job,
        split: &SplitPlan,
        message_id: &str,
        dir: &Path,
    ) -> Result<(), JobFailure> {
        // the job as it is now: the last chunks' progress writes came after it was read
        let job = self.store.require(&job.id).await?;
        let outputs = self.presets_of(&job)?;
        let probe = self.split_probe(&job)?;
        let held = Held::new(
            job.clone(),
            self.store.clone(),
            self.settings.worker_id.clone(),
            message_id.to_string(),
        );
        let stem = job.source.output_stem();
        let parts = dir.join("parts");
        tokio::fs::create_dir_all(&parts)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        let mut encoded = Vec::new();
        for (i, out) in outputs.iter().enumerate() {
            let out_dir = dir.join(format!("out-{i}"));
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let lists = self.fetch_renditions(&job, split, i, out, &probe, &parts).await?;
            let audio = match split.audio && out.1.makes_audio() {
                true => {
                    let path = parts.join(format!("a{i}.audio"));
                    self.objects
                        .download_to_file(&self.settings.outbox_bucket, &audio_result_key(&job.id, i), &path, None)
                        .await?;
                    Some((path, split.audio_offset))
                }
                false => None,
            };
            let argv = plan::stitch(&plan::StitchInput {
                output: out,
                probe: &probe,
                lists,
                audio,
                out_dir: &out_dir,
                stem: &stem,
            })
            .map_err(|e| JobFailure::Permanent(e.code(), e.to_string()))?;
            tracing::info!(job_id = %job.id, output = %out.0.name, argv = %argv.join(" "), "ffmpeg stitch");
            self.encoder
                .encode(&argv, |_| {})
                .await
                .map_err(|e| self.encode_failure(e, "stitching the chunks"))?;
            // what an unchunked encode of this output would be: its main file, its
            // rungs and its duration, which the check holds the stitched one to
            let expected = plan::plan(&plan::PlanInput {
                preset: &out.1,
                options: &out.0.options,
                probe: &probe,
                input: &dir.join("source"),
                watermark: None,
                out_dir: &out_dir,
                stem: &stem,
                limits: &self.settings.limits,
            })
            .map_err(|e| JobFailure::Permanent(e.code(), e.to_string()))?;
            encoded.push(Encoded {
                index: i,
                dir: out_dir,
                plan: expected,
            });
            let pct = (90 + (i + 1) * 9 / outputs.len()).min(99) as u8;
            held.update(|j| j.progress = pct).await?;
        }
        let n = outputs.len();
        let prepared = Prepared {
            outputs,
            input: dir.join("source"),
            probe,
            marks: vec![None; n],
            stem,
        };
        self.deliver(&held, &job, &prepared, &encoded, Default::default())
            .await?;
        self.clear_scratch(&job.id).await;
        Ok(())
    }

    /// Fetches one output's chunk files, a rendition at a time, and writes each
    /// rendition's concat list; returns the lists (one for a file, one per rung).
    async fn fetch_renditions(
        &self,
        job: &Job,
        split: &SplitPlan,
        i: usize,
        out: &(OutputSpec, Preset),
        probe: &Probe,
        parts: &Path,
    ) -> Result<Vec<PathBuf>, JobFailure> {
        let renditions: Vec<Option<usize>> = match &out.1.kind {
            PresetKind::Ladder { rungs, .. } => {
                let short = short_side(probe).unwrap_or(0);
                (0..ladder_for(rungs, short).len()).map(Some).collect()
            }
            _ => vec![None],
        };
        let mut lists = Vec::new();
        for r in renditions {
            let file = plan::chunk_file_name(i, r);
            let mut files: Vec<(String, Span)> = Vec::new();
            for (k, span) in split.chunks.iter().enumerate() {
                let name = format!("c{k:05}-{file}");
                self.objects
                    .download_to_file(
                        &self.settings.outbox_bucket,
                        &chunk_result_key(&job.id, k as u32, &file),
                        &parts.join(&name),
                        None,
                    )
                    .await
                    .map_err(|e| match e {
                        nommer_aws::objects::ObjectError::NotFound { .. } => JobFailure::Permanent(
                            JobErrorCode::Internal,
                            format!("chunk {k}'s {file} is missing from scratch"),
                        ),
                        other => other.into(),
                    })?;
                files.push((name, *span));
            }
            let list = parts.join(format!("list-{}.txt", file.trim_end_matches(".mp4")));
            tokio::fs::write(&list, plan::concat_list(&files))
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            lists.push(list);
        }
        Ok(lists)
    }

    /// Deletes the job's scratch objects (best effort: the prefix's lifecycle rule
    /// expires what is left).
    async fn clear_scratch(&self, job_id: &str) {
        let bucket = &self.settings.outbox_bucket;
        match self.objects.list(bucket, &scratch_key(job_id, "")).await {
            Ok(keys) => {
                for (key, _) in keys {
                    if let Err(e) = self.objects.delete_object(bucket, &key).await {
                        tracing::warn!(job_id, key, error = %e, "could not delete a scratch object");
                    }
                }
            }
            Err(e) => tracing::warn!(job_id, error = %e, "could not list the scratch objects"),
        }
    }
}
