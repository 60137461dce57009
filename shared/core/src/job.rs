//! The job: what was asked, where it is, what came out.

use crate::error::JobErrorCode;
use crate::state::{InvalidTransition, JobState, Transition};
pub use crate::task::{RemoteTask, TaskStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        S3Uri {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Parses `s3://bucket/key`, with a message fit for a user when it is not one.
    pub fn parse(s: &str) -> Result<S3Uri, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{s}` is not an s3:// URI (expected s3://bucket/key)"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{s}` has no object key (expected s3://bucket/key)"))?;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(format!("`{bucket}` is not a valid S3 bucket name"));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(format!("`{s}` names a folder, not an object"));
        }
        if key.len() > 1024 {
            return Err("the object key is longer than S3's 1024 bytes".into());
        }
        Ok(S3Uri::new(bucket, key))
    }

    /// The file name part of the key (after the last `/`).
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// The file name without its extension, safe in an S3 key and on disk: what outputs
    /// are named after (`{source_stem}`), whichever backend makes them.
    pub fn output_stem(&self) -> String {
        let name = self.file_name();
        let stem = match name.rsplit_once('.') {
            Some((s, _)) if !s.is_empty() => s,
            _ => name,
        };
        sanitize_stem(stem)
    }
}

/// A file name stem safe in an S3 key and on disk.
pub fn sanitize_stem(stem: &str) -> String {
    let s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "output".into()
    } else {
        s
    }
}

impl S3Uri {}

impl TryFrom<String> for S3Uri {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        S3Uri::parse(&s)
    }
}
impl From<S3Uri> for String {
    fn from(u: S3Uri) -> String {
        u.to_string()
    }
}
impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One output a job asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Unique within the job; names the output's folder in the outbox.
    pub name: String,
    pub preset: String,
    #[serde(default, skip_serializing_if = "OutputOptions::is_empty")]
    pub options: OutputOptions,
}

impl OutputSpec {
    pub fn new(name: impl Into<String>, preset: impl Into<String>) -> Self {
        OutputSpec {
            name: name.into(),
            preset: preset.into(),
            options: OutputOptions::default(),
        }
    }
}

/// Per-output options on top of the preset. Every field is typed and range-checked by the
/// API; nothing here is passed to FFmpeg as free text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputOptions {
    /// Encode only this part of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<Trim>,
    /// Cap on the output frame rate (a 60 fps source becomes 30 with `30`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_rate: Option<f64>,
    /// Average video bit rate (kbit/s) instead of the preset's constant quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_bitrate_kbps: Option<u32>,
    /// Constant-quality target instead of the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf: Option<u8>,
    /// Two-pass encoding (needs `video_bitrate_kbps`; file presets only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub two_pass: bool,
    /// EBU R128 loudness normalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<Loudness>,
    /// An image laid over the video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermark>,
    /// Thumbnails: the poster's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_seconds: Option<f64>,
    /// Thumbnails: how many frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Thumbnails: image width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Extra FFmpeg options per pass, for parity with media-nommer: only flags on the
    /// allow list, each value checked (see `crate::advanced`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advanced: Vec<PassOptions>,
    /// Score each video rendition against the source (VMAF, PSNR, SSIM); unset, the
    /// config's `[outputs] quality` decides (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<bool>,
}

impl OutputOptions {
    pub fn is_empty(&self) -> bool {
        *self == OutputOptions::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trim {
    #[serde(default)]
    pub start_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loudness {
    /// Integrated loudness target, LUFS (EBU R128: -23).
    #[serde(default = "minus_23")]
    pub integrated_lufs: f64,
    /// True-peak ceiling, dBTP.
    #[serde(default = "minus_1")]
    pub true_peak_db: f64,
    /// Loudness range target, LU.
    #[serde(default = "seven")]
    pub range_lu: f64,
}

fn minus_23() -> f64 {
    -23.0
}
fn minus_1() -> f64 {
    -1.0
}
fn seven() -> f64 {
    7.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    #[default]
    BottomRight,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// A PNG or JPEG in a bucket sources may come from.
    pub image: S3Uri,
    #[serde(default)]
    pub corner: Corner,
    /// Width of the image as a fraction of the video's width.
    #[serde(default = "tenth")]
    pub width_fraction: f64,
    /// Distance from the edges, pixels.
    #[serde(default = "sixteen")]
    pub margin: u32,
}

fn tenth() -> f64 {
    0.1
}
fn sixteen() -> u32 {
    16
}

/// Extra options for one FFmpeg pass: `input` before `-i`, `output` before the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PassOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
}

/// One file a job produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub output: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    /// SHA-256 of the file as uploaded (lowercase hex), checked against S3's own
    /// checksum after the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The quality scores of the renditions this file holds (a file its own; an HLS
    /// variant playlist its rung's; a master playlist or an MPD every rung's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<crate::quality::Quality>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: JobErrorCode,
    pub message: String,
}

impl JobError {
    pub fn new(code: JobErrorCode, message: impl Into<String>) -> Self {
        JobError {
            code,
            message: message.into(),
        }
    }
}

/// What ffprobe said about the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Probe {
    pub container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    pub streams: Vec<ProbeStream>,
    /// Whether the video is interlaced (and so deinterlaced), and how that was decided;
    /// set by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interlacing: Option<Interlacing>,
}

/// The decision to deinterlace, as recorded on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interlacing {
    pub interlaced: bool,
    /// `field_order` (the stream says so) or `idet` (FFmpeg's detector on a sample,
    /// when the stream does not say).
    pub detected_by: String,
    /// Which field is shown first, when known (`true`: top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_field_first: Option<bool>,
    /// idet's multi-frame totals, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idet: Option<IdetCounts>,
}

/// The "Multi frame detection" totals of FFmpeg's `idet` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdetCounts {
    pub tff: u32,
    pub bff: u32,
    pub progressive: u32,
    pub undetermined: u32,
}

impl IdetCounts {
    /// Most of the frames idet could decide on are interlaced.
    pub fn interlaced(&self) -> bool {
        // summed wide: the counts come from FFmpeg's stderr, and two near u32::MAX would
        // overflow a u32 (a panic in a debug build, a wrong verdict in a release one)
        let fields = u64::from(self.tff) + u64::from(self.bff);
        fields >= 5 && fields > u64::from(self.progressive)
    }
}

/// What a stream carries (ffprobe's `codec_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Video,
    Audio,
    Subtitle,
    Data,
    Attachment,
    #[default]
    #[serde(other)]
    Unknown,
}

impl From<&str> for StreamKind {
    fn from(codec_type: &str) -> Self {
        StreamKind::parse(codec_type)
    }
}

impl StreamKind {
    /// ffprobe's word for it; anything else is `Unknown`.
    pub fn parse(codec_type: &str) -> StreamKind {
        match codec_type {
            "video" => StreamKind::Video,
            "audio" => StreamKind::Audio,
            "subtitle" => StreamKind::Subtitle,
            "data" => StreamKind::Data,
            "attachment" => StreamKind::Attachment,
            _ => StreamKind::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProbeStream {
    pub index: u32,
    pub kind: StreamKind,
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// A still picture attached to the file (cover art, `disposition.attached_pic`): a
    /// video stream to ffprobe, but not video.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attached_pic: bool,
    /// ffprobe's `field_order`: `progressive`, `tt`, `bb`, `tb`, `bt`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_order: Option<String>,
    /// Pixel format, e.g. `yuv420p`, `yuv420p10le`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pix_fmt: Option<String>,
    /// Colour transfer (`bt709`, `smpte2084` for PQ, `arib-std-b67` for HLG, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_transfer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_primaries: Option<String>,
    /// Colour matrix (`bt709`, `bt2020nc`, `smpte170m`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_space: Option<String>,
    /// `tv` (limited) or `pc` (full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_range: Option<String>,
    /// Sample (pixel) aspect ratio `n:d`, when not square.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_aspect_ratio: Option<String>,
}

impl ProbeStream {
    /// High dynamic range: a PQ or HLG transfer.
    pub fn is_hdr(&self) -> bool {
        matches!(self.color_transfer.as_deref(), Some("smpte2084" | "arib-std-b67"))
    }

    /// The sample aspect ratio as a number, when it is known and not square.
    pub fn sar(&self) -> Option<f64> {
        let (n, d) = self.sample_aspect_ratio.as_deref()?.split_once(':')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (n > 0.0 && d > 0.0 && (n - d).abs() > f64::EPSILON).then(|| n / d)
    }
}

impl Probe {
    /// Whether the source has a stream of `kind` (`video`: real video, not cover art).
    pub fn has(&self, kind: StreamKind) -> bool {
        self.streams
            .iter()
            .any(|s| s.kind == kind && !(kind == StreamKind::Video && s.attached_pic))
    }

    /// The video stream outputs are made from: the first that is not an attached picture.
    pub fn video(&self) -> Option<&ProbeStream> {
        self.streams
            .iter()
            .find(|s| s.kind == StreamKind::Video && !s.attached_pic)
    }
}

/// How the job came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Upload,
    Api,
}

/// One entry of a job's history: each state it entered, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub state: JobState,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A job. Change it only through [`Job::apply`] (state) or the progress and heartbeat
/// setters, and persist it through the job store, which checks state and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
    pub origin: Origin,
    pub source: S3Uri,
    pub outputs: Vec<OutputSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// How many times a worker has started this job.
    pub attempts: u32,
    /// 0-100, for the current state's work.
    pub progress: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    #[serde(default)]
    pub manifest: Vec<OutputFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    #[serde(default)]
    pub user_metadata: BTreeMap<String, String>,
    /// Hash of the API request that created it, to refuse a reused idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// The worker holding the job while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Last sign of life from the worker holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The work-queue message the holding worker took it from (its own message coming
    /// back is not a duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The ETag of the source object the job was made for; the worker downloads that
    /// revision only, never a later upload to the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<String>,
    /// What the request said about the source, for routing before it is probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hints: Option<SourceHints>,
    /// Why the job went to its backend, and what it was estimated to cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<crate::decision::Decision>,
    /// The job's task at a remote backend (Encoding.com).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteTask>,
    /// The failed job this one retries (`POST /jobs/{id}/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// How the fleet split the job across workers, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::split::plan::SplitPlan>,
    /// Each scored video rendition (outputs asking for `quality`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<crate::quality::Quality>,
    /// What each per-title ladder measured and chose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_title: Vec<crate::per_title::Record>,
    /// What each `target_vmaf` file's CRF search tried and chose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_vmaf: Vec<crate::target_vmaf::Record>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Facts about the source given with an API request (used when it is not probed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceHints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl Job {
    /// A new job in `submitted`.
    pub fn new(id: String, origin: Origin, source: S3Uri, outputs: Vec<OutputSpec>, now: DateTime<Utc>) -> Job {
        Job {
            id,
            state: JobState::Submitted,
            version: 0,
            origin,
            source,
            outputs,
            backend: None,
            attempts: 0,
            progress: 0,
            probe: None,
            manifest: Vec::new(),
            error: None,
            notify_url: None,
            user_metadata: BTreeMap::new(),
            request_fingerprint: None,
            worker: None,
            heartbeat_at: None,
            message_id: None,
            source_etag: None,
            source_hints: None,
            routing: None,
            remote: None,
            retry_of: None,
            split: None,
            quality: Vec::new(),
            per_title: Vec::new(),
            target_vmaf: Vec::new(),
            created_at: now,
            updated_at: now,
            history: vec![HistoryEntry {
                state: JobState::Submitted,
                at: now,
                note: None,
            }],
        }
    }

    /// Moves the job along the state machine, with the bookkeeping each transition
    /// implies. Pure apart from the `now` it is given.
    pub fn apply(&mut self, t: Transition, now: DateTime<Utc>, note: Option<String>) -> Result<(), InvalidTransition> {
        let to = self.state.next(t)?;
        match t {
            Transition::StartDownload => {
                self.attempts += 1;
                self.error = None;
            }
            Transition::Finish => self.progress = 100,
            Transition::Requeue => {
                self.worker = None;
                self.heartbeat_at = None;
                self.message_id = None;
            }
            _ => {}
        }
        if t != Transition::Finish {
            self.progress = 0;
        }
        if to.is_terminal() {
            self.heartbeat_at = None;
        }
        self.state = to;
        self.updated_at = now;
        self.history.push(HistoryEntry {
            state: to,
            at: now,
            note,
        });
        Ok(())
    }

    /// Fails the job with a reason.
    pub fn fail(&mut self, error: JobError, now: DateTime<Utc>) -> Result<(), InvalidTransition> {
        let note = Some(format!("{}: {}", error.code.as_str(), error.message));
        self.apply(Transition::Fail, now, note)?;
        self.error = Some(error);
        Ok(())
    }

    /// Walks the job forward along the state path to `target`, one transition at a
    /// time, each in its history with `note`.
    pub fn advance_to(&mut self, target: JobState, now: DateTime<Utc>, note: &str) -> Result<(), InvalidTransition> {
        while self.state.rank() < target.rank() {
            let Some(t) = self.state.forward() else { break };
            self.apply(t, now, Some(note.to_string()))?;
        }
        Ok(())
    }

    /// Where an output's files go in the outbox: the config's key template filled in for
    /// this job (ends in `/`).
    pub fn output_prefix(&self, output: &OutputSpec, key_template: &str) -> String {
        render_key_template(
            key_template,
            &self.id,
            &output.name,
            &output.preset,
            &self.source.output_stem(),
            &self.created_at.format("%Y-%m-%d").to_string(),
        )
    }

    /// The job as users see it: without the request fingerprint and the queue message
    /// id, which are bookkeeping.
    pub fn public(mut self) -> Job {
        self.request_fingerprint = None;
        self.message_id = None;
        self
    }

    /// True when the worker holding a running job has not been heard from for `stale`.
    pub fn is_abandoned(&self, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
        self.state.is_running() && self.heartbeat_at.map(|h| now - h > stale).unwrap_or(true)
    }
}

/// Fills a key template. Values are already safe key segments.
pub fn render_key_template(
    t: &str,
    job_id: &str,
    output_name: &str,
    preset: &str,
    source_stem: &str,
    date: &str,
) -> String {
    let mut k = t
        .replace("{job_id}", job_id)
        .replace("{output_name}", output_name)
        .replace("{preset}", preset)
        .replace("{source_stem}", source_stem)
        .replace("{date}", date);
    if !k.is_empty() && !k.ends_with('/') {
        k.push('/');
    }
    k
}

#[cfg(test)]
mod tests;
