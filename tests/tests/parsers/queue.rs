//! Queue bodies: S3 notifications on the ingest queue, job messages on the jobs and work
//! queues, webhook deliveries on the webhooks queue, in today's shapes, broken, and in
//! the shapes older Nommers wrote (a rolling upgrade meets them).

use crate::gen::{any_json, broken_json, config, odd_text};
use nommer_core::deliveries::{AttemptRecord, Delivery, Outcome, Target};
use nommer_core::messages::JobMessage;
use proptest::prelude::*;
use serde_json::{json, Value};

fn s3_notification() -> Value {
    serde_json::from_str(include_str!(
        "../../../functions/ingest/tests/fixtures/s3-notification.json"
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(config(3000))]

    /// functions/ingest: parse_notification, decode_key, upload_of.
    #[test]
    fn s3_notifications_are_read_or_refused(body in broken_json(s3_notification())) {
        match ingest::parse_notification(&body) {
            Ok(Some(n)) => {
                for r in &n.records {
                    let u = ingest::upload_of(r);
                    prop_assert_eq!(&u.bucket, &r.s3.bucket.name);
                    prop_assert_eq!(u.size, r.s3.object.size);
                }
            }
            Ok(None) => prop_assert!(body.contains("s3:TestEvent")),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn s3_bodies_of_any_json_are_refused_not_panicked_on(v in any_json()) {
        let body = v.to_string();
        // only an object with Records (or the test event) can be read
        if let Ok(Some(_)) = ingest::parse_notification(&body) {
            prop_assert!(v.get("Records").is_some());
        }
    }

    #[test]
    fn keys_decode_whatever_they_hold(raw in odd_text()) {
        let key = ingest::decode_key(&raw);
        // nothing but `+` and escapes change
        if !raw.contains(['+', '%']) {
            prop_assert_eq!(key, raw);
        }
    }

    /// shared/core/src/messages.rs: JobMessage::from_body.
    #[test]
    fn job_messages_are_read_or_refused(body in broken_json(json!({"job_id": nommer_core::ids::random()}))) {
        match JobMessage::from_body(&body) {
            Ok(m) => prop_assert!(nommer_core::ids::looks_valid(&m.job_id)),
            Err(e) => prop_assert!(e.contains("not a job")),
        }
    }

    #[test]
    fn job_messages_round_trip(id in "j[0-9a-f]{32}") {
        let m = JobMessage::new(id.clone());
        prop_assert_eq!(JobMessage::from_body(&m.to_body()).unwrap().job_id, id);
    }

    #[test]
    fn job_message_ids_of_any_text_are_checked(id in odd_text()) {
        let body = json!({ "job_id": id }).to_string();
        prop_assert_eq!(JobMessage::from_body(&body).is_ok(), nommer_core::ids::looks_valid(&id));
    }

    /// functions/notify: the webhooks queue's Delivery.
    #[test]
    fn deliveries_are_read_or_refused(body in broken_json(delivery_v0())) {
        if let Ok(d) = serde_json::from_str::<Delivery>(&body) {
            let again: Delivery = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
            prop_assert_eq!(again, d);
        }
    }
}

/// A Delivery as the first notifier wrote it (c0968e8, shared/src/notify.rs): the same
/// fields as today.
fn delivery_v0() -> Value {
    json!({
        "event": {
            "version": "1", "id": "evt_0123456789abcdef0123456789abcdef", "type": "job.state_changed",
            "time": "2026-11-20T10:00:00Z",
            "job": {
                "id": "j0123456789abcdef0123456789abcdef", "state": "complete", "previous_state": "uploading",
                "progress": 100, "backend": "ffmpeg", "presets": ["mp4-720p"], "source": "s3://inbox/a.mov",
                "outputs": [{"output": "mp4-720p", "bucket": "outbox", "key": "j1/mp4-720p/a.mp4", "size": 10}],
                "error": null, "user_metadata": {"k": "v"}
            }
        },
        "target": {"kind": "job", "url": "https://hooks.example.com/x"},
        "attempt": 1,
        "not_before": "2026-11-20T10:00:00Z"
    })
}

#[test]
fn older_deliveries_and_attempt_records_are_read() {
    let d: Delivery = serde_json::from_value(delivery_v0()).unwrap();
    assert_eq!(
        d.target,
        Target::Job {
            url: "https://hooks.example.com/x".into()
        }
    );
    assert_eq!(d.event.job.state, nommer_core::JobState::Complete);
    let mut endpoint = delivery_v0();
    endpoint["target"] = json!({"kind": "endpoint", "name": "ops"});
    let d: Delivery = serde_json::from_value(endpoint).unwrap();
    assert_eq!(d.target.name(), "ops");
    // AttemptRecord.outcome was a free string (c0968e8); the words it wrote are today's
    for (word, outcome) in [
        ("delivered", Outcome::Delivered),
        ("retry", Outcome::Retry),
        ("dead_lettered", Outcome::DeadLettered),
    ] {
        let rec: AttemptRecord = serde_json::from_value(json!({
            "event_id": "evt_1", "type": "job.state_changed", "state": "failed", "target": "notify_url",
            "attempt": 2, "at": "2026-11-20T10:00:00Z", "ok": false, "status": 500, "error": "HTTP 500",
            "outcome": word
        }))
        .unwrap();
        assert_eq!(rec.outcome, outcome);
    }
    // a message of another kind is refused with serde's error, naming what is missing
    let e = serde_json::from_value::<Delivery>(json!({"job_id": "j1"})).unwrap_err();
    assert!(e.to_string().contains("missing field"), "{e}");
}

#[test]
fn older_job_messages_are_read() {
    // the first JobMessage (044c5f3) is today's; a later writer's extra field is ignored
    let id = nommer_core::ids::for_idempotency_key("k");
    let old = format!(r#"{{"job_id":"{id}"}}"#);
    assert_eq!(JobMessage::from_body(&old).unwrap().job_id, id);
    let newer = format!(r#"{{"job_id":"{id}","attempt":3}}"#);
    assert_eq!(JobMessage::from_body(&newer).unwrap().job_id, id);
    // an S3 notification on the jobs queue (a miswired queue) is refused, clearly
    let e = JobMessage::from_body(&s3_notification().to_string()).unwrap_err();
    assert!(e.contains("not a job message"), "{e}");
}
