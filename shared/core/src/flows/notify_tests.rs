//! Notifications on the fakes: fan-out once, signed attempts, retries, parking.

use super::notify::Notifications;
use crate::deliveries::{Delivery, Outcome, PostFailure, Target};
use crate::fakes::*;
use crate::job::{Job, Origin, OutputSpec, S3Uri};
use crate::settings::*;
use crate::state::Transition;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct World {
    publisher: Arc<MemPublisher>,
    ledger: Arc<MemLedger>,
    queue: Arc<MemQueue>,
    http: Arc<FakeWebhooks>,
    n: Notifications,
}

fn world() -> World {
    let config = "[webhooks]\nretry_seconds = [0, 30, 600]\n\n[[webhooks.endpoints]]\nname = \"ops\"\nurl = \"https://ops.example/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nstates = [\"failed\"]\n";
    let env: HashMap<String, String> = [
        (TABLE, "t"),
        (EVENTS_TOPIC_ARN, "arn:aws:sns:us-east-1:000000000000:events"),
        (WEBHOOKS_QUEUE_URL, "hooks"),
        (WEBHOOKS_DLQ_URL, "hooks-dlq"),
        (WEBHOOK_SECRET, SECRET),
        (CONFIG_TOML, config),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = NotifySettings::from_source(&env).unwrap();
    let (publisher, ledger) = (Arc::new(MemPublisher::default()), Arc::new(MemLedger::default()));
    let (queue, http) = (Arc::new(MemQueue::default()), Arc::new(FakeWebhooks::default()));
    World {
        n: Notifications {
            settings,
            publisher: publisher.clone(),
            ledger: ledger.clone(),
            queue: queue.clone(),
            http: http.clone(),
        },
        publisher,
        ledger,
        queue,
        http,
    }
}

fn job_with_hook() -> Job {
    let mut j = Job::new(
        crate::ids::random(),
        Origin::Api,
        S3Uri::new("inbox", "inbox/a.mp4"),
        vec![OutputSpec::new("web", "mp4-720p")],
        Utc::now(),
    );
    j.notify_url = Some("https://hooks.example/nommer".into());
    j
}

fn deliveries(w: &World, queue: &str) -> Vec<Delivery> {
    w.queue
        .bodies(queue)
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test]
async fn a_change_is_published_once_and_queued_once_per_target_however_often_it_comes() {
    let w = world();
    let old = job_with_hook();
    let mut new = old.clone();
    new.apply(Transition::Dispatch, Utc::now(), None).unwrap();
    assert_eq!(w.n.on_change(Some(&old), &new).await.unwrap(), 1);
    assert_eq!(
        w.n.on_change(Some(&old), &new).await.unwrap(),
        1,
        "the same change again"
    );
    let published = w.publisher.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1, "{published:?}");
    let queued = deliveries(&w, "hooks");
    assert_eq!(queued.len(), 1, "only the job's own URL wants `queued`: {queued:?}");
    assert_eq!(
        queued[0].target,
        Target::Job {
            url: "https://hooks.example/nommer".into()
        }
    );

    let mut failed = new.clone();
    failed.apply(Transition::Fail, Utc::now(), None).unwrap();
    w.n.on_change(Some(&new), &failed).await.unwrap();
    let targets: Vec<Target> = deliveries(&w, "hooks").into_iter().skip(1).map(|d| d.target).collect();
    assert!(
        targets.contains(&Target::Endpoint { name: "ops".into() }),
        "ops wants failures: {targets:?}"
    );
}

async fn first_delivery(w: &World) -> Delivery {
    let old = job_with_hook();
    let mut new = old.clone();
    new.apply(Transition::Dispatch, Utc::now(), None).unwrap();
    w.n.on_change(Some(&old), &new).await.unwrap();
    w.queue.sent.lock().unwrap().clear();
    deliveries(w, "hooks").pop().unwrap_or_else(|| {
        let e = crate::events::from_change(Some(&old), &new).remove(0);
        Delivery {
            event: e,
            target: Target::Job {
                url: new.notify_url.clone().unwrap(),
            },
            attempt: 1,
            not_before: Utc::now(),
        }
    })
}

#[tokio::test]
async fn an_attempt_posts_the_event_signed_and_records_it_delivered() {
    let w = world();
    let d = first_delivery(&w).await;
    let rec = w.n.deliver(d.clone()).await.unwrap();
    assert_eq!((rec.ok, rec.outcome, rec.status), (true, Outcome::Delivered, Some(200)));
    let posts = w.http.posts.lock().unwrap().clone();
    let (url, headers, body) = &posts[0];
    assert_eq!(url, "https://hooks.example/nommer");
    let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(h("webhook-id"), d.event.id);
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    let secret = crate::events::SigningSecret::parse(SECRET).unwrap();
    assert_eq!(h("webhook-signature"), secret.sign(&d.event.id, ts, body));
    let recorded = w.ledger.records.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, d.event.job.id);
}

#[tokio::test]
async fn a_failed_attempt_is_tried_again_after_the_schedules_delay_then_parked() {
    let w = world();
    let d = first_delivery(&w).await;
    w.http.answers.lock().unwrap().insert(
        "https://hooks.example/nommer".into(),
        Err(PostFailure::transient(Some(503), "HTTP 503")),
    );
    let rec = w.n.deliver(d.clone()).await.unwrap();
    assert_eq!((rec.ok, rec.outcome, rec.status), (false, Outcome::Retry, Some(503)));
    let next = deliveries(&w, "hooks").pop().expect("the next attempt queued");
    assert_eq!(next.attempt, 2);
    assert_eq!(*w.queue.delays.lock().unwrap(), [30], "the schedule's second delay");
    let last = Delivery {
        attempt: 3,
        not_before: Utc::now(),
        ..next
    };
    let rec = w.n.deliver(last).await.unwrap();
    assert_eq!(rec.outcome, Outcome::DeadLettered);
    let parked = w.queue.bodies("hooks-dlq");
    assert_eq!(parked.len(), 1);
    assert!(parked[0].contains("HTTP 503"), "parked with its reason: {}", parked[0]);
}

#[tokio::test]
async fn a_refused_address_is_parked_at_once_and_a_delivery_not_due_waits() {
    let w = world();
    let d = first_delivery(&w).await;
    w.http.refused.lock().unwrap().insert(
        "https://hooks.example/nommer".into(),
        (
            "hooks.example resolves to 10.0.0.1, a private address; refused".into(),
            true,
        ),
    );
    let rec = w.n.deliver(d.clone()).await.unwrap();
    assert_eq!((rec.attempt, rec.outcome), (1, Outcome::DeadLettered), "never retried");
    assert!(w.http.posts.lock().unwrap().is_empty(), "nothing was sent");

    let later = Delivery {
        not_before: Utc::now() + chrono::Duration::hours(2),
        ..d
    };
    let rec = w.n.deliver(later).await.unwrap();
    assert_eq!(rec.outcome, Outcome::Waiting);
    assert_eq!(
        *w.queue.delays.lock().unwrap(),
        [900],
        "at most SQS's 15 minutes, then it hops again"
    );
}
