//! Quality scores: how close each video output is to its source. They are VMAF (mean,
//! minimum, 5th percentile of the per-frame scores), PSNR and SSIM, measured at one size
//! for every rendition so that a ladder's rungs compare. This module has what an FFmpeg
//! can score with (its capabilities, read from its filter list, never from a version
//! string) and the summary of the per-frame scores. The size and model a source is
//! scored at, the argv and the readers of FFmpeg's output are in `crate::ffmpeg::quality`.

use serde::{Deserialize, Serialize};

/// libvmaf's built-in model for HD and smaller.
pub const VMAF_MODEL: &str = "vmaf_v0.6.1";
/// libvmaf's built-in 4K model (for sources from 1440 lines up).
pub const VMAF_4K_MODEL: &str = "vmaf_4k_v0.6.1";
/// PSNR of identical pictures is infinite; it is reported as this (dB).
pub const PSNR_IDENTICAL: f64 = 100.0;

/// What an FFmpeg binary can score with, from its own `-filters` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub libvmaf: bool,
    pub psnr: bool,
    pub ssim: bool,
}

impl Capabilities {
    /// Reads `ffmpeg -hide_banner -filters`: one filter a line, its flags, then its name.
    pub fn from_filters(text: &str) -> Capabilities {
        let mut c = Capabilities::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(_flags), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            match name {
                "libvmaf" => c.libvmaf = true,
                "psnr" => c.psnr = true,
                "ssim" => c.ssim = true,
                _ => {}
            }
        }
        c
    }

    /// Whether it can score at all (PSNR and SSIM are in every FFmpeg build we know, but
    /// a stripped one may lack them).
    pub fn can_score(&self) -> bool {
        self.libvmaf || (self.psnr && self.ssim)
    }
}

/// VMAF over an output's frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vmaf {
    pub model: String,
    pub mean: f64,
    pub min: f64,
    /// The 5th percentile of the per-frame scores (nearest rank): the bad moments a mean
    /// hides.
    pub p5: f64,
    pub frames: u64,
}

/// One rendition's scores; what could not be measured is missing, and `note` says why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmaf: Option<Vmaf>,
    /// PSNR over all planes (dB), FFmpeg's `average`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr: Option<f64>,
    /// SSIM over all planes (0–1), FFmpeg's `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssim: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A video rendition scored against the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The job's output (its name).
    pub output: String,
    /// A ladder's rung (`720p`); none for a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendition: Option<String>,
    pub width: u32,
    pub height: u32,
    /// The size output and source were both scaled to for the scores.
    pub scored_width: u32,
    pub scored_height: u32,
    #[serde(flatten)]
    pub scores: Scores,
    /// How long the scoring took (s).
    pub seconds: f64,
}

/// The `p`-th percentile (0–100) of `values` by nearest rank; `None` when empty or when a
/// value is not a number.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The summary of libvmaf's per-frame scores.
pub fn summarise_vmaf(frames: &[f64], model: &str) -> Option<Vmaf> {
    let p5 = percentile(frames, 5.0)?;
    let mean = frames.iter().sum::<f64>() / frames.len() as f64;
    let min = frames.iter().copied().fold(f64::INFINITY, f64::min);
    Some(Vmaf {
        model: model.into(),
        mean: round3(mean),
        min: round3(min),
        p5: round3(p5),
        frames: frames.len() as u64,
    })
}

/// Scores to three decimals (what the log's precision supports; stable in JSON).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn capabilities_come_from_the_filter_list() {
        let with = " ... libvmaf           VV->V      Calculate the VMAF between two video streams.\n \
                    ... psnr              VV->V      Calculate the PSNR between two video streams.\n \
                    TS. ssim              VV->V      Calculate the SSIM between two video streams.\n";
        assert_eq!(
            Capabilities::from_filters(with),
            Capabilities {
                libvmaf: true,
                psnr: true,
                ssim: true
            }
        );
        let without = " ... psnr  VV->V  Calculate the PSNR\n TS. ssim VV->V x\n T.. vmafmotion V->V Calculate the VMAF Motion score.\n";
        let c = Capabilities::from_filters(without);
        assert!(!c.libvmaf && c.psnr && c.ssim && c.can_score());
        // a description that mentions libvmaf is not the filter
        assert!(!Capabilities::from_filters(" ... other V->V uses libvmaf\n").libvmaf);
    }

    #[test]
    fn the_fifth_percentile_is_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 5.0), Some(5.0));
        assert_eq!(percentile(&[7.0], 5.0), Some(7.0));
        assert_eq!(percentile(&[], 5.0), None);
        assert_eq!(percentile(&[1.0, f64::NAN], 5.0), None);
        let s = summarise_vmaf(&[90.0, 80.0, 100.0], VMAF_MODEL).unwrap();
        assert_eq!((s.mean, s.min, s.p5, s.frames), (90.0, 80.0, 80.0, 3));
    }

    proptest! {
        #[test]
        fn the_summary_is_ordered(frames in proptest::collection::vec(0.0f64..100.0, 1..400)) {
            let s = summarise_vmaf(&frames, VMAF_MODEL).unwrap();
            let max = frames.iter().copied().fold(0.0, f64::max);
            prop_assert!(s.min <= s.p5 + 1e-3 && s.p5 <= max + 1e-3);
            prop_assert!(s.min <= s.mean + 1e-3 && s.mean <= max + 1e-3);
            prop_assert_eq!(s.frames as usize, frames.len());
        }
    }
}
