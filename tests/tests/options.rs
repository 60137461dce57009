//! Output options and the config file, end to end: trim, frame-rate cap, two-pass at a
//! bit rate, loudness normalisation, a watermark, allow-listed advanced flags, a preset
//! and an output naming template from the config file.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_devstack::media;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ffmpeg(args: &[&str]) -> std::process::Output {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Integrated loudness (LUFS) of a file, measured by FFmpeg's EBU R128 meter.
fn loudness(path: &Path) -> f64 {
    let out = ffmpeg(&["-i", path.to_str().unwrap(), "-af", "ebur128", "-f", "null", "-"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = err.rsplit("Summary:").next().unwrap();
    let line = summary.lines().find(|l| l.trim_start().starts_with("I:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Average RGB of a rectangle of the first frame.
fn average_rgb(path: &Path, crop: &str) -> [u8; 3] {
    let out = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-frames:v",
        "1",
        "-vf",
        &format!("crop={crop},scale=1:1:flags=area"),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    [out.stdout[0], out.stdout[1], out.stdout[2]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_options_shape_each_output() {
    let stack = nommer_tests::spawn_stack("options", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("talk.mp4");
    media::generate_clip(&src, 4, 640, 360, true).unwrap();
    let logo = dir.path().join("logo.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x64",
        "-frames:v",
        "1",
        logo.to_str().unwrap(),
    ]);
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let inbox = &stack.names.inbox_bucket;
    o.upload_file(inbox, "sources/talk.mp4", &src, "video/mp4")
        .await
        .unwrap();
    o.upload_file(inbox, "assets/logo.png", &logo, "image/png")
        .await
        .unwrap();

    let body = json!({
        "source": format!("s3://{inbox}/sources/talk.mp4"),
        "outputs": [
            { "preset": "mp4-360p", "name": "clip", "options": { "trim": { "start_seconds": 1, "end_seconds": 3 }, "max_frame_rate": 10 } },
            { "preset": "mp4-360p", "name": "two-pass", "options": { "two_pass": true, "video_bitrate_kbps": 300 } },
            { "preset": "audio-aac", "name": "loud", "options": { "loudness": { "integrated_lufs": -16 } } },
            { "preset": "mp4-360p", "name": "marked", "options": { "watermark": { "image": format!("s3://{inbox}/assets/logo.png"), "corner": "bottom_right", "width_fraction": 0.25 } } },
            { "preset": "mp4-360p", "name": "tagged", "options": { "advanced": [{ "output": ["-tune", "film", "-metadata", "title=Nommer test"] }] } }
        ]
    });
    let api = ApiClient::new(&stack.api_url);
    let (status, created) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["outputs"][0]["options"]["trim"]["end_seconds"], 3.0,
        "options are stored on the job"
    );
    let job = api
        .wait(created["id"].as_str().unwrap(), Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    nommer_tests::assert_complete(&stack, &job);
    let key = |name: &str| job.manifest.iter().find(|f| f.output == name).unwrap().key.clone();

    let clip = nommer_tests::download_output(&stack, &key("clip"), dir.path()).await;
    let p = media::probe(&clip).unwrap();
    let d: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((d - 2.0).abs() < 0.3, "trimmed to 2 s: {d}");
    let v = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap();
    assert_eq!(v["avg_frame_rate"], "10/1", "25 fps capped at 10");

    let two = job.manifest.iter().find(|f| f.output == "two-pass").unwrap();
    assert!(
        two.bit_rate.unwrap() < 600_000,
        "near the 300 kbit/s asked for: {:?}",
        two.bit_rate
    );

    let loud = nommer_tests::download_output(&stack, &key("loud"), dir.path()).await;
    let lufs = loudness(&loud);
    assert!((lufs - -16.0).abs() < 1.5, "normalised to -16 LUFS: {lufs}");
    let before = loudness(&src);
    assert!((before - lufs).abs() > 3.0, "the source was at {before} LUFS");

    let marked = nommer_tests::download_output(&stack, &key("marked"), dir.path()).await;
    let [r, g, b] = average_rgb(&marked, "80:80:500:220");
    assert!(
        r > 200 && g < 60 && b < 60,
        "the red mark is in the bottom-right corner: {r},{g},{b}"
    );
    let [r, g, b] = average_rgb(&marked, "80:80:120:200");
    assert!(
        !(r > 200 && g < 60 && b < 60),
        "and not elsewhere (the green bar): {r},{g},{b}"
    );

    let tagged = nommer_tests::download_output(&stack, &key("tagged"), dir.path()).await;
    assert_eq!(media::probe(&tagged).unwrap()["format"]["tags"]["title"], "Nommer test");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_adds_presets_and_names_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nommer.toml");
    std::fs::write(
        &config,
        r#"
[outputs]
key_template = "renditions/{source_stem}/{job_id}/{output_name}"

[presets.mp4-200p]
description = "tiny MP4 for previews"
kind = "file"
container = "mp4"
video = { codec = "h264", max_height = 200, crf = 28, max_bitrate_kbps = 400 }
audio = { codec = "aac", bitrate_kbps = 64 }
"#,
    )
    .unwrap();
    let stack = nommer_tests::spawn_stack_with("config", 1, |o| {
        o.config_path = Some(config);
    })
    .await;
    let src = dir.path().join("my clip.mp4");
    media::generate_clip(&src, 2, 640, 360, true).unwrap();
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    o.upload_file(&stack.names.inbox_bucket, "sources/my clip.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let api = ApiClient::new(&stack.api_url);
    let body =
        json!({ "source": format!("s3://{}/sources/my clip.mp4", stack.names.inbox_bucket), "preset": "mp4-200p" });
    let (status, created) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let job = api.wait(id, Duration::from_secs(120), |_| {}).await.unwrap();
    nommer_tests::assert_complete(&stack, &job);
    let f = &job.manifest[0];
    assert_eq!(f.key, format!("renditions/my_clip/{id}/mp4-200p/my_clip.mp4"));
    assert_eq!(f.height, Some(200));
    stack.shutdown().await;
}
