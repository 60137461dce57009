//! Whether running work is alive: the rule that calls a running job stalled, the last step
//! it is known to have reached (for the failure's message), and how long the oldest queued
//! job has waited. Pure: the caller gives the clock.
//!
//! A job on the FFmpeg fleet is alive while its worker writes: every progress write and
//! every heartbeat (a third of the work queue's visibility timeout) stamps `heartbeat_at`.
//! A worker that dies stops them, its message comes back after one visibility timeout,
//! and the next worker to receive it takes the job over (`queued` again, then a fresh
//! heartbeat): that is the retry, and the stall time must leave it room. So a job counts
//! as stalled only when no one has written for far longer than a takeover takes; the
//! conditional write settles a photo finish between the two. A job at a remote backend
//! has no heartbeat: it is alive while the backend's status or progress moves.

use crate::job::Job;
use crate::settings::{number, SettingsError, Source, VISIBILITY_TIMEOUT_SECS};
use crate::state::JobState;
use chrono::{DateTime, Utc};
use std::time::Duration;

pub const STALL_SECS: &str = "NOMMER_STALL_SECS";
pub const REMOTE_STALL_SECS: &str = "NOMMER_REMOTE_STALL_SECS";
pub const QUEUE_AGE_WARN_SECS: &str = "NOMMER_QUEUE_AGE_WARN_SECS";

/// 30 minutes: 15 visibility timeouts of the default 120 s, so a lost worker's job has
/// come back and been taken over many times before; above a fresh instance's boot (10
/// min of boot grace) plus a timeout, for a fleet that must grow before anyone can take
/// it; and far below the encode timeout (6 h), which a live but hung FFmpeg meets instead.
pub const DEFAULT_STALL_SECS: u64 = 30 * 60;
/// 6 hours: Encoding.com queues tasks behind others and reports progress coarsely; a
/// task whose status and progress stand still that long is stuck (MediaConvert's own
/// rule is 48 h for a job without progress).
pub const DEFAULT_REMOTE_STALL_SECS: u64 = 6 * 3600;
/// 15 minutes of waiting in `queued` is worth a warning (not a failure).
pub const DEFAULT_QUEUE_AGE_WARN_SECS: u64 = 15 * 60;

/// When running work counts as stalled, and when a queue's age is worth a warning.
#[derive(Debug, Clone, PartialEq)]
pub struct LivenessSettings {
    /// A fleet job with no progress and no heartbeat for this long is failed `stalled`.
    pub stall_after: Duration,
    /// A job at a remote backend whose status and progress stood still this long is too.
    pub remote_stall_after: Duration,
    /// The oldest queued job waiting longer than this is logged as a warning.
    pub queue_age_warn: Duration,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        LivenessSettings {
            stall_after: Duration::from_secs(DEFAULT_STALL_SECS),
            remote_stall_after: Duration::from_secs(DEFAULT_REMOTE_STALL_SECS),
            queue_age_warn: Duration::from_secs(DEFAULT_QUEUE_AGE_WARN_SECS),
        }
    }
}

impl LivenessSettings {
    /// Reads the three times; the stall time must be at least two visibility timeouts
    /// (`NOMMER_VISIBILITY_TIMEOUT_SECS`, the workers' setting): a shorter one would fail
    /// a lost worker's job before its message came back for the retry.
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let d = LivenessSettings::default();
        let stall: u64 = number(src, STALL_SECS, d.stall_after.as_secs(), 1)?;
        let visibility: u64 = number(src, VISIBILITY_TIMEOUT_SECS, 120, 6)?;
        if stall < 2 * visibility {
            return Err(SettingsError::Invalid {
                name: STALL_SECS,
                value: stall.to_string(),
                reason: format!(
                    "must be at least twice {VISIBILITY_TIMEOUT_SECS} ({visibility} s): a lost worker's job comes back for a retry only after one"
                ),
            });
        }
        Ok(LivenessSettings {
            stall_after: Duration::from_secs(stall),
            remote_stall_after: Duration::from_secs(number(
                src,
                REMOTE_STALL_SECS,
                d.remote_stall_after.as_secs(),
                60,
            )?),
            queue_age_warn: Duration::from_secs(number(src, QUEUE_AGE_WARN_SECS, d.queue_age_warn.as_secs(), 1)?),
        })
    }

    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&crate::settings::ProcessEnv)
    }
}

/// Held by a worker of ours, or followed at a remote backend.
fn at_remote(job: &Job) -> bool {
    job.remote.is_some() && job.worker.is_none()
}

/// The last sign of life of a running job: its worker's last write, or, at a remote
/// backend, the last time its status or progress moved; a state change counts for both.
pub fn last_sign_of_life(job: &Job) -> DateTime<Utc> {
    let entered = job.history.last().map(|h| h.at).unwrap_or(job.created_at);
    let sign = if at_remote(job) {
        job.remote.as_ref().and_then(|t| t.moved_at)
    } else {
        job.heartbeat_at
    };
    sign.map_or(entered, |s| s.max(entered))
}

/// Why a running job counts as stalled at `now`, or `None` while it is alive (or not
/// running: a queued job is waiting, not stalled).
pub fn stalled(job: &Job, now: DateTime<Utc>, s: &LivenessSettings) -> Option<String> {
    if !job.state.is_running() {
        return None;
    }
    // a split job's chunks wait their turn on the chunks queue like queued jobs; each
    // task is retried by its queue and fails the job when it runs out of attempts or is
    // dead-lettered
    if job.state == JobState::Encoding && job.split.is_some() {
        return None;
    }
    let remote = at_remote(job);
    let limit = if remote { s.remote_stall_after } else { s.stall_after };
    let quiet = (now - last_sign_of_life(job)).to_std().ok()?;
    if quiet <= limit {
        return None;
    }
    let step = step(job);
    Some(match (&job.remote, remote) {
        (Some(task), true) => format!(
            "no progress at {} for {} while {step} (task {}, status {})",
            task.backend,
            span(quiet),
            task.media_id,
            task.status
        ),
        _ => format!(
            "no progress or heartbeat for {} while {step}{}",
            span(quiet),
            job.worker
                .as_deref()
                .map(|w| format!(" on worker {w}"))
                .unwrap_or_default()
        ),
    })
}

/// The last step a running job is known to have reached, in words: `encoding (output 2
/// of 3, 40 %)`. A fleet job's progress runs 0-100 over all its outputs in turn, so the
/// output at work and its share follow from it.
pub fn step(job: &Job) -> String {
    let p = u32::from(job.progress.min(100));
    let n = job.outputs.len().max(1) as u32;
    match job.state {
        JobState::Encoding if n > 1 && !at_remote(job) => {
            let i = (p * n / 100).min(n - 1);
            let within = (p * n).saturating_sub(i * 100).min(100);
            format!("encoding (output {} of {n}, {within} %)", i + 1)
        }
        s => format!("{s} ({p} %)"),
    }
}

/// A length of time, in words a person reads at a glance (`45 s`, `31 min`, `6 h 2 min`).
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// When a queued job started waiting: the last time it entered `queued` (a retry waits
/// again from its requeue), else its creation.
pub fn queued_since(job: &Job) -> DateTime<Utc> {
    job.history
        .iter()
        .rev()
        .find(|h| h.state == JobState::Queued)
        .map(|h| h.at)
        .unwrap_or(job.created_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{HistoryEntry, Origin, OutputSpec, RemoteTask, S3Uri, TaskStatus};
    use std::collections::HashMap;

    fn job(state: JobState, outputs: usize, at: DateTime<Utc>) -> Job {
        let specs = (0..outputs)
            .map(|i| OutputSpec::new(format!("o{i}"), "mp4-720p"))
            .collect();
        let mut j = Job::new("j".into(), Origin::Api, S3Uri::new("b", "k.mov"), specs, at);
        j.state = state;
        j.history.push(HistoryEntry { state, at, note: None });
        j
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn a_fleet_job_is_stalled_only_past_the_stall_time_since_its_last_write() {
        let t0 = Utc::now();
        let s = LivenessSettings::default();
        let mut j = job(JobState::Encoding, 3, t0);
        j.worker = Some("w-1".into());
        j.heartbeat_at = Some(t0 + secs(60));
        j.progress = 46;
        assert_eq!(
            stalled(&j, t0 + secs(60 + 1800), &s),
            None,
            "exactly the stall time: alive"
        );
        let why = stalled(&j, t0 + secs(60 + 31 * 60), &s).expect("stalled");
        assert_eq!(
            why,
            "no progress or heartbeat for 31 min while encoding (output 2 of 3, 38 %) on worker w-1"
        );
    }

    #[test]
    fn waiting_and_finished_jobs_are_never_stalled() {
        let t0 = Utc::now();
        for st in [
            JobState::Submitted,
            JobState::Queued,
            JobState::Complete,
            JobState::Failed,
        ] {
            assert_eq!(
                stalled(&job(st, 1, t0), t0 + secs(86_400), &LivenessSettings::default()),
                None
            );
        }
    }

    #[test]
    fn a_split_job_is_judged_by_its_tasks_while_they_run_and_by_its_stitch_after() {
        let t0 = Utc::now();
        let s = LivenessSettings::default();
        let mut j = job(JobState::Encoding, 1, t0);
        j.split = Some(crate::split::SplitPlan {
            chunk_seconds: 60.0,
            segment_seconds: None,
            chunks: vec![],
            audio: false,
            origin: 0.0,
            audio_offset: 0.0,
        });
        assert_eq!(
            stalled(&j, t0 + secs(86_400), &s),
            None,
            "its chunks wait on their queue"
        );
        j.state = JobState::Uploading;
        assert!(
            stalled(&j, t0 + secs(86_400), &s).is_some(),
            "a stitch that stopped uploading"
        );
    }

    #[test]
    fn a_remote_job_is_judged_by_its_status_moving_not_by_our_checks() {
        let t0 = Utc::now();
        let mut j = job(JobState::Encoding, 2, t0);
        j.progress = 40;
        j.remote = Some(RemoteTask {
            backend: "encodingcom".into(),
            media_id: "m-9".into(),
            status: TaskStatus::Processing,
            submitted_at: t0,
            // checked a second ago, but nothing moved for 7 h
            checked_at: t0 + secs(7 * 3600 - 1),
            notifications: 0,
            moved_at: Some(t0 + secs(60)),
            collecting_since: None,
        });
        let s = LivenessSettings::default();
        assert_eq!(stalled(&j, t0 + secs(3600), &s), None);
        let why = stalled(&j, t0 + secs(7 * 3600), &s).expect("stalled");
        assert_eq!(
            why,
            "no progress at encodingcom for 6 h 59 min while encoding (40 %) (task m-9, status Processing)"
        );
    }

    #[test]
    fn the_step_names_the_output_at_work() {
        let t0 = Utc::now();
        let mut j = job(JobState::Encoding, 3, t0);
        for (p, want) in [
            (0, "encoding (output 1 of 3, 0 %)"),
            (40, "encoding (output 2 of 3, 20 %)"),
            (99, "encoding (output 3 of 3, 97 %)"),
        ] {
            j.progress = p;
            assert_eq!(step(&j), want);
        }
        j.state = JobState::Uploading;
        j.progress = 40;
        assert_eq!(step(&j), "uploading (40 %)");
    }

    #[test]
    fn a_stall_time_shorter_than_two_visibility_timeouts_is_refused() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(
            LivenessSettings::from_source(&env(&[])).unwrap(),
            LivenessSettings::default()
        );
        let err = LivenessSettings::from_source(&env(&[(STALL_SECS, "200")])).unwrap_err();
        assert!(err.to_string().contains("NOMMER_STALL_SECS"), "{err}");
        let ok = LivenessSettings::from_source(&env(&[(STALL_SECS, "12"), (VISIBILITY_TIMEOUT_SECS, "6")])).unwrap();
        assert_eq!(ok.stall_after, Duration::from_secs(12));
    }

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(Duration::from_secs(45)), "45 s");
        assert_eq!(span(Duration::from_secs(31 * 60 + 5)), "31 min");
        assert_eq!(span(Duration::from_secs(6 * 3600 + 125)), "6 h 2 min");
    }
}
