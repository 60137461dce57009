//! Webhook deliveries: who an event goes to, the message each attempt travels in on the
//! webhooks queue, and what each attempt did (recorded on the job).

use crate::events::Event;
use crate::state::JobState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who a delivery goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The job's own `notify_url`.
    Job { url: String },
    /// An endpoint of the config file, by name (its URL and secret are read at delivery).
    Endpoint { name: String },
}

impl Target {
    /// How an attempt's record names it: `notify_url` or the endpoint's name.
    pub fn name(&self) -> String {
        match self {
            Target::Job { .. } => "notify_url".to_string(),
            Target::Endpoint { name } => name.clone(),
        }
    }
}

/// A message on the webhooks queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: Event,
    pub target: Target,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Not before this time (SQS delays at most 15 minutes; longer waits hop).
    pub not_before: DateTime<Utc>,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The endpoint took it.
    Delivered,
    /// It failed; another attempt is queued.
    Retry,
    /// It failed for the last time (or for good) and is parked in the dead-letter queue.
    DeadLettered,
    /// Not due yet: it hopped another delay on the queue.
    Waiting,
}

/// What one attempt did, recorded on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: JobState,
    /// `notify_url` or the endpoint's name.
    pub target: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outcome: Outcome,
}

/// Why an attempt failed: the HTTP status if there was one, the reason, and whether
/// trying again could help.
#[derive(Debug, Clone, PartialEq)]
pub struct PostFailure {
    pub status: Option<u16>,
    pub reason: String,
    pub permanent: bool,
}

impl PostFailure {
    pub fn permanent(reason: impl Into<String>) -> Self {
        PostFailure {
            status: None,
            reason: reason.into(),
            permanent: true,
        }
    }

    pub fn transient(status: Option<u16>, reason: impl Into<String>) -> Self {
        PostFailure {
            status,
            reason: reason.into(),
            permanent: false,
        }
    }
}
