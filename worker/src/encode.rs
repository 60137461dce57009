//! The encode: every output planned and run through FFmpeg into its own folder, its
//! `-progress` turned into the job's progress across all passes of all outputs.

use crate::held::Held;
use crate::source::Prepared;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg;
use nommer_core::ffmpeg::plan;
use nommer_media::EncodeFailure;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One output encoded: its index among the job's outputs, its folder and its plan.
pub(crate) struct Encoded {
    pub index: usize,
    pub dir: PathBuf,
    pub plan: plan::Plan,
}

impl Worker {
    /// Plans and encodes each output into `dir/out-<i>`, in order.
    pub(crate) async fn encode_all(
        &self,
        held: &Held,
        prepared: &Prepared,
        dir: &Path,
    ) -> Result<Vec<Encoded>, JobFailure> {
        let n = prepared.outputs.len();
        let mut done = Vec::new();
        for (i, (o, preset)) in prepared.outputs.iter().enumerate() {
            let out_dir = dir.join(format!("out-{i}"));
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let pl = plan::plan(&plan::PlanInput {
                preset,
                options: &o.options,
                probe: &prepared.probe,
                input: &prepared.input,
                watermark: prepared.marks[i].as_deref(),
                out_dir: &out_dir,
                stem: &prepared.stem,
                limits: &self.settings.limits,
            })
            .map_err(|e| JobFailure::Permanent(e.code(), format!("output {}: {e}", o.name)))?;
            let passes = pl.passes.len();
            for (k, args) in pl.passes.iter().enumerate() {
                let span = pl.expected_duration.or(prepared.probe.duration_seconds);
                self.run_ffmpeg(held, &preset.name, args, span, (i * passes + k, n * passes))
                    .await?;
            }
            if let Some(layout) = &pl.sprite {
                let vtt = plan::sprite_vtt(layout, "sprite.jpg");
                tokio::fs::write(out_dir.join("sprite.vtt"), vtt)
                    .await
                    .map_err(|e| JobFailure::Retryable(e.to_string()))?;
            }
            done.push(Encoded {
                index: i,
                dir: out_dir,
                plan: pl,
            });
        }
        Ok(done)
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
        let (tx, rx) = tokio::sync::watch::channel(0u8);
        let writer = tokio::spawn(record_progress(held.clone(), rx));
        let started = Instant::now();
        let (index, count) = step;
        let r = self
            .encoder
            .encode(args, |tick| {
                let within = ffmpeg::percent(tick.out_time_seconds, duration) as usize;
                let overall = ((index * 100 + within) / count.max(1)).min(99) as u8;
                let _ = tx.send(overall);
            })
            .await;
        drop(tx);
        let _ = writer.await;
        match r {
            Ok(()) => {
                tracing::info!(preset, secs = started.elapsed().as_secs_f64(), "encoded");
                Ok(())
            }
            Err(e) => Err(self.encode_failure(e, "encoding")),
        }
    }

    /// What a failed FFmpeg run means for the job.
    pub(crate) fn encode_failure(&self, e: EncodeFailure, doing: &str) -> JobFailure {
        match e {
            // out of disk: this disk will not grow by trying again
            EncodeFailure::DiskFull => self.disk_full(doing),
            // killed by a signal (OOM killer), or FFmpeg would not run: the machine's
            // fault, not the media's
            EncodeFailure::Killed(reason) | EncodeFailure::NotRun(reason) => JobFailure::Retryable(reason),
            EncodeFailure::Failed(reason) | EncodeFailure::TimedOut(reason) => {
                JobFailure::Permanent(JobErrorCode::EncodeFailed, reason)
            }
        }
    }
}

/// Writes the job's progress as it changes, at most once a second, until the pass ends.
async fn record_progress(held: Held, mut rx: tokio::sync::watch::Receiver<u8>) {
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
}
