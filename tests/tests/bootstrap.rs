//! Each function's real bootstrap binary (its `main.rs`, config loading and all)
//! answers one invocation through the Lambda Runtime API, against the emulator.

use nommer_aws::objects::S3ObjectStore;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::DynamoJobStore;
use nommer_core::ports::JobStore as _;
use nommer_core::{ids, JobState};
use nommer_devstack::stack::locate_binary;
use nommer_tests::runtime_api::{invoke_binary, Reply};
use nommer_tests::spawn_stack;
use serde_json::json;
use std::collections::HashMap;

fn lambda_env(stack: &nommer_devstack::LocalStack) -> HashMap<String, String> {
    let mut env = stack.env.clone();
    env.insert("AWS_ENDPOINT_URL".into(), stack.endpoint.clone());
    env.insert("AWS_ACCESS_KEY_ID".into(), "testing".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "testing".into());
    env.insert("AWS_REGION".into(), "us-east-1".into());
    env
}

fn sqs_event(body: &str) -> serde_json::Value {
    json!({ "Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": body,
        "attributes": { "ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
                        "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185" },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:nommer-ingest",
        "awsRegion": "us-east-1"
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_bootstrap_turns_an_sqs_s3_notification_into_a_job() {
    // no worker, no in-process dispatch interference: the binary alone makes the job
    let stack = spawn_stack("bootingest", 0).await;
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    // outside inbox/: the emulator's own notification does not fire
    o.put_bytes(
        &stack.names.inbox_bucket,
        "elsewhere/a.mov",
        b"not really a movie".to_vec(),
        "video/quicktime",
    )
    .await
    .unwrap();
    let etag = o
        .head(&stack.names.inbox_bucket, "elsewhere/a.mov")
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    let notification = nommer_tests::s3_notification(
        &stack.names.inbox_bucket,
        "elsewhere/a.mov",
        "ObjectCreated:Put",
        18,
        &etag,
    );
    let reply = invoke_binary(
        &locate_binary("ingest").unwrap(),
        &lambda_env(&stack),
        sqs_event(&notification.to_string()),
    )
    .await
    .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(r, json!({ "batchItemFailures": [] }));
    let store = DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let job = store
        .get(&ids::for_upload(&stack.names.inbox_bucket, "elsewhere/a.mov", &etag))
        .await
        .unwrap()
        .expect("job created");
    assert_eq!(job.outputs[0].preset, "mp4-720p", "the default preset");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_bootstrap_queues_a_job_and_reports_bad_messages_alone() {
    let stack = spawn_stack("bootdispatch", 0).await;
    let store = DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let job = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    store.create(&job).await.unwrap();
    let mut event = sqs_event(&json!({ "job_id": job.id }).to_string());
    let mut bad = event["Records"][0].clone();
    bad["messageId"] = json!("bad-one");
    bad["body"] = json!("{\"nope\": true}");
    event["Records"].as_array_mut().unwrap().push(bad);
    let reply = invoke_binary(&locate_binary("dispatch").unwrap(), &lambda_env(&stack), event)
        .await
        .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(r, json!({ "batchItemFailures": [{ "itemIdentifier": "bad-one" }] }));
    let stored = store.require(&job.id).await.unwrap();
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(stored.backend.as_deref(), Some("ffmpeg"));
    let q = SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    assert_eq!(q.depth(&stack.urls.work).await.unwrap().0, 1, "one work message");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bootstrap_answers_an_api_gateway_v2_event() {
    let stack = spawn_stack("bootapi", 0).await;
    let store = DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let job = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    store.create(&job).await.unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("accept", http::HeaderValue::from_static("application/json"));
    let event = nommer_devstack::event_sources::apigw_v2_event(
        "GET",
        &format!("/jobs/{}", job.id),
        &headers,
        b"",
        "203.0.113.9",
    );
    let reply = invoke_binary(&locate_binary("api").unwrap(), &lambda_env(&stack), event)
        .await
        .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(r["statusCode"], 200, "{r}");
    let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["id"], job.id.as_str());
    assert_eq!(body["state"], "submitted");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_without_its_config_says_which_variable_is_missing() {
    let env = HashMap::from([("AWS_REGION".to_string(), "us-east-1".to_string())]);
    for bin in [
        "ingest",
        "dispatch",
        "api",
        "notify",
        "notify-deliver",
        "encodingcom-callback",
        "encodingcom-poller",
    ] {
        let r = invoke_binary(&locate_binary(bin).unwrap(), &env, json!({})).await;
        let msg = match r {
            Err(stderr) => stderr,
            Ok(Reply::InitError(v)) => v.to_string(),
            Ok(other) => panic!("{bin} answered without its config: {other:?}"),
        };
        assert!(msg.contains("NOMMER_"), "{bin}: {msg}");
    }
}

fn stream_event(records: Vec<serde_json::Value>) -> serde_json::Value {
    json!({ "Records": records })
}

fn stream_record(seq: &str, image: serde_json::Value) -> serde_json::Value {
    json!({
        "eventID": format!("e{seq}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": { "ApproximateCreationDateTime": 1764000000.0, "Keys": { "pk": image["pk"].clone() },
                      "NewImage": image, "SequenceNumber": seq, "SizeBytes": 100,
                      "StreamViewType": "NEW_AND_OLD_IMAGES" },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-25T00:00:00.000"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_bootstrap_publishes_a_stream_records_event_and_reports_a_bad_record() {
    let stack = spawn_stack("bootnotify", 0).await;
    let job = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    let doc = serde_json::to_string(&job).unwrap();
    let good = stream_record(
        "100",
        json!({"pk": {"S": job.id}, "kind": {"S": "job"}, "doc": {"S": doc}}),
    );
    let other = stream_record("101", json!({"pk": {"S": "event#x"}, "kind": {"S": "event"}}));
    let bad = stream_record(
        "102",
        json!({"pk": {"S": "jbad"}, "kind": {"S": "job"}, "doc": {"S": "{not json"}}),
    );
    let reply = invoke_binary(
        &locate_binary("notify").unwrap(),
        &lambda_env(&stack),
        stream_event(vec![good, other, bad]),
    )
    .await
    .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(
        r,
        json!({ "batchItemFailures": [{ "itemIdentifier": "102" }] }),
        "the bad record is named"
    );
    // the good record's event went out: its marker says published
    let marker = nommer_aws::sdk::dynamodb_client(&stack.config)
        .scan()
        .table_name(&stack.names.table)
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("event#"))
        .map(|i| *i["published"].as_bool().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(marker, [true], "one event, published");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_bootstrap_parks_a_refused_delivery_and_fails_a_malformed_one() {
    let stack = spawn_stack("bootdeliver", 0).await;
    let job = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    let event = nommer_core::events::from_change(None, &job).remove(0);
    let delivery = nommer_aws::notify::Delivery {
        event,
        target: nommer_aws::notify::Target::Job {
            url: "https://169.254.169.254/latest/meta-data/".into(),
        },
        attempt: 1,
        not_before: chrono::Utc::now(),
    };
    let mut ev = sqs_event(&serde_json::to_string(&delivery).unwrap());
    let mut bad = ev["Records"][0].clone();
    bad["messageId"] = json!("bad-one");
    bad["body"] = json!("{}");
    ev["Records"].as_array_mut().unwrap().push(bad);
    let reply = invoke_binary(&locate_binary("notify-deliver").unwrap(), &lambda_env(&stack), ev)
        .await
        .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(r, json!({ "batchItemFailures": [{ "itemIdentifier": "bad-one" }] }));
    let q = SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    assert_eq!(q.depth(&stack.urls.webhooks_dlq).await.unwrap().0, 1, "parked");
    // the parked message says which delivery and why
    let sqs = nommer_aws::sdk::sqs_client(&stack.config);
    let got = sqs
        .receive_message()
        .queue_url(&stack.urls.webhooks_dlq)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let parked: serde_json::Value = serde_json::from_str(got.messages()[0].body().unwrap()).unwrap();
    assert_eq!(
        parked["delivery"]["target"]["url"], "https://169.254.169.254/latest/meta-data/",
        "{parked}"
    );
    let reason = parked["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("169.254.169.254") && (reason.contains("link-local") || reason.contains("metadata")),
        "the reason names the address and why it is refused: {parked}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodingcom_poller_bootstrap_answers_a_schedule_event() {
    let stack = spawn_stack("bootpoller", 0).await;
    let event = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-25T10:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/poll"], "detail": {}
    });
    let reply = invoke_binary(
        &locate_binary("encodingcom-poller").unwrap(),
        &lambda_env(&stack),
        event,
    )
    .await
    .unwrap();
    let Reply::Response(r) = reply else { panic!("{reply:?}") };
    assert_eq!(r, json!({ "jobs": 0 }));
    stack.shutdown().await;
}
