//! The whole system on the local stack: real emulator, real FFmpeg, real HTTP.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::{ids, Job, JobState};
use nommer_devstack::media;
use nommer_tests::freeze::{ffmpeg_children, freeze_encode};
use nommer_tests::{all_jobs, eventually, spawn_stack, spawn_stack_with, upload};
use serde_json::json;
use std::time::Duration;

const JOB_LIMIT: Duration = Duration::from_secs(240);

fn objects(stack: &nommer_devstack::LocalStack) -> S3ObjectStore {
    S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
}

async fn wait_job(stack: &nommer_devstack::LocalStack, id: &str) -> Job {
    match ApiClient::new(&stack.api_url).wait(id, JOB_LIMIT, |_| {}).await {
        Ok(j) => j,
        Err(e) => panic!("{e:#}\n{}", stack.worker_logs(40)),
    }
}

/// Waits until the job is being encoded.
fn states(job: &Job) -> Vec<JobState> {
    job.history.iter().map(|h| h.state).collect()
}

/// Downloads an output and returns ffprobe's JSON for it.
async fn probe_output(stack: &nommer_devstack::LocalStack, key: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    media::probe(&nommer_tests::download_output(stack, key, dir.path()).await).unwrap()
}

fn duration(p: &serde_json::Value) -> f64 {
    p["format"]["duration"].as_str().unwrap().parse().unwrap()
}

fn stream<'a>(p: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_encoded_to_a_playable_mp4() {
    let stack = spawn_stack("upload", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 3, 640, 360, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-720p/my clip.mp4").await;

    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}\n{}", stack.worker_logs(40));
    assert_eq!(
        states(&job),
        [
            JobState::Submitted,
            JobState::Queued,
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading,
            JobState::Complete
        ]
    );
    assert_eq!(job.progress, 100);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.outputs[0].preset, "mp4-720p");
    let probe = job.probe.as_ref().expect("source probe stored on the job");
    assert!(probe.has(nommer_core::job::StreamKind::Video) && probe.has(nommer_core::job::StreamKind::Audio));
    assert_eq!(job.manifest.len(), 1);
    let out = &job.manifest[0];
    assert_eq!(out.bucket, stack.names.outbox_bucket);
    assert_eq!(out.key, format!("{id}/mp4-720p/my_clip.mp4"));

    let p = probe_output(&stack, &out.key).await;
    assert!((duration(&p) - 3.0).abs() < 0.3, "duration {}", duration(&p));
    let v = stream(&p, "video").expect("video stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360)),
        "a smaller source is not upscaled"
    );
    assert_eq!(stream(&p, "audio").expect("audio stream")["codec_name"], "aac");
    assert_eq!(out.width, Some(640));
    assert_eq!(
        out.size,
        objects(&stack).head(&out.bucket, &out.key).await.unwrap().unwrap().size
    );

    // the work message is deleted once the job is complete (right after the final
    // write, so the queue may still show it in flight for a moment)
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    eventually(Duration::from_secs(30), "the work message deleted", || async {
        (q.depth(&stack.urls.work).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(
        q.depth(&stack.urls.work_dlq).await.unwrap(),
        (0, 0),
        "and not dead-lettered"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_submission_completes_and_idempotency_keys_are_honoured() {
    let stack = spawn_stack("api", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 2, 854, 480, true).unwrap();
    // outside `inbox/`: no job starts by itself
    objects(&stack)
        .upload_file(&stack.names.inbox_bucket, "sources/talk.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let source = format!("s3://{}/sources/talk.mp4", stack.names.inbox_bucket);

    let api = ApiClient::new(&stack.api_url);
    let body = json!({ "source": source, "preset": "mp4-360p", "user_metadata": { "customer": "acme" } });
    let (status, created) = api.create_job(&body, Some("order-42")).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id, ids::for_idempotency_key("order-42"));
    assert_eq!(created["state"], "submitted");

    // the same request again: the same job, not a second one
    let (status, again) = api.create_job(&body, Some("order-42")).await.unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    // the key reused for another request is refused
    let other = json!({ "source": source, "preset": "mp4-480p" });
    let (status, problem) = api.create_job(&other, Some("order-42")).await.unwrap();
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "Idempotency-Key");

    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    assert_eq!(job.user_metadata.get("customer").map(String::as_str), Some("acme"));
    let p = probe_output(&stack, &job.manifest[0].key).await;
    let v = stream(&p, "video").unwrap();
    assert_eq!(v["height"], 360);
    assert_eq!(
        v["width"], 640,
        "854x480 scaled to 360 high keeps 16:9 with an even width"
    );
    assert!((duration(&p) - 2.0).abs() < 0.3);
    assert_eq!(all_jobs(&stack).await.len(), 1, "only the API made a job");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_s3_event_delivered_three_times_makes_one_job() {
    let stack = spawn_stack("dupes", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("dupe.mp4");
    media::generate_clip(&src, 1, 320, 240, false).unwrap();
    let key = "inbox/mp4-360p/dupe.mp4";
    let id = upload(&stack, &src, key).await;
    let info = objects(&stack)
        .head(&stack.names.inbox_bucket, key)
        .await
        .unwrap()
        .unwrap();

    // S3 delivered it once; deliver the same notification three more times
    let notification = nommer_tests::s3_notification(
        &stack.names.inbox_bucket,
        key,
        "ObjectCreated:Put",
        info.size,
        info.etag.as_deref().unwrap(),
    );
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    for _ in 0..3 {
        q.send(&stack.urls.ingest, &notification.to_string()).await.unwrap();
    }
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    eventually(Duration::from_secs(30), "ingest queue drained", || async {
        (q.depth(&stack.urls.ingest).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    let jobs = all_jobs(&stack).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job.attempts, 1, "encoded once");
    assert_eq!(
        states(job).iter().filter(|s| **s == JobState::Queued).count(),
        1,
        "dispatched once: {:?}",
        states(job)
    );
    assert_eq!(q.depth(&stack.urls.ingest_dlq).await.unwrap(), (0, 0));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_fails_with_a_readable_error_and_is_not_retried() {
    let stack = spawn_stack("corrupt", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("broken.mp4");
    // a real clip cut in half: the header promises what the file no longer has
    media::generate_clip(&src, 2, 320, 240, true).unwrap();
    let bytes = std::fs::read(&src).unwrap();
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(
        &src,
        [&b"\x00\x00\x00\x18ftypmp42"[..], &junk, &bytes[bytes.len() / 2..]].concat(),
    )
    .unwrap();
    let id = upload(&stack, &src, "inbox/mp4-720p/broken.mp4").await;

    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let err = job.error.as_ref().expect("an error on the job");
    assert_eq!(err.code, JobErrorCode::InvalidMedia, "{err:?}");
    assert!(
        err.message.contains("ffprobe could not read the source"),
        "{}",
        err.message
    );
    assert!(err.message.len() > 40, "FFmpeg's own reason is kept: {}", err.message);
    assert_eq!(job.attempts, 1);

    // not retried: the message is gone, nothing in the dead-letter queue, no second attempt
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    eventually(Duration::from_secs(20), "work queue empty", || async {
        (q.depth(&stack.urls.work).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(q.depth(&stack.urls.work_dlq).await.unwrap(), (0, 0));
    // with no message left, visible or in flight, nothing can run the job again; and
    // nothing has touched it since it failed
    let again = ApiClient::new(&stack.api_url).get_job(&id).await.unwrap().unwrap();
    assert_eq!(again.version, job.version, "nothing touched the failed job");
    assert_eq!(again.history.last().unwrap().state, JobState::Failed);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_api_bodies_get_a_400_naming_the_field() {
    let stack = spawn_stack("badbody", 0).await;
    let client = reqwest::Client::new();
    let inbox = &stack.names.inbox_bucket;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), ""),
        ("{}".into(), "source"),
        (r#"{"source": 5}"#.into(), "source"),
        (r#"{"source": "https://example.com/a.mp4"}"#.into(), "source"),
        (r#"{"source": "s3://someone-elses-bucket/a.mp4"}"#.into(), "source"),
        (
            format!(r#"{{"source": "s3://{inbox}/a.mp4", "preset": "mp4-4k-hdr"}}"#),
            "preset",
        ),
        (
            format!(r#"{{"source": "s3://{inbox}/a.mp4", "colour": "blue"}}"#),
            "colour",
        ),
        (
            format!(
                r#"{{"source": "s3://{inbox}/a.mp4", "outputs": [{{"preset": "mp4-720p"}}, {{"preset": "nope"}}]}}"#
            ),
            "outputs[1].preset",
        ),
        (
            format!(r#"{{"source": "s3://{inbox}/a.mp4", "notify_url": "ftp://x"}}"#),
            "notify_url",
        ),
    ];
    for (body, field) in cases {
        let r = client
            .post(format!("{}/jobs", stack.api_url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["status"], 400);
        assert_eq!(p["field"].as_str().unwrap_or(""), field, "{body} -> {p}");
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    // a well-formed request for an object that does not exist
    let (status, p) = ApiClient::new(&stack.api_url)
        .create_job(&json!({ "source": format!("s3://{inbox}/missing.mp4") }), None)
        .await
        .unwrap();
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["field"], "source");
    // unknown jobs and routes
    let r = client
        .get(format!("{}/jobs/{}", stack.api_url, ids::random()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client.get(format!("{}/nope", stack.api_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(all_jobs(&stack).await.is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_markers_and_empty_uploads_make_no_job() {
    let stack = spawn_stack("skips", 0).await;
    let o = objects(&stack);
    o.put_bytes(
        &stack.names.inbox_bucket,
        "inbox/holiday/",
        vec![],
        "application/x-directory",
    )
    .await
    .unwrap();
    o.put_bytes(&stack.names.inbox_bucket, "inbox/empty.mp4", vec![], "video/mp4")
        .await
        .unwrap();
    // a positive control: a real upload next to them does make a job (no worker here)
    o.put_bytes(
        &stack.names.inbox_bucket,
        "inbox/real.mp4",
        b"bytes".to_vec(),
        "video/mp4",
    )
    .await
    .unwrap();
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    eventually(Duration::from_secs(30), "the control job", || async {
        (all_jobs(&stack).await.len() == 1).then_some(())
    })
    .await;
    // wait for both notifications to be handled (and deleted: a skip is not a failure)
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually(Duration::from_secs(30), "ingest queue drained", || async {
        (q.depth(&stack.urls.ingest).await.unwrap() == (0, 0)).then_some(())
    })
    .await;
    let jobs = all_jobs(&stack).await;
    assert_eq!(jobs.len(), 1, "only the control made a job: {jobs:#?}");
    assert_eq!(jobs[0].source.key, "inbox/real.mp4");
    assert_eq!(q.depth(&stack.urls.ingest_dlq).await.unwrap(), (0, 0));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_go_up_in_parts() {
    let stack = spawn_stack("multipart", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let size = nommer_aws::objects::MULTIPART_THRESHOLD as usize + 3 * 1024 * 1024 + 17;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let o = objects(&stack);
    let up = o
        .upload_file(
            &stack.names.outbox_bucket,
            "x/big.bin",
            &big,
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(up.size, size as u64);
    // the whole file's SHA-256, though S3 keeps a composite of the parts' for it
    assert_eq!(up.sha256, nommer_tests::sha256_hex(&data));
    let back = dir.path().join("back.bin");
    assert_eq!(
        o.download_to_file(&stack.names.outbox_bucket, "x/big.bin", &back, None)
            .await
            .unwrap(),
        size as u64
    );
    assert!(std::fs::read(&back).unwrap() == data, "round trip is byte-exact");
    let head = o.head(&stack.names.outbox_bucket, "x/big.bin").await.unwrap().unwrap();
    assert!(head.etag.unwrap().contains('-'), "a multipart ETag");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_dies_is_retried_on_another_and_completes() {
    let mut stack = nommer_tests::spawn_stack_with("killed", 1, |o| {
        // a short visibility timeout, so the lost job comes back quickly
        o.worker_env
            .insert(nommer_core::settings::VISIBILITY_TIMEOUT_SECS.into(), "6".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    media::generate_clip(&src, 10, 640, 360, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/long.mp4").await;

    let api = ApiClient::new(&stack.api_url);
    // FFmpeg's -progress reaches the job while it encodes: the encode is held and let
    // run in short steps until the job shows progress, so it is always caught midway
    let frozen = freeze_encode(&api, &id, &[stack.workers()[0].pid().unwrap()], Duration::from_secs(60)).await;
    let started = std::time::Instant::now();
    let first = loop {
        frozen.step(Duration::from_millis(100)).await;
        let j = api.get_job(&id).await.unwrap().unwrap();
        if j.progress > 0 {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress on the job: {j:#?}"
        );
    };
    assert_eq!(first.state, JobState::Encoding);
    assert!(first.progress < 100);
    assert_eq!(first.worker.as_deref(), Some(stack.workers()[0].id.as_str()));
    stack.kill_worker(0).await.unwrap();
    drop(frozen);
    stack.spawn_worker().await.unwrap();

    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}\n{}", stack.worker_logs(40));
    assert_eq!(job.attempts, 2, "the attempt count shows the retry");
    assert_eq!(job.worker.as_deref(), Some(stack.workers()[1].id.as_str()));
    let requeue = job
        .history
        .iter()
        .find(|h| h.state == JobState::Queued && h.note.as_deref().unwrap_or("").contains("stopped responding"));
    assert!(requeue.is_some(), "{:#?}", job.history);
    let p = probe_output(&stack, &job.manifest[0].key).await;
    assert!((duration(&p) - 10.0).abs() < 0.5, "{p}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_visibility_timeout_keeps_its_message_hidden() {
    const VT: u64 = 12;
    let stack = nommer_tests::spawn_stack_with("longjob", 2, |o| {
        o.worker_env
            .insert(nommer_core::settings::VISIBILITY_TIMEOUT_SECS.into(), VT.to_string());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    media::generate_clip(&src, 4, 640, 360, false).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/long.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // the encode is held until the job has outlasted the visibility timeout, however
    // fast this machine encodes
    // (either worker may take the message)
    let pids: Vec<u32> = stack.workers().iter().filter_map(|w| w.pid()).collect();
    let frozen = freeze_encode(&api, &id, &pids, Duration::from_secs(60)).await;
    // while it encodes, a duplicate work message for it arrives (as SQS may deliver one)
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    q.send(&stack.urls.work, &nommer_core::messages::JobMessage::new(&id).to_body())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the duplicate dropped", || async {
        stack
            .worker_logs(400)
            .contains("duplicate message deleted")
            .then_some(())
    })
    .await;
    // past the visibility timeout since the worker took the message: had it not been
    // extended, it would be visible again (and taken, and logged) by now
    let job = api.get_job(&id).await.unwrap().unwrap();
    let taken = job
        .history
        .iter()
        .find(|h| h.state == JobState::Downloading)
        .unwrap()
        .at;
    eventually(Duration::from_secs(60), "the visibility timeout passed", || async {
        (chrono::Utc::now() - taken > chrono::Duration::seconds(VT as i64 + 2)).then_some(())
    })
    .await;
    assert_eq!(
        q.depth(&stack.urls.work).await.unwrap(),
        (0, 1),
        "the message is still hidden, held by its worker"
    );
    frozen.release();
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    let logs = stack.worker_logs(400);
    assert_eq!(
        logs.matches("duplicate message deleted").count(),
        1,
        "the duplicate was dropped:\n{logs}"
    );
    assert!(
        !logs.contains("own message came back") && !logs.contains("taking the job over"),
        "the holder kept its message hidden:\n{logs}"
    );
    let took = job.updated_at - taken;
    assert!(
        took > chrono::Duration::seconds(VT as i64),
        "the job outlasted the {VT} s visibility timeout ({took})"
    );
    assert_eq!(job.attempts, 1, "no second attempt: {:#?}", job.history);
    assert_eq!(states(&job).len(), 6, "{:?}", states(&job));
    stack.shutdown().await;
}

/// How a worker is told to stop mid-job.
enum Interrupt {
    Sigterm,
    SpotNotice,
}

/// A worker is interrupted while it encodes: the job goes back to `queued` at once (not
/// after the 300 s visibility timeout) and completes on the next worker, attempt 2.
async fn interrupted_mid_encode_gives_the_job_back(how: Interrupt) {
    let dir = tempfile::tempdir().unwrap();
    let notice = dir.path().join("spot-interruption");
    let notice_env = notice.display().to_string();
    let mut stack = nommer_tests::spawn_stack_with("interrupt", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::VISIBILITY_TIMEOUT_SECS.into(), "300".into());
        o.worker_env
            .insert(nommer_core::settings::INTERRUPTION_FILE.into(), notice_env);
    })
    .await;
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 10, 640, 360, true).unwrap();
    let id = upload(&stack, &src, "inbox/mp4-360p/talk.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // held mid-encode: the interruption always finds the encode running
    let frozen = freeze_encode(&api, &id, &[stack.workers()[0].pid().unwrap()], Duration::from_secs(60)).await;
    match how {
        Interrupt::Sigterm => {
            let status = stack.stop_worker(0).await.unwrap();
            assert!(status.success(), "a clean exit: {status}");
        }
        // the instance is about to be reclaimed
        Interrupt::SpotNotice => std::fs::write(&notice, "terminate").unwrap(),
    }
    let back = eventually(Duration::from_secs(30), "the job back in the queue", || async {
        api.get_job(&id).await.unwrap().filter(|j| j.state == JobState::Queued)
    })
    .await;
    assert!(
        back.history
            .last()
            .unwrap()
            .note
            .as_deref()
            .unwrap()
            .contains("shut down"),
        "{:#?}",
        back.history
    );
    eventually(Duration::from_secs(10), "the interrupted encode ended", || async {
        frozen.all_gone().then_some(())
    })
    .await;
    drop(frozen);
    let _ = std::fs::remove_file(&notice);
    stack.spawn_worker().await.unwrap();
    let started = std::time::Instant::now();
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "not held back by the visibility timeout"
    );
    assert_eq!(job.attempts, 2);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_gives_its_job_back_at_once() {
    interrupted_mid_encode_gives_the_job_back(Interrupt::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_notice_gives_the_job_back() {
    interrupted_mid_encode_gives_the_job_back(Interrupt::SpotNotice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_ffmpeg_and_frees_the_worker() {
    let stack = spawn_stack("cancel-run", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.mp4");
    media::generate_clip(&long, 10, 640, 360, true).unwrap();
    let id = upload(&stack, &long, "inbox/webm-vp9-720p/long.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // held mid-encode, so the cancel always finds FFmpeg running
    let pid = stack.workers()[0].pid().unwrap();
    let frozen = freeze_encode(&api, &id, &[pid], Duration::from_secs(60)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/jobs/{id}/cancel", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(20), "ffmpeg stopped", || async {
        (frozen.all_gone() && ffmpeg_children(pid).is_empty()).then_some(())
    })
    .await;
    // the worker is free: a short job runs to the end while the long one stays cancelled
    let short = dir.path().join("short.mp4");
    media::generate_clip(&short, 2, 320, 240, true).unwrap();
    let next = upload(&stack, &short, "inbox/mp4-360p/short.mp4").await;
    let done = wait_job(&stack, &next).await;
    assert_eq!(done.state, JobState::Complete, "{done:#?}");
    let job = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:#?}");
    assert!(job.manifest.is_empty(), "nothing was uploaded for the cancelled job");
    let listed = objects(&stack)
        .list(&stack.names.outbox_bucket, &format!("{id}/"))
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        stack.worker_logs(200).contains("stopping its work"),
        "{}",
        stack.worker_logs(40)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_health_and_retrying_a_cancelled_job() {
    let stack = spawn_stack("api-more", 0).await;
    let http = reqwest::Client::new();
    let base = &stack.api_url;
    let health: serde_json::Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let presets: serde_json::Value = http
        .get(format!("{base}/presets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(presets["default"], "mp4-720p");
    let names: Vec<&str> = presets["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"hls") && names.contains(&"sprite"), "{names:?}");

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("r.mp4");
    media::generate_clip(&src, 1, 160, 120, true).unwrap();
    objects(&stack)
        .upload_file(&stack.names.inbox_bucket, "sources/r.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let api = ApiClient::new(base);
    let body = json!({"source": format!("s3://{}/sources/r.mp4", stack.names.inbox_bucket),
                      "preset": "mp4-360p", "user_metadata": {"k": "v"}});
    let (status, job) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201);
    let id = job["id"].as_str().unwrap().to_string();
    // a queued job cannot be retried; cancel it first
    let r = http.post(format!("{base}/jobs/{id}/retry")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        http.post(format!("{base}/jobs/{id}/cancel"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let retry = |key: &'static str| {
        http.post(format!("{base}/jobs/{id}/retry"))
            .header("Idempotency-Key", key)
            .send()
    };
    let r = retry("again-1").await.unwrap();
    assert_eq!(r.status(), 201);
    let new: serde_json::Value = r.json().await.unwrap();
    assert_eq!(new["retry_of"], id.as_str());
    assert_ne!(new["id"], id.as_str());
    assert_eq!(new["user_metadata"]["k"], "v");
    let r = retry("again-1").await.unwrap();
    assert_eq!(r.status(), 200, "the same key gives the same retry");
    let same: serde_json::Value = r.json().await.unwrap();
    assert_eq!(same["id"], new["id"]);
    let old = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(old.state, JobState::Cancelled, "the old job stays as it ended");
    let missing = http
        .post(format!("{base}/jobs/j00000000000000000000000000000000/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_newest_first_with_filters_and_cursors() {
    let stack = spawn_stack("api-list", 0).await;
    let http = reqwest::Client::new();
    let base = &stack.api_url;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("l.mp4");
    media::generate_clip(&src, 1, 160, 120, false).unwrap();
    objects(&stack)
        .upload_file(&stack.names.inbox_bucket, "sources/l.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let api = ApiClient::new(base);
    let mut ids = Vec::new();
    for i in 0..5 {
        let team = if i % 2 == 0 { "red" } else { "blue" };
        let body = json!({"source": format!("s3://{}/sources/l.mp4", stack.names.inbox_bucket),
                          "preset": "mp4-360p", "user_metadata": {"team": team}});
        let (status, job) = api.create_job(&body, None).await.unwrap();
        assert_eq!(status, 201);
        ids.push(job["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    http.post(format!("{base}/jobs/{}/cancel", ids[1]))
        .send()
        .await
        .unwrap();
    let get = |q: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{base}/jobs?{q}")).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // pages of two, newest first, every job once
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let (status, page) = get(q).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for j in page["jobs"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10);
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);
    // one page at a time through some states (the cursor is a bound every state shares)
    let mut open = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("state=queued,submitted,queued&limit=1&cursor={c}"),
            None => "state=queued,submitted,queued&limit=1".into(),
        };
        let (status, page) = get(q).await;
        assert_eq!(status, 200, "{page}");
        open.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = newest_first.iter().filter(|i| **i != ids[1]).cloned().collect();
    assert_eq!(open, expected, "every open job once, newest first, none skipped");
    let (_, cancelled) = get("state=cancelled".into()).await;
    let c: Vec<&str> = cancelled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(c, [ids[1].as_str()]);
    let (_, red) = get("metadata.team=red&state=queued,submitted".into()).await;
    assert_eq!(red["jobs"].as_array().unwrap().len(), 3, "{red}");
    let (_, none) = get("created_before=2000-01-01T00:00:00Z".into()).await;
    assert!(none["jobs"].as_array().unwrap().is_empty(), "{none}");
    let (_, recent) = get(format!(
        "created_after={}",
        (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
    ))
    .await;
    assert_eq!(recent["jobs"].as_array().unwrap().len(), 5, "{recent}");
    let (status, bad) = get("created_after=2099-01-01T00:00:00Z".into()).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("created_after")), "{bad}");
    let (status, bad) = get("state=done".into()).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("state")), "{bad}");
    let (status, bad) = get("cursor=zzz".into()).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("cursor")), "{bad}");
    let (status, bad) = get("sort=asc".into()).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("sort")), "{bad}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_configured_the_api_refuses_requests_without_it() {
    let stack = spawn_stack_with("api-auth", 0, |o| o.api_key = Some("nk_test_key".into())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/jobs/j00000000000000000000000000000000", stack.api_url);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let p: serde_json::Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("x-api-key"), "{p}");
    let r = http.get(&url).header("x-api-key", "nk_wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // the right key passes (to a 404: no such job), in either header
    let r = http.get(&url).header("x-api-key", "nk_test_key").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(&url).bearer_auth("nk_test_key").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{}/jobs", stack.api_url))
        .json(&json!({"source": "s3://x/y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "creating needs the key too");
    // health stays open for load balancers; the Encoding.com callback is not ours to key
    assert_eq!(
        http.get(format!("{}/health", stack.api_url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let cb = http
        .post(format!("{}/callbacks/encodingcom", stack.api_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("json=%7B%7D")
        .send()
        .await
        .unwrap();
    // past the key check, to the callback's own answer: a notification without a media
    // id is refused as malformed, never as unauthorised (nor a server error)
    let status = cb.status();
    let body = cb.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("x-api-key"), "{body}");
    let keyed = ApiClient::with_key(&stack.api_url, Some("nk_test_key"));
    assert!(keyed
        .get_job("j00000000000000000000000000000000")
        .await
        .unwrap()
        .is_none());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outputs_sha256_is_in_the_manifest_and_is_what_s3_holds() {
    let stack = spawn_stack("integrity", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 2, 640, 360, true).unwrap();
    objects(&stack)
        .upload_file(&stack.names.inbox_bucket, "sources/clip.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let body = json!({
        "source": format!("s3://{}/sources/clip.mp4", stack.names.inbox_bucket),
        "outputs": [
            { "name": "web", "preset": "mp4-360p" },
            { "name": "poster", "preset": "thumbnails" },
        ],
    });
    let (status, created) = ApiClient::new(&stack.api_url).create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let job = wait_job(&stack, created["id"].as_str().unwrap()).await;
    nommer_tests::assert_complete(&stack, &job);
    assert!(job.manifest.len() >= 2, "{:#?}", job.manifest);

    // the job as GET /jobs/{id} shows it: each file's SHA-256 is the downloaded file's
    let s3 = nommer_aws::sdk::s3_client(&stack.config);
    for entry in &job.manifest {
        let sha = entry
            .sha256
            .as_deref()
            .unwrap_or_else(|| panic!("no sha256 for {}", entry.key));
        let file = nommer_tests::download_output(&stack, &entry.key, dir.path()).await;
        assert_eq!(
            nommer_tests::sha256_hex(&std::fs::read(&file).unwrap()),
            sha,
            "{}",
            entry.key
        );
        // and S3 itself holds a SHA-256 for it (the emulator's, from our upload)
        let head = s3
            .head_object()
            .bucket(&entry.bucket)
            .key(&entry.key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(head.checksum_sha256().is_some(), "{} has no S3 checksum", entry.key);
    }
    stack.shutdown().await;
}
