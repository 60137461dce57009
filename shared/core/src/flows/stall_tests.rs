//! The stall sweep on the fakes.

use super::stall::sweep;
use crate::error::StoreError;
use crate::fakes::*;
use crate::job::{Job, Origin, OutputSpec, S3Uri};
use crate::liveness::LivenessSettings;
use crate::ports::JobStore;
use crate::state::{JobState, Transition};
use crate::JobErrorCode;
use chrono::{Duration, Utc};

fn settings() -> LivenessSettings {
    LivenessSettings {
        stall_after: std::time::Duration::from_secs(600),
        remote_stall_after: std::time::Duration::from_secs(3600),
        queue_age_warn: std::time::Duration::from_secs(300),
    }
}

/// A job created `age` ago and walked to `state` then, held by worker `w-1` whose last
/// write was `quiet` ago.
fn job_at(state: JobState, age: Duration, quiet: Duration) -> Job {
    let then = Utc::now() - age;
    let outputs = vec![OutputSpec::new("a", "mp4-720p"), OutputSpec::new("b", "mp4-480p")];
    let mut j = Job::new(
        crate::ids::random(),
        Origin::Api,
        S3Uri::new("inbox", "a.mp4"),
        outputs,
        then,
    );
    j.advance_to(state, then, "test").unwrap();
    if state.is_running() {
        j.worker = Some("w-1".into());
        j.heartbeat_at = Some(Utc::now() - quiet);
    }
    j
}

#[tokio::test]
async fn a_quiet_running_job_fails_stalled_with_its_step_and_the_rest_are_left_alone() {
    let store = MemJobStore::default();
    let mut stuck = job_at(JobState::Encoding, Duration::hours(2), Duration::minutes(31));
    stuck.progress = 70;
    let alive = job_at(JobState::Encoding, Duration::hours(2), Duration::seconds(30));
    let waiting = job_at(JobState::Queued, Duration::hours(5), Duration::zero());
    for j in [&stuck, &alive, &waiting] {
        store.create(j).await.unwrap();
    }

    let swept = sweep(&store, &settings(), Utc::now()).await.unwrap();

    assert_eq!(swept.failed, vec![stuck.id.clone()]);
    let failed = store.job(&stuck.id);
    assert_eq!(failed.state, JobState::Failed);
    let err = failed.error.expect("an error");
    assert_eq!(err.code, JobErrorCode::Stalled);
    assert_eq!(
        err.message,
        "no progress or heartbeat for 31 min while encoding (output 2 of 2, 40 %) on worker w-1"
    );
    assert_eq!(store.job(&alive.id).state, JobState::Encoding);
    assert_eq!(
        store.job(&waiting.id).state,
        JobState::Queued,
        "a queued job waits; it is never stalled"
    );
}

#[tokio::test]
async fn a_job_that_moves_on_meanwhile_is_not_failed() {
    let store = MemJobStore::default();
    let beat = job_at(JobState::Downloading, Duration::hours(1), Duration::minutes(20));
    let taken = job_at(JobState::Uploading, Duration::hours(1), Duration::minutes(20));
    let cancelled = job_at(JobState::Encoding, Duration::hours(1), Duration::minutes(20));
    for j in [&beat, &taken, &cancelled] {
        store.create(j).await.unwrap();
    }
    // right before each conditional write: a heartbeat, a takeover, a cancel
    store.meddle(&beat.id, |j| j.heartbeat_at = Some(Utc::now()));
    store.meddle(&taken.id, |j| {
        j.apply(Transition::Requeue, Utc::now(), None).unwrap();
    });
    store.meddle(&cancelled.id, |j| {
        j.apply(Transition::Cancel, Utc::now(), None).unwrap();
    });

    let swept = sweep(&store, &settings(), Utc::now()).await.unwrap();

    assert!(swept.failed.is_empty(), "{:?}", swept.failed);
    assert_eq!(store.job(&beat.id).state, JobState::Downloading);
    assert_eq!(store.job(&taken.id).state, JobState::Queued);
    assert_eq!(store.job(&cancelled.id).state, JobState::Cancelled);
}

#[tokio::test]
async fn the_stuck_workers_late_write_loses() {
    let store = MemJobStore::default();
    let stuck = job_at(JobState::Encoding, Duration::hours(1), Duration::minutes(15));
    store.create(&stuck).await.unwrap();
    sweep(&store, &settings(), Utc::now()).await.unwrap();

    // the worker wakes up and writes its progress on the job as it last saw it
    let mut late = stuck.clone();
    late.progress = 90;
    let err = store.update(&stuck, late).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.job(&stuck.id).state, JobState::Failed);
}

#[tokio::test]
async fn the_queue_age_is_the_longest_wait_and_warns_past_the_threshold() {
    let store = MemJobStore::default();
    assert_eq!(sweep(&store, &settings(), Utc::now()).await.unwrap().queue_age, None);

    let fresh = job_at(JobState::Queued, Duration::seconds(30), Duration::zero());
    // created long ago but requeued a minute ago: it waits from the requeue
    let mut retried = job_at(JobState::Encoding, Duration::hours(3), Duration::zero());
    retried
        .apply(Transition::Requeue, Utc::now() - Duration::minutes(1), None)
        .unwrap();
    let old = job_at(JobState::Queued, Duration::minutes(12), Duration::zero());
    for j in [&fresh, &retried, &old] {
        store.create(j).await.unwrap();
    }

    let age = sweep(&store, &settings(), Utc::now()).await.unwrap().queue_age.unwrap();
    assert_eq!(age.job_id, old.id);
    assert!((710..=725).contains(&age.waited.as_secs()), "{age:?}");
    assert!(age.warn, "12 min is over the 5 min threshold");
    for j in [&fresh, &retried, &old] {
        assert_eq!(store.job(&j.id).state, JobState::Queued);
    }
}
