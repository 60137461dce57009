//! Split and stitch, what is decided: whether a job on the fleet is split, where its
//! source is cut, and what each chunk covers. A long source is cut at its keyframes into
//! chunks any worker can encode at once (every video output from one decode); its audio
//! is encoded once, as a task of its own (seams in AAC priming are audible); one stitch
//! task joins the chunks without re-encoding and builds the outputs. The worker runs the
//! tasks; this module only decides.
//!
//! Ladders are segmented from the joined renditions. Every chunk's encode places a
//! keyframe at each media-time multiple of the segment length inside it (as an
//! unchunked encode does), so the joined rendition's segments fall where an unchunked
//! encode's do, every one starting with a keyframe and none longer than the target
//! duration. Cuts aim at multiples of the chunk length, itself a multiple of the
//! segment length, so a seam's own keyframe lands on a segment boundary whenever the
//! source has a keyframe there.

pub mod cuts;
pub mod plan;
pub mod task;

pub use plan::{Span, SplitPlan};

use crate::job::{OutputSpec, Probe, StreamKind};
use crate::presets::{Preset, PresetKind};

/// When the fleet splits a job (`[backends.<name>] split_after_seconds`,
/// `chunk_seconds` in the config file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitSettings {
    /// Sources longer than this are split; 0 never splits.
    pub after_seconds: f64,
    /// The chunks' target length (rounded to a multiple of a ladder's segment length).
    pub chunk_seconds: f64,
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings {
            after_seconds: 600.0,
            chunk_seconds: 60.0,
        }
    }
}

/// Why a job is encoded whole, on one worker.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Whole {
    #[error("splitting is off for this backend")]
    Off,
    #[error("the source ({seconds:.0} s) is not longer than {after:.0} s")]
    Short { seconds: f64, after: f64 },
    #[error("the source has no duration or no video")]
    Unknown,
    #[error("output {output}: {why}")]
    Output { output: String, why: &'static str },
}

/// How a split job is cut and what its chunks make.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The chunks' target length.
    pub chunk_seconds: f64,
    /// The segment length every ladder output shares, if any.
    pub segment_seconds: Option<f64>,
}

/// Whether this job's outputs and source allow a split, and its shape if so. Every
/// output must be a video file (one pass, no trim, no frame-rate cap, no advanced
/// options) or a ladder, and the ladders must share one segment length.
pub fn shape(outputs: &[(OutputSpec, Preset)], probe: &Probe, s: &SplitSettings) -> Result<Shape, Whole> {
    if s.after_seconds <= 0.0 {
        return Err(Whole::Off);
    }
    let seconds = probe.duration_seconds.ok_or(Whole::Unknown)?;
    if !probe.has(StreamKind::Video) {
        return Err(Whole::Unknown);
    }
    if seconds <= s.after_seconds {
        return Err(Whole::Short {
            seconds,
            after: s.after_seconds,
        });
    }
    let mut segment: Option<u32> = None;
    for (o, preset) in outputs {
        let refuse = |why| Whole::Output {
            output: o.name.clone(),
            why,
        };
        let opts = &o.options;
        if opts.trim.is_some() {
            return Err(refuse("a trimmed output is encoded whole"));
        }
        if opts.two_pass {
            return Err(refuse("a two-pass output is encoded whole"));
        }
        if opts.max_frame_rate.is_some() {
            return Err(refuse("a frame-rate cap is applied on the whole source"));
        }
        if !opts.advanced.is_empty() {
            return Err(refuse("advanced FFmpeg options are applied on the whole source"));
        }
        if opts.watermark.is_some() {
            return Err(refuse("a watermarked output is encoded whole"));
        }
        match &preset.kind {
            PresetKind::File { video: Some(_), .. } => {}
            PresetKind::File { video: None, .. } => return Err(refuse("an audio-only output is encoded whole")),
            PresetKind::Thumbnails(_) => return Err(refuse("still images are made from the whole source")),
            PresetKind::Ladder { segment_seconds, .. } => match segment {
                Some(seg) if seg != *segment_seconds => {
                    return Err(refuse("ladders with different segment lengths are encoded whole"))
                }
                _ => segment = Some(*segment_seconds),
            },
        }
    }
    let chunk_seconds = match segment {
        Some(seg) => {
            let seg = f64::from(seg.max(1));
            (s.chunk_seconds / seg).round().max(1.0) * seg
        }
        None => s.chunk_seconds.max(1.0),
    };
    Ok(Shape {
        chunk_seconds,
        segment_seconds: segment.map(f64::from),
    })
}

/// Where a split job's scratch objects live (the outbox, under a prefix a lifecycle rule
/// expires): `nommer-scratch/<job id>/<rel>`.
pub fn scratch_key(job_id: &str, rel: &str) -> String {
    format!("{SCRATCH_PREFIX}{job_id}/{rel}")
}

/// The prefix of every scratch object.
pub const SCRATCH_PREFIX: &str = "nommer-scratch/";

#[cfg(test)]
mod tests;
