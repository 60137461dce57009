//! The check of every output before anything is uploaded: its files against its plan
//! (each kind of preset its own way), and from them the job's manifest and the list of
//! files to upload under the output's key prefix.

use crate::encode::Encoded;
use crate::source::Prepared;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::plan;
use nommer_core::job::{Job, OutputFile, Probe};
use nommer_core::presets::{LadderFormat, Preset, PresetKind};
use std::path::{Path, PathBuf};

/// Files of one output folder: path relative to it (with `/`), size.
type Files = [(String, u64)];

/// What one output's encode made: its folder, its plan and the files in the folder.
/// An output's manifest entries, each with its path relative to the output folder.
type Entries = Result<Vec<(String, OutputFile)>, JobFailure>;

struct Made<'a> {
    dir: &'a Path,
    plan: &'a plan::Plan,
    files: &'a Files,
}

impl Worker {
    /// Checks each encoded output; returns the job's manifest and the files to upload
    /// (local path, key in the outbox).
    pub(crate) async fn check_outputs(
        &self,
        job: &Job,
        prepared: &Prepared,
        encoded: &[Encoded],
    ) -> Result<(Vec<OutputFile>, Vec<(PathBuf, String)>), JobFailure> {
        let mut manifest = Vec::new();
        let mut uploads: Vec<(PathBuf, String)> = Vec::new();
        for Encoded { index, dir, plan } in encoded {
            let (o, preset) = &prepared.outputs[*index];
            let prefix = job.output_prefix(o, &self.settings.config.key_template);
            let files = list_files(dir).map_err(|e| JobFailure::Retryable(e.to_string()))?;
            let made = Made {
                dir,
                plan,
                files: &files,
            };
            let entries = self
                .validate(preset, &prepared.probe, &made)
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
                uploads.push((dir.join(&rel), format!("{prefix}{rel}")));
            }
        }
        Ok((manifest, uploads))
    }

    /// Checks one output's files against its plan; returns its manifest entries (with
    /// their paths relative to the output folder).
    async fn validate(&self, preset: &Preset, source: &Probe, made: &Made<'_>) -> Entries {
        match &preset.kind {
            PresetKind::File { .. } => self.validate_file(preset, source, made).await,
            PresetKind::Ladder {
                format: LadderFormat::Hls,
                ..
            } => validate_hls(made),
            PresetKind::Ladder {
                format: LadderFormat::Dash,
                ..
            } => self.validate_dash(made).await,
            PresetKind::Thumbnails(_) => self.validate_thumbnails(made).await,
        }
    }

    /// One media file: it probes, and it is what the preset and the source promise.
    async fn validate_file(&self, preset: &Preset, source: &Probe, made: &Made<'_>) -> Entries {
        let (out_dir, pl, files) = (made.dir, made.plan, made.files);
        let p = self
            .prober
            .probe_own_output(&out_dir.join(&pl.main), size_of(files, &pl.main))
            .await?;
        nommer_core::ffmpeg::check::validate_file(preset, source, pl.expected_duration, &p).map_err(bad)?;
        let video = p.streams.iter().find(|s| s.kind == nommer_core::job::StreamKind::Video);
        let mut e = entry(p.size);
        e.duration_seconds = p.duration_seconds;
        e.width = video.and_then(|v| v.width);
        e.height = video.and_then(|v| v.height);
        e.bit_rate = p.bit_rate;
        Ok(vec![(pl.main.clone(), e)])
    }

    /// A DASH ladder: its MPD lists the planned rungs, and each video representation
    /// decodes.
    async fn validate_dash(&self, made: &Made<'_>) -> Entries {
        let (out_dir, pl, files) = (made.dir, made.plan, made.files);
        let text = tokio::fs::read_to_string(out_dir.join(&pl.main))
            .await
            .map_err(|e| bad(format!("no MPD: {e}")))?;
        let mpd = nommer_core::ffmpeg::check::parse_mpd(&text).map_err(bad)?;
        let planned: Vec<u32> = pl.rungs.iter().map(|r| r.height).collect();
        let shorts: Vec<u32> = mpd.heights.iter().zip(&mpd.widths).map(|(h, w)| *h.min(w)).collect();
        if shorts != planned {
            return Err(bad(format!(
                "the MPD lists representations of short side {shorts:?}, planned {planned:?}"
            )));
        }
        let p = self.prober.probe_own_output(&out_dir.join(&pl.main), 0).await?;
        if p.streams
            .iter()
            .filter(|s| s.kind == nommer_core::job::StreamKind::Video)
            .count()
            != planned.len()
        {
            return Err(bad("the MPD's video representations do not all decode".into()));
        }
        let mut e = entry(files.iter().map(|(_, s)| s).sum());
        e.duration_seconds = mpd.duration_seconds;
        e.width = mpd.widths.first().copied();
        e.height = mpd.heights.first().copied();
        Ok(vec![(pl.main.clone(), e)])
    }

    /// Thumbnails: as many pictures as planned, each decodes, and the sprite sheet (if
    /// any) is its tiles' size.
    async fn validate_thumbnails(&self, made: &Made<'_>) -> Entries {
        let (out_dir, pl, files) = (made.dir, made.plan, made.files);
        let images: Vec<&(String, u64)> = files.iter().filter(|(r, _)| r.ends_with(".jpg")).collect();
        if images.len() as u32 != pl.images {
            return Err(bad(format!("{} images made, {} asked for", images.len(), pl.images)));
        }
        let mut out = Vec::new();
        for (rel, size) in images {
            let p = self.prober.probe_own_output(&out_dir.join(rel), *size).await?;
            let v = p
                .streams
                .iter()
                .find(|s| s.kind == nommer_core::job::StreamKind::Video)
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
            out.push(("sprite.vtt".to_string(), entry(size_of(files, "sprite.vtt"))));
        }
        Ok(out)
    }
}

/// An HLS ladder: the master playlist and one entry per variant, from its playlists.
fn validate_hls(made: &Made<'_>) -> Entries {
    let (out_dir, pl, files) = (made.dir, made.plan, made.files);
    let variants = nommer_core::ffmpeg::check::validate_hls(out_dir, pl).map_err(bad)?;
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

fn bad(m: String) -> JobFailure {
    JobFailure::Permanent(JobErrorCode::InvalidOutput, m)
}

fn size_of(files: &Files, rel: &str) -> u64 {
    files.iter().find(|(r, _)| r == rel).map(|(_, s)| *s).unwrap_or(0)
}

/// A manifest entry of `size` bytes; the caller fills in the rest.
fn entry(size: u64) -> OutputFile {
    OutputFile {
        output: String::new(),
        bucket: String::new(),
        key: String::new(),
        size,
        duration_seconds: None,
        width: None,
        height: None,
        bit_rate: None,
        sha256: None,
        quality: Vec::new(),
    }
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
