//! How a job attempt ends short of success, and what the adapters' errors mean for it.

use nommer_aws::objects::ObjectError;
use nommer_core::error::JobErrorCode;
use nommer_core::StoreError;
use nommer_media::ProbeFailure;

/// How a job attempt ended, short of success.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// The job cannot succeed: fail it, delete the message.
    #[error("{0:?}: {1}")]
    Permanent(JobErrorCode, String),
    /// Something outside the job went wrong (S3, DynamoDB, the disk): try again later.
    #[error("{0}")]
    Retryable(String),
    /// Someone else changed the job (cancelled it, or another worker took it): stop.
    #[error("job changed under us: {0}")]
    Superseded(String),
}

impl From<StoreError> for JobFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::TaskConflict { .. } | StoreError::InvalidTransition(_) => {
                JobFailure::Superseded(e.to_string())
            }
            StoreError::Corrupt { .. } => JobFailure::Permanent(JobErrorCode::Internal, e.to_string()),
            StoreError::NotFound(_) | StoreError::Aws(_) => JobFailure::Retryable(e.to_string()),
        }
    }
}

impl From<ObjectError> for JobFailure {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound { .. } | ObjectError::Replaced { .. } => {
                JobFailure::Permanent(JobErrorCode::SourceNotFound, e.to_string())
            }
            _ => JobFailure::Retryable(e.to_string()),
        }
    }
}

/// Media FFmpeg cannot read fails the job; a prober that cannot run here is this
/// worker's problem, so the job is tried again.
impl From<ProbeFailure> for JobFailure {
    fn from(e: ProbeFailure) -> Self {
        match e {
            ProbeFailure::Unreadable(reason) => JobFailure::Permanent(JobErrorCode::InvalidMedia, reason),
            ProbeFailure::Unavailable(reason) => JobFailure::Retryable(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_s3_stored_differing_from_the_file_is_retried_with_both_checksums_named() {
        let e = ObjectError::ChecksumMismatch {
            bucket: "outbox".into(),
            key: "j/web/a.mp4".into(),
            ours: "uU0n…=".into(),
            theirs: "Xk2…=".into(),
        };
        match JobFailure::from(e) {
            JobFailure::Retryable(m) => {
                assert!(
                    m.contains("s3://outbox/j/web/a.mp4") && m.contains("uU0n…=") && m.contains("Xk2…="),
                    "{m}"
                );
                assert!(m.contains("retried"), "{m}");
            }
            other => panic!("not retryable: {other:?}"),
        }
    }
}
