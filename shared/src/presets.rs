//! The preset catalog: each preset is a typed description of an output, turned into
//! FFmpeg argv by one builder ([`crate::ffmpeg::encode_args`]), never a string of flags.

use serde::Serialize;

/// The preset a job gets when nothing names one.
pub const DEFAULT: &str = "mp4-720p";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    Mp4,
    WebM,
    /// MPEG-4 audio (AAC in an MP4 box)
    M4a,
    Mp3,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::WebM => "webm",
            Container::M4a => "m4a",
            Container::Mp3 => "mp3",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::WebM => "video/webm",
            Container::M4a => "audio/mp4",
            Container::Mp3 => "audio/mpeg",
        }
    }
    /// FFmpeg's muxer name.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::WebM => "webm",
            Container::M4a => "ipod",
            Container::Mp3 => "mp3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    H264,
    H265,
    Vp9,
    Av1,
}

impl VideoCodec {
    /// What ffprobe calls the codec of an output.
    pub fn probe_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "hevc",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::Av1 => "av1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCodec {
    Aac,
    Opus,
    Mp3,
}

impl AudioCodec {
    pub fn probe_name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
            AudioCodec::Mp3 => "mp3",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoSpec {
    pub codec: VideoCodec,
    /// The output is at most this tall; smaller sources are never upscaled.
    pub max_height: u32,
    /// Constant-quality target (CRF; each encoder has its own scale).
    pub crf: u8,
    /// Cap on the bit rate, kbit/s.
    pub max_bitrate_kbps: u32,
    /// Encoder speed/quality trade-off (x264/x265 `-preset`, SVT-AV1 preset number,
    /// libvpx `-cpu-used`).
    pub speed: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioSpec {
    pub codec: AudioCodec,
    pub bitrate_kbps: u32,
    pub channels: u32,
    pub sample_rate: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub container: Container,
    /// `None` for audio-only presets.
    pub video: Option<VideoSpec>,
    /// A source without audio gives an output without audio (except audio-only presets,
    /// which need it).
    pub audio: Option<AudioSpec>,
}

impl Preset {
    pub fn extension(&self) -> &'static str {
        self.container.extension()
    }
    pub fn content_type(&self) -> &'static str {
        self.container.content_type()
    }
    /// The source streams this preset cannot do without.
    pub fn needs_video(&self) -> bool {
        self.video.is_some()
    }
    pub fn needs_audio(&self) -> bool {
        self.video.is_none() && self.audio.is_some()
    }
}

const fn video(
    codec: VideoCodec,
    max_height: u32,
    crf: u8,
    max_bitrate_kbps: u32,
    speed: &'static str,
) -> Option<VideoSpec> {
    Some(VideoSpec {
        codec,
        max_height,
        crf,
        max_bitrate_kbps,
        speed,
    })
}

const fn audio(codec: AudioCodec, bitrate_kbps: u32) -> Option<AudioSpec> {
    Some(AudioSpec {
        codec,
        bitrate_kbps,
        channels: 2,
        sample_rate: 48_000,
    })
}

const fn mp4_h264(
    name: &'static str,
    description: &'static str,
    max_height: u32,
    crf: u8,
    max_kbps: u32,
    audio_kbps: u32,
) -> Preset {
    Preset {
        name,
        description,
        container: Container::Mp4,
        video: video(VideoCodec::H264, max_height, crf, max_kbps, "veryfast"),
        audio: audio(AudioCodec::Aac, audio_kbps),
    }
}

static CATALOG: [Preset; 9] = [
    mp4_h264(
        "mp4-1080p",
        "MP4, H.264 High up to 1080p, AAC 160 kbit/s",
        1080,
        22,
        8_000,
        160,
    ),
    mp4_h264(
        "mp4-720p",
        "MP4, H.264 High up to 720p, AAC 128 kbit/s",
        720,
        23,
        5_000,
        128,
    ),
    mp4_h264(
        "mp4-480p",
        "MP4, H.264 High up to 480p, AAC 128 kbit/s",
        480,
        24,
        2_500,
        128,
    ),
    mp4_h264(
        "mp4-360p",
        "MP4, H.264 High up to 360p, AAC 96 kbit/s",
        360,
        25,
        1_200,
        96,
    ),
    Preset {
        name: "mp4-h265-1080p",
        description: "MP4, H.265/HEVC up to 1080p (hvc1, plays in Apple players), AAC 160 kbit/s",
        container: Container::Mp4,
        video: video(VideoCodec::H265, 1080, 26, 5_000, "fast"),
        audio: audio(AudioCodec::Aac, 160),
    },
    Preset {
        name: "webm-vp9-720p",
        description: "WebM, VP9 up to 720p (constrained quality), Opus 128 kbit/s",
        container: Container::WebM,
        video: video(VideoCodec::Vp9, 720, 32, 2_500, "4"),
        audio: audio(AudioCodec::Opus, 128),
    },
    Preset {
        name: "mp4-av1-720p",
        description: "MP4, AV1 (SVT-AV1) up to 720p, AAC 128 kbit/s",
        container: Container::Mp4,
        video: video(VideoCodec::Av1, 720, 35, 2_000, "8"),
        audio: audio(AudioCodec::Aac, 128),
    },
    Preset {
        name: "audio-aac",
        description: "Audio only: AAC 128 kbit/s stereo in M4A",
        container: Container::M4a,
        video: None,
        audio: audio(AudioCodec::Aac, 128),
    },
    Preset {
        name: "audio-mp3",
        description: "Audio only: MP3 192 kbit/s stereo",
        container: Container::Mp3,
        video: None,
        audio: audio(AudioCodec::Mp3, 192),
    },
];

pub fn catalog() -> &'static [Preset] {
    &CATALOG
}

pub fn find(name: &str) -> Option<&'static Preset> {
    CATALOG.iter().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn catalog_names_are_unique_and_default_exists() {
        let mut n = names();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), catalog().len());
        assert!(find(DEFAULT).is_some());
        assert!(find("mp4-9000p").is_none());
    }

    #[test]
    fn audio_presets_need_audio_and_video_presets_need_video() {
        let a = find("audio-mp3").unwrap();
        assert!(a.needs_audio() && !a.needs_video());
        let v = find("webm-vp9-720p").unwrap();
        assert!(v.needs_video() && !v.needs_audio());
        assert_eq!(v.extension(), "webm");
    }
}
