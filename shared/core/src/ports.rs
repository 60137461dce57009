//! The ports: what the flows need of the outside world, each a small trait. The adapters
//! (`nommer-aws`, `nommer-encodingcom`, `nommer-media`) implement them; the flows' tests
//! use the in-memory fakes of [`crate::fakes`].

use crate::error::StoreError;
use crate::job::{Job, OutputOptions, Probe, S3Uri};
use crate::presets::Preset;
use crate::state::JobState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How a create went.
#[derive(Debug)]
pub enum Created {
    /// The job is new.
    New(Job),
    /// A job with that id was already there (a duplicate event or a replayed request).
    Existing(Job),
}

/// Which jobs a page of [`JobStore::list_page`] holds.
#[derive(Debug, Clone, Copy)]
pub struct JobQuery<'a> {
    /// In lifecycle order: a job that moves on while the states are read one after the
    /// other is then seen twice, and kept once, rather than missed.
    pub states: &'a [JobState],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The cursor a previous page returned.
    pub before: Option<&'a str>,
    pub limit: usize,
}

/// The jobs, with conditional writes: a writer that lost a race gets
/// [`StoreError::Conflict`], never a silent overwrite.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new job unless one with its id exists.
    async fn create(&self, job: &Job) -> Result<Created, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Writes `next` in place of `current`, on condition that the stored job is still at
    /// `current`'s state and version. Returns the job as stored (version bumped).
    async fn replace(&self, current: &Job, next: Job) -> Result<Job, StoreError>;
    /// One page of jobs, newest first, that `keep` accepts, and the next page's cursor.
    async fn list_page(
        &self,
        query: JobQuery<'_>,
        keep: &(dyn for<'j> Fn(&'j Job) -> bool + Send + Sync),
    ) -> Result<(Vec<Job>, Option<String>), StoreError>;
    /// The `limit` oldest jobs in `state` by creation, oldest first (how long the queue
    /// has waited, without reading all of it).
    async fn oldest(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError>;
    /// Records which job a remote backend's task belongs to.
    async fn put_media_link(&self, backend: &str, media_id: &str, job_id: &str) -> Result<(), StoreError>;
    /// The job a remote task belongs to.
    async fn job_for_media(&self, backend: &str, media_id: &str) -> Result<Option<String>, StoreError>;

    /// A job that must exist.
    async fn require(&self, id: &str) -> Result<Job, StoreError> {
        self.get(id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }
    /// Stores `next` without changing `current`'s state (progress, the remote task).
    async fn update(&self, current: &Job, mut next: Job) -> Result<Job, StoreError> {
        next.state = current.state;
        next.updated_at = Utc::now();
        self.replace(current, next).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("s3://{bucket}/{key} was replaced after the job was made (its ETag is no longer {etag})")]
    Replaced { bucket: String, key: String, etag: String },
    /// What S3 stored is not what was read from the file: the upload is tried again.
    #[error("s3://{bucket}/{key}: S3 stored SHA-256 {theirs}, but the file read as {ours} while uploading; the upload is retried")]
    ChecksumMismatch {
        bucket: String,
        key: String,
        ours: String,
        theirs: String,
    },
    #[error("S3: {0}")]
    Aws(String),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
}

/// What a HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub content_type: Option<String>,
    pub metadata: std::collections::HashMap<String, String>,
}

/// Object storage, as far as the flows need it (transfers to and from disk are the
/// worker's, on the adapter itself).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// What the object is, or `None` when there is no such object.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, ObjectError>;
    /// The first `n` bytes of an object and its whole size.
    async fn head_bytes(&self, bucket: &str, key: &str, n: u64) -> Result<(Vec<u8>, u64), ObjectError>;
    async fn presign_get(&self, bucket: &str, key: &str, lifetime: Duration) -> Result<String, ObjectError>;
    /// Every object under `prefix`, with its size.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError>;
    /// Copies an object server-side; returns the copy's SHA-256 (lowercase hex) as the
    /// storage computed it, when it says.
    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<Option<String>, ObjectError>;
}

#[derive(Debug, thiserror::Error)]
#[error("SQS: {0}")]
pub struct QueueError(pub String);

/// A queue the flows put messages on.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends one message; returns its id.
    async fn send(&self, queue_url: &str, body: &str) -> Result<String, QueueError>;
    /// Sends one message that becomes visible after `delay_seconds` (at most 900).
    async fn send_delayed(&self, queue_url: &str, body: &str, delay_seconds: i32) -> Result<String, QueueError>;
}

/// Why an input could not be probed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeFailure {
    /// Not media FFmpeg can read (the reason is FFmpeg's).
    #[error("{0}")]
    Unreadable(String),
    /// No ffprobe here, no URL, or no answer in time over the network: nothing is known
    /// either way.
    #[error("{0}")]
    Unavailable(String),
}

/// ffprobe, with the input guard.
#[async_trait]
pub trait Prober: Send + Sync {
    /// Probes what `url` serves (`size` bytes).
    async fn probe_url(&self, url: &str, size: u64) -> Result<Probe, ProbeFailure>;
}

/// The fleet's workers as their heartbeats tell (the worker registry).
#[async_trait]
pub trait Fleet: Send + Sync {
    async fn heartbeats(&self) -> Result<std::collections::BTreeMap<String, crate::scaling::Heartbeat>, String>;
}

/// One output of a task for a remote encoder.
#[derive(Debug, Clone)]
pub struct RemoteOutput<'a> {
    pub name: &'a str,
    pub preset: &'a Preset,
    pub options: &'a OutputOptions,
    /// The folder the encoder delivers this output into.
    pub destination: S3Uri,
    /// The file name stem.
    pub stem: String,
}

/// A task for a remote encoder.
#[derive(Debug, Clone)]
pub struct RemoteRequest<'a> {
    pub source_url: String,
    pub callback_url: String,
    /// The source's displayed width and height, when known.
    pub source_size: Option<(u32, u32)>,
    /// The delivery bucket owner, granted full control of what the encoder writes.
    pub owner_canonical_id: String,
    pub outputs: Vec<RemoteOutput<'a>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The backend refused the task, or cannot make an output: trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// A network error, a timeout, the backend busy: try again later.
    #[error("{0}")]
    Retryable(String),
}

impl RemoteError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RemoteError::Retryable(_))
    }
}

/// What a remote encoder says of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    pub media_id: String,
    /// The backend's own status, kept on the job ([`crate::job::TaskStatus::ours`] says
    /// what it means for ours).
    pub status: crate::job::TaskStatus,
    /// 0-100 as the backend reports it.
    pub progress: f64,
    pub errors: Vec<String>,
}

/// A third-party encoder (Encoding.com).
#[async_trait]
pub trait RemoteEncoder: Send + Sync + std::fmt::Debug {
    /// Adds a task; returns its id at the backend.
    async fn add(&self, request: &RemoteRequest<'_>) -> Result<String, RemoteError>;
    async fn status(&self, media_id: &str) -> Result<RemoteStatus, RemoteError>;
    async fn cancel(&self, media_id: &str) -> Result<(), RemoteError>;
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// A setting is missing: the message says which to set.
    #[error("{0}")]
    Unset(String),
    #[error("{0} (the source reader's access key)")]
    Secret(#[from] SecretError),
    /// The storage could not sign the URL or say who owns the bucket.
    #[error("{0}")]
    Storage(String),
}

/// What handing a source to a remote encoder needs from our storage: a URL it can fetch
/// for days, and who owns what it delivers.
#[async_trait]
pub trait Handoff: Send + Sync {
    async fn source_url(&self, source: &S3Uri) -> Result<String, HandoffError>;
    async fn delivery_owner(&self) -> Result<String, HandoffError>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error("reading secret `{name}`: {reason}")]
    Unreadable { name: String, reason: String },
    #[error("secret `{name}` is not JSON")]
    NotJson { name: String },
    #[error("secret `{name}` has no `{key}` string")]
    NoField { name: String, key: String },
}

/// Named secrets (JSON documents).
#[async_trait]
pub trait Secrets: Send + Sync {
    async fn json(&self, name: &str) -> Result<serde_json::Value, SecretError>;
}

/// A string field of secret `name`.
pub fn secret_field(secret: &serde_json::Value, name: &str, key: &str) -> Result<String, SecretError> {
    secret
        .get(key)
        .and_then(|x| x.as_str())
        .map(str::to_string)
        .ok_or_else(|| SecretError::NoField {
            name: name.into(),
            key: key.into(),
        })
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("SNS: {0}")]
    Sns(String),
    #[error("DynamoDB: {0}")]
    Table(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The events topic.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes one event with the attributes subscribers filter on.
    async fn publish(&self, event: &crate::events::Event) -> Result<(), NotifyError>;
}

/// What was already done for an event (a redelivered change must not do it twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Done {
    pub published: bool,
    pub queued: bool,
}

/// One step of an event's fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Published,
    Queued,
}

/// The record of each event's fan-out and of each job's webhook attempts.
#[async_trait]
pub trait EventLedger: Send + Sync {
    /// Starts the record of an event, or reads what was done for it before.
    async fn claim(&self, event_id: &str) -> Result<Done, NotifyError>;
    async fn mark(&self, event_id: &str, step: Step) -> Result<(), NotifyError>;
    /// Appends an attempt to the job's delivery record.
    async fn record(&self, job_id: &str, attempt: &crate::deliveries::AttemptRecord) -> Result<(), NotifyError>;
}

/// HTTP for webhooks: the address check and the signed POST.
#[async_trait]
pub trait WebhookClient: Send + Sync {
    /// Checks a URL against the policy and resolves it; returns the host and the one
    /// address to connect to. `Err((reason, permanent))`.
    async fn vet(
        &self,
        url: &str,
        policy: &crate::events::Webhooks,
    ) -> Result<(String, std::net::SocketAddr), (String, bool)>;
    /// POSTs `body` to `url` (connecting to `addr` only) with the given headers; returns
    /// the HTTP status.
    async fn post(
        &self,
        url: &str,
        host: &str,
        addr: std::net::SocketAddr,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, crate::deliveries::PostFailure>;
}

/// A message taken off a queue to be looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times the queue has handed this message out (1 the first time).
    pub receive_count: u32,
}

/// A dead-letter queue, read by the sweep.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to `max` messages, each hidden from other readers for `hide`.
    async fn take(&self, queue_url: &str, max: i32, hide: Duration) -> Result<Vec<Taken>, QueueError>;
    /// Leaves a message on the queue, hidden for `hide`.
    async fn keep(&self, queue_url: &str, receipt_handle: &str, hide: Duration) -> Result<(), QueueError>;
    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), QueueError>;
}
