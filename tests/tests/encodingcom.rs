//! Routing to Encoding.com on the local stack: the stand-in speaks Encoding.com's API and
//! really transcodes; the callback and the poller bring the job along; failures fall back
//! to the FFmpeg fleet; cancelling calls CancelMedia.

use nommer::client::ApiClient;
use nommer::media;
use nommer_shared::error::JobErrorCode;
use nommer_shared::objects::S3ObjectStore;
use nommer_shared::{Job, JobState};
use nommer_tests::{eventually, spawn_stack_with, upload};
use std::sync::atomic::Ordering;
use std::time::Duration;

const JOB_LIMIT: Duration = Duration::from_secs(180);

/// Two backends: the fleet by default, Encoding.com for the `partner/` folder and for
/// budget jobs when it is cheaper; Encoding.com falls back to the fleet.
fn config(dir: &std::path::Path, poll_seconds: u32) -> std::path::PathBuf {
    let text = format!(
        r#"
[backends.fleet]
kind = "ffmpeg"
prices = {{ audio = 0.0005, sd = 0.002, hd = 0.004, uhd = 0.012 }}

[backends.encodingcom]
kind = "encodingcom"
prices = {{ audio = 0.001, sd = 0.001, hd = 0.003, uhd = 0.02 }}
fallback = "fleet"
poll_seconds = {poll_seconds}

[routing]
default = "fleet"

[[routing.rules]]
name = "partner uploads"
backend = "encodingcom"
match = {{ key_prefix = "inbox/partner/" }}

[[routing.rules]]
name = "partner API jobs"
backend = "encodingcom"
match = {{ metadata = {{ partner = "yes" }} }}
"#
    );
    let p = dir.join("nommer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

async fn stack(test: &str, workers: usize, poll_seconds: u32) -> (nommer::LocalStack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), poll_seconds);
    let s = spawn_stack_with(test, workers, |o| o.config_path = Some(cfg)).await;
    assert!(
        s.standin.is_some(),
        "the stack starts the stand-in for an encodingcom backend"
    );
    (s, dir)
}

async fn wait_job(stack: &nommer::LocalStack, id: &str) -> Job {
    match ApiClient::new(&stack.api_url).wait(id, JOB_LIMIT, |_| {}).await {
        Ok(j) => j,
        Err(e) => panic!(
            "{e:#}\nstand-in calls: {:?}\n{}",
            stack.standin.as_ref().unwrap().calls(),
            stack.worker_logs(30)
        ),
    }
}

fn clip(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    media::generate_clip(&p, 2, 640, 360, true).unwrap();
    p
}

fn states(job: &Job) -> Vec<JobState> {
    job.history.iter().map(|h| h.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_send_one_file_to_encodingcom_and_another_to_the_fleet() {
    // a long poll interval: this job must be brought along by the callback
    let (stack, dir) = stack("ecom-route", 1, 600).await;
    let src = clip(dir.path(), "clip.mp4");
    let remote_id = upload(&stack, &src, "inbox/partner/clip.mp4").await;
    let fleet_id = upload(&stack, &src, "inbox/mp4-480p/clip.mp4").await;
    let remote = wait_job(&stack, &remote_id).await;
    let fleet = wait_job(&stack, &fleet_id).await;

    assert_eq!(remote.state, JobState::Complete, "{remote:#?}");
    assert_eq!(remote.backend.as_deref(), Some("encodingcom"));
    let d = remote.routing.as_ref().expect("the decision is on the job");
    assert_eq!(d.rule.as_deref(), Some("partner uploads"));
    assert_eq!(d.facts.measured_by, "probe", "{d:?}");
    assert_eq!(d.facts.height, Some(360));
    // 2 s of sd: 2/60 * 0.001
    let est = d.estimated_cost_usd.expect("an estimate");
    assert!((est - 2.0 / 60.0 * 0.001).abs() < 0.0002, "{est}");
    assert!(d.estimates.contains_key("fleet") && d.estimates.contains_key("encodingcom"));
    let task = remote.remote.as_ref().expect("the Encoding.com task is on the job");
    assert!(task.notifications >= 1, "completed through the callback: {task:?}");
    assert_eq!(task.status, "Finished");
    assert_eq!(
        states(&remote),
        [
            JobState::Submitted,
            JobState::Queued,
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading,
            JobState::Complete
        ],
        "every state is walked through, in order"
    );
    assert_eq!(remote.manifest.len(), 1, "{:?}", remote.manifest);
    let out = &remote.manifest[0];
    assert_eq!(out.key, format!("{remote_id}/mp4-720p/clip.mp4"));
    assert_eq!(
        out.height,
        Some(360),
        "the output was probed before completing: {out:?}"
    );
    assert!((out.duration_seconds.unwrap() - 2.0).abs() < 0.3, "{out:?}");
    let got = nommer_tests::download_output(&stack, &out.key, dir.path()).await;
    let p = media::probe(&got).unwrap();
    let v = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["height"], 360, "never upscaled to 720");
    let calls = stack.standin.as_ref().unwrap().calls();
    assert!(
        calls.iter().any(|c| c == &format!("AddMedia {}", task.media_id)),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with(&format!("notify {} 200", task.media_id))),
        "{calls:?}"
    );

    assert_eq!(fleet.state, JobState::Complete, "{fleet:#?}");
    assert_eq!(fleet.backend.as_deref(), Some("fleet"));
    let d = fleet.routing.as_ref().unwrap();
    assert_eq!(d.rule, None);
    assert!(d.reason.contains("no rule matched"), "{}", d.reason);
    assert!(fleet.remote.is_none());
    assert!(fleet.worker.is_some() || fleet.history.iter().any(|h| h.state == JobState::Encoding));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_callback_is_caught_by_the_poller() {
    let (stack, dir) = stack("ecom-poll", 0, 1).await;
    stack
        .standin
        .as_ref()
        .unwrap()
        .switches
        .lose_callbacks
        .store(true, Ordering::SeqCst);
    let id = upload(&stack, &clip(dir.path(), "a.mp4"), "inbox/partner/a.mp4").await;
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    let task = job.remote.as_ref().unwrap();
    assert_eq!(task.notifications, 0, "no callback arrived: {task:?}");
    let calls = stack.standin.as_ref().unwrap().calls();
    assert!(
        calls.iter().any(|c| c == &format!("notify {} lost", task.media_id)),
        "{calls:?}"
    );
    assert!(
        job.manifest.iter().any(|f| f.key.ends_with("/a.mp4")),
        "{:?}",
        job.manifest
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodingcom_failures_fall_back_to_the_fleet() {
    let (stack, dir) = stack("ecom-fallback", 1, 1).await;
    let si = stack.standin.as_ref().unwrap();
    let src = clip(dir.path(), "b.mp4");

    // the task ends in Error at Encoding.com
    si.switches.fail_tasks.store(true, Ordering::SeqCst);
    let id = upload(&stack, &src, "inbox/partner/b.mp4").await;
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    assert_eq!(job.backend.as_deref(), Some("fleet"), "finished on the fleet");
    let d = job.routing.as_ref().unwrap();
    assert_eq!(d.fallback_from.as_deref(), Some("encodingcom"));
    let note = job
        .history
        .iter()
        .filter_map(|h| h.note.as_deref())
        .find(|n| n.contains("falling back to fleet"))
        .unwrap_or_else(|| panic!("{:#?}", job.history));
    assert!(
        note.contains("switch: fail_tasks"),
        "Encoding.com's reason is kept: {note}"
    );
    assert!(job.remote.is_none());
    let after: Vec<JobState> = job
        .history
        .iter()
        .skip_while(|h| !h.note.as_deref().unwrap_or("").contains("falling back"))
        .skip(1)
        .map(|h| h.state)
        .collect();
    assert_eq!(
        after,
        [
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading,
            JobState::Complete
        ],
        "the fleet ran it after the fallback: {:#?}",
        job.history
    );
    assert_eq!(job.manifest.len(), 1);

    // AddMedia is refused outright
    si.switches.fail_tasks.store(false, Ordering::SeqCst);
    si.switches.refuse_add.store(true, Ordering::SeqCst);
    let id = upload(&stack, &src, "inbox/partner/c.mp4").await;
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    assert_eq!(job.backend.as_deref(), Some("fleet"));
    assert!(
        job.history
            .iter()
            .filter_map(|h| h.note.as_deref())
            .any(|n| n.contains("Source file is not available")),
        "{:#?}",
        job.history
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fallback_an_encodingcom_error_fails_the_job_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[backends.encodingcom]\nkind = \"encodingcom\"\npoll_seconds = 1\n\n[routing]\ndefault = \"encodingcom\"\n",
    )
    .unwrap();
    let stack = spawn_stack_with("ecom-nofallback", 0, |o| o.config_path = Some(cfg)).await;
    stack
        .standin
        .as_ref()
        .unwrap()
        .switches
        .fail_tasks
        .store(true, Ordering::SeqCst);
    let id = upload(&stack, &clip(dir.path(), "d.mp4"), "inbox/mp4-360p/d.mp4").await;
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let e = job.error.as_ref().unwrap();
    assert_eq!(e.code, JobErrorCode::EncodeFailed);
    assert!(
        e.message.contains("encodingcom") && e.message.contains("fail_tasks"),
        "{e:?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_at_encodingcom_calls_cancel_media() {
    let (stack, dir) = stack("ecom-cancel", 0, 1).await;
    let si = stack.standin.as_ref().unwrap();
    si.switches.step_delay_ms.store(3000, Ordering::SeqCst);
    let id = upload(&stack, &clip(dir.path(), "e.mp4"), "inbox/partner/e.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    let job = eventually(Duration::from_secs(60), "the task is added", || async {
        api.get_job(&id).await.unwrap().filter(|j| j.remote.is_some())
    })
    .await;
    let media_id = job.remote.unwrap().media_id;
    let r = reqwest::Client::new()
        .post(format!("{}/jobs/{id}/cancel", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["state"], "cancelled", "{body}");
    assert_eq!(body["backend_cancel"]["ok"], true, "{body}");
    assert!(
        si.calls().contains(&format!("CancelMedia {media_id}")),
        "{:?}",
        si.calls()
    );
    assert_eq!(si.status(&media_id).as_deref(), Some("Deleted"));
    // the poller and late news leave it cancelled; a second cancel is a conflict
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let again = reqwest::Client::new()
        .post(format!("{}/jobs/{id}/cancel", stack.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_confirmed_and_hostile_ones_change_nothing() {
    let (stack, _dir) = stack("ecom-callback", 0, 600).await;
    let url = format!("{}{}", stack.api_url, encodingcom::CALLBACK_PATH);
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // not a form with json/xml → 400; an unknown MediaID → 200, ignored
    assert_eq!(post("hello=1".into()).await.unwrap().status(), 400);
    let forged = format!(
        "json={}",
        percent_encoding::utf8_percent_encode(
            r#"{"result":{"mediaid":"999999","status":"Finished"}}"#,
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    let r = post(forged).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("unknown media"));
    let bad_id = "json=%7B%22result%22%3A%7B%22mediaid%22%3A%22..%2F..%22%7D%7D";
    assert_eq!(post(bad_id.into()).await.unwrap().status(), 400);

    // a forged "Finished" for a real task: confirmed with GetStatus, which says otherwise
    let si = stack.standin.as_ref().unwrap();
    si.switches.step_delay_ms.store(3000, Ordering::SeqCst);
    let id = upload(&stack, &clip(_dir.path(), "f.mp4"), "inbox/partner/f.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    let job = eventually(Duration::from_secs(60), "the task is added", || async {
        api.get_job(&id).await.unwrap().filter(|j| j.remote.is_some())
    })
    .await;
    let media_id = job.remote.unwrap().media_id;
    let forged = format!(
        "json={}",
        percent_encoding::utf8_percent_encode(
            &format!(r#"{{"result":{{"mediaid":"{media_id}","status":"Finished"}}}}"#),
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    assert_eq!(post(forged).await.unwrap().status(), 200);
    let job = api.get_job(&id).await.unwrap().unwrap();
    assert!(!job.state.is_terminal(), "a callback alone finishes nothing: {job:#?}");
    let task = job.remote.unwrap();
    assert_eq!(task.notifications, 1);
    assert_ne!(task.status, "Finished");
    si.switches.step_delay_ms.store(100, Ordering::SeqCst);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_secrets_manager_and_never_print() {
    let sdk = nommer_shared::aws::sdk_config_for_endpoint(&nommer_tests::emulator_endpoint(), "us-east-1").await;
    let name = format!("{}/encodingcom", nommer_tests::unique_stack("secret"));
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&name)
        .secret_string(r#"{"userid": "4242", "userkey": "very-secret-key"}"#)
        .send()
        .await
        .unwrap();
    let settings = |secret: &str| {
        let cfg = format!(
            "[backends.encodingcom]\nkind = \"encodingcom\"\nsecret = \"{secret}\"\n\n[routing]\ndefault = \"encodingcom\"\n"
        );
        let env: std::collections::HashMap<String, String> = [
            (nommer_shared::settings::TABLE, "t"),
            (nommer_shared::settings::WORK_QUEUE_URL, "q"),
            (nommer_shared::settings::OUTBOX_BUCKET, "o"),
            (
                nommer_shared::settings::CALLBACK_URL,
                "https://api.example/callbacks/encodingcom",
            ),
            (nommer_shared::settings::CONFIG_TOML, cfg.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        nommer_shared::settings::BackendSettings::from_source(&env).unwrap()
    };
    let remotes = nommer_shared::backends::Remotes::load(&settings(&name), &sdk)
        .await
        .unwrap();
    let client = remotes.client("encodingcom").expect("a client for the backend");
    let shown = format!("{client:?} {remotes:?}");
    assert!(shown.contains("4242"), "{shown}");
    assert!(!shown.contains("very-secret-key"), "the key never prints: {shown}");

    let e = nommer_shared::backends::Remotes::load(&settings("no/such/secret"), &sdk)
        .await
        .unwrap_err();
    assert!(e.contains("no/such/secret") && e.contains("encodingcom"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_and_a_poster_made_at_encodingcom_land_in_the_outbox() {
    let (stack, dir) = stack("ecom-hls", 0, 600).await;
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 4, 1280, 720, true).unwrap();
    let o = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    o.upload_file(&stack.names.inbox_bucket, "sources/talk.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let body = serde_json::json!({
        "source": format!("s3://{}/sources/talk.mp4", stack.names.inbox_bucket),
        "outputs": [{"preset": "hls"}, {"preset": "poster", "options": {"at_seconds": 1}}],
        "user_metadata": {"partner": "yes"}
    });
    let (status, job) = ApiClient::new(&stack.api_url).create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    assert_eq!(job.routing.as_ref().unwrap().rule.as_deref(), Some("partner API jobs"));
    let keys: Vec<&str> = job.manifest.iter().map(|f| f.key.as_str()).collect();
    let master = format!("{id}/hls/master.m3u8");
    assert!(keys.contains(&master.as_str()), "{keys:?}");
    assert!(keys.contains(&format!("{id}/poster/poster.jpg").as_str()), "{keys:?}");
    let text = std::fs::read_to_string(nommer_tests::download_output(&stack, &master, dir.path()).await).unwrap();
    let variants: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let heights: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split("RESOLUTION=").nth(1))
        .map(|r| r.split(['x', ',']).nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(!variants.is_empty() && variants.len() == heights.len(), "{text}");
    assert!(heights.iter().all(|h| *h <= 720), "never above the source: {heights:?}");
    for v in variants {
        let k = format!("{id}/hls/{v}");
        assert!(keys.contains(&k.as_str()), "{k} is listed and exists: {keys:?}");
    }
    let poster = nommer_tests::download_output(&stack, &format!("{id}/poster/poster.jpg"), dir.path()).await;
    let p = media::probe(&poster).unwrap();
    assert_eq!(p["streams"][0]["codec_name"], "mjpeg", "{p}");
    stack.shutdown().await;
}
