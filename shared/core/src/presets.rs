//! The preset catalog: each preset is a typed description of an output (a file, an
//! adaptive-streaming ladder, or thumbnails), turned into FFmpeg argv by one builder
//! ([`crate::ffmpeg::plan`]), never a string of flags. Built-in presets can be extended
//! (or replaced by name) from the config file.

use crate::job::Probe;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The preset a job gets when nothing names one.
pub const DEFAULT: &str = "mp4-720p";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    Mp4,
    #[serde(rename = "webm")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    H264,
    H265,
    Vp9,
    Av1,
}

impl VideoCodec {
    /// The CRFs a `target_vmaf` search keeps to when the preset names none.
    pub fn crf_range(self) -> (u8, u8) {
        match self {
            VideoCodec::H264 | VideoCodec::H265 => (16, 38),
            VideoCodec::Vp9 => (15, 50),
            VideoCodec::Av1 => (20, 55),
        }
    }

    /// What ffprobe calls the codec of an output.
    pub fn probe_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "hevc",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::Av1 => "av1",
        }
    }
    pub fn default_speed(self) -> &'static str {
        match self {
            VideoCodec::H264 => "veryfast",
            VideoCodec::H265 => "fast",
            VideoCodec::Vp9 => "4",
            VideoCodec::Av1 => "8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    pub codec: VideoCodec,
    /// The output is at most this tall; smaller sources are never upscaled.
    pub max_height: u32,
    /// Constant-quality target (CRF; each encoder has its own scale).
    pub crf: u8,
    /// Cap on the bit rate, kbit/s.
    pub max_bitrate_kbps: u32,
    /// Encoder speed/quality trade-off (x264/x265 `-preset`, SVT-AV1 preset number,
    /// libvpx `-cpu-used`); the codec's default when absent.
    #[serde(default)]
    pub speed: Option<String>,
    /// A quality target: the CRF is searched on samples of the title for this VMAF
    /// (`crf` is the first tried), then the file is encoded once at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_vmaf: Option<f64>,
    /// How far above the target is close enough (VMAF points; 1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmaf_tolerance: Option<f64>,
    /// The CRFs the search keeps to (the codec's usual range by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf_range: Option<[u8; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    pub codec: AudioCodec,
    pub bitrate_kbps: u32,
    #[serde(default = "two")]
    pub channels: u32,
    #[serde(default = "khz48")]
    pub sample_rate: u32,
}

fn two() -> u32 {
    2
}
fn khz48() -> u32 {
    48_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderFormat {
    /// HLS with fMP4 (CMAF) segments and a master playlist.
    Hls,
    /// MPEG-DASH with fMP4 segments and an MPD.
    Dash,
}

/// One rendition of a ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub height: u32,
    pub video_kbps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbnailMode {
    /// One frame at `at_seconds` (default: a tenth of the way in).
    Poster,
    /// `count` frames spread evenly over the source.
    Frames,
    /// `count` frames tiled into one image, with a WebVTT index for scrubbing.
    Sprite,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailSpec {
    pub mode: ThumbnailMode,
    #[serde(default = "one")]
    pub count: u32,
    /// Width of each image; the height keeps the aspect ratio.
    pub width: u32,
    /// Images per row of a sprite sheet.
    #[serde(default = "ten")]
    pub columns: u32,
}

fn one() -> u32 {
    1
}
fn ten() -> u32 {
    10
}

/// What a preset makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresetKind {
    /// One media file.
    File {
        container: Container,
        /// `None` for audio-only presets.
        #[serde(default)]
        video: Option<VideoSpec>,
        /// A source without audio gives an output without audio (except audio-only
        /// presets, which need it).
        #[serde(default)]
        audio: Option<AudioSpec>,
    },
    /// An adaptive-streaming ladder, every rendition from one decode of the source.
    Ladder {
        format: LadderFormat,
        codec: VideoCodec,
        rungs: Vec<Rung>,
        audio: AudioSpec,
        segment_seconds: u32,
        /// Per-title: each rung's rate chosen for the title from trial encodes of its
        /// samples, for a VMAF target within bounds (`hls-auto`, `dash-auto`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        per_title: Option<crate::per_title::PerTitle>,
    },
    /// Still images.
    Thumbnails(ThumbnailSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub kind: PresetKind,
}

impl Preset {
    /// Whether the output carries audio (when the source has some).
    pub fn makes_audio(&self) -> bool {
        match &self.kind {
            PresetKind::File { audio, .. } => audio.is_some(),
            PresetKind::Ladder { .. } => true,
            PresetKind::Thumbnails(_) => false,
        }
    }

    /// The source streams this preset cannot do without.
    pub fn needs_video(&self) -> bool {
        match &self.kind {
            PresetKind::File { video, .. } => video.is_some(),
            PresetKind::Ladder { .. } | PresetKind::Thumbnails(_) => true,
        }
    }
    pub fn needs_audio(&self) -> bool {
        matches!(
            &self.kind,
            PresetKind::File {
                video: None,
                audio: Some(_),
                ..
            }
        )
    }

    /// Checks a preset (from the config file) for values FFmpeg would choke on.
    pub fn check(&self) -> Result<(), PresetError> {
        self.problem().map_err(|problem| PresetError {
            preset: self.name.clone(),
            problem,
        })
    }

    fn problem(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err("use a name of 1-64 of a-z 0-9 - _".into());
        }
        match &self.kind {
            PresetKind::File {
                container,
                video,
                audio,
            } => check_file(*container, video.as_ref(), audio.as_ref()),
            PresetKind::Ladder {
                codec,
                rungs,
                audio,
                segment_seconds,
                per_title,
                ..
            } => {
                check_ladder(*codec, rungs, audio, *segment_seconds)?;
                match per_title {
                    Some(pt) => pt.check(&rungs.iter().map(|r| r.height).collect::<Vec<_>>()),
                    None => Ok(()),
                }
            }
            PresetKind::Thumbnails(t) => {
                if !(16..=3840).contains(&t.width) || !(1..=500).contains(&t.count) || !(1..=50).contains(&t.columns) {
                    return Err("thumbnails: width 16-3840, count 1-500, columns 1-50".into());
                }
                Ok(())
            }
        }
    }
}

impl VideoSpec {
    /// The CRF search this video asks for (`None` without `target_vmaf`).
    pub fn crf_search(&self) -> Option<crate::target_vmaf::Search> {
        let target_vmaf = self.target_vmaf?;
        let (a, b) = self.crf_range.map(|[a, b]| (a, b)).unwrap_or(self.codec.crf_range());
        let (lo, hi) = (a.min(b), a.max(b));
        Some(crate::target_vmaf::Search {
            target_vmaf,
            tolerance: self.vmaf_tolerance.unwrap_or(1.0),
            crf_min: lo,
            crf_max: hi,
            start: self.crf.clamp(lo, hi),
        })
    }

    fn check(&self) -> Result<(), String> {
        if !(16..=8640).contains(&self.max_height) {
            return Err(format!("max_height {} is not within 16-8640", self.max_height));
        }
        if self.crf > 63 {
            return Err(format!("crf {} is above 63", self.crf));
        }
        if !(50..=200_000).contains(&self.max_bitrate_kbps) {
            return Err(format!(
                "max_bitrate_kbps {} is not within 50-200000",
                self.max_bitrate_kbps
            ));
        }
        if let Some(t) = self.target_vmaf {
            if !(20.0..=100.0).contains(&t) {
                return Err(format!("target_vmaf {t} is not within 20-100"));
            }
        }
        if let Some(t) = self.vmaf_tolerance {
            if !(0.1..=10.0).contains(&t) {
                return Err(format!("vmaf_tolerance {t} is not within 0.1-10"));
            }
        }
        if let Some([lo, hi]) = self.crf_range {
            if lo > hi || hi > 63 {
                return Err(format!("crf_range [{lo}, {hi}] is not low-high within 0-63"));
            }
        }
        if self.target_vmaf.is_none() && (self.vmaf_tolerance.is_some() || self.crf_range.is_some()) {
            return Err("vmaf_tolerance and crf_range go with target_vmaf".into());
        }
        if let Some(s) = &self.speed {
            if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("speed `{s}` is not a plain word or number"));
            }
        }
        Ok(())
    }
}

impl AudioSpec {
    fn check(&self) -> Result<(), String> {
        if !(8..=1024).contains(&self.bitrate_kbps)
            || !(1..=8).contains(&self.channels)
            || !(8000..=96000).contains(&self.sample_rate)
        {
            return Err("audio: bitrate_kbps 8-1024, channels 1-8, sample_rate 8000-96000".into());
        }
        Ok(())
    }
}

/// A file preset: video, audio or both, each in a codec its container takes.
fn check_file(container: Container, video: Option<&VideoSpec>, audio: Option<&AudioSpec>) -> Result<(), String> {
    if video.is_none() && audio.is_none() {
        return Err("a file preset needs video, audio or both".into());
    }
    if let Some(v) = video {
        v.check()?;
        let ok = match container {
            Container::Mp4 => true,
            Container::WebM => matches!(v.codec, VideoCodec::Vp9 | VideoCodec::Av1),
            Container::M4a | Container::Mp3 => false,
        };
        if !ok {
            return Err(format!("{:?} video cannot go in a {:?} file", v.codec, container));
        }
    }
    if let Some(a) = audio {
        a.check()?;
        let ok = match container {
            Container::Mp4 => matches!(a.codec, AudioCodec::Aac | AudioCodec::Mp3 | AudioCodec::Opus),
            Container::WebM => a.codec == AudioCodec::Opus,
            Container::M4a => a.codec == AudioCodec::Aac,
            Container::Mp3 => a.codec == AudioCodec::Mp3,
        };
        if !ok {
            return Err(format!("{:?} audio cannot go in a {:?} file", a.codec, container));
        }
    }
    Ok(())
}

/// A ladder preset: 1-8 rungs in range, H.264 or H.265 with AAC, sensible segments.
fn check_ladder(codec: VideoCodec, rungs: &[Rung], audio: &AudioSpec, segment_seconds: u32) -> Result<(), String> {
    if rungs.is_empty() || rungs.len() > 8 {
        return Err("a ladder has 1-8 rungs".into());
    }
    if codec != VideoCodec::H264 && codec != VideoCodec::H265 {
        return Err("ladders are H.264 or H.265".into());
    }
    for r in rungs {
        if !(16..=4320).contains(&r.height) || !(50..=100_000).contains(&r.video_kbps) {
            return Err(format!("rung {}p at {} kbit/s is out of range", r.height, r.video_kbps));
        }
    }
    audio.check()?;
    if audio.codec != AudioCodec::Aac {
        return Err("ladder audio is AAC".into());
    }
    if !(1..=30).contains(&segment_seconds) {
        return Err("segment_seconds is 1-30".into());
    }
    Ok(())
}

fn file(
    name: &str,
    description: &str,
    container: Container,
    video: Option<VideoSpec>,
    audio: Option<AudioSpec>,
) -> Preset {
    Preset {
        name: name.into(),
        description: description.into(),
        kind: PresetKind::File {
            container,
            video,
            audio,
        },
    }
}

fn v(codec: VideoCodec, max_height: u32, crf: u8, max_bitrate_kbps: u32) -> Option<VideoSpec> {
    Some(VideoSpec {
        codec,
        max_height,
        crf,
        max_bitrate_kbps,
        speed: None,
        target_vmaf: None,
        vmaf_tolerance: None,
        crf_range: None,
    })
}

fn a(codec: AudioCodec, bitrate_kbps: u32) -> Option<AudioSpec> {
    Some(AudioSpec {
        codec,
        bitrate_kbps,
        channels: 2,
        sample_rate: 48_000,
    })
}

fn ladder_rungs() -> Vec<Rung> {
    [(1080, 5000), (720, 3000), (480, 1400), (360, 800), (240, 400)]
        .into_iter()
        .map(|(height, video_kbps)| Rung { height, video_kbps })
        .collect()
}

fn thumbs(name: &str, description: &str, mode: ThumbnailMode, count: u32, width: u32) -> Preset {
    Preset {
        name: name.into(),
        description: description.into(),
        kind: PresetKind::Thumbnails(ThumbnailSpec {
            mode,
            count,
            width,
            columns: 10,
        }),
    }
}

/// The presets Nommer ships with.
pub fn builtin() -> Vec<Preset> {
    use AudioCodec::{Aac, Opus};
    use Container::{M4a, Mp4, WebM};
    use VideoCodec::*;
    vec![
        file("mp4-1080p", "MP4, H.264 High up to 1080p, AAC 160 kbit/s", Mp4, v(H264, 1080, 22, 8_000), a(Aac, 160)),
        file("mp4-720p", "MP4, H.264 High up to 720p, AAC 128 kbit/s", Mp4, v(H264, 720, 23, 5_000), a(Aac, 128)),
        file("mp4-480p", "MP4, H.264 High up to 480p, AAC 128 kbit/s", Mp4, v(H264, 480, 24, 2_500), a(Aac, 128)),
        file("mp4-360p", "MP4, H.264 High up to 360p, AAC 96 kbit/s", Mp4, v(H264, 360, 25, 1_200), a(Aac, 96)),
        file(
            "mp4-h265-1080p",
            "MP4, H.265/HEVC up to 1080p (hvc1, plays in Apple players), AAC 160 kbit/s",
            Mp4,
            v(H265, 1080, 26, 5_000),
            a(Aac, 160),
        ),
        file("webm-vp9-720p", "WebM, VP9 up to 720p (constrained quality), Opus 128 kbit/s", WebM, v(Vp9, 720, 32, 2_500), a(Opus, 128)),
        file("mp4-av1-720p", "MP4, AV1 (SVT-AV1) up to 720p, AAC 128 kbit/s", Mp4, v(Av1, 720, 35, 2_000), a(Aac, 128)),
        file(
            "mp4-auto",
            "MP4, H.264 High up to 1080p at the CRF (16-38) that reaches VMAF 93 on samples of the title, 8 Mbit/s at most, AAC 160 kbit/s; needs libvmaf",
            Mp4,
            v(H264, 1080, 23, 8_000).map(|v| VideoSpec { target_vmaf: Some(93.0), ..v }),
            a(Aac, 160),
        ),
        file("audio-aac", "Audio only: AAC 128 kbit/s stereo in M4A", M4a, None, a(Aac, 128)),
        file("audio-mp3", "Audio only: MP3 192 kbit/s stereo", Container::Mp3, None, a(AudioCodec::Mp3, 192)),
        Preset {
            name: "hls".into(),
            description: "HLS ladder (fMP4/CMAF): H.264 1080p/720p/480p/360p/240p up to the source's height, AAC, master playlist".into(),
            kind: PresetKind::Ladder { format: LadderFormat::Hls, codec: H264, rungs: ladder_rungs(), audio: a(Aac, 128).unwrap(), segment_seconds: 4, per_title: None },
        },
        Preset {
            name: "dash".into(),
            description: "DASH ladder (fMP4): H.264 1080p/720p/480p/360p/240p up to the source's height, AAC, MPD".into(),
            kind: PresetKind::Ladder { format: LadderFormat::Dash, codec: H264, rungs: ladder_rungs(), audio: a(Aac, 128).unwrap(), segment_seconds: 4, per_title: None },
        },
        Preset {
            name: "hls-auto".into(),
            description: "HLS ladder shaped for the title: each rung's rate from trial encodes for a VMAF target (95 at 1080p down to 76 at 240p), rungs that add nothing dropped; needs libvmaf".into(),
            kind: PresetKind::Ladder { format: LadderFormat::Hls, codec: H264, rungs: ladder_rungs(), audio: a(Aac, 128).unwrap(), segment_seconds: 4, per_title: Some(crate::per_title::PerTitle::default_goals()) },
        },
        Preset {
            name: "dash-auto".into(),
            description: "DASH ladder shaped for the title, as hls-auto; needs libvmaf".into(),
            kind: PresetKind::Ladder { format: LadderFormat::Dash, codec: H264, rungs: ladder_rungs(), audio: a(Aac, 128).unwrap(), segment_seconds: 4, per_title: Some(crate::per_title::PerTitle::default_goals()) },
        },
        thumbs("poster", "One JPEG poster frame, 1280 wide, a tenth of the way in (or at `at_seconds`)", ThumbnailMode::Poster, 1, 1280),
        thumbs("thumbnails", "10 JPEG frames spread evenly over the source, 320 wide", ThumbnailMode::Frames, 10, 320),
        thumbs("sprite", "A sprite sheet of 50 frames, 160 wide, with a WebVTT index for scrubbing", ThumbnailMode::Sprite, 50, 160),
    ]
}

/// A preset that cannot be offered, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("preset `{preset}`: {problem}")]
pub struct PresetError {
    pub preset: String,
    pub problem: String,
}

/// The presets a deployment knows: the built-in ones, extended or overridden by the
/// config file's. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog(Arc<BTreeMap<String, Preset>>);

impl Catalog {
    pub fn builtin() -> Catalog {
        Catalog::with(Vec::new()).expect("built-in presets are valid")
    }

    /// The built-in presets plus `extra` (same name replaces).
    pub fn with(extra: Vec<Preset>) -> Result<Catalog, PresetError> {
        let mut map = BTreeMap::new();
        for p in builtin().into_iter().chain(extra) {
            p.check()?;
            map.insert(p.name.clone(), p);
        }
        Ok(Catalog(Arc::new(map)))
    }

    pub fn find(&self, name: &str) -> Option<&Preset> {
        self.0.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Preset> {
        self.0.values()
    }

    /// "`x` is not a preset; known: …" for error messages.
    pub fn unknown(&self, name: &str) -> String {
        format!("`{name}` is not a preset; known: {}", self.names().join(", "))
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

/// The source's picture as displayed: non-square pixels made square (a 720x576 PAL
/// picture with 16:15 pixels shows 768x576), rotation applied (FFmpeg autorotates on
/// decode).
pub fn display_size(probe: &Probe) -> Option<(u32, u32)> {
    let v = probe.video()?;
    let (w, h) = (v.width?, v.height?);
    let w = match v.sar() {
        Some(sar) => ((w as f64 * sar).round() as u32).max(1),
        None => w,
    };
    match v.rotation.map(|r| r.rem_euclid(180)) {
        Some(90) => Some((h, w)),
        _ => Some((w, h)),
    }
}

/// The short side of the displayed picture: what a preset's or a rung's "height" bounds,
/// so a portrait source keeps its class (720x1280 is 720p, like 1280x720).
pub fn short_side(probe: &Probe) -> Option<u32> {
    display_size(probe).map(|(w, h)| w.min(h))
}

/// The rungs of a ladder a source whose short side is `source_short` gets: never taller
/// than the source; a source below the smallest rung gets one rendition at its own
/// (even) size. A rung's height is the short side of its rendition.
pub fn ladder_for(rungs: &[Rung], source_short: u32) -> Vec<Rung> {
    let mut out: Vec<Rung> = rungs.iter().filter(|r| r.height <= source_short).cloned().collect();
    out.sort_by(|a, b| b.height.cmp(&a.height));
    out.dedup_by_key(|r| r.height);
    if out.is_empty() {
        let smallest = rungs.iter().min_by_key(|r| r.height).cloned().unwrap_or(Rung {
            height: 240,
            video_kbps: 400,
        });
        out.push(Rung {
            height: (source_short & !1).max(2),
            video_kbps: smallest.video_kbps,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_has_the_default() {
        let c = Catalog::builtin();
        assert_eq!(c.names().len(), builtin().len(), "names are unique");
        assert!(c.find(DEFAULT).is_some());
        assert!(c.find("mp4-9000p").is_none());
        assert!(c.unknown("x").contains("mp4-720p"));
    }

    #[test]
    fn stream_needs() {
        let c = Catalog::builtin();
        let a = c.find("audio-mp3").unwrap();
        assert!(a.needs_audio() && !a.needs_video());
        assert!(c.find("webm-vp9-720p").unwrap().needs_video());
        assert!(c.find("hls").unwrap().needs_video() && !c.find("hls").unwrap().needs_audio());
        assert!(c.find("sprite").unwrap().needs_video());
    }

    #[test]
    fn bad_presets_are_refused_with_a_reason() {
        let bad = |p: Preset| Catalog::with(vec![p]).unwrap_err().to_string();
        let mut p = file("x", "", Container::WebM, v(VideoCodec::H264, 720, 23, 1000), None);
        assert!(bad(p.clone()).contains("cannot go in a WebM"));
        p.name = "Bad Name".into();
        assert!(bad(p).contains("preset `Bad Name`: use a name of"));
        assert!(bad(file("y", "", Container::Mp4, None, None)).contains("needs video, audio or both"));
        assert!(bad(file("z", "", Container::Mp4, v(VideoCodec::H264, 720, 99, 1000), None)).contains("crf 99"));
        let mut s = file("s", "", Container::Mp4, v(VideoCodec::H264, 720, 23, 1000), None);
        if let PresetKind::File { video: Some(v), .. } = &mut s.kind {
            v.speed = Some("fast; rm -rf".into());
        }
        assert!(bad(s).contains("speed"));
        // a config preset replaces a built-in one of the same name
        let c = Catalog::with(vec![file(
            "mp4-720p",
            "mine",
            Container::Mp4,
            v(VideoCodec::H264, 700, 20, 900),
            a(AudioCodec::Aac, 96),
        )])
        .unwrap();
        assert_eq!(c.find("mp4-720p").unwrap().description, "mine");
    }
}
