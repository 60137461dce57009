//! The preset catalog: each preset is a typed description of an output, turned into
//! FFmpeg argv by one builder ([`crate::ffmpeg::encode_args`]), never a string of flags.

use serde::Serialize;

/// The preset a job gets when nothing names one.
pub const DEFAULT: &str = "mp4-720p";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    Mp4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    H264,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCodec {
    Aac,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoSpec {
    pub codec: VideoCodec,
    /// The output is at most this tall; smaller sources are never upscaled.
    pub max_height: u32,
    /// Constant-quality target (x264 CRF).
    pub crf: u8,
    /// Cap on the bit rate (VBV), kbit/s.
    pub max_bitrate_kbps: u32,
    /// Encoder speed/quality trade-off (x264 `-preset`).
    pub speed: &'static str,
    pub profile: &'static str,
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
    pub video: Option<VideoSpec>,
    /// Optional: a source without audio gives an output without audio.
    pub audio: Option<AudioSpec>,
}

impl Preset {
    pub fn extension(&self) -> &'static str {
        match self.container {
            Container::Mp4 => "mp4",
        }
    }
    pub fn content_type(&self) -> &'static str {
        match self.container {
            Container::Mp4 => "video/mp4",
        }
    }
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
        video: Some(VideoSpec {
            codec: VideoCodec::H264,
            max_height,
            crf,
            max_bitrate_kbps: max_kbps,
            speed: "veryfast",
            profile: "high",
        }),
        audio: Some(AudioSpec {
            codec: AudioCodec::Aac,
            bitrate_kbps: audio_kbps,
            channels: 2,
            sample_rate: 48_000,
        }),
    }
}

static CATALOG: [Preset; 4] = [
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
}
