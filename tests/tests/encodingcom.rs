//! Routing to Encoding.com on the local stack: the stand-in speaks Encoding.com's API and
//! really transcodes; the callback and the poller bring the job along; failures fall back
//! to the FFmpeg fleet; cancelling calls CancelMedia.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::{Job, JobState};
use nommer_devstack::media;
use nommer_tests::{eventually, spawn_stack_with, upload};
use std::sync::atomic::Ordering;
use std::time::Duration;

const JOB_LIMIT: Duration = Duration::from_secs(180);

/// Two backends (prices per minute large enough that routing's rounding of estimates to
/// 4 decimals keeps a 2 s clip's estimate above 0): the fleet by default, Encoding.com for the `partner/` folder and for
/// budget jobs when it is cheaper; Encoding.com falls back to the fleet.
fn config(dir: &std::path::Path, poll_seconds: u32) -> std::path::PathBuf {
    let text = format!(
        r#"
[backends.fleet]
kind = "ffmpeg"
prices = {{ audio = 0.5, sd = 2.0, hd = 4.0, uhd = 12.0 }}

[backends.encodingcom]
kind = "encodingcom"
prices = {{ audio = 1.0, sd = 1.0, hd = 3.0, uhd = 20.0 }}
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

async fn stack(test: &str, workers: usize, poll_seconds: u32) -> (nommer_devstack::LocalStack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), poll_seconds);
    let s = spawn_stack_with(test, workers, |o| o.config_path = Some(cfg)).await;
    assert!(
        s.standin.is_some(),
        "the stack starts the stand-in for an encodingcom backend"
    );
    (s, dir)
}

async fn wait_job(stack: &nommer_devstack::LocalStack, id: &str) -> Job {
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

/// A form body with one field, `json`, as Encoding.com posts and is posted to.
fn form_json(json: &str) -> String {
    format!(
        "json={}",
        percent_encoding::utf8_percent_encode(json, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// Encoding.com's notification that task `media_id` finished (true or forged).
fn finished_notice(media_id: &str) -> String {
    form_json(&format!(
        r#"{{"result":{{"mediaid":"{media_id}","status":"Finished"}}}}"#
    ))
}

/// POSTs a form `body` to `url`.
async fn post_form(url: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// POSTs a notification `body` to the stack's Encoding.com callback.
async fn notify(stack: &nommer_devstack::LocalStack, body: String) -> reqwest::Response {
    post_form(&format!("{}{}", stack.api_url, encodingcom::CALLBACK_PATH), body).await
}

/// The keys in `bucket` under `prefix`.
async fn keys_under(o: &S3ObjectStore, bucket: &str, prefix: &str) -> Vec<String> {
    o.list(bucket, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Waits until job `id` has its task at Encoding.com; returns the task's MediaID.
async fn task_added(stack: &nommer_devstack::LocalStack, id: &str) -> String {
    let api = ApiClient::new(&stack.api_url);
    let job = eventually(Duration::from_secs(60), "the task is added", || async {
        api.get_job(id).await.unwrap().filter(|j| j.remote.is_some())
    })
    .await;
    job.remote.unwrap().media_id
}

/// ffprobe's video stream of the outbox object `key`, downloaded into `dir`.
async fn video_of(stack: &nommer_devstack::LocalStack, key: &str, dir: &std::path::Path) -> serde_json::Value {
    let got = nommer_tests::download_output(stack, key, dir).await;
    let p = media::probe(&got).unwrap();
    p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream")
        .clone()
}

/// Uploads `src` into the inbox as `key` (under `sources/`, so it makes no job by itself).
async fn put_source(stack: &nommer_devstack::LocalStack, src: &std::path::Path, key: &str) -> S3ObjectStore {
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    o.upload_file(&stack.names.inbox_bucket, key, src, "video/mp4")
        .await
        .unwrap();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_send_one_file_to_encodingcom_and_another_to_the_fleet() {
    // a long poll interval: this job must be brought along by the callback
    let (stack, dir) = stack("ecom-route", 1, 600).await;
    let src = clip(dir.path(), "clip.mp4");
    let portrait = dir.path().join("phone.mp4");
    media::generate_clip(&portrait, 2, 720, 1280, true).unwrap();
    let remote_id = upload(&stack, &src, "inbox/partner/clip.mp4").await;
    let fleet_id = upload(&stack, &src, "inbox/mp4-480p/clip.mp4").await;
    let phone_id = upload(&stack, &portrait, "inbox/partner/phone.mp4").await;
    let remote = wait_job(&stack, &remote_id).await;
    let fleet = wait_job(&stack, &fleet_id).await;
    let phone = wait_job(&stack, &phone_id).await;

    // a portrait phone video through mp4-720p keeps its class: 720x1280, not 406x720
    assert_eq!(phone.state, JobState::Complete, "{phone:#?}");
    assert_eq!(phone.backend.as_deref(), Some("encodingcom"));
    let v = video_of(&stack, &phone.manifest[0].key, dir.path()).await;
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(720), Some(1280)),
        "{v}"
    );

    assert_eq!(remote.state, JobState::Complete, "{remote:#?}");
    assert_eq!(remote.backend.as_deref(), Some("encodingcom"));
    let d = remote.routing.as_ref().expect("the decision is on the job");
    assert_eq!(d.rule.as_deref(), Some("partner uploads"));
    assert_eq!(d.facts.measured_by, nommer_core::routing::Measured::Probe, "{d:?}");
    assert_eq!(d.facts.height, Some(360));
    // 2 s of sd: 2/60 * 1.0 (a relative tolerance: an estimate of 0 must not pass)
    let est = d.estimated_cost_usd.expect("an estimate");
    let want = 2.0 / 60.0 * 1.0;
    assert!((est - want).abs() <= want * 0.05, "{est} vs {want}");
    assert!(d.estimates.contains_key("fleet") && d.estimates.contains_key("encodingcom"));
    let task = remote.remote.as_ref().expect("the Encoding.com task is on the job");
    assert!(task.notifications >= 1, "completed through the callback: {task:?}");
    assert_eq!(task.status.as_str(), "Finished");
    // the source URL outlives any session: signed with the source reader's own key, for
    // SigV4's maximum of 7 days, with no session token that could expire first
    let si = stack.standin.as_ref().unwrap();
    let source = si.source(&task.media_id).expect("the stand-in saw the task");
    let reader = reader_key_id(&stack).await;
    assert!(
        source.contains(&format!("X-Amz-Credential={reader}%2F")),
        "signed by the source reader {reader}: {source}"
    );
    assert!(source.contains("X-Amz-Expires=604800"), "{source}");
    assert!(!source.contains("X-Amz-Security-Token"), "{source}");
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
    let v = video_of(&stack, &out.key, dir.path()).await;
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["height"], 360, "never upscaled to 720");
    // the SHA-256 S3 computed copying the delivery is the file's
    let copy = nommer_tests::download_output(&stack, &out.key, dir.path()).await;
    let sha: String = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&copy).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(out.sha256.as_deref(), Some(sha.as_str()), "{out:?}");
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
    let si = stack.standin.as_ref().unwrap();
    si.switches.lose_callbacks.store(true, Ordering::SeqCst);
    let id = upload(&stack, &clip(dir.path(), "a.mp4"), "inbox/partner/a.mp4").await;
    let job = wait_job(&stack, &id).await;
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    let task = job.remote.as_ref().unwrap();
    assert_eq!(task.notifications, 0, "no callback arrived: {task:?}");
    let calls = si.calls();
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
    let si = stack.standin.as_ref().unwrap();
    si.switches.fail_tasks.store(true, Ordering::SeqCst);
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
    let media_id = task_added(&stack, &id).await;
    let cancel = || {
        reqwest::Client::new()
            .post(format!("{}/jobs/{id}/cancel", stack.api_url))
            .send()
    };
    let r = cancel().await.unwrap();
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
    // the task's run at the stand-in notices the cancel and stops (a positive event,
    // not a wait for nothing), and late news of it is confirmed and changes nothing
    eventually(Duration::from_secs(60), "the stand-in's run stops", || async {
        si.calls().contains(&format!("stopped {media_id}")).then_some(())
    })
    .await;
    let r = notify(&stack, finished_notice(&media_id)).await;
    assert_eq!(r.status(), 200, "the late notification was handled");
    let job = ApiClient::new(&stack.api_url).get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let again = cancel().await.unwrap();
    assert_eq!(again.status(), 409);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_confirmed_and_hostile_ones_change_nothing() {
    let (stack, _dir) = stack("ecom-callback", 0, 600).await;
    // not a form with json/xml → 400; an unknown MediaID → 200, ignored
    assert_eq!(notify(&stack, "hello=1".into()).await.status(), 400);
    let r = notify(&stack, finished_notice("999999")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("unknown media"));
    let bad_id = "json=%7B%22result%22%3A%7B%22mediaid%22%3A%22..%2F..%22%7D%7D";
    assert_eq!(notify(&stack, bad_id.into()).await.status(), 400);

    // a forged "Finished" for a real task: confirmed with GetStatus, which says otherwise
    let si = stack.standin.as_ref().unwrap();
    si.switches.step_delay_ms.store(3000, Ordering::SeqCst);
    let id = upload(&stack, &clip(_dir.path(), "f.mp4"), "inbox/partner/f.mp4").await;
    let media_id = task_added(&stack, &id).await;
    assert_eq!(notify(&stack, finished_notice(&media_id)).await.status(), 200);
    let job = ApiClient::new(&stack.api_url).get_job(&id).await.unwrap().unwrap();
    assert!(!job.state.is_terminal(), "a callback alone finishes nothing: {job:#?}");
    let task = job.remote.unwrap();
    assert_eq!(task.notifications, 1);
    assert_ne!(task.status.as_str(), "Finished");
    si.switches.step_delay_ms.store(100, Ordering::SeqCst);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_secrets_manager_and_never_print() {
    let sdk = nommer_aws::sdk::sdk_config_for_endpoint(&nommer_tests::emulator_endpoint(), "us-east-1").await;
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
            (nommer_core::settings::TABLE, "t"),
            (nommer_core::settings::WORK_QUEUE_URL, "q"),
            (nommer_core::settings::OUTBOX_BUCKET, "o"),
            (nommer_core::settings::DELIVERY_BUCKET, "d"),
            (nommer_core::settings::ENCODINGCOM_SOURCE_SECRET, "reader"),
            (
                nommer_core::settings::CALLBACK_URL,
                "https://api.example/callbacks/encodingcom",
            ),
            (nommer_core::settings::CONFIG_TOML, cfg.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        nommer_core::settings::BackendSettings::from_source(&env).unwrap()
    };
    let secrets = nommer_aws::secrets::SecretsManagerSecrets::new(&sdk);
    let remotes = nommer_encodingcom::remotes(&settings(&name), &secrets).await.unwrap();
    let client = remotes.get("encodingcom").expect("a client for the backend");
    let shown = format!("{client:?} {remotes:?}");
    assert!(shown.contains("4242"), "{shown}");
    assert!(!shown.contains("very-secret-key"), "the key never prints: {shown}");

    let e = nommer_encodingcom::remotes(&settings("no/such/secret"), &secrets)
        .await
        .unwrap_err();
    assert!(e.contains("no/such/secret") && e.contains("encodingcom"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_and_a_poster_made_at_encodingcom_land_in_the_outbox() {
    let (stack, dir) = stack("ecom-hls", 0, 600).await;
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 4, 1280, 720, true).unwrap();
    put_source(&stack, &src, "sources/talk.mp4").await;
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

/// The access key id of the stack's source reader, from its secret.
async fn reader_key_id(stack: &nommer_devstack::LocalStack) -> String {
    let v = aws_sdk_secretsmanager::Client::new(&stack.config)
        .get_secret_value()
        .secret_id(&stack.names.source_reader_secret)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    v["access_key_id"].as_str().unwrap().to_string()
}

/// One raw API call to the stand-in (as Encoding.com's documented form POST).
async fn ecom(si: &nommer_devstack::standin::StandIn, query: serde_json::Value) -> serde_json::Value {
    let mut q = query;
    q["userid"] = nommer_devstack::standin::USERID.into();
    q["userkey"] = nommer_devstack::standin::USERKEY.into();
    let body = form_json(&serde_json::json!({ "query": q }).to_string());
    post_form(&si.url, body).await.json().await.unwrap()
}

async fn wait_status(si: &nommer_devstack::standin::StandIn, id: &str, done: &[&str]) -> String {
    eventually(JOB_LIMIT, &format!("media {id} ends"), || async {
        si.status(id).filter(|s| done.contains(&s.as_str()))
    })
    .await
}

/// A local receiver of notify POSTs: (URL, bodies received).
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/n",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/n", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standin_keeps_encodingcoms_documented_defaults() {
    let (stack, dir) = stack("ecom-defaults", 0, 600).await;
    let si = stack.standin.as_ref().unwrap();
    let o = put_source(&stack, &clip(dir.path(), "g.mp4"), "sources/g.mp4").await;
    let source = o
        .presign_get(&stack.names.inbox_bucket, "sources/g.mp4", Duration::from_secs(3600))
        .await
        .unwrap();
    let (notify, bodies) = receiver().await;
    let mp4 =
        |dest: String| serde_json::json!({"output": "mp4", "size": "0x180", "bitrate": "300k", "destination": dest});
    let delivery = &stack.names.delivery_bucket;
    let add = |format: serde_json::Value, extra: serde_json::Value| {
        let mut q = serde_json::json!({"action": "AddMedia", "source": source, "notify": notify, "format": format});
        q.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ecom(si, q)
    };
    let id = |r: serde_json::Value| {
        r["response"]["MediaID"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string()
    };

    // 1. a write without an ACL is authenticated-read: the outbox (BucketOwnerEnforced,
    //    BlockPublicAcls) refuses it, as S3 would
    let refused = id(add(
        mp4(format!(
            "https://{}.s3.amazonaws.com/x/refused.mp4",
            stack.names.outbox_bucket
        )),
        serde_json::json!({}),
    )
    .await);
    // 2. a ladder without pack_files arrives as ONE tar; 3. with `pack_files: no`, as files
    let ladder = |key: &str, pack: Option<&str>| {
        let mut f = serde_json::json!({"output": "advanced_hls", "segment_duration": "1",
            "stream": [{"video_codec": "libx264", "size": "0x180", "bitrate": "300k"}],
            "destination": format!("https://{delivery}.s3.amazonaws.com/{key}/master.m3u8")});
        if let Some(p) = pack {
            f["pack_files"] = p.into();
        }
        f
    };
    let packed = id(add(ladder("packed", None), serde_json::json!({})).await);
    let loose = id(add(
        ladder("loose", Some("no")),
        serde_json::json!({"notify_format": "json"}),
    )
    .await);

    assert_eq!(wait_status(si, &refused, &["Finished", "Error"]).await, "Error");
    let r = ecom(si, serde_json::json!({"action": "GetStatus", "mediaid": refused})).await;
    let why = r["response"]["description"].to_string();
    assert!(why.contains("AccessControlListNotSupported"), "{r}");
    assert!(
        o.list(&stack.names.outbox_bucket, "x/").await.unwrap().is_empty(),
        "nothing was written"
    );

    assert_eq!(wait_status(si, &packed, &["Finished", "Error"]).await, "Finished");
    let keys = keys_under(&o, delivery, "packed/").await;
    assert_eq!(keys, ["packed/master.tar"], "one tar, no playlist");

    assert_eq!(wait_status(si, &loose, &["Finished", "Error"]).await, "Finished");
    let keys = keys_under(&o, delivery, "loose/").await;
    assert!(keys.contains(&"loose/master.m3u8".to_string()), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".ts")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.ends_with(".tar")), "{keys:?}");
    // every write carried the ACL: authenticated-read's grant is on the object
    let acl = o
        .client()
        .get_object_acl()
        .bucket(delivery)
        .key("loose/master.m3u8")
        .send()
        .await
        .unwrap();
    assert!(
        acl.grants().iter().any(|g| g
            .grantee()
            .and_then(|x| x.uri())
            .is_some_and(|u| u.ends_with("AuthenticatedUsers"))),
        "{acl:?}"
    );

    // 4. notifications: XML in a form field `xml` by default, JSON in `json` when asked
    let bodies = eventually(Duration::from_secs(60), "three notifications", || async {
        let b = bodies.lock().unwrap().clone();
        (b.len() >= 3).then_some(b)
    })
    .await;
    let decoded = |b: &str| {
        percent_encoding::percent_decode_str(b.split_once('=').unwrap().1)
            .decode_utf8_lossy()
            .into_owned()
    };
    for m in [&refused, &packed] {
        let b = bodies
            .iter()
            .find(|b| b.starts_with("xml=") && decoded(b).contains(&format!("<mediaid>{m}</mediaid>")))
            .unwrap_or_else(|| panic!("an XML notification for {m}: {bodies:?}"));
        assert_eq!(
            encodingcom_mediaid(b),
            *m,
            "Nommer's callback parser reads the stand-in's XML"
        );
    }
    let j = bodies
        .iter()
        .find(|b| b.starts_with("json="))
        .unwrap_or_else(|| panic!("{bodies:?}"));
    let v: serde_json::Value = serde_json::from_str(&decoded(j)).unwrap();
    assert_eq!(v["result"]["mediaid"], loose.as_str());
    stack.shutdown().await;
}

fn encodingcom_mediaid(body: &str) -> String {
    nommer_encodingcom::parse_notify(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap()
}

/// PyPI's `encodingcom` client, pinned, in a venv of its own under `.nommer/`.
fn python_client() -> std::path::PathBuf {
    const VERSION: &str = "0.1.3";
    let root = nommer_devstack::emulator::project_root().unwrap().join(".nommer");
    let venv = root.join(format!("encodingcom-{VERSION}"));
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".installed");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join("encodingcom.lock")).unwrap();
    lock.lock().unwrap();
    if !stamp.exists() {
        let st = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (apt-get install python3-venv)");
        assert!(st.success(), "python3 -m venv failed");
        let st = std::process::Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("encodingcom=={VERSION}"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "pip could not install encodingcom=={VERSION}; check that PyPI is reachable"
        );
        std::fs::write(&stamp, VERSION).unwrap();
    }
    python
}

/// Drives every action of the client; prints one JSON line per call.
const PY_CLIENT_SCRIPT: &str = r#"
import json, sys, time
from encodingcom.encoding import Encoding
from encodingcom.exception import EncodingErrors

url, uid, key, source, missing, dest = sys.argv[1:7]
e = Encoding(uid, key)
e.url = url
fmt = {"output": "mp4", "size": "0x180", "bitrate": "300k", "destination": dest}

def call(name, f, *a, **kw):
    try:
        status, r = f(*a, **kw)
        print(json.dumps({"action": name, "http": status, "response": r}), flush=True)
        return r.get("response", {})
    except EncodingErrors as x:
        print(json.dumps({"action": name, "error": str(x)}), flush=True)
        return {}

def wait(mid, statuses):
    deadline = time.time() + 120
    while time.time() < deadline:
        _, r = e.get_status(mediaid=mid)
        if r["response"]["status"] in statuses:
            return
        time.sleep(0.2)
    raise SystemExit("media %s never reached %s" % (mid, statuses))

a = call("AddMedia", e.add_media, source=source, format=fmt)["MediaID"]
call("GetStatus", e.get_status, mediaid=a)
call("GetMediaList", e.get_media_list)
wait(a, ["Finished"])
call("GetMediaInfo", e.get_media_info, False, mediaid=a)
call("GetMediaInfoEx", e.get_media_info, True, mediaid=a)
b = call("AddMediaBenchmark", e.add_media_benchmark, source=source, format=fmt)["MediaID"]
wait(b, ["Ready to process"])
call("ProcessMedia", e.process_media, mediaid=b, format=fmt)
call("UpdateMedia", e.update_media, mediaid=a, format=fmt)
call("StopMedia", e.stop_media, mediaid=a)
call("RestartMedia", e.restart_media, mediaid=a)
call("RestartMediaTask", e.restart_media_task, mediaid=a, taskid="1")
c = call("AddMedia (a missing source)", e.add_media, source=missing, format=fmt)["MediaID"]
wait(c, ["Error"])
call("RestartMediaErrors", e.restart_media_errors, mediaid=c)
call("CancelMedia", e.cancel_media, mediaid=b)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_of_pypis_encodingcom_client_gets_a_real_answer() {
    let (stack, dir) = stack("ecom-pyclient", 0, 600).await;
    let si = stack.standin.as_ref().unwrap();
    let python = tokio::task::spawn_blocking(python_client).await.unwrap();
    let o = put_source(&stack, &clip(dir.path(), "p.mp4"), "sources/p.mp4").await;
    let presign = |k: &'static str| o.presign_get(&stack.names.inbox_bucket, k, Duration::from_secs(3600));
    let source = presign("sources/p.mp4").await.unwrap();
    let missing = presign("sources/missing.mp4").await.unwrap();
    let dest = format!("https://{}.s3.amazonaws.com/py/out.mp4", stack.names.delivery_bucket);
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(PY_CLIENT_SCRIPT)
        .args([
            &si.url,
            nommer_devstack::standin::USERID,
            nommer_devstack::standin::USERKEY,
            &source,
            &missing,
            &dest,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str().unwrap()).collect();
    for want in [
        "AddMedia",
        "AddMediaBenchmark",
        "ProcessMedia",
        "UpdateMedia",
        "GetStatus",
        "GetMediaInfo",
        "GetMediaInfoEx",
        "GetMediaList",
        "CancelMedia",
        "StopMedia",
        "RestartMedia",
        "RestartMediaErrors",
        "RestartMediaTask",
    ] {
        assert!(actions.contains(&want), "{want} was driven: {actions:?}");
    }
    for l in &lines {
        assert!(
            l.get("error").is_none(),
            "every action is answered without an error: {l}"
        );
        assert_eq!(l["http"], 200, "{l}");
    }
    let info = &lines.iter().find(|l| l["action"] == "GetMediaInfo").unwrap()["response"]["response"];
    assert_eq!(info["video_codec"], "h264", "a real probe of the source: {info}");
    assert_eq!(info["size"], "640x360", "{info}");
    let list = &lines.iter().find(|l| l["action"] == "GetMediaList").unwrap()["response"]["response"];
    assert!(list["media"].to_string().contains("mediaid"), "{list}");
    stack.shutdown().await;
}
