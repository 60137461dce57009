//! Real-world media on the local stack: portrait phone videos, cover art, interlaced,
//! HDR and anamorphic sources, each made with lavfi at test time. Every check reads what
//! FFmpeg made with ffprobe (or FFmpeg's own analysis filters), not what the worker wrote.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::JobState;
use nommer_devstack::media;
use nommer_tests::{assert_complete, lavfi, output_file, run_job, spawn_stack};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Downloads every outbox object under `prefix` into `dir`, keeping the folders below
/// the prefix; returns `dir`.
async fn download_tree(stack: &nommer_devstack::LocalStack, prefix: &str, dir: &Path) -> PathBuf {
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
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
    assert_complete(&stack, &job);
    let out = output_file(&stack, &job, "mp4-720p", dir.path()).await;
    assert_eq!(size_of(&video_of(&out)), (720, 1280), "720p bounds the short side");
    let facts = &job.routing.as_ref().expect("routed").facts;
    assert_eq!(facts.height, Some(720), "routing sees a 720p source: {facts:?}");

    // a ladder: rungs bound the short side, never above the source's (360)
    let small = dir.path().join("small.mp4");
    media::generate_clip(&small, 2, 360, 640, true).unwrap();
    let job = run_job(&stack, &small, "small.mp4", json!([{ "preset": "hls" }])).await;
    assert_complete(&stack, &job);
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
    assert_eq!(e.code, nommer_core::error::JobErrorCode::MissingStream, "{e:?}");
    assert!(
        e.message.contains("needs video") && e.message.contains("cover art"),
        "{}",
        e.message
    );

    // an audio preset works and leaves the picture out
    let job = run_job(&stack, &song, "song2.mp3", json!([{ "preset": "audio-aac" }])).await;
    assert_complete(&stack, &job);
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
    // (a smoothly scrolling pattern: idet reads it cleanly, unlike testsrc2's sharp text)
    let woven = "rgbtestsrc=size=320x240:rate=50:duration=2,scroll=h=0.01:v=0.02,tinterlace=interleave_top";
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
        assert_complete(&stack, &job);
        // the decision is on the job, as GET /jobs/{id} shows it
        let (status, shown) = ApiClient::new(&stack.api_url)
            .request("GET", &format!("/jobs/{}", job.id), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{shown}");
        let i = &shown["probe"]["interlacing"];
        assert_eq!(i["interlaced"], true, "{name}: {}", shown["probe"]);
        assert_eq!(i["detected_by"], by, "{name}: {i}");
        // the oracle: FFmpeg's own detector finds no combing in what came out
        let out = output_file(&stack, &job, "mp4-360p", dir.path()).await;
        // (the source: every frame interlaced)
        let (fields, progressive) = idet_of(&out);
        assert!(
            fields * 10 <= progressive,
            "{name}: the output still looks interlaced ({fields} interlaced, {progressive} progressive frames)"
        );
        assert_eq!(video_of(&out)["field_order"], "progressive", "{name}");
    }
    stack.shutdown().await;
}

/// The mean luma (signalstats YAVG, 0-255 for 8 bits) over a file's frames.
fn mean_luma(path: &Path, extra_filter: &str) -> f64 {
    mean_stat(path, extra_filter, "YAVG")
}

/// The mean over frames of one of `signalstats`' figures (`YAVG`, `SATAVG`).
fn mean_stat(path: &Path, extra_filter: &str, key: &str) -> f64 {
    let filter = format!("{extra_filter}signalstats,metadata=print:key=lavfi.signalstats.{key}:file=-");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vf", &filter, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("lavfi.signalstats.{key}=")[..]))
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(!v.is_empty(), "no frames measured");
    v.iter().sum::<f64>() / v.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr_sources_are_tone_mapped_to_sdr_bt709() {
    let stack = spawn_stack("hdr", 1).await;
    let dir = tempfile::tempdir().unwrap();
    // a 10-bit HEVC PQ/BT.2020 source, as recent phones record
    let hdr = dir.path().join("hdr.mp4");
    lavfi(
        &hdr,
        &["testsrc2=size=320x240:rate=25:duration=1,format=yuv420p10le"],
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "smpte2084",
            "-colorspace",
            "bt2020nc",
            "-x265-params",
            "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
        ],
    );
    let src = video_of(&hdr);
    assert_eq!(
        (src["color_transfer"].as_str(), src["pix_fmt"].as_str()),
        (Some("smpte2084"), Some("yuv420p10le"))
    );
    let job = run_job(
        &stack,
        &hdr,
        "hdr.mp4",
        json!([{ "preset": "mp4-360p" }, { "preset": "webm-vp9-720p" }, { "preset": "hls" }]),
    )
    .await;
    assert_complete(&stack, &job);
    let mp4 = output_file(&stack, &job, "mp4-360p", dir.path()).await;
    let webm = output_file(&stack, &job, "webm-vp9-720p", dir.path()).await;
    let master = job
        .manifest
        .iter()
        .find(|f| f.key.ends_with("/hls/master.m3u8"))
        .unwrap();
    let tree = download_tree(
        &stack,
        master.key.strip_suffix("master.m3u8").unwrap(),
        &dir.path().join("hls"),
    )
    .await;
    for out in [mp4.clone(), webm, tree.join("240p").join("index.m3u8")] {
        let v = video_of(&out);
        let tags = ["color_transfer", "color_primaries", "color_space", "pix_fmt"].map(|k| v[k].as_str());
        assert_eq!(
            tags,
            [Some("bt709"), Some("bt709"), Some("bt709"), Some("yuv420p")],
            "{}: {v}",
            out.display()
        );
    }
    // not washed out: darker and more saturated than squeezing the PQ signal into 8 bits
    // as if it were SDR (which leaves both figures as they were). FFmpeg 5.1.9 and 9.0.2
    // agree on this source: mean luma 113 against 122, saturation 118.5 against 110.3.
    let mapped = mean_luma(&mp4, "");
    let naive = mean_luma(&hdr, "format=yuv420p,");
    assert!(
        mapped > 20.0 && mapped < naive * 0.95,
        "tone-mapped mean luma {mapped:.1}, naive {naive:.1}"
    );
    let (sat, naive_sat) = (
        mean_stat(&mp4, "", "SATAVG"),
        mean_stat(&hdr, "format=yuv420p,", "SATAVG"),
    );
    assert!(
        sat > naive_sat * 1.03,
        "tone-mapped mean saturation {sat:.1}, naive {naive_sat:.1}"
    );
    stack.shutdown().await;
}

/// A stream's sample aspect ratio as a number (absent or 0:1 is square).
fn sar_of(v: &Value) -> f64 {
    match v["sample_aspect_ratio"].as_str() {
        Some(r) if r != "0:1" && r != "N/A" => {
            let (n, d) = r.split_once(':').unwrap();
            n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap()
        }
        _ => 1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anamorphic_sources_keep_their_display_aspect() {
    let stack = spawn_stack("anamorphic", 1).await;
    let dir = tempfile::tempdir().unwrap();
    // 16:9 PAL on 720x576 storage: pixels 64:45 wide
    let src = dir.path().join("pal.mp4");
    lavfi(
        &src,
        &["testsrc2=size=720x576:rate=25:duration=1,setsar=64/45"],
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    );
    let v = video_of(&src);
    let dar = |v: &Value| {
        let (w, h) = size_of(v);
        w as f64 * sar_of(v) / h as f64
    };
    let source_dar = dar(&v);
    assert!((source_dar - 16.0 / 9.0).abs() < 0.01, "{v}");
    let job = run_job(
        &stack,
        &src,
        "pal.mp4",
        json!([{ "preset": "mp4-480p" }, { "preset": "poster" }]),
    )
    .await;
    assert_complete(&stack, &job);
    for (name, size) in [("mp4-480p", (854, 480)), ("poster", (1024, 576))] {
        let out = output_file(&stack, &job, name, dir.path()).await;
        let o = video_of(&out);
        assert!(
            (dar(&o) / source_dar - 1.0).abs() < 0.01,
            "{name}: display aspect {} vs the source's {source_dar}: {o}",
            dar(&o)
        );
        assert_eq!(
            (size_of(&o), sar_of(&o)),
            (size, 1.0),
            "{name}: square pixels at the display size"
        );
    }
    stack.shutdown().await;
}
