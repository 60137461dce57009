//! A job's task at a remote backend (Encoding.com): which task it is, and its status in
//! the backend's own words, with what each means for the job's state.

use crate::state::JobState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's task at a remote backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteTask {
    pub backend: String,
    /// Encoding.com's MediaID.
    pub media_id: String,
    /// The backend's own status, as last read.
    pub status: TaskStatus,
    pub submitted_at: DateTime<Utc>,
    /// When the status was last confirmed with the backend.
    pub checked_at: DateTime<Utc>,
    /// Notifications received (each confirmed before use).
    #[serde(default)]
    pub notifications: u32,
    /// When the backend's status or progress last changed (not when we last asked):
    /// the task's sign of life, for the stall rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<DateTime<Utc>>,
    /// Since when a caller has held the job to copy the finished task's outputs into the
    /// outbox (none: nobody holds it); see `flows::collect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collecting_since: Option<DateTime<Utc>>,
}

/// A remote task's status, in the remote backend's words (Encoding.com's: its clients and
/// answers spell them many ways, all read alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    New,
    Downloading,
    ReadyToProcess,
    WaitingForEncoder,
    Processing,
    Saving,
    Finished,
    Error,
    Deleted,
    Other(String),
}

impl TaskStatus {
    /// Reads a status word whatever its spelling: case, spaces, `_` and `-` are ignored,
    /// so `Waiting for encoder`, `Waitingforencoder` and `waiting_for_encoder` are one
    /// status (Encoding.com's answers and its clients use all of these).
    pub fn parse(s: &str) -> TaskStatus {
        let folded: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match folded.as_str() {
            "new" => TaskStatus::New,
            "downloading" | "downloaded" => TaskStatus::Downloading,
            "readytoprocess" => TaskStatus::ReadyToProcess,
            "waitingforencoder" => TaskStatus::WaitingForEncoder,
            "processing" => TaskStatus::Processing,
            "saving" | "saved" => TaskStatus::Saving,
            "finished" => TaskStatus::Finished,
            "error" => TaskStatus::Error,
            "deleted" | "stopped" | "canceled" | "cancelled" => TaskStatus::Deleted,
            _ => TaskStatus::Other(s.trim().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::New => "New",
            TaskStatus::Downloading => "Downloading",
            TaskStatus::ReadyToProcess => "Ready to process",
            TaskStatus::WaitingForEncoder => "Waiting for encoder",
            TaskStatus::Processing => "Processing",
            TaskStatus::Saving => "Saving",
            TaskStatus::Finished => "Finished",
            TaskStatus::Error => "Error",
            TaskStatus::Deleted => "Deleted",
            TaskStatus::Other(s) => s,
        }
    }

    /// Our state for this status and the progress to show in it; `None` for a word we do
    /// not know, which leaves the job where it is (still running at Encoding.com, never
    /// queued again from scratch). `Finished`, `Error` and `Deleted` map to terminal
    /// states the caller handles (outputs to check, fallback). Before processing starts,
    /// Encoding.com's `progress` is ignored: it can read 100 while the task waits for an
    /// encoder.
    pub fn ours(&self, progress: f64) -> Option<(JobState, u8)> {
        let pct = |p: f64| if p.is_finite() { p.clamp(0.0, 99.0) as u8 } else { 0 };
        Some(match self {
            TaskStatus::New => (JobState::Queued, 0),
            TaskStatus::Other(_) => return None,
            TaskStatus::Downloading => (JobState::Downloading, 0),
            // the source is fetched; the task waits for a machine
            TaskStatus::ReadyToProcess | TaskStatus::WaitingForEncoder => (JobState::Downloading, 100),
            TaskStatus::Processing => (JobState::Encoding, pct(progress)),
            TaskStatus::Saving => (JobState::Uploading, 0),
            TaskStatus::Finished => (JobState::Complete, 100),
            TaskStatus::Error => (JobState::Failed, 0),
            TaskStatus::Deleted => (JobState::Cancelled, 0),
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TaskStatus::parse(&String::deserialize(d)?))
    }
}
