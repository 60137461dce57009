//! Quality scores of a job's video outputs, after the encode and before the check and
//! upload. Each rendition is scored against the source by the scoring FFmpeg
//! (`NOMMER_SCORE_FFMPEG`, by default the encoding one). What that FFmpeg can score with
//! is read from its filter list at start (`Worker::preflight`) and published with the
//! heartbeat. A file is scored as it is. A ladder's rung is first joined from its init
//! segment and media segments into one fMP4, as a player reads it. Then each rung is
//! scaled back up to the source's size, capped at 1080 lines (the 4K model from 1440 up),
//! so that rungs compare. Scoring never fails a job: a score it could not measure is
//! missing, and a note on the rendition says why.

use crate::encode::Encoded;
use crate::source::Prepared;
use crate::Worker;
use nommer_core::ffmpeg::quality as fq;
use nommer_core::job::{OutputFile, OutputSpec};
use nommer_core::presets::{LadderFormat, Preset, PresetKind};
use nommer_core::quality::{summarise_vmaf, Capabilities, Quality, Scores};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to do about a scoring FFmpeg without libvmaf.
pub(crate) const SET_VMAF_FFMPEG: &str = "set NOMMER_SCORE_FFMPEG to an FFmpeg built with libvmaf";

/// Reads what an FFmpeg binary can score with.
pub(crate) async fn capabilities(ffmpeg: &str) -> anyhow::Result<Capabilities> {
    let out = nommer_media::runner::run(
        ffmpeg,
        &["-hide_banner".into(), "-filters".into()],
        std::time::Duration::from_secs(30),
        |_| {},
    )
    .await?;
    anyhow::ensure!(out.success, "{ffmpeg} -filters failed: {}", out.stderr);
    Ok(Capabilities::from_filters(&out.stdout))
}

impl Worker {
    /// Whether an output is to be scored: it says so, or the config's default does, and
    /// it has pictures that move.
    pub(crate) fn wants_quality(&self, o: &OutputSpec, p: &Preset) -> bool {
        let video = match &p.kind {
            PresetKind::File { video, .. } => video.is_some(),
            PresetKind::Ladder { .. } => true,
            PresetKind::Thumbnails(_) => false,
        };
        // an output made by VMAF is always scored: its measured VMAF goes beside the
        // predicted
        let by_vmaf = nommer_core::capability::needs_vmaf(p, &o.options);
        video && (by_vmaf || o.options.quality.unwrap_or(self.settings.config.quality))
    }

    /// What the scoring FFmpeg can do (read at start; nothing until then).
    pub(crate) fn score_caps(&self) -> Capabilities {
        self.caps.get().copied().unwrap_or_default()
    }

    /// Scores every rendition of the outputs that want it.
    pub(crate) async fn score_all(&self, prepared: &Prepared, encoded: &[Encoded], dir: &Path) -> Vec<Quality> {
        let mut all = Vec::new();
        for e in encoded {
            let (o, preset) = &prepared.outputs[e.index];
            if !self.wants_quality(o, preset) {
                continue;
            }
            for (rendition, path) in self.renditions(e, preset, dir).await {
                all.push(match path {
                    Ok(path) => self.score_one(prepared, o, rendition, &path, dir).await,
                    Err(why) => unscored(o, rendition, why),
                });
            }
        }
        all
    }

    /// The files to score for one output: the file itself, or each rung joined.
    async fn renditions(
        &self,
        e: &Encoded,
        preset: &Preset,
        dir: &Path,
    ) -> Vec<(Option<String>, Result<PathBuf, String>)> {
        let PresetKind::Ladder { format, .. } = &preset.kind else {
            return vec![(None, Ok(e.dir.join(&e.plan.main)))];
        };
        let mut out = Vec::new();
        for (k, rung) in e.plan.rungs.iter().enumerate() {
            let name = format!("{}p", rung.height);
            let joined = dir.join(format!("score-{}-{k}.mp4", e.index));
            let parts = match format {
                LadderFormat::Hls => hls_parts(&e.dir.join(&name)).await,
                LadderFormat::Dash => dash_parts(&e.dir, k).await,
            };
            let joining = async { join(&parts?, &joined).await };
            let joined = joining
                .await
                .map(|()| joined)
                .map_err(|err| format!("not scored: joining rung {name}'s segments failed: {err}"));
            out.push((Some(name), joined));
        }
        out
    }

    async fn score_one(
        &self,
        prepared: &Prepared,
        o: &OutputSpec,
        rendition: Option<String>,
        path: &Path,
        dir: &Path,
    ) -> Quality {
        let started = Instant::now();
        let caps = self.score_caps();
        let made = self.prober.probe_own_output(path, 0).await.ok();
        let size = made
            .as_ref()
            .and_then(|p| p.video())
            .map(|v| (v.width.unwrap_or(0), v.height.unwrap_or(0)))
            .unwrap_or((0, 0));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = dir.join(format!("{name}.vmaf.json"));
        let input = fq::ScoreInput {
            distorted: path,
            source: &prepared.input,
            probe: &prepared.probe,
            options: &o.options,
            caps,
            vmaf_log: &log,
            threads: 2,
            limits: &self.settings.limits,
        };
        let mut q = Quality {
            output: o.name.clone(),
            rendition,
            width: size.0,
            height: size.1,
            scored_width: 0,
            scored_height: 0,
            scores: Scores::default(),
            seconds: 0.0,
        };
        match fq::score_args(&input) {
            _ if !caps.can_score() => {
                q.scores.note = Some(format!(
                    "{} has neither libvmaf nor psnr and ssim: {SET_VMAF_FFMPEG}",
                    self.settings.score_ffmpeg
                ))
            }
            None => q.scores.note = Some("the source has no picture size to score against".into()),
            Some((argv, (w, h), model)) => {
                (q.scored_width, q.scored_height) = (w, h);
                q.scores = self.run_scoring(&argv, model, &log).await;
            }
        }
        let _ = tokio::fs::remove_file(&log).await;
        q.seconds = nommer_core::quality::round3(started.elapsed().as_secs_f64());
        tracing::info!(output = %q.output, rendition = ?q.rendition, scores = ?q.scores, secs = q.seconds, "scored");
        q
    }

    pub(crate) async fn run_scoring(&self, argv: &[String], model: Option<&str>, log: &Path) -> Scores {
        let ffmpeg = &self.settings.score_ffmpeg;
        tracing::info!(argv = %argv.join(" "), "ffmpeg scoring");
        let finished = match nommer_media::runner::run(ffmpeg, argv, self.settings.encode_timeout, |_| {}).await {
            Ok(f) if f.success => f,
            Ok(f) => {
                return Scores {
                    note: Some(format!(
                        "scoring failed: {}",
                        nommer_core::ffmpeg::reason_from_stderr(&f.stderr)
                    )),
                    ..Scores::default()
                }
            }
            Err(e) => {
                return Scores {
                    note: Some(format!("scoring failed: {e}")),
                    ..Scores::default()
                }
            }
        };
        let mut scores = Scores {
            psnr: fq::parse_psnr(&finished.stderr),
            ssim: fq::parse_ssim(&finished.stderr),
            ..Scores::default()
        };
        match model {
            None => {
                scores.note = Some(format!(
                    "{ffmpeg} has no libvmaf: PSNR and SSIM only ({SET_VMAF_FFMPEG})"
                ))
            }
            Some(model) => match tokio::fs::read_to_string(log)
                .await
                .map_err(|e| e.to_string())
                .and_then(|t| fq::parse_vmaf_log(&t))
            {
                Ok(frames) => scores.vmaf = summarise_vmaf(&frames, model),
                Err(e) => scores.note = Some(format!("no VMAF: {e}")),
            },
        }
        scores
    }
}

/// A rendition that could not be scored, saying why.
fn unscored(o: &OutputSpec, rendition: Option<String>, why: String) -> Quality {
    Quality {
        output: o.name.clone(),
        rendition,
        width: 0,
        height: 0,
        scored_width: 0,
        scored_height: 0,
        scores: Scores {
            note: Some(why),
            ..Scores::default()
        },
        seconds: 0.0,
    }
}

/// An HLS variant's files in play order, from its playlist: the `EXT-X-MAP` init
/// segment, then each media segment. Only plain file names in its folder are taken.
async fn hls_parts(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let text = tokio::fs::read_to_string(folder.join("index.m3u8")).await?;
    let bad = || std::io::Error::other(format!("{}/index.m3u8 names no init segment", folder.display()));
    let init = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|r| r.split('"').next())
        .ok_or_else(bad)?;
    let names = std::iter::once(init).chain(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#')),
    );
    names
        .map(|n| {
            if n.contains('/') || n.contains("..") {
                Err(std::io::Error::other(format!(
                    "{n}: not a file of the variant's folder"
                )))
            } else {
                Ok(folder.join(n))
            }
        })
        .collect()
}

/// A DASH representation's files (`init-<k>.m4s`, then `chunk-<k>-*.m4s` in order).
async fn dash_parts(folder: &Path, k: usize) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("chunk-{k}-");
    let mut names: Vec<String> = Vec::new();
    let mut rd = tokio::fs::read_dir(folder).await?;
    while let Some(e) = rd.next_entry().await? {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".m4s") {
            names.push(n);
        }
    }
    if names.is_empty() {
        return Err(std::io::Error::other(format!(
            "no {prefix}*.m4s in {}",
            folder.display()
        )));
    }
    names.sort();
    Ok(std::iter::once(format!("init-{k}.m4s"))
        .chain(names)
        .map(|n| folder.join(n))
        .collect())
}

/// Joins an init segment and media segments into one fragmented MP4 at `to`.
async fn join(parts: &[PathBuf], to: &Path) -> std::io::Result<()> {
    let mut out = tokio::fs::File::create(to).await?;
    for p in parts {
        let mut f = tokio::fs::File::open(p).await?;
        tokio::io::copy(&mut f, &mut out).await?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out).await?;
    Ok(())
}

/// Gives each manifest entry the scores of the renditions it holds: a file its own, an
/// HLS variant playlist its rung's (by its folder), the output's main file (a master
/// playlist, an MPD) every rung's.
pub(crate) fn attach(manifest: &mut [OutputFile], quality: &[Quality], mains: &[(String, String)]) {
    for entry in manifest.iter_mut() {
        let is_main = mains
            .iter()
            .any(|(output, main)| *output == entry.output && entry.key.ends_with(&format!("/{main}")));
        entry.quality = quality
            .iter()
            .filter(|q| q.output == entry.output)
            .filter(|q| match &q.rendition {
                None => is_main,
                Some(r) => is_main || entry.key.ends_with(&format!("/{r}/index.m3u8")),
            })
            .cloned()
            .collect();
    }
}
