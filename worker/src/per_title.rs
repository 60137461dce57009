//! Per-title ladders (`hls-auto`, `dash-auto`, or any ladder preset with `per_title`):
//! before the encode, the source is sampled (a few short excerpts spread over it, cut
//! into one lossless file), each rung that fits the source is tried at a few rates from
//! one decode, each trial is scored against the samples with libvmaf, and a fit of VMAF
//! against the rate gives each rung the rate for its target within its bounds
//! (`nommer_core::per_title::choose`, which also drops rungs that would look no better
//! than the rung below). The ladder is then encoded at those rates and scored whole, and
//! the job records what was measured and chosen (`per_title`).

use crate::source::Prepared;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::plan::{self, Trial};
use nommer_core::ffmpeg::quality as fq;
use nommer_core::job::{OutputOptions, OutputSpec};
use nommer_core::per_title::{choose, Fit, Goal, PerTitle, Probe as TrialScore, Record, RungTarget};
use nommer_core::presets::{ladder_for, short_side, Preset, PresetKind, Rung, VideoCodec};
use nommer_core::quality::Quality;
use std::path::Path;
use std::time::Instant;

impl Worker {
    /// Shapes every per-title ladder among the outputs for this source: its rungs get
    /// the rates chosen and it is scored after the encode. Returns what each found.
    pub(crate) async fn shape_ladders(&self, prepared: &mut Prepared, dir: &Path) -> Result<Vec<Record>, JobFailure> {
        let mut records = Vec::new();
        for i in 0..prepared.outputs.len() {
            let (o, preset) = &prepared.outputs[i];
            let PresetKind::Ladder {
                codec,
                rungs,
                segment_seconds,
                per_title: Some(pt),
                ..
            } = &preset.kind
            else {
                continue;
            };
            // libvmaf was checked before the download (`able_to_score`)
            let work = dir.join(format!("per-title-{i}"));
            tokio::fs::create_dir_all(&work)
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let ladder = preset.clone();
            let (chosen, record) = self
                .shape_one(
                    prepared,
                    &ladder,
                    &o.name,
                    &o.options,
                    *codec,
                    rungs,
                    *segment_seconds,
                    pt,
                    &work,
                )
                .await?;
            tokio::fs::remove_dir_all(&work).await.ok();
            tracing::info!(output = %o.name, rungs = ?record.rungs, dropped = ?record.dropped, complexity_bpp = record.complexity_bpp, secs = record.seconds, "ladder shaped for the title");
            let (o, preset) = &mut prepared.outputs[i];
            if let PresetKind::Ladder { rungs, per_title, .. } = &mut preset.kind {
                *rungs = chosen;
                *per_title = None;
            }
            // the rungs as made are scored whole, for the measured VMAF beside the predicted
            o.options.quality = Some(true);
            records.push(record);
        }
        Ok(records)
    }

    #[allow(clippy::too_many_arguments)]
    async fn shape_one(
        &self,
        prepared: &Prepared,
        ladder: &nommer_core::presets::Preset,
        output: &str,
        options: &OutputOptions,
        codec: VideoCodec,
        rungs: &[Rung],
        segment_seconds: u32,
        pt: &PerTitle,
        work: &Path,
    ) -> Result<(Vec<Rung>, Record), JobFailure> {
        let started = Instant::now();
        let source = &prepared.probe;
        let short = short_side(source).ok_or_else(|| {
            JobFailure::Permanent(
                JobErrorCode::MissingStream,
                "the source has no picture to shape a ladder for".into(),
            )
        })?;
        let (spans, samples, sprobe) = self
            .sample(prepared, output, options, (pt.samples, pt.sample_seconds), work)
            .await?;
        let limits = &self.settings.limits;

        // every rung the source fills, each at its trial rates, from one decode
        let smallest = pt.goals.iter().min_by_key(|g| g.height);
        let tried: Vec<(Rung, Goal)> = ladder_for(rungs, short)
            .into_iter()
            .filter_map(|r| {
                let g = pt.goal(r.height).or(smallest)?.clone();
                Some((r, g))
            })
            .collect();
        let trials: Vec<Trial> = tried
            .iter()
            .flat_map(|(r, g)| {
                g.trial_rates(pt.rates_per_rung).into_iter().map(|kbps| Trial {
                    height: r.height,
                    kbps,
                    file: format!("t-{}-{kbps}.mp4", r.height),
                })
            })
            .collect();
        let trial_options = trial_options(options);
        let inp = plan::PlanInput {
            preset: ladder,
            options: &trial_options,
            probe: &sprobe,
            input: &samples,
            watermark: None,
            out_dir: work,
            stem: "",
            limits,
        };
        self.encoder
            .encode(&plan::trials_args(&inp, codec, segment_seconds, &trials), |_| {})
            .await
            .map_err(|e| self.encode_failure(e, "the per-title trial encodes"))?;

        let pairs = self
            .fit_rungs(&tried, &trials, &samples, &sprobe, &trial_options, work)
            .await?;
        let fits: Vec<(RungTarget, Fit)> = pairs.iter().map(|(t, f, _)| (t.clone(), *f)).collect();
        let (kept, dropped) = choose(&fits, short);
        let complexity_bpp = complexity(&pairs, source, &sprobe);
        let chosen = kept
            .iter()
            .rev()
            .map(|c| Rung {
                height: c.height,
                video_kbps: c.kbps,
            })
            .collect();
        let record = Record {
            output: output.to_string(),
            samples: spans.len() as u32,
            sample_seconds: nommer_core::quality::round3(spans.iter().map(|s| s.1).sum()),
            complexity_bpp,
            rungs: kept,
            dropped,
            trials: trials.len() as u32,
            seconds: nommer_core::quality::round3(started.elapsed().as_secs_f64()),
        };
        Ok((chosen, record))
    }

    /// The samples of the source (or of its trim), `(how many, seconds each)`, cut into
    /// one FFV1 file, and its probe seen as the source is.
    pub(crate) async fn sample(
        &self,
        prepared: &Prepared,
        output: &str,
        options: &OutputOptions,
        (count, seconds): (u32, f64),
        work: &Path,
    ) -> Result<(Vec<(f64, f64)>, std::path::PathBuf, nommer_core::job::Probe), JobFailure> {
        let source = &prepared.probe;
        let video = source.video().map(|v| v.index).unwrap_or(0);
        let (start, length) = plan::window(options, source);
        let length = length.or(source.duration_seconds.map(|d| d - start)).unwrap_or(0.0);
        let spans: Vec<(f64, f64)> = nommer_core::per_title::spans(count, seconds, length)
            .into_iter()
            .map(|(t, l)| (start + t, l))
            .collect();
        if spans.is_empty() {
            return Err(JobFailure::Permanent(
                JobErrorCode::InvalidMedia,
                format!("output {output}: the source has no duration to sample for its VMAF target; use a preset with fixed rates"),
            ));
        }
        let samples = work.join("samples.mkv");
        let limits = &self.settings.limits;
        self.encoder
            .encode(
                &plan::samples_args(&prepared.input, video, &spans, &samples, limits),
                |_| {},
            )
            .await
            .map_err(|e| self.encode_failure(e, "sampling the source"))?;
        let mut sprobe = self
            .prober
            .probe_own_output(&samples, 0)
            .await
            .map_err(|e| JobFailure::Retryable(format!("the samples did not probe: {e}")))?;
        // the samples are the source's pictures: seen as the source is (its interlacing,
        // its colour, whatever the lossless file kept of their tags)
        sprobe.interlacing = source.interlacing.clone();
        if let (Some(sv), Some(v)) = (sprobe.streams.iter_mut().find(|x| x.index == 0), source.video()) {
            sv.field_order = v.field_order.clone();
            sv.color_transfer = v.color_transfer.clone();
            sv.color_primaries = v.color_primaries.clone();
            sv.color_space = v.color_space.clone();
            sv.color_range = v.color_range.clone();
        }

        Ok((spans, samples, sprobe))
    }

    /// Before the download: an output made by VMAF on a worker without libvmaf is handed
    /// back (retried) when another live worker has it, and fails saying what to set when
    /// none has.
    pub(crate) async fn able_to_score(&self, outputs: &[(OutputSpec, Preset)]) -> Result<(), JobFailure> {
        let Some((o, p)) = outputs
            .iter()
            .find(|(o, p)| nommer_core::capability::needs_vmaf(p, &o.options))
        else {
            return Ok(());
        };
        if self.score_caps().libvmaf {
            return Ok(());
        }
        // a registry that does not answer decides nothing: try again later
        let mut others = self.registry.list().await.map_err(|e| {
            JobFailure::Retryable(format!(
                "output {}: needs libvmaf, which this worker lacks, and {e}",
                o.name
            ))
        })?;
        others.remove(&self.settings.worker_id);
        let stale = nommer_core::scaling::ScalingSettings::default().heartbeat_stale;
        if nommer_core::scaling::fleet_libvmaf(&others, chrono::Utc::now(), stale) == Some(true) {
            return Err(JobFailure::Retryable(format!(
                "output {}: this worker's scoring FFmpeg ({}) has no libvmaf; handed back for a worker whose has",
                o.name, self.settings.score_ffmpeg
            )));
        }
        Err(JobFailure::Permanent(
            JobErrorCode::EncodeFailed,
            format!(
                "output {}: preset {} is made by VMAF, and this worker's scoring FFmpeg ({}) has no libvmaf, nor has any other live worker's: {}, or use a preset with fixed rates (hls, dash, mp4-1080p)",
                o.name,
                p.name,
                self.settings.score_ffmpeg,
                crate::quality::SET_VMAF_FFMPEG
            ),
        ))
    }

    /// Each tried rung's VMAF fit from its trials' scores against the samples, its
    /// target, and whether its quality was flat (no fit: it gets its floor).
    async fn fit_rungs(
        &self,
        tried: &[(Rung, Goal)],
        trials: &[Trial],
        samples: &Path,
        sprobe: &nommer_core::job::Probe,
        trial_options: &OutputOptions,
        work: &Path,
    ) -> Result<Vec<(RungTarget, Fit, bool)>, JobFailure> {
        // each trial's VMAF against the samples, and a fit per rung
        let mut pairs = Vec::new();
        for (r, g) in tried {
            let mut points = Vec::new();
            for t in trials.iter().filter(|t| t.height == r.height) {
                let vmaf = self
                    .trial_vmaf(&work.join(&t.file), samples, sprobe, trial_options)
                    .await?;
                points.push(TrialScore {
                    kbps: f64::from(t.kbps),
                    vmaf,
                });
            }
            // quality that does not rise with the rate: more bits buy nothing, so the rung
            // gets its floor (its bounds closed there) at the best quality measured; and
            // never a rate past the knee, where the trials stopped buying quality
            let best = points.iter().map(|p| p.vmaf).fold(0.0, f64::max);
            let (fit, flat) = match Fit::local(&points, g.target_vmaf) {
                Some(f) => (f, false),
                None => (Fit { a: best, b: 1e-6 }, true),
            };
            let knee = nommer_core::per_title::knee(&points).map_or(g.max_kbps, |k| k.round() as u32);
            // a target out of the trials' reach (the rung's size caps it) is aimed a point
            // below the best they reached: the last point costs the most bits
            let reach = if best < g.target_vmaf && !flat {
                fit.kbps_for(best - nommer_core::per_title::MIN_GAIN)
                    .round()
                    .min(f64::from(u32::MAX)) as u32
            } else {
                u32::MAX
            };
            let max_kbps = if flat {
                g.min_kbps
            } else {
                g.max_kbps.min(knee).min(reach).max(g.min_kbps)
            };
            let target = RungTarget {
                name: format!("{}p", r.height),
                height: r.height,
                target_vmaf: g.target_vmaf,
                min_kbps: g.min_kbps,
                max_kbps,
            };
            pairs.push((target, fit, flat));
        }
        Ok(pairs)
    }

    /// One trial's mean VMAF against the samples.
    pub(crate) async fn trial_vmaf(
        &self,
        trial: &Path,
        samples: &Path,
        sprobe: &nommer_core::job::Probe,
        options: &OutputOptions,
    ) -> Result<f64, JobFailure> {
        let log = trial.with_extension("vmaf.json");
        let input = fq::ScoreInput {
            distorted: trial,
            source: samples,
            probe: sprobe,
            // the trials' own options (a frame-rate cap applies to the reference too)
            options,
            caps: self.score_caps(),
            vmaf_log: &log,
            threads: 2,
            limits: &self.settings.limits,
        };
        let (argv, _, model) = fq::score_args(&input).ok_or_else(|| {
            JobFailure::Permanent(JobErrorCode::MissingStream, "the samples have no picture size".into())
        })?;
        let scores = self.run_scoring(&argv, model, &log).await;
        scores.vmaf.map(|v| v.mean).ok_or_else(|| {
            JobFailure::Retryable(format!(
                "a per-title trial could not be scored: {}",
                scores.note.unwrap_or_else(|| "no VMAF".into())
            ))
        })
    }
}

/// Bits per pixel the tallest tried rung needs for its target (its floor when flat).
fn complexity(
    pairs: &[(RungTarget, Fit, bool)],
    source: &nommer_core::job::Probe,
    sprobe: &nommer_core::job::Probe,
) -> f64 {
    pairs
        .iter()
        .max_by_key(|(t, _, _)| t.height)
        .map(|(t, fit, flat)| {
            let display = nommer_core::presets::display_size(source).unwrap_or((1, 1));
            let (w, h) = plan::output_size(display, t.height, false);
            let fps = sprobe
                .video()
                .and_then(|v| v.frame_rate)
                .filter(|f| *f > 0.0)
                .unwrap_or(30.0);
            let kbps = if *flat {
                f64::from(t.min_kbps)
            } else {
                fit.kbps_for(t.target_vmaf).min(1e6)
            };
            (kbps * 1000.0 / (f64::from(w * h) * fps) * 1e4).round() / 1e4
        })
        .unwrap_or_default()
}

/// Each chosen rung's VMAF as made, from the scores of the whole encode.
pub(crate) fn measured(records: &mut [Record], scores: &[Quality]) {
    for r in records.iter_mut() {
        for c in r.rungs.iter_mut() {
            let name = format!("{}p", c.height);
            c.measured_vmaf = scores
                .iter()
                .find(|q| q.output == r.output && q.rendition.as_deref() == Some(name.as_str()))
                .and_then(|q| q.scores.vmaf.as_ref())
                .map(|v| v.mean);
        }
    }
}

/// The options trial encodes of the samples run with: the output's own, less what does
/// not apply to samples (a trim, a watermark, advanced FFmpeg options) or what the
/// trials set themselves (two passes, a CRF or a bit rate).
pub(crate) fn trial_options(options: &OutputOptions) -> OutputOptions {
    OutputOptions {
        trim: None,
        watermark: None,
        advanced: Vec::new(),
        two_pass: false,
        crf: None,
        video_bitrate_kbps: None,
        ..options.clone()
    }
}
