//! Every preset encodes and validates on the local stack, several per job, on sources of
//! different shapes made with lavfi.

use nommer_core::error::JobErrorCode;
use nommer_core::presets::{AudioCodec, Catalog, Preset, PresetKind, VideoCodec};
use nommer_core::JobState;
use nommer_devstack::media;
use nommer_tests::{assert_complete, lavfi, output_file, run_job, spawn_stack};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn file_presets() -> Vec<Preset> {
    Catalog::builtin()
        .iter()
        .filter(|p| matches!(p.kind, PresetKind::File { .. }))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_preset_encodes_and_validates_in_one_job() {
    let stack = spawn_stack("allpresets", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("landscape.mp4");
    media::generate_clip(&src, 2, 480, 270, true).unwrap();
    let presets = file_presets();
    let outputs: Vec<_> = presets.iter().map(|p| json!({ "preset": p.name })).collect();
    let job = run_job(&stack, &src, "landscape.mp4", json!(outputs)).await;
    assert_complete(&stack, &job);
    assert_eq!(job.manifest.len(), presets.len());
    for p in &presets {
        let PresetKind::File {
            container,
            video,
            audio,
        } = &p.kind
        else {
            unreachable!()
        };
        let f = job
            .manifest
            .iter()
            .find(|f| f.output == p.name)
            .unwrap_or_else(|| panic!("{} missing", p.name));
        assert!(
            f.key
                .ends_with(&format!("/{}/landscape.{}", p.name, container.extension())),
            "{}",
            f.key
        );
        // the oracle: ffprobe on the file that landed in the outbox
        let d = tempfile::tempdir().unwrap();
        let path = nommer_tests::download_output(&stack, &f.key, d.path()).await;
        let probe = media::probe(&path).unwrap();
        let streams = probe["streams"].as_array().unwrap();
        let of = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind);
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((duration - 2.0).abs() < 0.5, "{}: lasts {duration}", p.name);
        match video {
            Some(v) => {
                let s = of("video").unwrap_or_else(|| panic!("{}: no video in {probe}", p.name));
                let want = match v.codec {
                    VideoCodec::H264 => "h264",
                    VideoCodec::H265 => "hevc",
                    VideoCodec::Vp9 => "vp9",
                    VideoCodec::Av1 => "av1",
                };
                assert_eq!(s["codec_name"], want, "{}", p.name);
                assert_eq!(
                    (s["width"].as_u64(), s["height"].as_u64()),
                    (Some(480), Some(270)),
                    "{}: never upscaled",
                    p.name
                );
            }
            None => assert!(of("video").is_none(), "{} is audio only: {probe}", p.name),
        }
        let a = audio.as_ref().expect("every file preset has audio");
        let s = of("audio").unwrap_or_else(|| panic!("{}: lost the audio: {probe}", p.name));
        let want = match a.codec {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
            AudioCodec::Mp3 => "mp3",
        };
        assert_eq!(s["codec_name"], want, "{}", p.name);
        assert_eq!(s["channels"].as_u64(), Some(u64::from(a.channels)), "{}", p.name);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            f.size,
            "{}: the manifest's size is the file's",
            p.name
        );
    }
    stack.shutdown().await;
}

/// x264 writes its settings into the stream (an SEI message): `rc=2pass` when it ran the
/// second pass of a two-pass encode with the first pass's statistics, `rc=abr` for one
/// pass at a bit rate.
fn x264_rate_control(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == b"rc=")
        .unwrap_or_else(|| panic!("no x264 settings in {}", path.display()));
    String::from_utf8_lossy(&bytes[at + 3..])
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_really_runs_two_passes() {
    let stack = spawn_stack("twopass", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 2, 320, 180, true).unwrap();
    let job = run_job(
        &stack,
        &src,
        "talk.mp4",
        json!([
            { "preset": "mp4-360p", "name": "two", "options": { "two_pass": true, "video_bitrate_kbps": 300 } },
            { "preset": "mp4-360p", "name": "one", "options": { "video_bitrate_kbps": 300 } }
        ]),
    )
    .await;
    assert_complete(&stack, &job);
    let two = output_file(&stack, &job, "two", dir.path()).await;
    let one = output_file(&stack, &job, "one", dir.path()).await;
    assert_eq!(x264_rate_control(&two), "2pass", "the encoder ran a second pass");
    assert_eq!(x264_rate_control(&one), "abr", "control: one pass at a bit rate");
    // the first pass's statistics stay on the worker: the outbox holds the outputs only
    let listed = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .list(&stack.names.outbox_bucket, &format!("{}/", job.id))
        .await
        .unwrap();
    let mut keys: Vec<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    let mut want: Vec<String> = job.manifest.iter().map(|f| f.key.clone()).collect();
    want.sort();
    assert_eq!(keys, want, "nothing but the outputs was uploaded");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_is_one_ffmpeg_process() {
    // the worker's FFmpeg is a wrapper that logs every run, then runs the real one
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let wrapper = dir.path().join("ffmpeg");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec ffmpeg \"$@\"\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stack = nommer_tests::spawn_stack_with("onedecode", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::FFMPEG.into(), wrapper.display().to_string());
    })
    .await;
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 2, 640, 360, true).unwrap();
    let job = run_job(&stack, &src, "talk.mp4", json!([{ "preset": "hls" }])).await;
    assert_complete(&stack, &job);
    let variants = job.manifest.iter().filter(|f| f.key.ends_with("/index.m3u8")).count();
    assert_eq!(variants, 2, "two renditions: {:?}", job.manifest);
    let runs = std::fs::read_to_string(&log).unwrap();
    let on_source: Vec<&str> = runs.lines().filter(|l| l.contains("-i file:")).collect();
    assert_eq!(on_source.len(), 1, "one FFmpeg process read the source:\n{runs}");
    stack.shutdown().await;
}

async fn text(stack: &nommer_devstack::LocalStack, key: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    std::fs::read_to_string(nommer_tests::download_output(stack, key, d.path()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_ladder_an_mp4_and_thumbnails_in_one_job() {
    let stack = spawn_stack("ladder", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("talk.mp4");
    // 640x360: the ladder gets its 360p and 240p rungs only
    media::generate_clip(&src, 6, 640, 360, true).unwrap();
    let outputs = json!([
        { "preset": "hls" },
        { "preset": "dash" },
        { "preset": "mp4-480p", "name": "web" },
        { "preset": "poster", "options": { "at_seconds": 2.5 } },
        { "preset": "thumbnails", "options": { "count": 4, "width": 160 } },
        { "preset": "sprite", "options": { "count": 12, "width": 80 } }
    ]);
    let job = run_job(&stack, &src, "talk.mp4", outputs).await;
    assert_complete(&stack, &job);
    let of = |name: &str| job.manifest.iter().filter(|f| f.output == name).collect::<Vec<_>>();

    // HLS: master + one entry per rendition, only at or below the source's height
    let hls = of("hls");
    let master = hls
        .iter()
        .find(|f| f.key.ends_with("/hls/master.m3u8"))
        .expect("master in the manifest");
    let variants: Vec<_> = hls.iter().filter(|f| f.key.ends_with("/index.m3u8")).collect();
    assert_eq!(
        variants.iter().map(|v| v.height.unwrap()).collect::<Vec<_>>(),
        [360, 240]
    );
    assert!(variants
        .iter()
        .all(|v| v.bit_rate.unwrap() > 100_000 && (v.duration_seconds.unwrap() - 6.0).abs() < 0.5));
    let m = text(&stack, &master.key).await;
    assert_eq!(m.matches("#EXT-X-STREAM-INF").count(), 2, "{m}");
    for line in m.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF")) {
        assert!(
            line.contains("BANDWIDTH=") && line.contains("RESOLUTION=") && line.contains("CODECS=\"avc1."),
            "{line}"
        );
    }
    assert!(
        m.contains("RESOLUTION=640x360") && m.contains("RESOLUTION=426x240"),
        "{m}"
    );
    let v = text(&stack, &variants[0].key).await;
    assert!(v.contains("#EXT-X-MAP:URI=") && v.contains("#EXT-X-ENDLIST"), "{v}");

    // DASH
    let dash = of("dash");
    assert_eq!(dash.len(), 1);
    let mpd = text(&stack, &dash[0].key).await;
    assert!(
        mpd.contains("height=\"360\"") && mpd.contains("height=\"240\"") && !mpd.contains("height=\"480\""),
        "{mpd}"
    );

    // the MP4
    let web = of("web");
    assert_eq!(web.len(), 1);
    assert_eq!((web[0].width, web[0].height), (Some(640), Some(360)));

    // thumbnails: what was asked
    let poster = of("poster");
    assert_eq!(poster.len(), 1);
    assert_eq!(
        (poster[0].width, poster[0].height),
        (Some(640), Some(360)),
        "a poster is never upscaled"
    );
    let thumbs = of("thumbnails");
    assert_eq!(thumbs.len(), 4);
    assert!(thumbs.iter().all(|t| t.width == Some(160) && t.height == Some(90)));
    let sprite = of("sprite");
    let sheet = sprite.iter().find(|f| f.key.ends_with("sprite.jpg")).unwrap();
    assert_eq!(
        (sheet.width, sheet.height),
        (Some(800), Some(92)),
        "10 columns of 80x46 (even), 2 rows"
    );
    let vtt_key = &sprite.iter().find(|f| f.key.ends_with("sprite.vtt")).unwrap().key;
    let vtt = text(&stack, vtt_key).await;
    assert!(vtt.starts_with("WEBVTT"));
    assert_eq!(vtt.matches("sprite.jpg#xywh=").count(), 12);
    assert!(vtt.contains("sprite.jpg#xywh=80,46,80,46"), "{vtt}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_portrait_silent_and_audio_only_sources() {
    let stack = spawn_stack("shapes", 1).await;
    let dir = tempfile::tempdir().unwrap();

    // odd dimensions, no audio: even output dimensions, no audio stream
    let odd = dir.path().join("odd.mp4");
    lavfi(
        &odd,
        &["testsrc2=size=333x199:rate=25:duration=1"],
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"],
    );
    let job = run_job(
        &stack,
        &odd,
        "odd.mp4",
        json!([{ "preset": "mp4-720p" }, { "preset": "webm-vp9-720p" }]),
    )
    .await;
    assert_complete(&stack, &job);
    for f in &job.manifest {
        let (w, h) = (f.width.unwrap(), f.height.unwrap());
        assert!(w % 2 == 0 && h % 2 == 0 && h <= 199, "{}: {w}x{h}", f.output);
    }

    // portrait phone video: 1280x720 stored with 90° rotation metadata → upright 720x1280,
    // which is 720p already (the preset bounds the short side): 720x1280
    let upright = dir.path().join("landscape.mp4");
    lavfi(
        &upright,
        &["testsrc2=size=1280x720:rate=25:duration=1"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let rotated = dir.path().join("portrait.mp4");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&upright)
        .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
        .arg(&rotated)
        .output()
        .unwrap();
    assert!(out.status.success());
    let job = run_job(&stack, &rotated, "portrait.mp4", json!([{ "preset": "mp4-720p" }])).await;
    assert_complete(&stack, &job);
    let probe = job.probe.as_ref().unwrap();
    assert_eq!(probe.streams[0].rotation.map(|r| r.abs()), Some(90), "{probe:?}");
    let f = &job.manifest[0];
    assert_eq!(
        (f.width, f.height),
        (Some(720), Some(1280)),
        "portrait kept upright, at 720p"
    );

    // audio only: audio presets work, a video preset is refused with the reason
    let sound = dir.path().join("sound.m4a");
    lavfi(
        &sound,
        &["sine=frequency=220:sample_rate=44100:duration=2"],
        &["-c:a", "aac"],
    );
    let job = run_job(
        &stack,
        &sound,
        "sound.m4a",
        json!([{ "preset": "audio-mp3" }, { "preset": "audio-aac" }]),
    )
    .await;
    assert_complete(&stack, &job);
    assert_eq!(job.manifest.len(), 2);
    let job = run_job(&stack, &sound, "sound2.m4a", json!([{ "preset": "mp4-360p" }])).await;
    assert_eq!(job.state, JobState::Failed);
    let e = job.error.unwrap();
    assert_eq!(e.code, JobErrorCode::MissingStream);
    assert!(e.message.contains("needs video"), "{}", e.message);

    // very short: a quarter of a second
    let short = dir.path().join("short.mp4");
    lavfi(
        &short,
        &["testsrc2=size=320x240:rate=25:duration=0.24", "sine=duration=0.24"],
        &["-c:v", "libx264", "-c:a", "aac", "-shortest"],
    );
    let job = run_job(
        &stack,
        &short,
        "short.mp4",
        json!([{ "preset": "mp4-360p" }, { "preset": "audio-aac" }]),
    )
    .await;
    assert_complete(&stack, &job);
    stack.shutdown().await;
}
