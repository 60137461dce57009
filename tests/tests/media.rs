//! Real-world media on the local stack: portrait phone videos, cover art, interlaced,
//! HDR and anamorphic sources, each made with lavfi at test time. Every check reads what
//! FFmpeg made with ffprobe (or FFmpeg's own analysis filters), not what the worker wrote.

use nommer::client::ApiClient;
use nommer::media;
use nommer_shared::objects::S3ObjectStore;
use nommer_shared::JobState;
use nommer_tests::spawn_stack;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs FFmpeg on lavfi inputs; panics with its stderr when it fails.
fn lavfi(path: &Path, inputs: &[&str], extra: &[&str]) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    for i in inputs {
        cmd.args(["-f", "lavfi", "-i", i]);
    }
    cmd.args(extra).arg(path);
    let out = cmd.output().expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn run_job(stack: &nommer::LocalStack, src: &Path, name: &str, outputs: Value) -> nommer_shared::Job {
    let o = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    let key = format!("sources/{name}");
    o.upload_file(&stack.names.inbox_bucket, &key, src, "application/octet-stream")
        .await
        .unwrap();
    let api = ApiClient::new(&stack.api_url);
    let body = json!({ "source": format!("s3://{}/{key}", stack.names.inbox_bucket), "outputs": outputs });
    let (status, job) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    match api
        .wait(job["id"].as_str().unwrap(), Duration::from_secs(300), |_| {})
        .await
    {
        Ok(j) => j,
        Err(e) => panic!("{e:#}\n{}", stack.worker_logs(30)),
    }
}

fn complete(stack: &nommer::LocalStack, job: &nommer_shared::Job) {
    assert_eq!(
        job.state,
        JobState::Complete,
        "{:#?}\n{}",
        job.error,
        stack.worker_logs(30)
    );
}

/// Downloads every outbox object under `prefix` into `dir`, keeping the folders below
/// the prefix; returns `dir`.
async fn download_tree(stack: &nommer::LocalStack, prefix: &str, dir: &Path) -> PathBuf {
    let o = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    let keys = o.list(&stack.names.outbox_bucket, prefix).await.unwrap();
    assert!(!keys.is_empty(), "nothing under {prefix}");
    for (key, _) in keys {
        let p = dir.join(key.strip_prefix(prefix).unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        o.download_to_file(&stack.names.outbox_bucket, &key, &p, None)
            .await
            .unwrap();
    }
    dir.to_path_buf()
}

/// The one output file of output `name`, downloaded.
async fn output_file(stack: &nommer::LocalStack, job: &nommer_shared::Job, name: &str, dir: &Path) -> PathBuf {
    let f = job
        .manifest
        .iter()
        .find(|f| f.output == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest"));
    nommer_tests::download_output(stack, &f.key, dir).await
}

/// ffprobe's first video stream of a file (a playlist of local segments included).
fn video_of(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-protocol_whitelist",
            "file",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .cloned()
        .unwrap_or_else(|| panic!("{} has no video stream: {v}", path.display()))
}

fn size_of(v: &Value) -> (u64, u64) {
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portrait_source_keeps_its_class_in_files_and_ladders() {
    let stack = spawn_stack("portrait", 1).await;
    let dir = tempfile::tempdir().unwrap();

    // a phone video shot upright: 720x1280 is 720p, not a 1280-line source to shrink
    let tall = dir.path().join("tall.mp4");
    media::generate_clip(&tall, 1, 720, 1280, true).unwrap();
    let job = run_job(&stack, &tall, "tall.mp4", json!([{ "preset": "mp4-720p" }])).await;
    complete(&stack, &job);
    let out = output_file(&stack, &job, "mp4-720p", dir.path()).await;
    assert_eq!(size_of(&video_of(&out)), (720, 1280), "720p bounds the short side");
    let facts = &job.routing.as_ref().expect("routed").facts;
    assert_eq!(facts.height, Some(720), "routing sees a 720p source: {facts:?}");

    // a ladder: rungs bound the short side, never above the source's (360)
    let small = dir.path().join("small.mp4");
    media::generate_clip(&small, 2, 360, 640, true).unwrap();
    let job = run_job(&stack, &small, "small.mp4", json!([{ "preset": "hls" }])).await;
    complete(&stack, &job);
    let master = job
        .manifest
        .iter()
        .find(|f| f.key.ends_with("/hls/master.m3u8"))
        .expect("master in the manifest");
    let prefix = master.key.strip_suffix("master.m3u8").unwrap();
    let tree = download_tree(&stack, prefix, &dir.path().join("hls")).await;
    let mut sizes = Vec::new();
    for rendition in ["360p", "240p"] {
        sizes.push(size_of(&video_of(&tree.join(rendition).join("index.m3u8"))));
    }
    assert_eq!(sizes, [(360, 640), (240, 426)], "portrait renditions of 360 and 240");
    assert!(!tree.join("480p").exists(), "no rung above the source");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_art_is_not_video() {
    let stack = spawn_stack("coverart", 1).await;
    let dir = tempfile::tempdir().unwrap();
    // an MP3 with an embedded PNG cover, as taggers write it
    let cover = dir.path().join("cover.png");
    lavfi(&cover, &["testsrc2=size=64x64:rate=1:duration=1"], &["-frames:v", "1"]);
    let song = dir.path().join("song.mp3");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=330:sample_rate=44100:duration=2")
        .arg("-i")
        .arg(&cover)
        .args(["-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "png"])
        .args(["-disposition:v", "attached_pic"])
        .arg(&song)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        video_of(&song)["disposition"]["attached_pic"],
        1,
        "the source has cover art"
    );

    // a video preset: a clear missing_stream, not FFmpeg's codec error
    let job = run_job(&stack, &song, "song.mp3", json!([{ "preset": "mp4-360p" }])).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let e = job.error.as_ref().unwrap();
    assert_eq!(e.code, nommer_shared::error::JobErrorCode::MissingStream, "{e:?}");
    assert!(
        e.message.contains("needs video") && e.message.contains("cover art"),
        "{}",
        e.message
    );

    // an audio preset works and leaves the picture out
    let job = run_job(&stack, &song, "song2.mp3", json!([{ "preset": "audio-aac" }])).await;
    complete(&stack, &job);
    let out = output_file(&stack, &job, "audio-aac", dir.path()).await;
    let probe = media::probe(&out).unwrap();
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["audio"], "{probe}");
    assert_eq!(probe["streams"][0]["codec_name"], "aac");
    stack.shutdown().await;
}

/// idet's multi-frame totals on the first 100 frames of a file: (tff + bff, progressive).
fn idet_of(path: &Path) -> (u64, u64) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-frames:v",
            "100",
            "-vf",
            "idet",
            "-an",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("Multi frame detection:"))
        .unwrap_or_else(|| panic!("no idet verdict: {stderr}"));
    let n = |k: &str| -> u64 {
        let i = line.find(&format!("{k}:")).unwrap() + k.len() + 1;
        line[i..].split_whitespace().next().unwrap().parse().unwrap()
    };
    (n("TFF") + n("BFF"), n("Progressive"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interlaced_sources_are_deinterlaced() {
    let stack = spawn_stack("interlaced", 1).await;
    let dir = tempfile::tempdir().unwrap();
    // 50 fields a second woven into 25 interlaced frames, flagged top field first
    let flagged = dir.path().join("flagged.mp4");
    let woven = "testsrc2=size=320x240:rate=50:duration=2,tinterlace=interleave_top";
    lavfi(
        &flagged,
        &[woven],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-flags",
            "+ildct+ilme",
            "-top",
            "1",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    assert_eq!(video_of(&flagged)["field_order"], "tt");
    // the same pictures in a stream that does not say (MPEG-4 Part 2 in MP4: no field order)
    let unflagged = dir.path().join("unflagged.mp4");
    lavfi(
        &unflagged,
        &[woven],
        &["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"],
    );
    assert!(video_of(&unflagged).get("field_order").is_none(), "no field order");
    for src in [&flagged, &unflagged] {
        let (fields, _) = idet_of(src);
        assert!(fields > 40, "the source really is interlaced: {fields}");
    }

    for (src, by) in [(&flagged, "field_order"), (&unflagged, "idet")] {
        let name = src.file_name().unwrap().to_str().unwrap();
        let job = run_job(&stack, src, name, json!([{ "preset": "mp4-360p" }])).await;
        complete(&stack, &job);
        // the decision is on the job, as GET /jobs/{id} shows it
        let shown = ApiClient::new(&stack.api_url).get_job(&job.id).await.unwrap().unwrap();
        let i = shown
            .probe
            .as_ref()
            .and_then(|p| p.interlacing.as_ref())
            .unwrap_or_else(|| panic!("{name}: no interlacing decision on the job"));
        assert!(i.interlaced, "{name}: {i:?}");
        assert_eq!(i.detected_by, by, "{name}");
        // the oracle: FFmpeg's own detector finds no combing in what came out
        let out = output_file(&stack, &job, "mp4-360p", dir.path()).await;
        // (the source: every frame interlaced; deinterlaced, at most a few frames look combed)
        let (fields, progressive) = idet_of(&out);
        assert!(
            fields * 4 <= progressive,
            "{name}: the output still looks interlaced ({fields} interlaced, {progressive} progressive frames)"
        );
        assert_eq!(video_of(&out)["field_order"], "progressive", "{name}");
    }
    stack.shutdown().await;
}
