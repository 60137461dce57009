//! The local stack's stand-in for Lambda's DynamoDB stream event source mapping (with
//! `ReportBatchItemFailures` and parallelization): it follows the table's stream and hands
//! the records to the function in Lambda's event shape. Each item's records go in order,
//! one call at a time; different items' flow independently, so a slow or failing item
//! holds up only itself.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A function behind a DynamoDB stream, as the local stack calls it.
pub type StreamHandler = Arc<
    dyn Fn(Event) -> Pin<Box<dyn Future<Output = Result<DynamoDbEventResponse, lambda_runtime::Error>> + Send>>
        + Send
        + Sync,
>;

/// Records read from the stream but not yet handled, at most (the reader waits for room).
const MAX_PENDING: usize = 2000;
/// Calls to the function at once, at most.
const MAX_CALLS: usize = 64;
/// Records in one call, at most (all of one item).
const MAX_BATCH: usize = 100;

/// Per-item lanes. A record joins its item's lane; a lane hands its records to the
/// function in order and ends when it has none left, so there is never more than one
/// call for an item at a time.
#[derive(Clone)]
struct Lanes {
    handler: StreamHandler,
    /// Each item with a lane running, and the records waiting in it.
    waiting: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// Room for records read but not yet handled.
    room: Arc<Semaphore>,
    calls: Arc<Semaphore>,
}

type Lane = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Lanes {
    fn new(handler: StreamHandler, max_pending: usize, max_calls: usize) -> Self {
        Lanes {
            handler,
            waiting: Default::default(),
            room: Arc::new(Semaphore::new(max_pending)),
            calls: Arc::new(Semaphore::new(max_calls)),
        }
    }

    /// Waits for room, then queues the record in its item's lane; returns the lane to run
    /// when the item had none.
    async fn push(&self, record: Value) -> Option<Lane> {
        self.room
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
        let key = record["dynamodb"]["Keys"].to_string();
        let mut waiting = self.waiting.lock().unwrap();
        if let Some(queue) = waiting.get_mut(&key) {
            queue.push(record);
            return None;
        }
        waiting.insert(key.clone(), vec![record]);
        Some(Box::pin(self.clone().run(key)))
    }

    async fn run(self, key: String) {
        loop {
            let batch: Vec<Value> = {
                let mut waiting = self.waiting.lock().unwrap();
                let queue = waiting.get_mut(&key).expect("a running lane keeps its entry");
                if queue.is_empty() {
                    waiting.remove(&key);
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            let n = batch.len();
            deliver_in_order(&self.handler, &self.calls, batch).await;
            self.room.add_permits(n);
        }
    }
}

/// Hands one item's records to the function in order, retrying from the first that
/// failed until all are handled.
async fn deliver_in_order(handler: &StreamHandler, calls: &Semaphore, mut records: Vec<Value>) {
    let mut tries = 0;
    while !records.is_empty() {
        let event: Event = match serde_json::from_value(serde_json::json!({ "Records": records })) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "stream: a record does not fit Lambda's event shape; skipped");
                return;
            }
        };
        let answer = {
            let _call = calls.acquire().await.expect("the semaphore is never closed");
            handler(event).await
        };
        match answer {
            Ok(resp) if resp.batch_item_failures.is_empty() => return,
            Ok(resp) => {
                let failed = resp.batch_item_failures[0].item_identifier.clone();
                let at = records
                    .iter()
                    .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == failed.as_deref())
                    .unwrap_or(0);
                records.drain(..at);
            }
            Err(e) => tracing::error!(error = %e, "stream: the function failed; retrying the batch"),
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis((250 * tries).min(5000))).await;
    }
}

/// Follows the table's stream from its oldest record, feeding the function through
/// per-item lanes (see the module's doc). The lanes end with this task.
pub async fn poll_stream(config: aws_config::SdkConfig, table: String, region: String, handler: StreamHandler) {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let ddb = nommer_aws::sdk::dynamodb_client(&config);
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let stream_arn = loop {
        match ddb.describe_table().table_name(&table).send().await {
            Ok(t) => {
                if let Some(a) = t.table().and_then(|t| t.latest_stream_arn()) {
                    break a.to_string();
                }
                tracing::error!(table, "the table has no stream; events cannot be produced");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "stream: describing the table failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let lanes = Lanes::new(handler, MAX_PENDING, MAX_CALLS);
    let mut running = tokio::task::JoinSet::new();
    let mut iterators: std::collections::BTreeMap<String, Option<String>> = Default::default();
    loop {
        if let Ok(s) = streams.describe_stream().stream_arn(&stream_arn).send().await {
            for shard in s.stream_description().map(|d| d.shards()).unwrap_or_default() {
                let Some(id) = shard.shard_id() else { continue };
                if iterators.contains_key(id) {
                    continue;
                }
                let it = streams
                    .get_shard_iterator()
                    .stream_arn(&stream_arn)
                    .shard_id(id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.shard_iterator().map(str::to_string));
                iterators.insert(id.to_string(), it);
            }
        }
        let mut idle = true;
        for it in iterators.values_mut() {
            let Some(current) = it.clone() else { continue };
            let out = match streams.get_records().shard_iterator(&current).limit(100).send().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e), "stream: get records failed");
                    continue;
                }
            };
            for r in out.records() {
                idle = false;
                if let Some(lane) = lanes.push(stream_record(r, &stream_arn, &region)).await {
                    running.spawn(lane);
                }
            }
            *it = out.next_shard_iterator().map(str::to_string);
        }
        while running.try_join_next().is_some() {}
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A stream attribute in the JSON wire format Lambda hands to functions (`{"S": …}`).
fn wire(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> serde_json::Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    use base64::Engine;
    let b64 =
        |b: &aws_sdk_dynamodbstreams::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    match v {
        A::S(s) => serde_json::json!({ "S": s }),
        A::N(n) => serde_json::json!({ "N": n }),
        A::B(b) => serde_json::json!({ "B": b64(b) }),
        A::Bool(b) => serde_json::json!({ "BOOL": b }),
        A::Null(_) => serde_json::json!({ "NULL": true }),
        A::M(m) => serde_json::json!({ "M": image(m) }),
        A::L(l) => serde_json::json!({ "L": l.iter().map(wire).collect::<Vec<_>>() }),
        A::Ss(s) => serde_json::json!({ "SS": s }),
        A::Ns(n) => serde_json::json!({ "NS": n }),
        A::Bs(b) => serde_json::json!({ "BS": b.iter().map(b64).collect::<Vec<_>>() }),
        _ => serde_json::Value::Null,
    }
}

fn image(m: &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>) -> serde_json::Value {
    serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), wire(v))).collect())
}

/// One stream record as Lambda's DynamoDB event record.
fn stream_record(r: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str, region: &str) -> serde_json::Value {
    let d = r.dynamodb();
    let mut change = serde_json::json!({
        "ApproximateCreationDateTime": d.and_then(|d| d.approximate_creation_date_time()).map(|t| t.secs() as f64).unwrap_or(0.0),
        "Keys": d.and_then(|d| d.keys()).map(image).unwrap_or(serde_json::json!({})),
        "SequenceNumber": d.and_then(|d| d.sequence_number()).unwrap_or_default(),
        "SizeBytes": d.and_then(|d| d.size_bytes()).unwrap_or(0),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    if let Some(n) = d.and_then(|d| d.new_image()) {
        change["NewImage"] = image(n);
    }
    if let Some(o) = d.and_then(|d| d.old_image()) {
        change["OldImage"] = image(o);
    }
    serde_json::json!({
        "eventID": r.event_id().unwrap_or_default(),
        "eventName": r.event_name().map(|e| e.as_str()).unwrap_or("MODIFY"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{mpsc, Notify};

    fn record(item: &str, seq: u32) -> Value {
        serde_json::json!({
            "eventID": format!("{item}-{seq}"),
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 0.0,
                "Keys": {"pk": {"S": item}},
                "SequenceNumber": format!("{seq}"),
                "SizeBytes": 1,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s",
        })
    }

    /// A handler that reports each call's (item, sequence numbers); calls for `held` wait
    /// for `gate`; the first call that holds sequence number `fail_at` reports it failed.
    fn recording(
        held: &'static str,
        gate: Arc<Notify>,
        fail_at: Option<&'static str>,
    ) -> (StreamHandler, mpsc::UnboundedReceiver<(String, Vec<String>)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler: StreamHandler = Arc::new(move |event: Event| {
            let (tx, gate, failed_once) = (tx.clone(), gate.clone(), failed_once.clone());
            Box::pin(async move {
                let records = serde_json::to_value(&event.records).unwrap();
                let item = records[0]["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap().to_string();
                let seqs: Vec<String> = records
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_string())
                    .collect();
                if item == held {
                    gate.notified().await;
                }
                tx.send((item, seqs.clone())).unwrap();
                let mut resp = DynamoDbEventResponse::default();
                if let Some(at) = fail_at {
                    if seqs.iter().any(|s| s == at) && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let mut failure = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
                        failure.item_identifier = Some(at.to_string());
                        resp.batch_item_failures.push(failure);
                    }
                }
                Ok(resp)
            })
        });
        (handler, rx)
    }

    /// The next call, or a failure (not a hang) when none comes.
    async fn next(calls: &mut mpsc::UnboundedReceiver<(String, Vec<String>)>) -> (String, Vec<String>) {
        tokio::time::timeout(Duration::from_secs(20), calls.recv())
            .await
            .expect("no call to the function in 20 s: a lane is stuck")
            .unwrap()
    }

    #[tokio::test]
    async fn a_held_item_holds_up_only_itself_and_each_item_keeps_its_order() {
        let gate = Arc::new(Notify::new());
        let (handler, mut calls) = recording("a", gate.clone(), None);
        let lanes = Lanes::new(handler, 100, 8);
        for r in [
            record("a", 1),
            record("b", 2),
            record("a", 3),
            record("b", 4),
            record("c", 5),
        ] {
            if let Some(lane) = lanes.push(r).await {
                tokio::spawn(lane);
            }
        }
        // b's and c's records are all handled while a's first call waits
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        while seen.get("b").map_or(0, Vec::len) < 2 || !seen.contains_key("c") {
            let (item, seqs) = next(&mut calls).await;
            assert_ne!(item, "a", "a's call came back before its gate opened");
            seen.entry(item).or_default().extend(seqs);
        }
        assert_eq!(seen["b"], ["2", "4"]);
        gate.notify_one();
        let (item, first) = next(&mut calls).await;
        assert_eq!((item.as_str(), first[0].as_str()), ("a", "1"));
        let mut a = first;
        while a.len() < 2 {
            gate.notify_one();
            let (item, seqs) = next(&mut calls).await;
            assert_eq!(item, "a");
            a.extend(seqs);
        }
        assert_eq!(a, ["1", "3"]);
    }

    #[tokio::test]
    async fn a_reported_failure_is_retried_from_that_record_on() {
        let (handler, mut calls) = recording("none", Arc::new(Notify::new()), Some("2"));
        let lanes = Lanes::new(handler, 100, 8);
        let mut lane = None;
        for seq in 1..=3 {
            lane = lane.or(lanes.push(record("a", seq)).await);
        }
        // the lane starts with all three waiting: one call, then the retry
        let lane = tokio::spawn(lane.expect("the first record starts a lane"));
        assert_eq!(next(&mut calls).await.1, ["1", "2", "3"]);
        assert_eq!(next(&mut calls).await.1, ["2", "3"]);
        lane.await.unwrap();
        assert!(calls.try_recv().is_err(), "no call after every record was handled");
        assert_eq!(lanes.room.available_permits(), 100, "the room is given back");
        assert!(lanes.waiting.lock().unwrap().is_empty(), "the finished lane is gone");
    }
}
