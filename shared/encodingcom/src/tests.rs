use super::*;
use nommer_core::capability;
use nommer_core::job::*;
use nommer_core::state::JobState;
use serde_json::{json, Value};

#[test]
fn errors_come_as_a_string_a_list_or_an_object_of_one() {
    let one = json!({"errors": {"error": "Wrong user id or key!"}});
    assert_eq!(errors_of(&one), ["Wrong user id or key!"]);
    let many = json!({"errors": {"error": ["a", "b"]}});
    assert_eq!(errors_of(&many), ["a", "b"]);
    let none = json!({"message": "Added", "MediaID": "1"});
    assert!(errors_of(&none).is_empty());
}

#[test]
fn status_reads_plain_and_one_item_lists() {
    let plain = json!({"id": "77", "status": "Processing", "progress": "41.5",
        "format": {"output": "mp4", "status": "Processing", "destination": "s3://b/k.mp4"}});
    let m = parse_media(&plain).unwrap();
    assert_eq!((m.media_id.as_str(), &m.status), ("77", &Status::Processing));
    assert_eq!(m.formats.len(), 1);
    assert_eq!(m.formats[0].destinations, ["s3://b/k.mp4"]);
    assert_eq!(m.status.ours(m.progress), Some((JobState::Encoding, 41)));
    let list = json!({"id": 78, "status": "Error", "description": "Source file is corrupt",
        "format": [{"output": "mp4", "status": "Error"}, {"output": "thumbnail", "status": "Error"}]});
    let m = parse_media(&list).unwrap();
    assert_eq!(m.media_id, "78");
    assert_eq!(m.formats.len(), 2);
    assert_eq!(m.errors, ["Source file is corrupt"]);
}

#[test]
fn progress_while_waiting_is_not_encoding_progress() {
    assert_eq!(
        Status::WaitingForEncoder.ours(100.0),
        Some((JobState::Downloading, 100))
    );
    assert_eq!(Status::New.ours(100.0), Some((JobState::Queued, 0)));
    assert_eq!(Status::Processing.ours(100.0), Some((JobState::Encoding, 99)));
    assert_eq!(Status::parse("Ready to process"), Status::ReadyToProcess);
    assert_eq!(Status::parse("Finished").ours(3.0).unwrap().0, JobState::Complete);
}

#[test]
fn status_words_are_read_whatever_their_spelling() {
    // the spellings seen in Encoding.com's answers and in its clients (PyPI's
    // `encodingcom` lists `Waitingforencoder`)
    for w in [
        "Waiting for encoder",
        "Waitingforencoder",
        "waiting_for_encoder",
        "WAITING FOR ENCODER",
        " waiting-for-encoder ",
    ] {
        assert_eq!(Status::parse(w), Status::WaitingForEncoder, "{w:?}");
        assert_eq!(
            Status::parse(w).ours(100.0),
            Some((JobState::Downloading, 100)),
            "{w:?} is not queued again"
        );
    }
    for (w, want) in [
        ("ReadyToProcess", Status::ReadyToProcess),
        ("ready_to_process", Status::ReadyToProcess),
        ("FINISHED", Status::Finished),
        ("Stopped", Status::Deleted),
        ("Downloaded", Status::Downloading),
    ] {
        assert_eq!(Status::parse(w), want, "{w:?}");
    }
}

#[test]
fn an_unknown_status_word_leaves_the_job_where_it_is() {
    let s = Status::parse("Transmuxing");
    assert_eq!(s, Status::Other("Transmuxing".into()));
    assert_eq!(s.ours(50.0), None, "never read as queued from scratch");
}

#[test]
fn notify_bodies_in_json_and_xml() {
    let body = format!(
        "json={}",
        percent_encoding::utf8_percent_encode(
            r#"{"result":{"mediaid":"123","status":"Finished"}}"#,
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    assert_eq!(
        parse_notify(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap(),
        "123"
    );
    let xml = "xml=%3Cresult%3E%3Cmediaid%3E456%3C%2Fmediaid%3E%3C%2Fresult%3E";
    assert_eq!(parse_notify(None, xml.as_bytes()).unwrap(), "456");
    assert!(parse_notify(None, b"hello=1").is_err());
    assert!(parse_notify(None, b"xml=%3Cmediaid%3E..%2F..%3C%2Fmediaid%3E").is_err());
}

#[test]
fn presets_map_to_formats_or_say_why_not() {
    let c = nommer_core::presets::Catalog::builtin();
    let prefix = S3Uri::new("outbox", "j1/web/");
    let f = format_for(
        c.find("mp4-720p").unwrap(),
        &OutputOptions::default(),
        Some((854, 480)),
        &prefix,
        "clip",
        Some("abc123"),
    )
    .unwrap();
    assert_eq!(f["output"], "mp4");
    assert_eq!(f["video_codec"], "libx264");
    assert_eq!(f["size"], "0x480", "never upscaled");
    assert_eq!(
        f["destination"],
        "https://outbox.s3.amazonaws.com/j1/web/clip.mp4?acl=authenticated-read&canonical_id=abc123"
    );
    assert_eq!(
        parse_destination("https://outbox.s3.amazonaws.com/j1/web/a%20b.mp4?acl=public-read").unwrap(),
        S3Uri::new("outbox", "j1/web/a b.mp4")
    );
    assert!(parse_destination("https://evil.example/x").is_none());
    let hls = format_for(
        c.find("hls").unwrap(),
        &OutputOptions::default(),
        Some((1280, 720)),
        &prefix,
        "clip",
        None,
    )
    .unwrap();
    assert_eq!(hls["output"], "advanced_hls");
    assert_eq!(hls["pack_files"], "no", "playlists and segments, not one tar");
    let heights = sizes(&hls);
    assert!(heights.len() >= 2, "{hls}");
    assert!(
        heights.iter().all(|(w, h)| *w == 0 && *h <= 720),
        "never above the source: {heights:?}"
    );
    // the same ladder from a 1080p source has a rung above 720: the check can fail
    let full = format_for(
        c.find("hls").unwrap(),
        &OutputOptions::default(),
        Some((1920, 1080)),
        &prefix,
        "clip",
        None,
    )
    .unwrap();
    assert!(sizes(&full).iter().any(|(_, h)| *h > 720), "{full}");
    assert!(capability::encodingcom(c.find("sprite").unwrap(), &OutputOptions::default()).is_err());
    assert!(
        capability::encodingcom(c.find("mp4-av1-720p").unwrap(), &OutputOptions::default())
            .unwrap_err()
            .contains("AV1")
    );
    let crf = OutputOptions {
        crf: Some(20),
        ..Default::default()
    };
    assert!(capability::encodingcom(c.find("mp4-720p").unwrap(), &crf)
        .unwrap_err()
        .contains("crf"));
    assert!(capability::encodingcom(c.find("audio-mp3").unwrap(), &OutputOptions::default()).is_ok());
}

/// The (width, height) of each ladder stream's `size`, as numbers.
fn sizes(f: &Value) -> Vec<(u32, u32)> {
    f["stream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let (w, h) = s["size"].as_str().unwrap().split_once('x').unwrap();
            (w.parse().unwrap(), h.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_presets_height_bounds_the_short_side_so_portrait_stays_portrait() {
    let c = nommer_core::presets::Catalog::builtin();
    let prefix = S3Uri::new("delivery", "j1/web/");
    let mp4 = |src| {
        format_for(
            c.find("mp4-720p").unwrap(),
            &OutputOptions::default(),
            src,
            &prefix,
            "c",
            None,
        )
        .unwrap()
    };
    // a phone video, 720x1280: its short side is already 720, so it stays 720x1280
    assert_eq!(mp4(Some((720, 1280)))["size"], "720x0");
    assert_eq!(mp4(Some((1080, 1920)))["size"], "720x0");
    assert_eq!(mp4(Some((1920, 1080)))["size"], "0x720");
    assert_eq!(mp4(Some((360, 640)))["size"], "360x0", "never upscaled");
    assert_eq!(mp4(None)["size"], "0x720");
    let hls = format_for(
        c.find("hls").unwrap(),
        &OutputOptions::default(),
        Some((720, 1280)),
        &prefix,
        "c",
        None,
    )
    .unwrap();
    let rungs = sizes(&hls);
    assert!(
        rungs.len() >= 2,
        "a 720-wide portrait source keeps its 720 rung and those below: {hls}"
    );
    assert!(
        rungs.iter().all(|(w, h)| *h == 0 && *w <= 720),
        "every rung bounds the width of a portrait picture: {rungs:?}"
    );
    assert!(rungs.iter().any(|(w, _)| *w == 720), "{rungs:?}");
}

#[test]
fn destinations_carry_the_acl_and_read_back() {
    let d = destination("deliv", "j 1/a.mp4", Some("owner/id"));
    assert_eq!(
        d,
        "https://deliv.s3.amazonaws.com/j%201/a.mp4?acl=authenticated-read&canonical_id=owner%2Fid"
    );
    let p = destination_params(&d);
    assert_eq!(p["acl"], "authenticated-read");
    assert_eq!(p["canonical_id"], "owner/id");
    assert_eq!(parse_destination(&d).unwrap(), S3Uri::new("deliv", "j 1/a.mp4"));
    assert!(destination_params("https://b.s3.amazonaws.com/k").is_empty());
}

#[test]
fn the_documented_xml_notification_is_read() {
    let xml = "<?xml version=\"1.0\"?>\n<result>\n <mediaid>1234</mediaid>\n <source>https://x/y</source>\n <status>Finished</status>\n <format><output>mp4</output><destination>https://b.s3.amazonaws.com/k.mp4</destination><destination_status>Saved</destination_status><status>Finished</status></format>\n</result>";
    let body = format!(
        "xml={}",
        percent_encoding::utf8_percent_encode(xml, percent_encoding::NON_ALPHANUMERIC)
    );
    assert_eq!(
        parse_notify(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap(),
        "1234"
    );
}

#[test]
fn the_key_never_prints() {
    let c = Client::new("https://manage.encoding.com/", "42", UserKey::new("sekrit"));
    assert!(!format!("{c:?}").contains("sekrit"));
    assert_eq!(format!("{}", UserKey::new("sekrit")), "***");
}
