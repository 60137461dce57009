//! The scaler's own bootstrap binary against the emulator's EC2: Spot first, on demand
//! when Spot has no capacity, and the scale-out cool-down between rounds. Spot's lack
//! of capacity is made by a small proxy in front of the emulator that answers a Spot
//! `RunInstances` with EC2's own `InsufficientInstanceCapacity` error (the emulator
//! itself always has capacity).

use nommer_core::settings as s;
use nommer_devstack::stack::locate_binary;
use nommer_tests::runtime_api::{invoke_binary, Reply};
use nommer_tests::spawn_stack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Faults {
    no_spot: AtomicBool,
    spot_refused: AtomicUsize,
    spot_asked: AtomicUsize,
}

/// A reverse proxy to `upstream` on a loopback port; returns its URL.
async fn proxy(upstream: String, faults: Arc<Faults>) -> String {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    type Ctx = (String, Arc<Faults>, reqwest::Client);
    async fn forward(
        State((up, f, http)): State<Ctx>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let form = String::from_utf8_lossy(&body);
        if form.contains("Action=RunInstances") && form.contains("InstanceMarketOptions.MarketType=spot") {
            f.spot_asked.fetch_add(1, Ordering::SeqCst);
            if f.no_spot.load(Ordering::SeqCst) {
                f.spot_refused.fetch_add(1, Ordering::SeqCst);
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>There is no Spot capacity available that matches your request.</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>";
                return (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/xml")], xml).into_response();
            }
        }
        let mut req = http.request(
            method,
            format!("{up}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")),
        );
        for (k, v) in &headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let r = req.body(body).send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        let mut out = HeaderMap::new();
        for (k, v) in r.headers() {
            if k != "content-length" && k != "transfer-encoding" {
                out.insert(k.clone(), v.clone());
            }
        }
        (status, out, r.bytes().await.unwrap()).into_response()
    }
    let app = axum::Router::new()
        .fallback(forward)
        .with_state((upstream, faults, reqwest::Client::new()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

fn schedule_event() -> Value {
    json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-25T10:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/scale"], "detail": {}
    })
}

async fn lifecycles(stack: &nommer_devstack::LocalStack, ids: &[String]) -> Vec<Option<String>> {
    let ec2 = aws_sdk_ec2::Client::new(&stack.config);
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_lifecycle().map(|l| l.as_str().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scaler_binary_launches_on_spot_first_then_on_demand_and_cools_down() {
    let stack = spawn_stack("scaler-boot", 0).await;
    let faults = Arc::new(Faults::default());
    let endpoint = proxy(stack.endpoint.clone(), faults.clone()).await;
    let template = nommer_devstack::stack::create_launch_template(&stack.config, &stack.names.stack)
        .await
        .unwrap();
    let mut env: HashMap<String, String> = stack.env.clone();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        (s::STACK, stack.names.stack.as_str()),
        (s::LAUNCH_TEMPLATE_ID, template.as_str()),
        (s::MAX_INSTANCES, "4"),
        (s::WORKER_CAPACITY, "1"),
        (s::LAUNCH_STEP, "1"),
        (s::SPOT, "true"),
        (s::SCALE_OUT_COOLDOWN_SECS, "600"),
    ] {
        env.insert(k.into(), v.into());
    }
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    for _ in 0..3 {
        q.send(
            &stack.urls.work,
            &nommer_core::messages::JobMessage::new("j1").to_body(),
        )
        .await
        .unwrap();
    }
    let scaler = locate_binary("scaler").unwrap();
    // Spot has capacity: the first launch is a Spot instance
    let Reply::Response(r) = invoke_binary(&scaler, &env, schedule_event()).await.unwrap() else {
        panic!("no answer")
    };
    let launched: Vec<String> = serde_json::from_value(r["launched"].clone()).unwrap();
    assert_eq!(launched.len(), 1, "one per round (launch step 1): {r}");
    assert_eq!(lifecycles(&stack, &launched).await, [Some("spot".to_string())], "{r}");
    // the next round at once: the backlog still calls for more, but the cool-down holds
    let Reply::Response(r) = invoke_binary(&scaler, &env, schedule_event()).await.unwrap() else {
        panic!("no answer")
    };
    assert_eq!(r["launched"], json!([]), "cooling down after a launch: {r}");
    assert!(r["desired"].as_u64().unwrap() > 1, "{r}");

    // no Spot capacity, cool-down over: Spot is asked first, then on demand
    env.insert(s::SCALE_OUT_COOLDOWN_SECS.into(), "0".into());
    faults.no_spot.store(true, Ordering::SeqCst);
    let asked = faults.spot_asked.load(Ordering::SeqCst);
    let Reply::Response(r) = invoke_binary(&scaler, &env, schedule_event()).await.unwrap() else {
        panic!("no answer")
    };
    let launched: Vec<String> = serde_json::from_value(r["launched"].clone()).unwrap();
    assert_eq!(launched.len(), 1, "{r}");
    assert!(faults.spot_refused.load(Ordering::SeqCst) >= 1, "Spot was tried first");
    assert!(faults.spot_asked.load(Ordering::SeqCst) > asked);
    assert_eq!(lifecycles(&stack, &launched).await, [None], "on demand: {r}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scaler_counts_split_jobs_tasks_as_work() {
    let stack = spawn_stack("scaler-chunks", 0).await;
    let template = nommer_devstack::stack::create_launch_template(&stack.config, &stack.names.stack)
        .await
        .unwrap();
    let mut env: HashMap<String, String> = stack.env.clone();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", stack.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        (s::STACK, stack.names.stack.as_str()),
        (s::LAUNCH_TEMPLATE_ID, template.as_str()),
        (s::MAX_INSTANCES, "4"),
        (s::WORKER_CAPACITY, "1"),
        (s::LAUNCH_STEP, "4"),
    ] {
        env.insert(k.into(), v.into());
    }
    assert_eq!(env.get(s::CHUNK_QUEUE_URL), Some(&stack.urls.chunks));
    // the work queue is empty; three tasks of a split job wait on the chunks queue
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    for name in ["chunk-00000", "chunk-00001", "audio"] {
        let body = json!({"job_id": nommer_core::ids::random(), "task": name}).to_string();
        q.send(&stack.urls.chunks, &body).await.unwrap();
    }
    let scaler = locate_binary("scaler").unwrap();
    let Reply::Response(r) = invoke_binary(&scaler, &env, schedule_event()).await.unwrap() else {
        panic!("no answer")
    };
    assert_eq!(r["backlog"]["visible"], 3, "{r}");
    assert_eq!(r["desired"], 3, "one worker per task at one job each: {r}");
    let launched: Vec<String> = serde_json::from_value(r["launched"].clone()).unwrap();
    assert_eq!(launched.len(), 3, "{r}");
    stack.shutdown().await;
}
