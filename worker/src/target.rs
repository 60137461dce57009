//! A quality target for files (`target_vmaf` in a file preset's video, as `mp4-auto`):
//! before the encode, the source is sampled as for a per-title ladder, the samples are
//! encoded by the output's own plan at one CRF after another
//! (`nommer_core::target_vmaf::Search` picks them), each trial is scored against the
//! samples with libvmaf, and the highest CRF reaching the target is the one the file is
//! encoded at, once. The file is then scored whole, and the job records the trials,
//! the choice and the VMAF as made (`target_vmaf`).

use crate::source::Prepared;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::plan;
use nommer_core::job::OutputOptions;
use nommer_core::presets::{Preset, PresetKind, VideoSpec};
use nommer_core::quality::{round3, Quality};
use nommer_core::target_vmaf::{Record, Search, Trial, SAMPLES};
use std::path::Path;
use std::time::Instant;

impl Worker {
    /// Finds the CRF of every `target_vmaf` file among the outputs; the output is then
    /// encoded at it and scored. An output given its own `crf` or `video_bitrate_kbps`
    /// keeps it (and is not searched). Returns what each search found.
    pub(crate) async fn search_crfs(&self, prepared: &mut Prepared, dir: &Path) -> Result<Vec<Record>, JobFailure> {
        let mut records = Vec::new();
        for i in 0..prepared.outputs.len() {
            let (o, preset) = &prepared.outputs[i];
            let PresetKind::File { video: Some(v), .. } = &preset.kind else {
                continue;
            };
            let Some(search) = v.crf_search() else { continue };
            // an output naming its own rate keeps it (libvmaf was checked before the download)
            if !nommer_core::capability::needs_vmaf(preset, &o.options) {
                tracing::info!(output = %o.name, "the output names its own rate: no CRF search");
                continue;
            }
            let work = dir.join(format!("target-{i}"));
            tokio::fs::create_dir_all(&work)
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let (name, options, preset) = (o.name.clone(), o.options.clone(), preset.clone());
            let record = self
                .search_one(prepared, &name, &options, &preset, &search, &work)
                .await?;
            tokio::fs::remove_dir_all(&work).await.ok();
            tracing::info!(output = %name, crf = record.crf, trials = ?record.trials, reached = record.reached, secs = record.seconds, "CRF found for the VMAF target");
            let (o, _) = &mut prepared.outputs[i];
            o.options.crf = Some(record.crf);
            // scored whole, for the measured VMAF beside the predicted
            o.options.quality = Some(true);
            records.push(record);
        }
        Ok(records)
    }

    async fn search_one(
        &self,
        prepared: &Prepared,
        output: &str,
        options: &OutputOptions,
        preset: &Preset,
        search: &Search,
        work: &Path,
    ) -> Result<Record, JobFailure> {
        let started = Instant::now();
        let (spans, samples, sprobe) = self.sample(prepared, output, options, SAMPLES, work).await?;
        // the trials: the output's own plan on the samples, one pass, at each CRF
        let trial_options = crate::per_title::trial_options(options);
        let mut tried: Vec<Trial> = Vec::new();
        while let Some(crf) = search.next(&tried) {
            let trial = at_crf(preset, crf);
            let stem = format!("crf-{crf}");
            let inp = plan::PlanInput {
                preset: &trial,
                options: &trial_options,
                probe: &sprobe,
                input: &samples,
                watermark: None,
                out_dir: work,
                stem: &stem,
                limits: &self.settings.limits,
            };
            let p = plan::plan(&inp).map_err(|e| JobFailure::Permanent(JobErrorCode::EncodeFailed, e.to_string()))?;
            for pass in &p.passes {
                self.encoder
                    .encode(pass, |_| {})
                    .await
                    .map_err(|e| self.encode_failure(e, "a CRF trial encode"))?;
            }
            let vmaf = self
                .trial_vmaf(&work.join(&p.main), &samples, &sprobe, &trial_options)
                .await?;
            tried.push(Trial {
                crf,
                vmaf: round3(vmaf),
            });
        }
        let (chosen, reached) = search
            .chosen(&tried)
            .ok_or_else(|| JobFailure::Permanent(JobErrorCode::EncodeFailed, "the CRF search made no trial".into()))?;
        Ok(Record {
            output: output.to_string(),
            target_vmaf: search.target_vmaf,
            tolerance: search.tolerance,
            crf_range: [search.crf_min, search.crf_max],
            samples: spans.len() as u32,
            sample_seconds: round3(spans.iter().map(|s| s.1).sum()),
            trials: tried.clone(),
            crf: chosen.crf,
            predicted_vmaf: chosen.vmaf,
            reached,
            measured_vmaf: None,
            seconds: round3(started.elapsed().as_secs_f64()),
        })
    }
}

/// The preset with its video at `crf` and no target (a plain file preset).
fn at_crf(preset: &Preset, crf: u8) -> Preset {
    let mut p = preset.clone();
    if let PresetKind::File { video: Some(v), .. } = &mut p.kind {
        *v = VideoSpec {
            crf,
            target_vmaf: None,
            vmaf_tolerance: None,
            crf_range: None,
            ..v.clone()
        };
    }
    p
}

/// Each searched file's VMAF as made, from the scores of the whole encode.
pub(crate) fn measured(records: &mut [Record], scores: &[Quality]) {
    for r in records.iter_mut() {
        r.measured_vmaf = scores
            .iter()
            .find(|q| q.output == r.output && q.rendition.is_none())
            .and_then(|q| q.scores.vmaf.as_ref())
            .map(|v| v.mean);
    }
}
