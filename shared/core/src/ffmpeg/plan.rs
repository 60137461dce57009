//! The one builder that turns a preset, the output's options and the source's probe into
//! FFmpeg runs: a file (`file`), an adaptive-streaming ladder (`ladder`) or still
//! images (`thumbnails`), from the filter chains (`filters`) and encoder options
//! (`codecs`) they share. What came out is checked in [`crate::ffmpeg::check`].

mod chunk;
mod codecs;
mod file;
mod filters;
mod ladder;
mod probes;
mod stitch;
mod thumbnails;

use crate::ffmpeg::{input_guard, Limits};
use crate::job::{OutputOptions, Probe};
use crate::presets::{Preset, PresetKind, Rung};
use std::path::Path;

pub use chunk::{chunk, chunk_file_name, ChunkFile, ChunkInput, ChunkPlan};
pub use filters::reference_chain;
pub use probes::{samples_args, trials_args, Trial};
pub use stitch::{audio as audio_plan, concat_list, stitch, StitchInput};
pub use thumbnails::sprite_vtt;

/// FFmpeg runs for one output, and where they leave their files.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// argv of each FFmpeg run, in order (two for a two-pass encode).
    pub passes: Vec<Vec<String>>,
    /// The file users open first (the MP4, the master playlist, the MPD, the first image),
    /// relative to the output folder.
    pub main: String,
    /// For a ladder: the renditions it makes, tallest first.
    pub rungs: Vec<Rung>,
    /// For thumbnails: how many images.
    pub images: u32,
    /// For a sprite: the geometry of each tile and the time between them, for the WebVTT
    /// index.
    pub sprite: Option<SpriteLayout>,
    /// The media time the output covers (after trimming), for validation.
    pub expected_duration: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpriteLayout {
    pub tile_width: u32,
    pub tile_height: u32,
    pub columns: u32,
    pub count: u32,
    pub interval_seconds: f64,
}

/// Everything the builder needs to know about a run.
pub struct PlanInput<'a> {
    pub preset: &'a Preset,
    pub options: &'a OutputOptions,
    pub probe: &'a Probe,
    pub input: &'a Path,
    /// A local copy of the watermark image, when the options ask for one.
    pub watermark: Option<&'a Path>,
    /// An empty folder the runs write into.
    pub out_dir: &'a Path,
    /// A stem for file names (the source's, sanitised).
    pub stem: &'a str,
    pub limits: &'a Limits,
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32).max(1) * 2
}

/// The output size for a displayed picture of `display` whose short side becomes
/// `short` (never above the source's own, unless `exact`): both sides even, aspect kept.
pub fn output_size(display: (u32, u32), short: u32, exact: bool) -> (u32, u32) {
    let (w, h) = display;
    let src_short = w.min(h).max(1);
    if !exact && short >= src_short {
        return ((w & !1).max(2), (h & !1).max(2));
    }
    let target = (short & !1).max(2);
    let f = target as f64 / src_short as f64;
    if w <= h {
        (target, even(h as f64 * f))
    } else {
        (even(w as f64 * f), target)
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The stream specifier of the source's video: its real video stream by index, so an
/// attached picture (cover art) is never taken for it.
fn video_spec(probe: &Probe) -> String {
    match probe.video() {
        Some(v) => format!("0:{}", v.index),
        None => s("0:v:0"),
    }
}

/// The part of the source the output covers: (start, duration) in seconds.
pub fn window(options: &OutputOptions, probe: &Probe) -> (f64, Option<f64>) {
    let start = options.trim.as_ref().map(|t| t.start_seconds).unwrap_or(0.0).max(0.0);
    let end = options.trim.as_ref().and_then(|t| t.end_seconds);
    let total = probe.duration_seconds;
    let stop = match (end, total) {
        (Some(e), Some(t)) => Some(e.min(t)),
        (Some(e), None) => Some(e),
        (None, t) => t,
    };
    (start, stop.map(|s| (s - start).max(0.0)))
}

/// Why an output cannot be planned for this source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The output needs pictures and the source has no video stream with a size.
    #[error("the source has no video stream with a size")]
    NoVideo,
    /// Frames are spread over the source's duration, and it has none (or the trim leaves none).
    #[error("the source has no duration to spread frames over")]
    NoDuration,
    #[error("two-pass is not offered for H.265 presets")]
    TwoPassH265,
}

impl PlanError {
    /// The job's error code for this refusal.
    pub fn code(&self) -> crate::error::JobErrorCode {
        use crate::error::JobErrorCode;
        match self {
            PlanError::NoVideo => JobErrorCode::MissingStream,
            PlanError::NoDuration => JobErrorCode::InvalidMedia,
            PlanError::TwoPassH265 => JobErrorCode::EncodeFailed,
        }
    }
}

/// Builds the FFmpeg runs for one output.
pub fn plan(inp: &PlanInput) -> Result<Plan, PlanError> {
    match &inp.preset.kind {
        PresetKind::File {
            container,
            video,
            audio,
        } => file::plan(
            inp,
            &file::File {
                container: *container,
                video: video.as_ref(),
                audio: audio.as_ref(),
            },
        ),
        PresetKind::Ladder {
            format,
            codec,
            rungs,
            audio,
            segment_seconds,
            ..
        } => ladder::plan(
            inp,
            &ladder::Ladder {
                format: *format,
                codec: *codec,
                rungs,
                audio,
                segment_seconds: *segment_seconds,
            },
        ),
        PresetKind::Thumbnails(t) => thumbnails::plan(inp, t),
    }
}

/// The start of every run: quiet, never interactive, and the input guard (what may be
/// read, and how much of it is probed).
fn guarded_start(limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    a.extend(input_guard(limits));
    a
}

/// The inputs of a run: the source (trimmed when asked) and the watermark image.
fn input_args(inp: &PlanInput, pass: usize) -> Vec<String> {
    let mut a = guarded_start(inp.limits);
    if let Some(p) = inp.options.advanced.get(pass) {
        a.extend(p.input.iter().cloned());
    }
    let (start, dur) = window(inp.options, inp.probe);
    if inp.options.trim.is_some() {
        if start > 0.0 {
            a.extend([s("-ss"), format!("{start:.3}")]);
        }
        if let Some(d) = dur {
            a.extend([s("-t"), format!("{d:.3}")]);
        }
    }
    a.extend([s("-i"), format!("file:{}", inp.input.display())]);
    if let Some(w) = inp.watermark {
        // the watermark: one still picture, read by the picture demuxers only
        a.extend([
            s("-protocol_whitelist"),
            s("file"),
            s("-format_whitelist"),
            s("image2,png_pipe,jpeg_pipe"),
            s("-i"),
            format!("file:{}", w.display()),
        ]);
    }
    a
}

/// The end of a run before its output: the pass's advanced output options, then progress
/// on stdout.
fn tail_args(inp: &PlanInput, pass: usize) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(p) = inp.options.advanced.get(pass) {
        a.extend(p.output.iter().cloned());
    }
    a.extend(progress());
    a
}

/// FFmpeg's progress as key=value lines on stdout, which the runner reads.
fn progress() -> [String; 3] {
    [s("-progress"), s("pipe:1"), s("-nostats")]
}

/// A file in the output folder, as an FFmpeg output URL.
fn out_file(inp: &PlanInput, name: &str) -> String {
    format!("file:{}", inp.out_dir.join(name).display())
}

#[cfg(test)]
mod tests;
