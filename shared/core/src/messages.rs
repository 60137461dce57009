//! Bodies of the messages on Nommer's own queues.

use serde::{Deserialize, Serialize};

/// On the `jobs` queue (ingest/api → dispatch) and the `work-ffmpeg` queue
/// (dispatch → workers): which job to look at. The job itself lives in the table; a
/// message only points at it, so a stale or duplicated message can never carry stale
/// instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: String,
}

impl JobMessage {
    pub fn new(job_id: impl Into<String>) -> Self {
        JobMessage { job_id: job_id.into() }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("JobMessage serialises")
    }

    /// Parses a body, with an error that says what was wrong.
    pub fn from_body(body: &str) -> Result<JobMessage, String> {
        let m: JobMessage = serde_json::from_str(body)
            .map_err(|e| format!("not a job message ({e}): {}", crate::text::clip(body, 200)))?;
        if !crate::ids::looks_valid(&m.job_id) {
            return Err(format!("`{}` is not a job id", crate::text::clip(&m.job_id, 80)));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_and_refusals() {
        let id = crate::ids::random();
        let m = JobMessage::new(id.clone());
        assert_eq!(JobMessage::from_body(&m.to_body()).unwrap().job_id, id);
        assert!(JobMessage::from_body("{}").unwrap_err().contains("not a job message"));
        assert!(JobMessage::from_body(r#"{"job_id":"../x"}"#)
            .unwrap_err()
            .contains("not a job id"));
    }
}
