//! Job items: the `doc` attribute of a job item in the table (shared/aws/src/store.rs
//! `from_item` is `serde_json::from_str::<Job>` of it, as is the notify function's
//! stream image), today's shape broken, and the shapes older Nommers wrote.

use crate::gen::{broken_json, config, odd_text};
use nommer_core::job::{Job, Origin, OutputSpec, S3Uri, StreamKind, TaskStatus};
use nommer_core::JobState;
use proptest::prelude::*;
use serde_json::{json, Value};

const ID: &str = "j0123456789abcdef0123456789abcdef";

/// A job as the first Nommer wrote it (044c5f3, shared/src/job.rs): a
/// `destination_prefix` since dropped, probe streams whose `kind` was a free string,
/// none of the later optional fields.
fn job_v0() -> Value {
    json!({
        "id": ID, "state": "encoding", "version": 4, "origin": "upload",
        "source": "s3://nommer-inbox/inbox/mp4-720p/clip.mov",
        "outputs": [{"name": "mp4-720p", "preset": "mp4-720p"}],
        "destination_prefix": format!("{ID}/"),
        "backend": "ffmpeg", "attempts": 1, "progress": 42,
        "probe": {"container": "mov,mp4,m4a,3gp,3g2,mj2", "duration_seconds": 10.0, "size": 1024, "bit_rate": 800000,
            "streams": [
                {"index": 0, "kind": "video", "codec": "h264", "width": 1280, "height": 720, "frame_rate": 25.0},
                {"index": 1, "kind": "audio", "codec": "aac", "channels": 2, "sample_rate": 48000},
                {"index": 2, "kind": "", "codec": "bin_data"}
            ]},
        "manifest": [], "user_metadata": {"team": "news"},
        "worker": "i-0abc", "heartbeat_at": "2026-11-20T10:00:05Z",
        "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:00:05Z",
        "history": [{"state": "submitted", "at": "2026-11-20T10:00:00Z"}, {"state": "queued", "at": "2026-11-20T10:00:01Z", "note": "routed"}]
    })
}

/// A job handed to Encoding.com before cd29e65 and b38442a: the remote task's `status`
/// was the backend's word as a string, the routing facts' `measured_by` a string; with
/// the API's later fields (hints, etag, retry_of, message_id).
fn job_remote_v1() -> Value {
    json!({
        "id": ID, "state": "downloading", "version": 7, "origin": "api",
        "source": "s3://nommer-inbox/a/b.mp4",
        "outputs": [{"name": "small", "preset": "mp4-360p", "options": {"trim": {"start_seconds": 1.5}, "crf": 23}}],
        "backend": "encodingcom", "attempts": 0, "progress": 100,
        "manifest": [], "user_metadata": {},
        "request_fingerprint": "ab".repeat(32), "message_id": "m-1", "source_etag": "\"d41d8cd98f00b204e9800998ecf8427e\"",
        "source_hints": {"duration_seconds": 12.5, "height": 1080},
        "routing": {"backend": "encodingcom", "rule": "long", "reason": "rule `long`", "estimated_cost_usd": 0.25,
            "estimates": {"encodingcom": 0.25, "ffmpeg": 0.3}, "unable": {"ffmpeg": "busy"},
            "facts": {"key": "a/b.mp4", "extension": "mp4", "size": 1024, "duration_seconds": 12.5, "height": 1080, "measured_by": "request"},
            "fallback_from": "ffmpeg"},
        "remote": {"backend": "encodingcom", "media_id": "123456", "status": "Waiting for encoder",
            "submitted_at": "2026-11-20T10:00:00Z", "checked_at": "2026-11-20T10:01:00Z", "notifications": 2},
        "retry_of": "j00000000000000000000000000000000",
        "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:01:00Z"
    })
}

#[test]
fn jobs_older_nommers_wrote_are_read() {
    let j: Job = serde_json::from_value(job_v0()).unwrap();
    assert_eq!((j.state, j.version, j.origin), (JobState::Encoding, 4, Origin::Upload));
    assert_eq!(j.source, S3Uri::new("nommer-inbox", "inbox/mp4-720p/clip.mov"));
    assert_eq!(j.outputs, [OutputSpec::new("mp4-720p", "mp4-720p")]);
    let probe = j.probe.as_ref().unwrap();
    let kinds: Vec<StreamKind> = probe.streams.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StreamKind::Video, StreamKind::Audio, StreamKind::Unknown]);
    assert!(probe.has(StreamKind::Video));
    assert_eq!(j.history.len(), 2);

    let j: Job = serde_json::from_value(job_remote_v1()).unwrap();
    let remote = j.remote.as_ref().unwrap();
    assert_eq!(remote.status, TaskStatus::WaitingForEncoder);
    assert_eq!(remote.status.ours(100.0), Some((JobState::Downloading, 100)));
    let routing = j.routing.as_ref().unwrap();
    assert_eq!(routing.facts.measured_by, nommer_core::decision::Measured::Request);
    assert_eq!(routing.fallback_from.as_deref(), Some("ffmpeg"));
    assert_eq!(j.outputs[0].options.crf, Some(23));
    // and they are written back in today's shape, which reads the same
    let again: Job = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
    assert_eq!(again, j);
}

#[test]
fn every_older_status_word_and_measure_is_read() {
    // the status words Encoding.com and older Nommers wrote, in their spellings
    for (word, status) in [
        ("New", TaskStatus::New),
        ("Downloading", TaskStatus::Downloading),
        ("Ready to process", TaskStatus::ReadyToProcess),
        ("Waiting for encoder", TaskStatus::WaitingForEncoder),
        ("Processing", TaskStatus::Processing),
        ("Saving", TaskStatus::Saving),
        ("Finished", TaskStatus::Finished),
        ("Error", TaskStatus::Error),
        ("Deleted", TaskStatus::Deleted),
        ("Something new", TaskStatus::Other("Something new".into())),
    ] {
        let mut doc = job_remote_v1();
        doc["remote"]["status"] = json!(word);
        let j: Job = serde_json::from_value(doc).unwrap();
        assert_eq!(j.remote.unwrap().status, status, "{word}");
    }
    for word in ["probe", "request", "unknown"] {
        let mut doc = job_remote_v1();
        doc["routing"]["facts"]["measured_by"] = json!(word);
        assert!(serde_json::from_value::<Job>(doc).is_ok(), "{word}");
    }
}

#[test]
fn a_job_item_that_is_no_job_is_refused_with_the_reason() {
    let mut doc = job_v0();
    doc["state"] = json!("paused");
    let e = serde_json::from_value::<Job>(doc).unwrap_err().to_string();
    assert!(e.contains("paused"), "{e}");
    let mut doc = job_v0();
    doc["source"] = json!("https://example.com/a.mov");
    let e = serde_json::from_value::<Job>(doc).unwrap_err().to_string();
    assert!(e.contains("not an s3:// URI"), "{e}");
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn broken_job_items_are_refused_not_panicked_on(doc in prop_oneof![
        broken_json(job_v0()),
        broken_json(job_remote_v1()),
    ]) {
        if let Ok(j) = serde_json::from_str::<Job>(&doc) {
            // what was read is written back and read the same (no field lost)
            let again: Job = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
            prop_assert_eq!(&again, &j);
            // and the views made from it are built without a panic
            let _ = j.clone().public();
            let _ = nommer_core::events::from_change(None, &j);
        }
    }

    /// shared/core/src/job.rs: S3Uri::parse (a job's source, a watermark image).
    #[test]
    fn s3_uris_parse_or_say_why(s in prop_oneof![odd_text(), "s3://[a-z0-9.-]{0,70}/[\\PC]{0,40}".prop_map(String::from)]) {
        match S3Uri::parse(&s) {
            Ok(u) => prop_assert_eq!(u.to_string(), s),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// shared/aws/src/table.rs: the worker id in a heartbeat item's key.
    #[test]
    fn item_keys_read_back_and_never_meet(id in odd_text()) {
        use nommer_aws::table::{worker_id_of, Item};
        let (worker, job) = (Item::Worker(&id).key(), Item::Job(&id).key());
        prop_assert_eq!(worker_id_of(&worker), Some(id.as_str()));
        if nommer_core::ids::looks_valid(&id) {
            prop_assert_eq!(worker_id_of(&job), None);
        }
    }

    #[test]
    fn output_stems_are_safe_for_any_key(key in odd_text()) {
        let stem = S3Uri::new("bucket", key).output_stem();
        prop_assert!(!stem.is_empty() && stem.len() <= 100 && !stem.starts_with('.'));
        prop_assert!(stem.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }
}
