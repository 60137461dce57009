//! The dead-letter sweep on the fakes.

use super::deadletter::sweep;
use crate::fakes::*;
use crate::job::{Job, Origin, OutputSpec, S3Uri};
use crate::messages::JobMessage;
use crate::ports::JobStore;
use crate::state::{JobState, Transition};
use crate::JobErrorCode;
use chrono::Utc;

fn job() -> Job {
    let outputs = vec![OutputSpec::new("web", "mp4-720p")];
    Job::new(
        crate::ids::random(),
        Origin::Api,
        S3Uri::new("inbox", "a.mp4"),
        outputs,
        Utc::now(),
    )
}

#[tokio::test]
async fn a_dead_lettered_job_fails_with_the_reason_and_its_message_goes() {
    let (store, dlq) = (MemJobStore::default(), MemDeadLetters::default());
    let waiting = job();
    store.create(&waiting).await.unwrap();
    let mut done = job();
    done.apply(Transition::Cancel, Utc::now(), None).unwrap();
    store.create(&done).await.unwrap();
    dlq.park(&JobMessage::new(&waiting.id).to_body(), 5);
    dlq.park(&JobMessage::new(&done.id).to_body(), 5);
    dlq.park("not a job message", 1);
    let failed = sweep(&dlq, &store, "https://sqs/000/nommer-work-dlq", 10)
        .await
        .unwrap();
    assert_eq!(failed, [waiting.id.clone()]);
    let j = store.job(&waiting.id);
    let e = j.error.unwrap();
    assert_eq!((j.state, e.code), (JobState::Failed, JobErrorCode::DeadLettered));
    assert!(
        e.message.contains("nommer-work-dlq after failing 5 times"),
        "{}",
        e.message
    );
    assert_eq!(
        store.job(&done.id).state,
        JobState::Cancelled,
        "an ended job is left as it is"
    );
    let left: Vec<String> = dlq.parked.lock().unwrap().iter().map(|m| m.body.clone()).collect();
    assert_eq!(
        left,
        ["not a job message"],
        "the malformed message stays parked for a person"
    );
    assert!(
        sweep(&dlq, &store, "dlq", 10).await.unwrap().is_empty(),
        "kept out of sight meanwhile"
    );
}

#[tokio::test]
async fn a_job_that_keeps_changing_keeps_its_message_for_the_next_sweep() {
    let (store, dlq) = (MemJobStore::default(), MemDeadLetters::default());
    let busy = job();
    store.create(&busy).await.unwrap();
    for _ in 0..super::RACE_ROUNDS {
        store.meddle(&busy.id, |j| j.progress += 1);
    }
    dlq.park(&JobMessage::new(&busy.id).to_body(), 5);
    let e = sweep(&dlq, &store, "dlq", 10).await.unwrap_err();
    assert!(matches!(e, super::deadletter::SweepError::Busy(_)), "{e:?}");
    assert_eq!(dlq.parked.lock().unwrap().len(), 1, "not deleted unswept");
    assert_eq!(
        sweep(&dlq, &store, "dlq", 10).await.unwrap(),
        [busy.id.clone()],
        "the next sweep fails it"
    );
}
