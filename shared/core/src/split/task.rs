//! A split job's tasks: each chunk, the audio, and the stitch. Each lives in an item of
//! its own (never in the job: the job item has a size limit, its version would be
//! fought over by every chunk worker, and each write to it is an event), is taken and
//! heartbeaten like a job, and is pointed at by a message on the chunks queue.

use super::plan::SplitPlan;
use crate::job::JobError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which task of a split job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskName {
    Chunk(u32),
    Audio,
    Stitch,
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskName::Chunk(i) => write!(f, "chunk-{i:05}"),
            TaskName::Audio => f.write_str("audio"),
            TaskName::Stitch => f.write_str("stitch"),
        }
    }
}

impl std::str::FromStr for TaskName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "audio" => Ok(TaskName::Audio),
            "stitch" => Ok(TaskName::Stitch),
            _ => s
                .strip_prefix("chunk-")
                .filter(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(TaskName::Chunk)
                .ok_or_else(|| format!("`{}` is not a task name", crate::text::clip(s, 40))),
        }
    }
}

impl Serialize for TaskName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TaskName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Done,
    Failed,
}

/// One task, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitTask {
    pub job_id: String,
    pub name: TaskName,
    pub state: TaskState,
    /// Bumped by every write; each write is conditional on the one read.
    pub version: u64,
    pub attempts: u32,
    /// Seconds of source the task covers (a chunk's span; the audio's, the whole).
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    pub updated_at: DateTime<Utc>,
}

impl SplitTask {
    pub fn new(job_id: &str, name: TaskName, seconds: f64, now: DateTime<Utc>) -> SplitTask {
        SplitTask {
            job_id: job_id.to_string(),
            name,
            state: TaskState::Pending,
            version: 0,
            attempts: 0,
            seconds,
            worker: None,
            message_id: None,
            heartbeat_at: None,
            error: None,
            updated_at: now,
        }
    }

    /// This worker takes the task (from pending, or over from a lost holder).
    pub fn taken(&self, worker: &str, message_id: &str, now: DateTime<Utc>) -> SplitTask {
        SplitTask {
            state: TaskState::Running,
            attempts: self.attempts + 1,
            worker: Some(worker.to_string()),
            message_id: Some(message_id.to_string()),
            heartbeat_at: Some(now),
            error: None,
            updated_at: now,
            ..self.clone()
        }
    }

    /// Back to pending (an attempt that failed for a reason that may pass), the reason
    /// kept.
    pub fn released(&self, reason: Option<JobError>, now: DateTime<Utc>) -> SplitTask {
        SplitTask {
            state: TaskState::Pending,
            worker: None,
            message_id: None,
            heartbeat_at: None,
            error: reason,
            updated_at: now,
            ..self.clone()
        }
    }

    pub fn ended(&self, state: TaskState, error: Option<JobError>, now: DateTime<Utc>) -> SplitTask {
        SplitTask {
            state,
            heartbeat_at: None,
            error,
            updated_at: now,
            ..self.clone()
        }
    }

    /// Running, with no heartbeat for `stale`: its holder is lost.
    pub fn is_abandoned(&self, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
        self.state == TaskState::Running && self.heartbeat_at.is_none_or(|h| now - h > stale)
    }
}

/// Every task of the plan: its chunks, its audio (if any) and its stitch.
pub fn task_names(plan: &SplitPlan) -> Vec<TaskName> {
    let mut names: Vec<TaskName> = (0..plan.chunks.len() as u32).map(TaskName::Chunk).collect();
    if plan.audio {
        names.push(TaskName::Audio);
    }
    names.push(TaskName::Stitch);
    names
}

/// What a task's message calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStep {
    /// Nothing left to do: the message goes (why, for the log).
    Delete(&'static str),
    /// Its holder is alive and this is its own message come back: hide it again.
    HideAgain,
    /// Take it (it is pending, or its holder is lost).
    Take,
    /// It has had all its attempts: the job fails.
    Exhausted,
}

/// What to do with a task's message, from its job's state and the task as stored.
pub fn triage(
    job: crate::state::JobState,
    task: &SplitTask,
    message_id: &str,
    now: DateTime<Utc>,
    stale: chrono::Duration,
    max_attempts: u32,
) -> TaskStep {
    use crate::state::JobState;
    if job.is_terminal() {
        return TaskStep::Delete("the job has ended");
    }
    match task.state {
        TaskState::Done | TaskState::Failed => return TaskStep::Delete("the task has ended"),
        TaskState::Running if !task.is_abandoned(now, stale) => {
            return if task.message_id.as_deref() == Some(message_id) {
                TaskStep::HideAgain
            } else {
                TaskStep::Delete("another worker holds the task")
            };
        }
        _ => {}
    }
    // chunks and the audio run from the moment their message is out: the splitter sends
    // each as its piece lands, while the job is still `downloading` (being split), so the
    // fleet encodes while the rest is cut; the stitch only once the job is encoding.
    // A message that cannot run now is deleted, never put off: the queue dead-letters a
    // message after a few receives. Whoever makes it runnable sends it again: a split
    // run again (after its splitter was lost) sends every chunk not done, and the
    // split's end sends the stitch if every task is in by then.
    match (task.name, job) {
        (TaskName::Stitch, JobState::Encoding | JobState::Uploading) => {}
        (TaskName::Stitch, _) => {
            return TaskStep::Delete("the stitch waits for its job to be encoding; the split's end sends it")
        }
        (_, JobState::Downloading | JobState::Encoding) => {}
        _ => return TaskStep::Delete("the job is not being split or encoded; a split run again sends it"),
    }
    if task.attempts >= max_attempts {
        return TaskStep::Exhausted;
    }
    TaskStep::Take
}

/// On the chunks queue: a task to look at. Like a job message, it only points; the
/// task's item says what is to be done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub job_id: String,
    pub task: TaskName,
}

impl TaskMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a task message serialises")
    }

    /// Parses a body, with an error that says what was wrong.
    pub fn from_body(body: &str) -> Result<TaskMessage, String> {
        let m: TaskMessage = serde_json::from_str(body)
            .map_err(|e| format!("not a task message ({e}): {}", crate::text::clip(body, 200)))?;
        if !crate::ids::looks_valid(&m.job_id) {
            return Err(format!("`{}` is not a job id", crate::text::clip(&m.job_id, 80)));
        }
        Ok(m)
    }
}

/// The share (0–100) of a split job's work done: chunk-seconds and audio-seconds
/// encoded, as 90 %, the stitch the rest.
pub fn progress(tasks: &[SplitTask]) -> u8 {
    let work: Vec<&SplitTask> = tasks.iter().filter(|t| t.name != TaskName::Stitch).collect();
    let total: f64 = work.iter().map(|t| t.seconds).sum();
    if total <= 0.0 {
        return 0;
    }
    let done: f64 = work
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .map(|t| t.seconds)
        .sum();
    ((done / total) * 90.0).floor().clamp(0.0, 90.0) as u8
}

/// Every chunk and the audio (if any) is done: the stitch may run.
pub fn ready_to_stitch(tasks: &[SplitTask]) -> bool {
    tasks
        .iter()
        .filter(|t| t.name != TaskName::Stitch)
        .all(|t| t.state == TaskState::Done)
        && tasks.iter().any(|t| matches!(t.name, TaskName::Chunk(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip_and_junk_is_refused() {
        for n in [
            TaskName::Chunk(0),
            TaskName::Chunk(99999),
            TaskName::Audio,
            TaskName::Stitch,
        ] {
            assert_eq!(n.to_string().parse::<TaskName>().unwrap(), n);
        }
        for bad in ["chunk-1", "chunk-0000a", "chunk-000001", "Audio", "", "chunk--0001"] {
            assert!(bad.parse::<TaskName>().is_err(), "{bad}");
        }
        let m = TaskMessage {
            job_id: crate::ids::random(),
            task: TaskName::Chunk(3),
        };
        assert!(m.to_body().contains("\"task\":\"chunk-00003\""));
        assert_eq!(TaskMessage::from_body(&m.to_body()).unwrap(), m);
        assert!(TaskMessage::from_body(r#"{"job_id":"../x","task":"audio"}"#).is_err());
        assert!(TaskMessage::from_body(r#"{"job_id":"x"}"#)
            .unwrap_err()
            .contains("not a task message"));
    }

    #[test]
    fn progress_is_the_share_of_seconds_done_and_the_stitch_waits_for_all() {
        let now = Utc::now();
        let mut tasks = vec![
            SplitTask::new("j", TaskName::Chunk(0), 60.0, now),
            SplitTask::new("j", TaskName::Chunk(1), 30.0, now),
            SplitTask::new("j", TaskName::Audio, 90.0, now),
        ];
        assert_eq!(progress(&tasks), 0);
        tasks[0].state = TaskState::Done;
        assert_eq!(progress(&tasks), 30);
        assert!(!ready_to_stitch(&tasks));
        tasks[1].state = TaskState::Done;
        tasks[2].state = TaskState::Done;
        assert_eq!(progress(&tasks), 90);
        assert!(ready_to_stitch(&tasks));
        assert!(!ready_to_stitch(&tasks[2..]), "no chunk, no stitch");
    }

    #[test]
    fn a_taken_task_is_abandoned_only_once_its_heartbeat_is_stale() {
        let now = Utc::now();
        let t = SplitTask::new("j", TaskName::Audio, 1.0, now).taken("w1", "m1", now);
        assert_eq!((t.state, t.attempts), (TaskState::Running, 1));
        let stale = chrono::Duration::seconds(20);
        assert!(!t.is_abandoned(now + chrono::Duration::seconds(10), stale));
        assert!(t.is_abandoned(now + chrono::Duration::seconds(30), stale));
        assert!(!t
            .released(None, now)
            .is_abandoned(now + chrono::Duration::hours(1), stale));
    }

    #[test]
    fn triage_follows_the_job_and_the_task() {
        use crate::state::JobState::*;
        let now = Utc::now();
        let stale = chrono::Duration::seconds(20);
        let pending = SplitTask::new("j", TaskName::Chunk(1), 30.0, now);
        assert_eq!(triage(Encoding, &pending, "m", now, stale, 3), TaskStep::Take);
        assert_eq!(
            triage(Cancelled, &pending, "m", now, stale, 3),
            TaskStep::Delete("the job has ended")
        );
        assert_eq!(triage(Downloading, &pending, "m", now, stale, 3), TaskStep::Take);
        assert!(matches!(
            triage(Queued, &pending, "m", now, stale, 3),
            TaskStep::Delete(_)
        ));
        let held = pending.taken("w1", "m1", now);
        assert_eq!(triage(Encoding, &held, "m1", now, stale, 3), TaskStep::HideAgain);
        assert!(matches!(
            triage(Encoding, &held, "m2", now, stale, 3),
            TaskStep::Delete(_)
        ));
        let later = now + chrono::Duration::seconds(60);
        assert_eq!(
            triage(Encoding, &held, "m2", later, stale, 3),
            TaskStep::Take,
            "its holder is lost"
        );
        let tired = held.taken("w2", "m2", now).taken("w3", "m3", now);
        assert_eq!(triage(Encoding, &tired, "m4", later, stale, 3), TaskStep::Exhausted);
        let done = held.ended(TaskState::Done, None, now);
        assert!(matches!(
            triage(Encoding, &done, "m1", now, stale, 3),
            TaskStep::Delete(_)
        ));
        let stitch = SplitTask::new("j", TaskName::Stitch, 0.0, now);
        assert_eq!(triage(Uploading, &stitch, "m", now, stale, 3), TaskStep::Take);
        assert!(matches!(
            triage(Downloading, &stitch, "m", now, stale, 3),
            TaskStep::Delete(_)
        ));
        assert!(matches!(
            triage(Uploading, &pending, "m", now, stale, 3),
            TaskStep::Delete(_)
        ));
    }

    proptest! {
        #[test]
        fn any_message_body_parses_or_says_why(body in ".{0,200}") {
            let _ = TaskMessage::from_body(&body);
        }
    }
}
