//! What the README promises about a job that cannot finish: the attempt limit, the
//! encode timeout, and an output that fails its check. Each drives the whole system on
//! the local stack and checks the job, the queue and the outbox.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::settings;
use nommer_core::JobState;
use nommer_devstack::media;
use nommer_tests::freeze::freeze_encode;
use nommer_tests::{eventually, spawn_stack_with, upload};
use std::time::Duration;

/// The job failed with `code`, its message saying each of `says`.
fn failed_with(job: &nommer_core::Job, code: JobErrorCode, says: &[&str]) {
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let e = job.error.as_ref().unwrap();
    assert_eq!(e.code, code, "{e:?}");
    for s in says {
        assert!(e.message.contains(s), "{s:?} not in: {}", e.message);
    }
}

async fn queue_empty(stack: &nommer_devstack::LocalStack) {
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    eventually(Duration::from_secs(30), "the work message deleted", || async {
        (q.depth(&stack.urls.work).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(q.depth(&stack.urls.work_dlq).await.unwrap(), (0, 0));
}

async fn outbox_empty(stack: &nommer_devstack::LocalStack, id: &str) {
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let listed = o.list(&stack.names.outbox_bucket, &format!("{id}/")).await.unwrap();
    assert!(listed.is_empty(), "nothing uploaded: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_on_every_attempt_fails_when_attempts_run_out() {
    let mut stack = spawn_stack_with("attempts", 1, |o| {
        o.worker_env.insert(settings::MAX_ATTEMPTS.into(), "2".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 4, 320, 240, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/clip.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // two attempts, each stopped mid-encode (its worker shut down), so each one counts
    for attempt in 1..=2u32 {
        let w = stack.workers().len() - 1;
        let frozen = freeze_encode(&api, &id, &[stack.workers()[w].pid().unwrap()], Duration::from_secs(60)).await;
        assert_eq!(api.get_job(&id).await.unwrap().unwrap().attempts, attempt);
        assert!(stack.stop_worker(w).await.unwrap().success());
        drop(frozen);
        eventually(Duration::from_secs(30), "the job back in the queue", || async {
            api.get_job(&id).await.unwrap().filter(|j| j.state == JobState::Queued)
        })
        .await;
        stack.spawn_worker().await.unwrap();
    }
    let job = api.wait(&id, Duration::from_secs(60), |_| {}).await.unwrap();
    failed_with(&job, JobErrorCode::AttemptsExhausted, &["2 attempts"]);
    assert_eq!(job.attempts, 2, "no third attempt started");
    queue_empty(&stack).await;
    outbox_empty(&stack, &id).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encode_past_the_timeout_is_killed_and_the_job_fails() {
    let stack = spawn_stack_with("timeout", 1, |o| {
        o.worker_env.insert(settings::ENCODE_TIMEOUT_SECS.into(), "3".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 4, 320, 240, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/clip.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // an encode that hangs (held stopped) outlives the 3 s limit however fast the machine
    let frozen = freeze_encode(&api, &id, &[stack.workers()[0].pid().unwrap()], Duration::from_secs(60)).await;
    let job = api.wait(&id, Duration::from_secs(60), |_| {}).await.unwrap();
    failed_with(&job, JobErrorCode::EncodeFailed, &["longer than", "killed"]);
    eventually(Duration::from_secs(10), "the hung FFmpeg killed", || async {
        frozen.all_gone().then_some(())
    })
    .await;
    assert_eq!(job.attempts, 1, "a hang is not retried");
    queue_empty(&stack).await;
    outbox_empty(&stack, &id).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_fails_its_check_fails_the_job_with_invalid_output() {
    let stack = spawn_stack_with("badout", 1, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    // 6 s of picture but 1 s of sound: an audio-only output lasts 1 s, not the 6 s the
    // source's duration promises
    let src = dir.path().join("short-sound.mp4");
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=6"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=1"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    // the oracle: ffprobe says so too
    let p = media::probe(&src).unwrap();
    let audio = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap();
    let audio_secs: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!(audio_secs < 1.5, "{audio_secs}");
    let id = upload(&stack, &src, "inbox/audio-aac/short-sound.mp4").await;
    let job = ApiClient::new(&stack.api_url)
        .wait(&id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    failed_with(&job, JobErrorCode::InvalidOutput, &["should last"]);
    assert_eq!(job.attempts, 1, "an invalid output is not retried");
    queue_empty(&stack).await;
    outbox_empty(&stack, &id).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_when_the_job_table_does_not() {
    let stack = spawn_stack_with("health", 0, |_| {}).await;
    let url = format!("{}/health", stack.api_url);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    nommer_aws::sdk::dynamodb_client(&stack.config)
        .delete_table()
        .table_name(&stack.names.table)
        .send()
        .await
        .unwrap();
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "unavailable", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("table"), "{v}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_info_gives_routing_the_facts_when_the_source_cannot_be_probed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nommer.toml");
    std::fs::write(
        &cfg,
        r#"
[backends.fleet]
kind = "ffmpeg"

[backends.bigfleet]
kind = "ffmpeg"

[routing]
default = "fleet"

[[routing.rules]]
name = "long films"
backend = "bigfleet"
match = { min_duration_seconds = 600, min_height = 1000 }
"#,
    )
    .unwrap();
    let stack = spawn_stack_with("srcinfo", 0, |o| o.config_path = Some(cfg)).await;
    // bytes no prober can read: the dispatcher learns nothing from the source itself
    let key = "sources/opaque.bin";
    S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .put_bytes(
            &stack.names.inbox_bucket,
            key,
            vec![7u8; 4096],
            "application/octet-stream",
        )
        .await
        .unwrap();
    let api = ApiClient::new(&stack.api_url);
    let source = format!("s3://{}/{key}", stack.names.inbox_bucket);
    let mut ids = Vec::new();
    for body in [
        serde_json::json!({"source": source, "preset": "mp4-720p", "source_info": {"duration_seconds": 3600, "height": 1080}}),
        serde_json::json!({"source": source, "preset": "mp4-720p", "user_metadata": {"n": "2"}}),
    ] {
        let (status, job) = api.create_job(&body, None).await.unwrap();
        assert_eq!(status, 201, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let routed = |id: String| {
        let api = &api;
        async move {
            eventually(Duration::from_secs(30), "routed", || async {
                api.get_job(&id).await.unwrap().filter(|j| j.routing.is_some())
            })
            .await
        }
    };
    let told = routed(ids[0].clone()).await;
    let d = told.routing.as_ref().unwrap();
    assert_eq!(d.backend, "bigfleet", "{d:#?}");
    assert_eq!(d.rule.as_deref(), Some("long films"));
    let untold = routed(ids[1].clone()).await;
    let d = untold.routing.as_ref().unwrap();
    assert_eq!(
        d.backend, "fleet",
        "a rule needing a fact nobody knows does not match: {d:#?}"
    );
    assert_eq!(d.rule, None);
    stack.shutdown().await;
}
