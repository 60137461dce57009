//! From an uploaded object to a job: the one path every S3 `ObjectCreated` notification
//! takes. The job's id comes from the bucket, the key and the object's revision, so S3's
//! at-least-once delivery makes one job; its preset from the key's `inbox/<preset>/`
//! folder, else the object's `preset` metadata, else the default. An unknown preset or a
//! source over the size limit fails the job at once, so the uploader sees why and
//! nothing downloads it.

use super::submit::{self, SubmitError};
use crate::error::JobErrorCode;
use crate::ids;
use crate::job::{Job, JobError, Origin, OutputSpec, S3Uri};
use crate::ports::{Created, JobStore, ObjectError, ObjectInfo, ObjectStore, WorkQueue};
use crate::presets::Catalog;
use crate::settings::IngestSettings;
use crate::state::InvalidTransition;
use std::sync::Arc;

/// Object metadata key (`x-amz-meta-preset`) that picks a preset for an upload.
pub const PRESET_METADATA: &str = "preset";
/// Uploads under `inbox/<preset>/` get that preset.
pub const INBOX_PREFIX: &str = "inbox/";

/// What an S3 notification says of one object (its key already decoded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upload {
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    pub size: Option<u64>,
    pub version_id: Option<String>,
    pub e_tag: Option<String>,
    pub sequencer: Option<String>,
}

/// What became of one upload.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Created(String),
    Duplicate(String),
    Skipped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
}

/// The adapters ingest runs on.
#[derive(Clone)]
pub struct Ingest {
    pub settings: IngestSettings,
    pub store: Arc<dyn JobStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn WorkQueue>,
}

impl Ingest {
    /// Makes (or finds) the job for an uploaded object. Safe to repeat.
    pub async fn upload(&self, u: &Upload) -> Result<RecordOutcome, IngestError> {
        if !u.event_name.starts_with("ObjectCreated:") {
            tracing::info!(event_name = %u.event_name, "not an ObjectCreated event; skipped");
            return Ok(RecordOutcome::Skipped(format!("event {}", u.event_name)));
        }
        if u.bucket.is_empty() || u.key.is_empty() {
            return Err(IngestError::Malformed("S3 record without a bucket or key".into()));
        }
        if u.key.ends_with('/') {
            tracing::info!("folder marker; skipped");
            return Ok(RecordOutcome::Skipped("folder marker".into()));
        }
        // the job's source must read back as what it names (the store keeps it as an
        // s3:// URI): a bucket or key S3 never sends is refused here, not written as a
        // job no reader can load
        let source = S3Uri::parse(&format!("s3://{}/{}", u.bucket, u.key)).map_err(IngestError::Malformed)?;
        if source.bucket != u.bucket {
            let bucket = crate::text::clip(&u.bucket, 80);
            return Err(IngestError::Malformed(format!(
                "`{bucket}` is not a valid S3 bucket name"
            )));
        }
        if u.size == Some(0) {
            tracing::info!("zero-byte object; skipped");
            return Ok(RecordOutcome::Skipped("zero bytes".into()));
        }
        let Some(info) = self.objects.head(&u.bucket, &u.key).await? else {
            tracing::info!("object is gone (deleted after upload); skipped");
            return Ok(RecordOutcome::Skipped("object gone".into()));
        };
        if info.size == 0 {
            tracing::info!("zero-byte object; skipped");
            return Ok(RecordOutcome::Skipped("zero bytes".into()));
        }
        let job = self.job_for(u, source, info)?;
        let id = job.id.clone();
        let s = &self.settings;
        match submit::create_and_enqueue(self.store.as_ref(), self.queue.as_ref(), &s.jobs_queue_url, &job).await? {
            Created::New(_) => Ok(RecordOutcome::Created(id)),
            Created::Existing(_) => Ok(RecordOutcome::Duplicate(id)),
        }
    }

    /// The job an upload makes: failed already when its preset is unknown or the source
    /// is over the size limit.
    fn job_for(&self, u: &Upload, source: S3Uri, info: ObjectInfo) -> Result<Job, IngestError> {
        let revision = u
            .version_id
            .clone()
            .filter(|v| !v.is_empty() && v != "null")
            .or_else(|| u.e_tag.clone().filter(|e| !e.is_empty()))
            .or_else(|| u.sequencer.clone())
            .or(info.etag.clone())
            .unwrap_or_default();
        let id = ids::for_upload(&u.bucket, &u.key, &revision);
        let now = chrono::Utc::now();
        let catalog = &self.settings.config.catalog;
        let from_meta = info.metadata.get(PRESET_METADATA).map(|p| p.trim().to_string());
        let preset = preset_from_key(&u.key, catalog)
            .map(str::to_string)
            .or(from_meta)
            .unwrap_or_else(|| self.settings.default_preset.clone());
        let outputs = vec![OutputSpec::new(preset.clone(), preset.clone())];
        let mut job = Job::new(id, Origin::Upload, source, outputs, now);
        job.source_etag = u.e_tag.clone().filter(|e| !e.is_empty()).or(info.etag.clone());
        job.user_metadata = info
            .metadata
            .into_iter()
            .filter(|(k, _)| k != PRESET_METADATA)
            .collect();
        if catalog.find(&preset).is_none() {
            let why = format!("object metadata preset: {}", catalog.unknown(&preset));
            job.fail(JobError::new(JobErrorCode::UnknownPreset, why), now)?;
        } else if let Some(why) =
            crate::settings::over_source_limit("the upload", info.size, self.settings.max_source_bytes)
        {
            job.fail(JobError::new(JobErrorCode::SourceTooLarge, why), now)?;
        }
        Ok(job)
    }
}

/// The preset named by the key's `inbox/<preset>/` prefix, if it names one.
pub fn preset_from_key<'a>(key: &str, catalog: &'a Catalog) -> Option<&'a str> {
    let rest = key.strip_prefix(INBOX_PREFIX)?;
    let (segment, file) = rest.split_once('/')?;
    if file.is_empty() {
        return None;
    }
    catalog.find(segment).map(|p| p.name.as_str())
}
