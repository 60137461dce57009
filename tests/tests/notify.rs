//! Job events on the local stack: from the table's stream to SNS (with filterable
//! attributes) and to signed webhooks, retried until they arrive, refused for private
//! addresses.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::JobState;
use nommer_devstack::media;
use nommer_tests::receiver::Receiver;
use nommer_tests::{eventually, spawn_stack_with};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn config(dir: &Path, allow_private: bool) -> PathBuf {
    config_with(dir, allow_private, "[0, 1, 1, 1, 1, 1, 1, 1]")
}

fn config_with(dir: &Path, allow_private: bool, retry_seconds: &str) -> PathBuf {
    let p = dir.join("nommer.toml");
    std::fs::write(
        &p,
        format!("[webhooks]\nallow_http = true\nallow_private = {allow_private}\nretry_seconds = {retry_seconds}\n"),
    )
    .unwrap();
    p
}

/// An SQS queue subscribed to the events topic (raw delivery), with an optional filter.
async fn subscribe(stack: &nommer_devstack::LocalStack, name: &str, filter: Option<Value>) -> String {
    let sqs = nommer_aws::sdk::sqs_client(&stack.config);
    let url = sqs
        .create_queue()
        .queue_name(format!("{}-{name}", stack.names.stack))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = nommer_aws::queue::SqsQueue::new(sqs.clone()).arn(&url).await.unwrap();
    let sns = aws_sdk_sns::Client::new(&stack.config);
    let mut req = sns
        .subscribe()
        .topic_arn(stack.env[nommer_core::settings::EVENTS_TOPIC_ARN].clone())
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true");
    if let Some(f) = filter {
        req = req.attributes("FilterPolicy", f.to_string());
    }
    req.send().await.unwrap();
    url
}

async fn drain(stack: &nommer_devstack::LocalStack, url: &str) -> Vec<Value> {
    let sqs = nommer_aws::sdk::sqs_client(&stack.config);
    let mut out = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if r.messages().is_empty() {
            return out;
        }
        for m in r.messages() {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn submit(stack: &nommer_devstack::LocalStack, dir: &Path, notify_url: &str) -> String {
    let (status, job) = try_submit(stack, dir, notify_url).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Validates events against docs/events.schema.json with Python's jsonschema (installed
/// in the project venv beside the emulator).
fn validate_against_schema(dir: &Path, events: &[Value]) {
    assert!(!events.is_empty());
    let file = dir.join("events.json");
    std::fs::write(&file, serde_json::to_vec(events).unwrap()).unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.schema.json");
    let check = "import json,sys,jsonschema\n\
schema=json.load(open(sys.argv[1]))\n\
jsonschema.Draft202012Validator.check_schema(schema)\n\
v=jsonschema.Draft202012Validator(schema)\n\
bad=[(i,e.message) for i,ev in enumerate(json.load(open(sys.argv[2]))) for e in v.iter_errors(ev)]\n\
print(bad); sys.exit(1 if bad else 0)\n";
    let out = std::process::Command::new(nommer_devstack::emulator::venv_python().unwrap())
        .args(["-c", check])
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "events do not match the schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // and the check can fail: an event without its id is refused
    let mut broken = events[0].clone();
    broken.as_object_mut().unwrap().remove("id");
    std::fs::write(&file, serde_json::to_vec(&[broken]).unwrap()).unwrap();
    let out = std::process::Command::new(nommer_devstack::emulator::venv_python().unwrap())
        .args(["-c", check])
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the schema check catches a broken event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_arrives_once_signed_on_the_webhook_and_on_sns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let stack = spawn_stack_with("notify-all", 1, |o| o.config_path = Some(cfg)).await;
    let all = subscribe(&stack, "all", None).await;
    let completions = subscribe(&stack, "done", Some(json!({"state": ["complete"]}))).await;
    // the receiver is "down" for each event's first two attempts
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let rx = Receiver::start(dir.path(), &secret, 2);
    let id = submit(&stack, dir.path(), &rx.url).await;

    let job = ApiClient::new(&stack.api_url)
        .wait(&id, Duration::from_secs(180), |_| {})
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    let expected = [
        JobState::Submitted,
        JobState::Queued,
        JobState::Downloading,
        JobState::Encoding,
        JobState::Uploading,
        JobState::Complete,
    ];
    let delivered: Vec<Value> = eventually(Duration::from_secs(60), "every event delivered", || async {
        let ok: Vec<Value> = rx
            .received()
            .into_iter()
            .filter(|r| r["answered"] == 200 && r["event"]["type"] == "job.state_changed")
            .collect();
        (ok.len() >= expected.len()).then_some(ok)
    })
    .await;
    let mut states: Vec<(String, String)> = delivered
        .iter()
        .map(|r| {
            (
                r["event"]["time"].as_str().unwrap().to_string(),
                r["event"]["job"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    states.sort();
    let names: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        names,
        expected.map(|s| s.as_str()),
        "each transition once, none skipped"
    );
    for r in &delivered {
        assert_eq!(r["verified"], true, "signed per Standard Webhooks: {r}");
        assert_eq!(r["attempt"], 3, "arrived on the third try: {r}");
        assert_eq!(r["event"]["version"], "1");
        assert_eq!(r["event"]["job"]["id"], id.as_str());
        assert_eq!(r["event"]["job"]["user_metadata"]["order"], "42");
    }
    let by_id: BTreeMap<String, usize> = rx.received().iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["id"].as_str().unwrap().to_string()).or_default() += 1;
        m
    });
    assert!(
        by_id.values().all(|n| *n == 3),
        "every event tried three times, no more: {by_id:?}"
    );
    let done = delivered
        .iter()
        .find(|r| r["event"]["job"]["state"] == "complete")
        .unwrap();
    assert_eq!(done["event"]["job"]["previous_state"], "uploading");
    assert!(
        !done["event"]["job"]["outputs"].as_array().unwrap().is_empty(),
        "{done}"
    );

    // the attempts are recorded on the job
    let view: Value = reqwest::get(format!("{}/jobs/{id}", stack.api_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let attempts = view["deliveries"].as_array().expect("deliveries on the job");
    let complete: Vec<&Value> = attempts.iter().filter(|a| a["state"] == "complete").collect();
    let outcomes: Vec<(u64, &str)> = complete
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [(1, "retry"), (2, "retry"), (3, "delivered")],
        "{attempts:#?}"
    );
    assert_eq!(complete[0]["status"], 500);

    // SNS: the same events, each once; the filtered subscription gets the completion only
    let mut sns_all: Vec<Value> = Vec::new();
    let mine_changes = |all: &[Value]| -> Vec<Value> {
        all.iter()
            .filter(|e| e["job"]["id"] == id.as_str() && e["type"] == "job.state_changed")
            .cloned()
            .collect()
    };
    let waited = std::time::Instant::now();
    while mine_changes(&sns_all).len() < expected.len() {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "every transition on SNS: {sns_all:#?}"
        );
        sns_all.extend(drain(&stack, &all).await);
    }
    // whatever else is already in the subscriber's queue counts too
    sns_all.extend(drain(&stack, &all).await);
    let mut sns_ids: Vec<String> = mine_changes(&sns_all)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    sns_ids.sort();
    let mut hook_ids: Vec<String> = delivered
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    hook_ids.sort();
    assert_eq!(
        sns_ids, hook_ids,
        "SNS and the webhook carry the same events, with the same ids, each once"
    );
    let mut sns_states: Vec<String> = mine_changes(&sns_all)
        .iter()
        .map(|e| e["job"]["state"].as_str().unwrap().to_string())
        .collect();
    sns_states.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.as_str().to_string()).collect();
    want.sort();
    assert_eq!(sns_states, want, "each transition once on SNS");
    // every event, from both channels, is valid against the documented schema
    let mut every: Vec<Value> = rx.received().into_iter().map(|r| r["event"].clone()).collect();
    every.extend(sns_all.iter().cloned());
    validate_against_schema(dir.path(), &every);
    let done = drain(&stack, &completions).await;
    assert_eq!(
        done.len(),
        1,
        "the filter policy lets only completions through: {done:#?}"
    );
    assert_eq!(done[0]["job"]["state"], "complete");
    stack.shutdown().await;
}

/// A job with this `notify_url` made straight in the store and queued for dispatch, as
/// the API would have made it while the URL's host still resolved to a public address
/// (the API refuses it now; delivery must refuse it too, since DNS can change).
async fn accepted_earlier(stack: &nommer_devstack::LocalStack, dir: &Path, notify_url: &str) -> String {
    let src = dir.join("clip.mp4");
    if !src.exists() {
        media::generate_clip(&src, 2, 320, 240, true).unwrap();
    }
    let key = format!("sources/{}.mp4", uuid::Uuid::new_v4());
    let objects = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    objects
        .upload_file(&stack.names.inbox_bucket, &key, &src, "video/mp4")
        .await
        .unwrap();
    let mut job = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    job.source = nommer_core::job::S3Uri::new(&stack.names.inbox_bucket, &key);
    job.notify_url = Some(notify_url.to_string());
    let store =
        nommer_aws::store::DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let queue = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    nommer_core::flows::submit::create_and_enqueue(&store, &queue, &stack.urls.jobs, &job)
        .await
        .unwrap();
    job.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_loopback_and_metadata_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let stack = spawn_stack_with("notify-ssrf", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let rx = Receiver::start(dir.path(), &secret, 0);
    let loopback = accepted_earlier(&stack, dir.path(), &rx.url).await;
    let metadata = accepted_earlier(&stack, dir.path(), "http://169.254.169.254/latest/meta-data/").await;
    for id in [&loopback, &metadata] {
        let attempts: Vec<Value> = eventually(Duration::from_secs(60), "refusals recorded", || async {
            let v: Value = reqwest::get(format!("{}/jobs/{id}", stack.api_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let a = v["deliveries"].as_array().cloned().unwrap_or_default();
            (a.len() >= 2).then_some(a)
        })
        .await;
        for a in &attempts {
            assert_eq!(a["outcome"], "dead_lettered", "refused at once, never retried: {a}");
            assert_eq!(a["attempt"], 1);
            let e = a["error"].as_str().unwrap();
            assert!(e.contains("private, loopback or link-local"), "{e}");
        }
    }
    let parked = drain(&stack, &stack.urls.webhooks_dlq).await;
    assert!(parked.len() >= 4, "parked with their reason: {parked:#?}");
    assert!(parked.iter().all(|p| p["reason"].as_str().unwrap().contains("refused")));
    assert!(rx.received().is_empty(), "nothing reached the loopback receiver");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_events_as_they_arrive() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let stack = spawn_stack_with("notify-cli", 1, |_| {}).await;
    let bin = nommer_devstack::stack::locate_binary("nommer").unwrap();
    let mut child = std::process::Command::new(bin)
        .args(["events", "--topic-arn"])
        .arg(&stack.env[nommer_core::settings::EVENTS_TOPIC_ARN])
        .env("AWS_ENDPOINT_URL", &stack.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", nommer_devstack::emulator::REGION)
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // it says when it is subscribed
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("watching"), "{first}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = submit(&stack, dir.path(), "https://hooks.example.invalid/none").await;
    let out = child.stdout.take().unwrap();
    let wanted = id.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for l in std::io::BufReader::new(out).lines() {
            let l = l.unwrap();
            let done = l.contains(&wanted) && l.contains("→ complete");
            seen.push(l);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(120), lines)
        .await
        .expect("the completion is printed")
        .unwrap();
    let _ = child.kill();
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains(&id)).collect();
    for st in [
        "submitted",
        "queued",
        "downloading",
        "encoding",
        "uploading",
        "complete",
    ] {
        assert!(
            mine.iter().any(|l| l.contains(&format!("→ {st}"))),
            "{st} printed: {mine:#?}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_gets_every_event_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), true, "[0, 1, 2, 3, 4, 5, 6, 7]");
    let stack = spawn_stack_with("notify-down", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    // a receiver that is down: its port refuses connections
    let rx = Receiver::start_closed(dir.path(), &secret);
    let id = submit(&stack, dir.path(), &rx.url).await;
    let api = ApiClient::new(&stack.api_url);
    // submitted and queued (no workers): both fail while the receiver is down
    eventually(Duration::from_secs(30), "failed attempts while down", || async {
        let v: Value = reqwest::get(format!("{}/jobs/{id}", stack.api_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let a = v["deliveries"].as_array().cloned().unwrap_or_default();
        (a.iter().filter(|a| a["outcome"] == "retry").count() >= 2).then_some(())
    })
    .await;
    assert!(rx.received().is_empty(), "nothing got through while down");
    rx.open();
    let got = eventually(
        Duration::from_secs(60),
        "both events after the receiver is back",
        || async {
            let ok: Vec<Value> = rx
                .received()
                .into_iter()
                .filter(|r| r["answered"] == 200 && r["verified"] == true)
                .collect();
            (ok.len() >= 2).then_some(ok)
        },
    )
    .await;
    let mut states: Vec<&str> = got
        .iter()
        .map(|r| r["event"]["job"]["state"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(states, ["queued", "submitted"]);
    let job = api.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    let v: Value = reqwest::get(format!("{}/jobs/{id}", stack.api_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let attempts = v["deliveries"].as_array().unwrap();
    let first = attempts.iter().find(|a| a["attempt"] == 1).unwrap();
    assert!(
        first["status"].is_null() && first["outcome"] == "retry",
        "connection refused, retried: {first}"
    );
    assert!(
        attempts
            .iter()
            .any(|a| a["outcome"] == "delivered" && a["attempt"].as_u64().unwrap() > 1),
        "{attempts:#?}"
    );
    stack.shutdown().await;
}

/// The job's `deliveries` as the API shows them.
async fn deliveries(stack: &nommer_devstack::LocalStack, id: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/jobs/{id}", stack.api_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Waits until `n` of the job's deliveries are parked; returns their records.
async fn dead_lettered(stack: &nommer_devstack::LocalStack, id: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(60), "the job's deliveries parked", || async {
        let parked: Vec<Value> = deliveries(stack, id)
            .await
            .into_iter()
            .filter(|a| a["outcome"] == "dead_lettered")
            .collect();
        (parked.len() == n).then_some(parked)
    })
    .await
}

/// A delivery message as the deliver function reads it from the webhooks queue.
async fn enqueue_delivery(
    stack: &nommer_devstack::LocalStack,
    event: &Value,
    url: &str,
    not_before: chrono::DateTime<chrono::Utc>,
) {
    let d = json!({ "event": event, "target": {"kind": "job", "url": url}, "attempt": 1, "not_before": not_before });
    nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config))
        .send(&stack.urls.webhooks, &d.to_string())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_always_fails_is_parked_after_eight_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), true, "[0, 0, 0, 0, 0, 0, 0, 0]");
    let stack = spawn_stack_with("notify-8", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let rx = Receiver::start(dir.path(), &secret, u32::MAX);
    let id = submit(&stack, dir.path(), &rx.url).await;
    // no worker: the job's two events (submitted, queued) are each tried 8 times
    let parked = dead_lettered(&stack, &id, 2).await;
    for p in &parked {
        assert_eq!(p["attempt"], 8, "the eighth attempt is the last: {p}");
        assert_eq!(p["status"], 500, "{p}");
    }
    let tries: BTreeMap<String, usize> = rx.received().iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["id"].as_str().unwrap().to_string()).or_default() += 1;
        m
    });
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(tries.values().all(|n| *n == 8), "eight tries each, no more: {tries:?}");
    // the parked messages carry their reason (sent before the attempt is recorded)
    let reasons = drain(&stack, &stack.urls.webhooks_dlq).await;
    assert_eq!(reasons.len(), 2, "both parked in the webhooks DLQ: {reasons:#?}");
    for r in &reasons {
        assert_eq!(r["delivery"]["attempt"], 8, "{r}");
        assert!(
            r["reason"].as_str().unwrap().contains("500"),
            "the reason says what failed: {r}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), true, "[0, 0]");
    let stack = spawn_stack_with("notify-302", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let target = Receiver::start(&b, &secret, 0);
    let rx = Receiver::start_redirecting(&a, &secret, &target.url);
    let id = submit(&stack, dir.path(), &rx.url).await;
    let parked = dead_lettered(&stack, &id, 2).await;
    for p in &parked {
        assert_eq!(p["status"], 307, "the redirect is the answer: {p}");
    }
    assert_eq!(rx.received().len(), 4, "two events, two tries each");
    assert!(target.received().is_empty(), "the redirect's target was never asked");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_due_later_waits_on_the_queue_past_the_15_minute_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), true, "[0, 0]");
    let stack = spawn_stack_with("notify-wait", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let rx = Receiver::start(dir.path(), &secret, 0);
    let id = submit(&stack, dir.path(), &rx.url).await;
    let first = eventually(Duration::from_secs(30), "the first event delivered", || async {
        rx.received().into_iter().find(|r| r["answered"] == 200)
    })
    .await;
    let mut event = first["event"].clone();

    // a retry due in 20 minutes: past SQS's 15-minute cap, so it hops through the queue
    event["id"] = json!(format!("{}-later", event["id"].as_str().unwrap()));
    enqueue_delivery(
        &stack,
        &event,
        &rx.url,
        chrono::Utc::now() + chrono::Duration::minutes(20),
    )
    .await;
    // taken off the queue and put back with SQS's longest delay: nothing visible or in
    // flight, one message delayed
    let sqs = nommer_aws::sdk::sqs_client(&stack.config);
    let counts = || async {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = sqs
            .get_queue_attributes()
            .queue_url(&stack.urls.webhooks)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let a = out.attributes().cloned().unwrap_or_default();
        let n = |k: A| a.get(&k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        (
            n(A::ApproximateNumberOfMessages),
            n(A::ApproximateNumberOfMessagesNotVisible),
            n(A::ApproximateNumberOfMessagesDelayed),
        )
    };
    eventually(
        Duration::from_secs(30),
        "the delivery back on the queue, delayed",
        || async { (counts().await == (0, 0, 1)).then_some(()) },
    )
    .await;
    assert!(
        !rx.received().iter().any(|r| r["id"] == event["id"]),
        "not delivered before its time"
    );

    // one due in 3 s hops once and then arrives, no earlier
    event["id"] = json!(format!("{}-soon", first["event"]["id"].as_str().unwrap()));
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    enqueue_delivery(&stack, &event, &rx.url, due).await;
    eventually(Duration::from_secs(30), "the delayed one delivered", || async {
        rx.received().into_iter().find(|r| r["id"] == event["id"])
    })
    .await;
    let at = deliveries(&stack, &id)
        .await
        .into_iter()
        .find(|a| a["event_id"] == event["id"] && a["outcome"] == "delivered")
        .expect("recorded");
    let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(at["at"].clone()).unwrap();
    assert!(at >= due - chrono::Duration::seconds(1), "delivered at {at}, due {due}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_checked_by_the_addresses_it_resolves_to() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let stack = spawn_stack_with("notify-dns", 0, |o| o.config_path = Some(cfg)).await;
    let secret = stack.env[nommer_core::settings::WEBHOOK_SECRET].clone();
    let rx = Receiver::start(dir.path(), &secret, 0);
    // a job without a notify_url; then a delivery of its event to a host *name* that
    // resolves to loopback (as a public name could, once DNS changes after submit)
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 1, 160, 120, true).unwrap();
    let key = "sources/dns.mp4";
    S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .upload_file(&stack.names.inbox_bucket, key, &src, "video/mp4")
        .await
        .unwrap();
    let body = json!({"source": format!("s3://{}/{key}", stack.names.inbox_bucket), "preset": "mp4-360p"});
    let api = ApiClient::new(&stack.api_url);
    let (status, job) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    let job = api.get_job(job["id"].as_str().unwrap()).await.unwrap().unwrap();
    let event = serde_json::to_value(&nommer_core::events::from_change(None, &job)[0]).unwrap();
    let by_name = rx.url.replace("127.0.0.1", "localhost");
    enqueue_delivery(&stack, &event, &by_name, chrono::Utc::now()).await;
    let refused = eventually(Duration::from_secs(30), "the named host refused", || async {
        deliveries(&stack, &job.id)
            .await
            .into_iter()
            .find(|a| a["event_id"] == event["id"])
    })
    .await;
    assert_eq!(
        refused["outcome"], "dead_lettered",
        "refused at once, not retried: {refused}"
    );
    let why = refused["error"].as_str().unwrap();
    assert!(
        why.contains("localhost resolves to") && why.contains("127.0.0.1"),
        "{why}"
    );
    assert!(rx.received().is_empty(), "nothing reached the receiver");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_endpoints_get_the_states_they_ask_for_and_progress_events() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let done_only = Receiver::start(&a, secret, 0);
    let everything = Receiver::start(&b, secret, 0);
    let cfg = dir.path().join("nommer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[webhooks]\nallow_http = true\nallow_private = true\n\n\
             [[webhooks.endpoints]]\nname = \"ops\"\nurl = \"{}\"\nsecret = \"{secret}\"\nstates = [\"complete\", \"failed\"]\nprogress = false\n\n\
             [[webhooks.endpoints]]\nname = \"all\"\nurl = \"{}\"\nsecret = \"{secret}\"\n",
            done_only.url, everything.url
        ),
    )
    .unwrap();
    let stack = spawn_stack_with("notify-ends", 1, |o| o.config_path = Some(cfg)).await;
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 4, 320, 240, true).unwrap();
    let id = nommer_tests::upload(&stack, &src, "inbox/mp4-360p/clip.mp4").await;
    let api = ApiClient::new(&stack.api_url);
    // the encode is let run in short steps until the job shows progress, so a progress
    // event is always made
    let pid = stack.workers()[0].pid().unwrap();
    let frozen = nommer_tests::freeze::freeze_encode(&api, &id, &[pid], Duration::from_secs(60)).await;
    let started = std::time::Instant::now();
    while api.get_job(&id).await.unwrap().unwrap().progress == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        frozen.step(Duration::from_millis(100)).await;
    }
    frozen.release();
    let job = api.wait(&id, Duration::from_secs(120), |_| {}).await.unwrap();
    assert_eq!(job.state, JobState::Complete, "{job:#?}");
    let all = eventually(
        Duration::from_secs(60),
        "six transitions and progress at 'all'",
        || async {
            let got: Vec<Value> = everything
                .received()
                .into_iter()
                .filter(|r| r["answered"] == 200 && r["event"]["job"]["id"] == id.as_str())
                .collect();
            let changes = got.iter().filter(|r| r["event"]["type"] == "job.state_changed").count();
            let progress = got.iter().filter(|r| r["event"]["type"] == "job.progress").count();
            (changes >= 6 && progress >= 1).then_some(got)
        },
    )
    .await;
    let progress: Vec<&Value> = all.iter().filter(|r| r["event"]["type"] == "job.progress").collect();
    assert!(
        !progress.is_empty(),
        "progress events reach an endpoint that wants them"
    );
    for p in &progress {
        let pct = p["event"]["job"]["progress"].as_u64().unwrap();
        assert!(pct > 0 && pct < 100, "{p}");
        let state = p["event"]["job"]["state"].as_str().unwrap();
        assert!(state == "encoding" || state == "uploading", "{p}");
        assert_eq!(p["verified"], true);
    }
    let got = eventually(Duration::from_secs(30), "the completion at 'ops'", || async {
        let got = done_only.received();
        (!got.is_empty()).then_some(got)
    })
    .await;
    let kinds: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r["event"]["type"].as_str().unwrap().to_string(),
                r["event"]["job"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("job.state_changed".to_string(), "complete".to_string())],
        "only the states it asked for, no progress"
    );
    assert_eq!(got[0]["verified"], true, "signed with the endpoint's own secret");
    let targets: std::collections::BTreeSet<String> = deliveries(&stack, &id)
        .await
        .iter()
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets, ["all".to_string(), "ops".to_string()].into_iter().collect());
    stack.shutdown().await;
}

/// Submits a job through the API (a short clip of its own); returns the status and the
/// body.
async fn try_submit(stack: &nommer_devstack::LocalStack, dir: &Path, notify_url: &str) -> (u16, Value) {
    let src = dir.join("clip.mp4");
    if !src.exists() {
        media::generate_clip(&src, 1, 160, 120, true).unwrap();
    }
    let key = format!("sources/{}.mp4", uuid::Uuid::new_v4());
    S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .upload_file(&stack.names.inbox_bucket, &key, &src, "video/mp4")
        .await
        .unwrap();
    let body = json!({
        "source": format!("s3://{}/{key}", stack.names.inbox_bucket),
        "preset": "mp4-360p",
        "notify_url": notify_url,
        "user_metadata": {"order": "42"}
    });
    ApiClient::new(&stack.api_url).create_job(&body, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_url_no_delivery_could_reach_is_a_400_at_submit_and_at_retry() {
    let dir = tempfile::tempdir().unwrap();
    // the default policy: https only, no private addresses
    let stack = spawn_stack_with("notify-submit", 0, |_| {}).await;
    for (url, why) in [
        ("http://hooks.example.com/x", "must be https"),
        ("ftp://hooks.example.com/x", "scheme `ftp` is not allowed"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        (
            "https://127.0.0.1:8443/x",
            "127.0.0.1, a private, loopback or link-local address",
        ),
        ("https://10.1.2.3/x", "10.1.2.3, a private"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254, a private",
        ),
        ("https://[::1]/x", "::1, a private"),
        // a host name (from /etc/hosts) that resolves to loopback
        ("https://localhost:8443/x", "localhost resolves to"),
    ] {
        let (status, body) = try_submit(&stack, dir.path(), url).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["field"], "notify_url", "{url}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{url}: the reason is given: {detail}");
    }
    assert!(
        nommer_tests::all_jobs(&stack).await.is_empty(),
        "no refused request made a job"
    );
    // a host that does not resolve now is let through (DNS may be failing for a while;
    // each delivery checks again)
    let (status, body) = try_submit(&stack, dir.path(), "https://hooks.example.invalid/x").await;
    assert_eq!(status, 201, "{body}");

    // a failed job whose notify_url this config refuses is not retried into the same wall
    let store =
        nommer_aws::store::DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let mut failed = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    failed.notify_url = Some("https://127.0.0.1:8443/hook".into());
    failed
        .fail(
            nommer_core::job::JobError::new(nommer_core::error::JobErrorCode::EncodeFailed, "test"),
            chrono::Utc::now(),
        )
        .unwrap();
    store.create(&failed).await.unwrap();
    let api = ApiClient::new(&stack.api_url);
    let (status, body) = api
        .request("POST", &format!("/jobs/{}/retry", failed.id), None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "notify_url", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("127.0.0.1, a private"),
        "{body}"
    );
    let jobs = nommer_tests::all_jobs(&stack).await;
    assert!(
        !jobs.iter().any(|j| j.retry_of.as_deref() == Some(failed.id.as_str())),
        "no retry was made"
    );
    stack.shutdown().await;
}
