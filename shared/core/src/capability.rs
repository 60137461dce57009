//! What each kind of backend can make. Routing asks it before it picks a backend, and the
//! Encoding.com mapping asks it before it builds a `format`, so the two never disagree.

use crate::job::OutputOptions;
use crate::presets::{Preset, PresetKind, ThumbnailMode, VideoCodec};
use serde::{Deserialize, Serialize};

/// What a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Nommer's own EC2 FFmpeg fleet (the `work-ffmpeg` queue).
    Ffmpeg,
    /// Encoding.com's API.
    #[serde(rename = "encodingcom")]
    EncodingCom,
}

/// Whether a backend of `kind` can make `preset` with `options`, and if not, why.
pub fn can_make(kind: BackendKind, preset: &Preset, options: &OutputOptions) -> Result<(), String> {
    match kind {
        BackendKind::Ffmpeg => Ok(()),
        BackendKind::EncodingCom => encodingcom(preset, options),
    }
}

/// Whether an output is made by VMAF (a per-title ladder, a file's `target_vmaf` unless
/// the output names its own rate): only a backend whose FFmpeg has libvmaf can make it.
pub fn needs_vmaf(preset: &Preset, options: &OutputOptions) -> bool {
    match &preset.kind {
        PresetKind::Ladder { per_title, .. } => per_title.is_some(),
        PresetKind::File { video: Some(v), .. } => {
            v.target_vmaf.is_some() && options.crf.is_none() && options.video_bitrate_kbps.is_none()
        }
        _ => false,
    }
}

/// Why the fleet cannot make an output now, when its live workers' heartbeats say none
/// of their scoring FFmpegs has libvmaf.
pub const FLEET_WITHOUT_VMAF: &str = "it needs libvmaf, and no live worker's scoring FFmpeg has it (their heartbeats say so): set NOMMER_SCORE_FFMPEG on the workers to an FFmpeg built with libvmaf, or use a preset with fixed rates";

/// What Encoding.com cannot make: per-output options only the fleet has, AV1, ladders in
/// other codecs, thumbnail series and sprite sheets.
pub fn encodingcom(preset: &Preset, o: &OutputOptions) -> Result<(), String> {
    if o.watermark.is_some() {
        return Err("watermarks are made by the FFmpeg fleet only".into());
    }
    if o.loudness.is_some() {
        return Err("loudness normalisation is made by the FFmpeg fleet only".into());
    }
    if !o.advanced.is_empty() {
        return Err("advanced FFmpeg options need the FFmpeg fleet".into());
    }
    if o.crf.is_some() {
        return Err("Encoding.com takes a bit rate, not crf".into());
    }
    if o.quality == Some(true) {
        return Err("quality scores (VMAF, PSNR, SSIM) are measured by the FFmpeg fleet only".into());
    }
    match &preset.kind {
        PresetKind::File { video, .. } => match video {
            Some(v) if v.codec == VideoCodec::Av1 => return Err("AV1 is made by the FFmpeg fleet only".into()),
            Some(v) if v.target_vmaf.is_some() => {
                return Err("a VMAF target (a CRF searched on samples) is made by the FFmpeg fleet only".into())
            }
            None if o.two_pass => return Err("two_pass needs video".into()),
            _ => {}
        },
        PresetKind::Ladder { codec, per_title, .. } => {
            if per_title.is_some() {
                return Err(
                    "per-title ladders (trial encodes scored by VMAF) are made by the FFmpeg fleet only".into(),
                );
            }
            if *codec != VideoCodec::H264 && *codec != VideoCodec::H265 {
                return Err("Encoding.com ladders are H.264 or H.265".into());
            }
        }
        PresetKind::Thumbnails(t) => {
            if t.mode != ThumbnailMode::Poster {
                return Err("thumbnail series and sprite sheets are made by the FFmpeg fleet only".into());
            }
            if o.trim.is_some() {
                return Err("trim does not apply to thumbnails".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::Catalog;

    #[test]
    fn encodingcom_is_passed_over_for_scored_outputs_with_the_reason() {
        let c = Catalog::builtin();
        let mp4 = c.find("mp4-720p").unwrap();
        let asked = OutputOptions {
            quality: Some(true),
            ..Default::default()
        };
        let why = can_make(BackendKind::EncodingCom, mp4, &asked).unwrap_err();
        assert!(why.contains("quality") && why.contains("FFmpeg fleet"), "{why}");
        assert_eq!(can_make(BackendKind::Ffmpeg, mp4, &asked), Ok(()));
        // not asking (or the config's default, which applies only where it can) is fine
        assert_eq!(
            can_make(BackendKind::EncodingCom, mp4, &OutputOptions::default()),
            Ok(())
        );
        // a per-title ladder is trial encodes scored by VMAF: the fleet's alone
        let auto = c.find("hls-auto").unwrap();
        let why = can_make(BackendKind::EncodingCom, auto, &OutputOptions::default()).unwrap_err();
        assert!(why.contains("per-title"), "{why}");
        let why = can_make(
            BackendKind::EncodingCom,
            c.find("mp4-auto").unwrap(),
            &OutputOptions::default(),
        )
        .unwrap_err();
        assert!(why.contains("VMAF target"), "{why}");
        assert_eq!(
            can_make(
                BackendKind::EncodingCom,
                c.find("hls").unwrap(),
                &OutputOptions::default()
            ),
            Ok(())
        );
    }
}
