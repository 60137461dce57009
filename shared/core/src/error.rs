//! Errors callers branch on.

use serde::{Deserialize, Serialize};

/// Why a job failed, as a stable machine-readable code (the human message travels next
/// to it in [`crate::JobError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorCode {
    /// The source could not be read as media (corrupt, truncated, not a video).
    InvalidMedia,
    /// The source has no stream the requested outputs need (e.g. no video).
    MissingStream,
    /// The source is not allowed: a playlist or script, or over a limit (duration,
    /// pixels, streams). The message says which.
    RefusedSource,
    /// An output failed validation after encoding.
    InvalidOutput,
    /// The source object does not exist (any more).
    SourceNotFound,
    /// FFmpeg failed on a source it could read.
    EncodeFailed,
    /// The job's preset is not in the catalog.
    UnknownPreset,
    /// The source is over the byte limit (`NOMMER_MAX_SOURCE_BYTES`) or larger than the
    /// worker's scratch disk can hold; refused from its size, before any download.
    SourceTooLarge,
    /// The worker's scratch disk filled up ("No space left on device") during the
    /// download or the encode; not retried on the same disk.
    DiskFull,
    /// The job was retried as often as allowed.
    AttemptsExhausted,
    /// The job's message reached a dead-letter queue.
    DeadLettered,
    /// The job was running (on a worker, or at a remote backend) but made no progress
    /// and gave no heartbeat for longer than the stall time (`NOMMER_STALL_SECS`, or
    /// `NOMMER_REMOTE_STALL_SECS` at a remote backend); the message names the last step
    /// known. A queued job is never stalled: it is waiting.
    Stalled,
    /// No backend of the config can make the job's outputs as things stand; the message
    /// names each backend and why (e.g. no live worker's FFmpeg has libvmaf).
    NoBackend,
    /// Anything else; the message says what.
    Internal,
}

impl JobErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            JobErrorCode::InvalidMedia => "invalid_media",
            JobErrorCode::MissingStream => "missing_stream",
            JobErrorCode::RefusedSource => "refused_source",
            JobErrorCode::InvalidOutput => "invalid_output",
            JobErrorCode::SourceNotFound => "source_not_found",
            JobErrorCode::EncodeFailed => "encode_failed",
            JobErrorCode::UnknownPreset => "unknown_preset",
            JobErrorCode::SourceTooLarge => "source_too_large",
            JobErrorCode::DiskFull => "disk_full",
            JobErrorCode::AttemptsExhausted => "attempts_exhausted",
            JobErrorCode::DeadLettered => "dead_lettered",
            JobErrorCode::Stalled => "stalled",
            JobErrorCode::NoBackend => "no_backend",
            JobErrorCode::Internal => "internal",
        }
    }
}

/// What the job store can say besides "done".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(String),
    /// Another writer changed the job first (state or version moved on). Re-read and
    /// decide again; never overwrite.
    #[error("job {id} changed under us (expected state {expected_state} at version {expected_version})")]
    Conflict {
        id: String,
        expected_state: crate::JobState,
        expected_version: u64,
    },
    /// Another writer changed a split job's task first.
    #[error("task {id} changed under us (expected version {expected_version})")]
    TaskConflict { id: String, expected_version: u64 },
    #[error(transparent)]
    InvalidTransition(#[from] crate::InvalidTransition),
    #[error("job record {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("DynamoDB: {0}")]
    Aws(String),
}
