//! `POST /jobs` bodies (functions/api/src/request.rs `parse_request`). The list query,
//! its cursor and the Idempotency-Key are private to their modules and tested there
//! (listing.rs, jobs.rs).

use crate::gen::{any_json, broken_json, config};
use api::request::parse_request;
use nommer_core::settings::ApiSettings;
use proptest::prelude::*;
use serde_json::{json, Value};

fn settings() -> ApiSettings {
    ApiSettings {
        table: "t".into(),
        jobs_queue_url: "q".into(),
        default_preset: "mp4-720p".into(),
        source_buckets: vec!["inbox".into()],
        config: Default::default(),
        api_key_hashes: Vec::new(),
        max_source_bytes: nommer_core::settings::DEFAULT_MAX_SOURCE_BYTES,
    }
}

/// A request using every field and option.
fn full_request() -> Value {
    json!({
        "source": "s3://inbox/a/b.mov",
        "outputs": [
            {"preset": "mp4-720p", "name": "web", "options": {
                "trim": {"start_seconds": 1, "end_seconds": 9.5}, "max_frame_rate": 30, "video_bitrate_kbps": 900,
                "two_pass": true, "loudness": {"integrated_lufs": -23, "true_peak_db": -1, "range_lu": 7},
                "watermark": {"image": "s3://inbox/logo.png", "corner": "top_left", "width_fraction": 0.2, "margin": 8},
                "advanced": [{"input": [], "output": ["-tune", "film"]}]}},
            {"preset": "sprite", "options": {"count": 20, "width": 120}},
            {"preset": "poster", "options": {"at_seconds": 3}}
        ],
        "notify_url": "https://hooks.example.com/n",
        "user_metadata": {"team": "news", "é": "✓"},
        "source_info": {"duration_seconds": 12.5, "height": 1080}
    })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn bodies_are_read_or_refused_naming_the_field(body in prop_oneof![
        4 => broken_json(full_request()),
        1 => broken_json(json!({"source": "s3://inbox/a.mov", "preset": "mp4-720p"})),
        1 => any_json().prop_map(|v| v.to_string()),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        match parse_request(body.as_bytes(), &settings()) {
            Ok((req, source, outputs)) => {
                prop_assert_eq!(&source.bucket, "inbox");
                prop_assert!(!outputs.is_empty() && outputs.len() <= 20);
                // what was accepted is accepted again as the API wrote it down
                let again = serde_json::to_vec(&req).unwrap();
                let (req2, _, outputs2) = parse_request(&again, &settings()).unwrap();
                prop_assert_eq!(req2, req);
                prop_assert_eq!(outputs2, outputs);
            }
            Err(p) => {
                prop_assert_eq!(p.status, 400);
                // the field at fault, or none when it is the body as a whole
                prop_assert!(!p.detail.is_empty());
                if body.trim_start().starts_with('{') && serde_json::from_str::<Value>(&body).is_ok() && !p.detail.contains("larger") && !p.detail.contains("field ``") {
                    prop_assert!(p.field.is_some(), "{:?} for {}", p, body);
                }
            }
        }
    }
}

#[test]
fn the_full_request_is_accepted() {
    let (_, src, outs) = parse_request(full_request().to_string().as_bytes(), &settings()).unwrap();
    assert_eq!(src.key, "a/b.mov");
    assert_eq!(outs.len(), 3);
    assert_eq!(outs[0].options.video_bitrate_kbps, Some(900));
    let big = format!("{{\"source\":\"{}\"}}", "a".repeat(70_000));
    assert_eq!(parse_request(big.as_bytes(), &settings()).unwrap_err().status, 400);
}
