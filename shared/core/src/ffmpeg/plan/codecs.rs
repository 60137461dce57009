//! The encoder options: each video codec's settings and rate control, and the audio
//! encoder with its optional loudness normalisation.

use super::s;
use crate::job::Loudness;
use crate::presets::{AudioCodec, AudioSpec, VideoCodec};

/// A video encoder and its rate control: `bitrate` an average (capped at 1.5x), else
/// constant quality `crf` capped at `max_kbps`; `idx` names one output stream of several.
pub(super) fn video_codec_args(
    codec: VideoCodec,
    speed: &str,
    crf: u8,
    bitrate: Option<u32>,
    max_kbps: u32,
    idx: Option<usize>,
) -> Vec<String> {
    let sfx = |k: &str| match idx {
        Some(i) => format!("{k}:v:{i}"),
        None => format!("{k}:v"),
    };
    let mut a = Vec::new();
    match codec {
        VideoCodec::H264 => a.extend([
            s("-c:v"),
            s("libx264"),
            s("-preset"),
            s(speed),
            s("-profile:v"),
            s("high"),
        ]),
        VideoCodec::H265 => a.extend([
            s("-c:v"),
            s("libx265"),
            s("-preset"),
            s(speed),
            s("-tag:v"),
            s("hvc1"),
            s("-x265-params"),
            s("log-level=error"),
        ]),
        VideoCodec::Vp9 => a.extend([
            s("-c:v"),
            s("libvpx-vp9"),
            s("-deadline"),
            s("good"),
            s("-cpu-used"),
            s(speed),
            s("-row-mt"),
            s("1"),
        ]),
        VideoCodec::Av1 => a.extend([s("-c:v"), s("libsvtav1"), s("-preset"), s(speed), s("-g"), s("240")]),
    }
    match (bitrate, codec) {
        (Some(b), VideoCodec::Av1) => a.extend([sfx("-b"), format!("{b}k")]),
        (Some(b), _) => a.extend([
            sfx("-b"),
            format!("{b}k"),
            sfx("-maxrate"),
            format!("{}k", b * 3 / 2),
            sfx("-bufsize"),
            format!("{}k", b * 3),
        ]),
        (None, VideoCodec::Vp9) => a.extend([s("-crf"), crf.to_string(), sfx("-b"), format!("{max_kbps}k")]),
        (None, VideoCodec::Av1) => a.extend([s("-crf"), crf.to_string()]),
        (None, _) => a.extend([
            s("-crf"),
            crf.to_string(),
            sfx("-maxrate"),
            format!("{max_kbps}k"),
            sfx("-bufsize"),
            format!("{}k", max_kbps * 2),
        ]),
    }
    a
}

/// An audio encoder, then loudnorm when asked.
pub(super) fn audio_args(a: &AudioSpec, loudness: Option<&Loudness>) -> Vec<String> {
    let mut v = match a.codec {
        AudioCodec::Aac => vec![s("-c:a"), s("aac")],
        AudioCodec::Opus => vec![s("-c:a"), s("libopus")],
        AudioCodec::Mp3 => vec![s("-c:a"), s("libmp3lame")],
    };
    v.extend([
        s("-b:a"),
        format!("{}k", a.bitrate_kbps),
        s("-ac"),
        a.channels.to_string(),
        s("-ar"),
        a.sample_rate.to_string(),
    ]);
    if let Some(l) = loudness {
        v.extend([
            s("-af"),
            format!(
                "loudnorm=I={}:TP={}:LRA={}",
                l.integrated_lufs, l.true_peak_db, l.range_lu
            ),
        ]);
    }
    v
}
