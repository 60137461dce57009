//! Split and stitch, the FFmpeg mechanics on their own (no stack): a source cut at its
//! keyframes into pieces, each chunk encoded for a file and a ladder, the audio once,
//! and the outputs stitched, compared with the source and with an unchunked encode by
//! what ffprobe reads from the files FFmpeg made.

use nommer_core::ffmpeg::{plan, Limits};
use nommer_core::job::{OutputSpec, Probe};
use nommer_core::presets::{Catalog, Preset};
use nommer_core::split::Span;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn run(program: &str, args: &[String]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("FFmpeg runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "{program} {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ffprobe(args: &[&str]) -> String {
    run("ffprobe", &args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

/// Every decoded video frame's time, in order.
fn frame_times(path: &Path) -> Vec<f64> {
    let out = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=pts_time",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    out.lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// Each stream's (type, start time).
fn starts(path: &Path) -> Vec<(String, f64)> {
    let out = ffprobe(&[
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,start_time",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    out.lines()
        .filter_map(|l| {
            let (k, t) = l.split_once(',')?;
            Some((k.to_string(), t.parse().ok()?))
        })
        .collect()
}

/// The audio's packets: (first time, count).
fn audio_packets(path: &Path) -> (f64, usize) {
    let out = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "packet=pts_time",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    let times: Vec<f64> = out
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    (times.first().copied().unwrap_or(f64::NAN), times.len())
}

/// The times of the keyframes that start each segment of an HLS rendition, and whether
/// each segment starts with one.
fn hls_segments(dir: &Path) -> Vec<(f64, bool)> {
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    let init = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.split('"').next())
        .unwrap_or_else(|| panic!("no init segment in {playlist}"));
    let init = std::fs::read(dir.join(init)).unwrap();
    playlist
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(|seg| {
            let mut joined = init.clone();
            joined.extend(std::fs::read(dir.join(seg)).unwrap());
            let p = dir.join(format!("{seg}.probe.mp4"));
            std::fs::write(&p, joined).unwrap();
            let out = ffprobe(&[
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts_time,flags",
                "-read_intervals",
                "%+#1",
                "-of",
                "csv=p=0",
                p.to_str().unwrap(),
            ]);
            let (t, flags) = out.lines().next().unwrap().split_once(',').unwrap();
            (t.parse().unwrap(), flags.starts_with('K'))
        })
        .collect()
}

struct Made {
    file: PathBuf,
    hls: PathBuf,
}

fn outputs() -> Vec<(OutputSpec, Preset)> {
    let c = Catalog::builtin();
    ["mp4-360p", "hls"]
        .iter()
        .map(|p| (OutputSpec::new(*p, *p), c.find(p).unwrap().clone()))
        .collect()
}

/// The job encoded whole, as the worker does today.
fn unchunked(src: &Path, probe: &Probe, dir: &Path) -> Made {
    let limits = Limits::default();
    let mut mains = Vec::new();
    for (i, (o, preset)) in outputs().iter().enumerate() {
        let out_dir = dir.join(format!("whole-{i}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let p = plan::plan(&plan::PlanInput {
            preset,
            options: &o.options,
            probe,
            input: src,
            watermark: None,
            out_dir: &out_dir,
            stem: "clip",
            limits: &limits,
        })
        .unwrap();
        for pass in &p.passes {
            run("ffmpeg", pass);
        }
        mains.push(out_dir.join(&p.main));
    }
    Made {
        file: mains[0].clone(),
        hls: dir.join("whole-1"),
    }
}

/// The job split, chunked, its audio encoded once and stitched, by FFmpeg alone.
fn chunked(src: &Path, probe: &Probe, dir: &Path, target: f64) -> (Made, Vec<Span>) {
    let run = nommer_devstack::local_split::timed(false);
    let made = nommer_devstack::local_split::split_and_stitch(src, probe, &outputs(), target, dir, &run).unwrap();
    assert!(made.spans.len() >= 3, "{:?}", made.spans);
    (
        Made {
            file: made.out_dirs[0].join("clip.mp4"),
            hls: made.out_dirs[1].clone(),
        },
        made.spans,
    )
}

#[tokio::test]
async fn a_chunked_encode_matches_the_unchunked_one_frame_for_frame_at_every_seam() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    // keyframes every 48 frames (1.6 s), audio starting a little after the video
    nommer_tests::lavfi(
        &src,
        &[
            "testsrc2=size=640x360:rate=30000/1001",
            "sine=frequency=440:sample_rate=48000",
        ],
        &[
            "-t",
            "26",
            "-c:v",
            "libx264",
            "-g",
            "48",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-af",
            "adelay=40:all=1",
            "-shortest",
        ],
    );
    let size = std::fs::metadata(&src).unwrap().len();
    let prober = nommer_media::FfprobeProber::new("ffprobe", "ffmpeg", Limits::default());
    let probe = prober.probe_file(&src, size).await.unwrap();

    let whole = unchunked(&src, &probe, dir.path());
    let (split, spans) = chunked(&src, &probe, dir.path(), 8.0);

    // the file: the same frames at the same times as the source and the unchunked encode
    let source = frame_times(&src);
    let (a, b) = (frame_times(&whole.file), frame_times(&split.file));
    assert_eq!(
        b.len(),
        source.len(),
        "frames: stitched {} vs source {}",
        b.len(),
        source.len()
    );
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() < 1e-3,
            "frame {k}: unchunked at {x}, stitched at {y} (seams at {spans:?})"
        );
    }
    // audio and video in sync as in the unchunked encode, within a frame
    let offset = |p: &Path| {
        let s = starts(p);
        let v = s.iter().find(|(k, _)| k == "video").unwrap().1;
        let a = s.iter().find(|(k, _)| k == "audio").unwrap().1;
        a - v
    };
    let (ow, os) = (offset(&whole.file), offset(&split.file));
    let (aw, asp) = (audio_packets(&whole.file), audio_packets(&split.file));
    assert_eq!(aw.1, asp.1, "audio packets: unchunked {aw:?}, stitched {asp:?}");
    assert!(
        (aw.0 - asp.0).abs() < 1e-3,
        "audio starts: unchunked {aw:?}, stitched {asp:?}"
    );
    assert!(
        (ow - os).abs() < 1.0 / 29.97,
        "audio starts {os:.3} s after the video stitched, {ow:.3} s unchunked"
    );

    // the ladder: every rung's segments start with a keyframe, where the unchunked ones do
    for rung in ["360p", "240p"] {
        let (w, s) = (hls_segments(&whole.hls.join(rung)), hls_segments(&split.hls.join(rung)));
        assert!(
            s.iter().all(|(_, key)| *key),
            "{rung}: a stitched segment starts without a keyframe: {s:?}"
        );
        assert_eq!(w.len(), s.len(), "{rung}: segments unchunked {w:?} vs stitched {s:?}");
        for ((x, _), (y, _)) in w.iter().zip(&s) {
            assert!(
                (x - y).abs() < 1e-3,
                "{rung}: a segment starts at {y} stitched, {x} unchunked"
            );
        }
    }
}

/// Every object under `prefix` in the outbox, downloaded into `dir` under its path
/// below the prefix.
async fn download_tree(stack: &nommer_devstack::LocalStack, prefix: &str, dir: &Path) {
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    for (key, _) in o.list(&stack.names.outbox_bucket, prefix).await.unwrap() {
        let p = dir.join(key.strip_prefix(prefix).unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        o.download_to_file(&stack.names.outbox_bucket, &key, &p, None)
            .await
            .unwrap();
    }
}

/// VMAF of `distorted` against `reference` (every third frame).
fn vmaf(distorted: &Path, reference: &Path) -> f64 {
    nommer_tests::bare_vmaf(distorted, reference, "n_subsample=3")
}

fn video_bytes(path: &Path) -> f64 {
    let out = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=size",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]);
    out.lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_is_split_across_workers_and_stitched_into_what_an_unchunked_encode_makes() {
    use nommer_core::split::task::{task_names, TaskState};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    // 40 s: a moving pattern, then another scene from 15.3 s, near the 16 s cut's target
    nommer_tests::lavfi(
        &src,
        &[
            "testsrc2=size=640x360:rate=30000/1001",
            "mandelbrot=size=640x360:rate=30000/1001",
            "sine=frequency=440:sample_rate=48000",
        ],
        &[
            "-filter_complex",
            "[0:v]trim=0:15.3,setpts=PTS-STARTPTS[a];[1:v]trim=0:24.7,setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1[v];[2:a]adelay=40:all=1[au]",
            "-map",
            "[v]",
            "-map",
            "[au]",
            "-t",
            "40",
            "-c:v",
            "libx264",
            "-g",
            "48",
            "-bf",
            "2",
            "-c:a",
            "aac",
        ],
    );
    let cfg = dir.path().join("nommer.toml");
    std::fs::write(
        &cfg,
        r#"
[backends.fleet]
kind = "ffmpeg"
split_after_seconds = 20
chunk_seconds = 8

[backends.whole]
kind = "ffmpeg"
split_after_seconds = 0

[routing]
default = "fleet"

[[routing.rules]]
name = "unchunked"
backend = "whole"
match = { metadata = { whole = "yes" } }
"#,
    )
    .unwrap();
    let stack = nommer_tests::spawn_stack_with("split", 2, |o| o.config_path = Some(cfg.clone())).await;
    let objects = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    objects
        .upload_file(&stack.names.inbox_bucket, "sources/long.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let api = nommer::client::ApiClient::new(&stack.api_url);
    let source = format!("s3://{}/sources/long.mp4", stack.names.inbox_bucket);
    let outputs = serde_json::json!([
        {"name": "file", "preset": "mp4-360p"},
        {"name": "ladder", "preset": "hls"},
        {"name": "dash", "preset": "dash"},
    ]);
    let mut ids = Vec::new();
    for meta in [serde_json::json!({}), serde_json::json!({"whole": "yes"})] {
        let body = serde_json::json!({"source": source, "outputs": outputs, "user_metadata": meta});
        let (status, job) = api.create_job(&body, None).await.unwrap();
        assert_eq!(status, 201, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let mut jobs = Vec::new();
    let mut seen = Vec::new();
    for id in &ids {
        let record = |j: &nommer_core::Job| {
            if j.split.is_some() && j.state == nommer_core::JobState::Encoding {
                seen.push(j.progress);
            }
        };
        match api.wait(id, Duration::from_secs(600), record).await {
            Ok(j) => jobs.push(j),
            Err(e) => panic!("{e:#}\n{}", stack.worker_logs(40)),
        }
    }
    let (split, whole) = (&jobs[0], &jobs[1]);
    nommer_tests::assert_complete(&stack, split);
    nommer_tests::assert_complete(&stack, whole);
    assert!(whole.split.is_none(), "the unchunked job was split");
    // progress while the chunks run: the share of chunk-seconds done, never going back
    assert!(
        seen.iter().any(|p| *p > 0 && *p <= 90),
        "no chunk progress seen: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress went back: {seen:?}");
    let plan = split.split.as_ref().expect("the long job was split");
    assert!(plan.chunks.len() >= 4, "{plan:?}");
    // the plan is shown by the API, and its cut near 16 s went to the scene change
    let (_, shown) = api.request("GET", &format!("/jobs/{}", split.id), None).await.unwrap();
    assert_eq!(
        shown["split"]["chunks"].as_array().map(Vec::len),
        Some(plan.chunks.len()),
        "{shown}"
    );
    assert!(
        plan.chunks.iter().any(|c| (c.start - 15.3153).abs() < 0.034),
        "no cut at the scene change (15.3 s): {plan:?}"
    );
    // every task done, and the scratch cleared
    let tasks = nommer_aws::tasks::DynamoTaskStore::new(
        nommer_aws::sdk::dynamodb_client(&stack.direct_config().await),
        &stack.names.table,
    );
    // (the stitch's own task ends just after the job it completed)
    let started = std::time::Instant::now();
    loop {
        let all = tasks.all(&split.id, &task_names(plan)).await.unwrap();
        if all.len() == task_names(plan).len() && all.iter().all(|t| t.state == TaskState::Done) {
            break;
        }
        let states: Vec<String> = all.iter().map(|t| format!("{}: {:?}", t.name, t.state)).collect();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not every task of the split job is done: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = objects
        .list(
            &stack.names.outbox_bucket,
            &nommer_core::split::scratch_key(&split.id, ""),
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "scratch left behind: {left:?}");

    // the file: the same frames at the same times, in sync, the same size within 3 %,
    // and the same quality within half a VMAF point
    let a = nommer_tests::output_file(&stack, split, "file", dir.path()).await;
    let b = nommer_tests::output_file(&stack, whole, "file", dir.path()).await;
    let (fa, fb) = (frame_times(&a), frame_times(&b));
    assert_eq!(fa.len(), fb.len(), "frames: split {} vs whole {}", fa.len(), fb.len());
    assert_eq!(
        fa.len(),
        frame_times(&src).len(),
        "frames lost or doubled against the source"
    );
    for (k, (x, y)) in fa.iter().zip(&fb).enumerate() {
        assert!(
            (x - y).abs() < 1e-3,
            "frame {k}: split at {x}, whole at {y} (seams at {:?})",
            plan.chunks
        );
    }
    let offset = |p: &Path| {
        let s = starts(p);
        s.iter().find(|(k, _)| k == "audio").unwrap().1 - s.iter().find(|(k, _)| k == "video").unwrap().1
    };
    assert!(
        (offset(&a) - offset(&b)).abs() < 1.0 / 29.97,
        "audio/video offset split {} vs whole {}",
        offset(&a),
        offset(&b)
    );
    assert_eq!(
        audio_packets(&a),
        audio_packets(&b),
        "the audio is not the unchunked one's"
    );
    let (ba, bb) = (video_bytes(&a), video_bytes(&b));
    assert!((ba / bb - 1.0).abs() <= 0.03, "video bytes split {ba} vs whole {bb}");
    let (va, vb) = (vmaf(&a, &src), vmaf(&b, &src));
    assert!((va - vb).abs() <= 0.5, "VMAF split {va:.2} vs whole {vb:.2}");

    // the ladder: every segment of every rung starts with a keyframe, where the
    // unchunked one's do
    let (la, lb) = (dir.path().join("ladder-split"), dir.path().join("ladder-whole"));
    download_tree(&stack, &format!("{}/ladder/", split.id), &la).await;
    download_tree(&stack, &format!("{}/ladder/", whole.id), &lb).await;
    for rung in ["360p", "240p"] {
        let (sa, sb) = (hls_segments(&la.join(rung)), hls_segments(&lb.join(rung)));
        assert!(
            sa.iter().all(|(_, k)| *k),
            "{rung}: a segment starts without a keyframe: {sa:?}"
        );
        assert_eq!(sa.len(), sb.len(), "{rung}: segments split {sa:?} vs whole {sb:?}");
        for ((x, _), (y, _)) in sa.iter().zip(&sb) {
            assert!((x - y).abs() < 1e-3, "{rung}: a segment starts at {x} split, {y} whole");
        }
    }
    // DASH: the same segments in the MPD's timeline as the unchunked encode's
    let (da, db) = (dir.path().join("dash-split"), dir.path().join("dash-whole"));
    download_tree(&stack, &format!("{}/dash/", split.id), &da).await;
    download_tree(&stack, &format!("{}/dash/", whole.id), &db).await;
    let timeline = |d: &Path| {
        let mpd = std::fs::read_to_string(d.join("manifest.mpd")).unwrap();
        mpd.lines()
            .filter(|l| l.trim_start().starts_with("<S "))
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(timeline(&da), timeline(&db), "the DASH segment timelines differ");
    eprintln!(
        "split: {} chunks; VMAF split {va:.2} vs whole {vb:.2}; video bytes ratio {:.4}",
        plan.chunks.len(),
        ba / bb
    );
    stack.shutdown().await;
}
