//! Stuck work cannot hide, on the local stack: a worker frozen mid-encode (SIGSTOP: no
//! heartbeat, no progress) has its job failed `stalled` by the stall sweep, with the step
//! it was at; woken, the worker's conditional writes lose and the job stays failed. A
//! stopped FFmpeg under a live worker is not stalled: the worker's heartbeat says it lives.

use nommer::client::ApiClient;
use nommer_core::error::JobErrorCode;
use nommer_core::liveness::STALL_SECS;
use nommer_core::settings::VISIBILITY_TIMEOUT_SECS;
use nommer_core::JobState;
use nommer_devstack::media;
use nommer_tests::freeze::freeze_encode;
use nommer_tests::freeze::signal;
use nommer_tests::{eventually, spawn_stack_with, upload};
use std::time::Duration;

/// The work queue's visibility timeout for the test, and the stall time: twice it, the
/// least the settings allow (a lost worker's message is back after one timeout).
const VT: &str = "6";
const STALL: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_workers_job_fails_stalled_and_the_woken_worker_cannot_bring_it_back() {
    let stack = spawn_stack_with("stall", 1, |o| {
        o.worker_env.insert(VISIBILITY_TIMEOUT_SECS.into(), VT.into());
        o.function_env.insert(VISIBILITY_TIMEOUT_SECS.into(), VT.into());
        o.function_env.insert(STALL_SECS.into(), STALL.to_string());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 10, 640, 360, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/talk.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    let worker = stack.workers()[0].pid().unwrap();
    let worker_id = stack.workers()[0].id.clone();

    // FFmpeg held: no progress, but the worker's heartbeat goes on, past the stall time
    let frozen = freeze_encode(&api, &id, &[worker], Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(STALL + 4)).await;
    let alive = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        alive.state,
        JobState::Encoding,
        "a live worker's job is not stalled: {alive:#?}"
    );

    // the worker frozen too: neither heartbeat nor progress
    signal(worker, libc::SIGSTOP);
    let frozen_at = chrono::Utc::now();
    let failed = eventually(Duration::from_secs(60), "the job failed stalled", || async {
        api.get_job(&id).await.unwrap().filter(|j| j.state.is_terminal())
    })
    .await;
    assert_eq!(failed.state, JobState::Failed, "{failed:#?}");
    let err = failed.error.clone().expect("an error");
    assert_eq!(err.code, JobErrorCode::Stalled, "{err:?}");
    assert!(
        err.message.starts_with("no progress or heartbeat for ")
            && err.message.contains("while encoding (")
            && err.message.ends_with(&format!("on worker {worker_id}")),
        "the message names the step and the worker: {}",
        err.message
    );
    let quiet = failed.updated_at - frozen_at;
    assert!(
        quiet >= chrono::Duration::seconds(STALL as i64 - 3),
        "failed only past the stall time ({quiet})"
    );

    // woken, the worker writes on the job as it last saw it: every write loses
    signal(worker, libc::SIGCONT);
    frozen.release();
    eventually(Duration::from_secs(30), "the woken worker gave the job up", || async {
        stack.worker_logs(200).contains("finished elsewhere").then_some(())
    })
    .await;
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    eventually(Duration::from_secs(30), "the work message deleted", || async {
        (q.depth(&stack.urls.work).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    let after = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (after.state, after.version, after.error.map(|e| e.code)),
        (JobState::Failed, failed.version, Some(JobErrorCode::Stalled)),
        "not resurrected:\n{}",
        stack.worker_logs(60)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_how_long_the_oldest_queued_job_has_waited() {
    // no worker: a job waits in the queue
    let stack = spawn_stack_with("queueage", 0, |o| {
        o.function_env
            .insert(nommer_core::liveness::QUEUE_AGE_WARN_SECS.into(), "2".into());
    })
    .await;
    let health = || async {
        let body: serde_json::Value = reqwest::get(format!("{}/health", stack.api_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body
    };
    let idle = health().await;
    assert_eq!(idle["status"], "ok", "{idle}");
    assert!(idle["queue"]["oldest_queued_secs"].is_null(), "{idle}");

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 1, 320, 240, false).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/clip.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    eventually(Duration::from_secs(30), "the job queued", || async {
        api.get_job(&id).await.unwrap().filter(|j| j.state == JobState::Queued)
    })
    .await;
    let waiting = eventually(Duration::from_secs(30), "a warning for the queue's age", || async {
        let h = health().await;
        (h["queue"]["warning"] == true).then_some(h)
    })
    .await;
    assert_eq!(
        waiting["status"], "ok",
        "a long queue is a warning, not ill health: {waiting}"
    );
    assert!(
        waiting["queue"]["oldest_queued_secs"].as_u64().unwrap() >= 2,
        "{waiting}"
    );
    assert_eq!(
        api.get_job(&id).await.unwrap().unwrap().state,
        JobState::Queued,
        "a queued job is never stalled"
    );
    stack.shutdown().await;
}
