//! The job: what was asked, where it is, what came out.

use crate::error::JobErrorCode;
use crate::state::{InvalidTransition, JobState, Transition};
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
}

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Unique within the job; names the output's folder in the outbox.
    pub name: String,
    pub preset: String,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProbeStream {
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data`, ...
    pub kind: String,
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
}

impl Probe {
    pub fn has(&self, kind: &str) -> bool {
        self.streams.iter().any(|s| s.kind == kind)
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
    /// Key prefix in the outbox under which this job's outputs land.
    pub destination_prefix: String,
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl Job {
    /// A new job in `submitted`.
    pub fn new(id: String, origin: Origin, source: S3Uri, outputs: Vec<OutputSpec>, now: DateTime<Utc>) -> Job {
        Job {
            destination_prefix: format!("{id}/"),
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

    /// True when the worker holding a running job has not been heard from for `stale`.
    pub fn is_abandoned(&self, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
        self.state.is_running() && self.heartbeat_at.map(|h| now - h > stale).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new(
            crate::ids::random(),
            Origin::Api,
            S3Uri::new("inbox", "a.mov"),
            vec![OutputSpec {
                name: "mp4-720p".into(),
                preset: "mp4-720p".into(),
            }],
            Utc::now(),
        )
    }

    #[test]
    fn s3_uris_parse_and_refuse_with_reasons() {
        let u = S3Uri::parse("s3://my-bucket/path/to/clip.mov").unwrap();
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.key, "path/to/clip.mov");
        assert_eq!(u.file_name(), "clip.mov");
        assert_eq!(u.to_string(), "s3://my-bucket/path/to/clip.mov");
        assert!(S3Uri::parse("https://x/y").unwrap_err().contains("not an s3://"));
        assert!(S3Uri::parse("s3://bucket").unwrap_err().contains("no object key"));
        assert!(S3Uri::parse("s3://Bad_Bucket/x").unwrap_err().contains("bucket name"));
        assert!(S3Uri::parse("s3://bucket/dir/").unwrap_err().contains("folder"));
    }

    #[test]
    fn apply_counts_attempts_and_records_history() {
        let mut j = job();
        let now = Utc::now();
        j.apply(Transition::Dispatch, now, None).unwrap();
        j.apply(Transition::StartDownload, now, None).unwrap();
        assert_eq!(j.attempts, 1);
        j.apply(Transition::Requeue, now, Some("worker lost".into())).unwrap();
        j.apply(Transition::StartDownload, now, None).unwrap();
        assert_eq!(j.attempts, 2);
        let states: Vec<_> = j.history.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [
                JobState::Submitted,
                JobState::Queued,
                JobState::Downloading,
                JobState::Queued,
                JobState::Downloading
            ]
        );
        assert!(j.apply(Transition::Finish, now, None).is_err());
        assert_eq!(j.state, JobState::Downloading, "a refused transition changes nothing");
    }

    #[test]
    fn fail_keeps_the_reason() {
        let mut j = job();
        j.fail(
            JobError::new(JobErrorCode::InvalidMedia, "moov atom not found"),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.error.as_ref().unwrap().code, JobErrorCode::InvalidMedia);
        assert!(j.history.last().unwrap().note.as_ref().unwrap().contains("moov atom"));
    }

    #[test]
    fn json_round_trip() {
        let j = job();
        let s = serde_json::to_string(&j).unwrap();
        assert!(s.contains("\"source\":\"s3://inbox/a.mov\""), "{s}");
        let back: Job = serde_json::from_str(&s).unwrap();
        assert_eq!(back, j);
    }
}
