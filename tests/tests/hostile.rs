//! Hostile sources are refused with a reason, without FFmpeg reading what they point at
//! or opening a connection.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg::{self, Limits};
use nommer_core::{ids, Job, JobState};
use nommer_devstack::media;
use nommer_tests::spawn_stack;
use std::net::TcpListener;
use std::time::Duration;

/// A loopback listener that records whether anything connected.
struct Canary(TcpListener);

impl Canary {
    fn new() -> Canary {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Canary(l)
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.0.local_addr().unwrap())
    }
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("something connected to the canary from {peer}"),
            Err(e) => panic!("canary: {e}"),
        }
    }
}

/// An HLS playlist of one segment, `segment` (a path, a URL or a protocol FFmpeg knows).
fn playlist(segment: &str) -> String {
    format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n")
}

async fn submit_bytes(stack: &nommer_devstack::LocalStack, key: &str, bytes: Vec<u8>) -> Job {
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    o.put_bytes(&stack.names.inbox_bucket, key, bytes, "video/mp4")
        .await
        .unwrap();
    let etag = o
        .head(&stack.names.inbox_bucket, key)
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    let id = ids::for_upload(&stack.names.inbox_bucket, key, &etag);
    ApiClient::new(&stack.api_url)
        .wait(&id, Duration::from_secs(120), |_| {})
        .await
        .unwrap()
}

/// Refused with `reason`, once: a playlist or script by the dispatcher's sniffing before
/// routing (no worker ever downloads it), anything else by the worker on its one attempt.
fn refused(job: &Job, reason: &str, by_dispatch: bool) {
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let e = job.error.as_ref().unwrap();
    assert_eq!(e.code, JobErrorCode::RefusedSource, "{e:?}");
    assert!(e.message.contains(reason), "{} should say {reason:?}", e.message);
    if by_dispatch {
        assert_eq!(job.attempts, 0, "refused before routing: {:#?}", job.history);
        assert!(
            job.history.iter().all(|h| h.state != JobState::Downloading),
            "no worker took it: {:#?}",
            job.history
        );
    } else {
        assert_eq!(job.attempts, 1, "a refusal is final");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_and_concat_scripts_uploaded_as_media_are_refused() {
    let stack = spawn_stack("hostile", 1).await;
    let canary = Canary::new();
    let passwd = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    let job = submit_bytes(&stack, "inbox/mp4-720p/passwd.mp4", passwd.into()).await;
    refused(&job, "HLS playlist", true);

    let remote = format!(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n{}\n#EXT-X-ENDLIST\n",
        canary.url("seg.ts")
    );
    let job = submit_bytes(&stack, "inbox/mp4-720p/remote.mp4", remote.into()).await;
    refused(&job, "HLS playlist", true);

    let concat = format!("ffconcat version 1.0\nfile 'concat:/etc/passwd|{}'\n", canary.url("x"));
    let job = submit_bytes(&stack, "inbox/mp4-720p/concat.mp4", concat.into()).await;
    refused(&job, "concat script", true);

    // a real AVI (made by FFmpeg) with a GAB2 "subtitle file" holding a playlist appended
    let dir = tempfile::tempdir().unwrap();
    let avi = dir.path().join("x.avi");
    nommer_tests::lavfi(&avi, &["testsrc2=size=160x120:duration=1"], &["-c:v", "mjpeg"]);
    let mut bytes = std::fs::read(&avi).unwrap();
    let subtitle = playlist(&canary.url("gab2.ts"));
    let mut chunk = b"02txGAB2\0\x02\x00".to_vec();
    chunk.extend(subtitle.as_bytes());
    bytes.extend(chunk);
    let job = submit_bytes(&stack, "inbox/mp4-720p/movie.avi", bytes).await;
    refused(&job, "embedded subtitle file (GAB2)", false);
    canary.assert_untouched();
    stack.shutdown().await;
}

/// The second line of defence, without the sniffing: FFmpeg itself, run with the
/// worker's input options, refuses playlists and scripts and opens nothing.
#[tokio::test]
async fn ffprobe_with_the_input_guard_opens_nothing_a_playlist_names() {
    let dir = tempfile::tempdir().unwrap();
    let canary = Canary::new();
    let secret = dir.path().join("secret.ts");
    media::generate_clip(&dir.path().join("real.mp4"), 1, 160, 120, false).unwrap();
    std::fs::copy(dir.path().join("real.mp4"), &secret).unwrap();
    let cases = [
        // without the guard, FFmpeg follows this one (checked below)
        ("relative.m3u8", playlist("secret.ts")),
        ("absolute.mp4", playlist(&secret.display().to_string())),
        (
            "local.m3u8",
            format!("#EXTM3U\n#EXTINF:1.0,\nfile://{}\n#EXT-X-ENDLIST\n", secret.display()),
        ),
        ("remote.m3u8", playlist(&canary.url("a.ts"))),
        (
            "concat.m3u8",
            playlist(&format!("concat:{}|{}", secret.display(), canary.url("b.ts"))),
        ),
        (
            "script.txt",
            format!(
                "ffconcat version 1.0\nfile '{}'\nfile '{}'\n",
                secret.display(),
                canary.url("c.ts")
            ),
        ),
    ];
    for (name, body) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = tokio::process::Command::new("ffprobe")
            .args(ffmpeg::probe_args(&path, &Limits::default()))
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: ffprobe accepted it");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("\"codec_type\""),
            "{name}: ffprobe found streams through it: {stdout}"
        );
        assert!(!stderr.is_empty(), "{name}: a reason");
        if name != "local.m3u8" {
            assert!(stderr.contains("not on whitelist"), "{name}: {stderr}");
        }
    }
    canary.assert_untouched();
    // control: the playlist the guard refused is one FFmpeg follows when unguarded
    let plain = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams"])
        .arg(dir.path().join("relative.m3u8"))
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("codec_type=video"),
        "unguarded FFmpeg reads the segment"
    );
    // and the same guard lets a real file through
    let real = dir.path().join("real.mp4");
    let out = tokio::process::Command::new("ffprobe")
        .args(ffmpeg::probe_args(&real, &Limits::default()))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_over_the_limits_are_refused_with_the_limit_named() {
    let stack = nommer_tests::spawn_stack_with("limits", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::MAX_DURATION_SECS.into(), "2".into());
        o.worker_env
            .insert(nommer_core::settings::MAX_PIXELS.into(), (640 * 480).to_string());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.mp4");
    media::generate_clip(&long, 3, 320, 240, true).unwrap();
    let job = submit_bytes(&stack, "inbox/mp4-360p/long.mp4", std::fs::read(&long).unwrap()).await;
    refused(&job, "lasts 3 s; the limit is 2 s", false);
    let big = dir.path().join("big.mp4");
    media::generate_clip(&big, 1, 1280, 720, false).unwrap();
    let job = submit_bytes(&stack, "inbox/mp4-360p/big.mp4", std::fs::read(&big).unwrap()).await;
    refused(&job, "1280x720", false);
    // refused before any encode: never in `encoding`, nothing made
    for j in nommer_tests::all_jobs(&stack).await {
        assert!(
            j.history.iter().all(|h| h.state != JobState::Encoding),
            "{} was encoded: {:#?}",
            j.id,
            j.history
        );
        assert!(j.manifest.is_empty(), "{}: {:?}", j.id, j.manifest);
    }
    let outbox = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .list(&stack.names.outbox_bucket, "")
        .await
        .unwrap();
    assert!(outbox.is_empty(), "nothing reached the outbox: {outbox:?}");
    stack.shutdown().await;
}

/// The encode's own input options (from the real plan), run with the real FFmpeg on
/// playlists that name a local file and a loopback URL: refused, nothing opened, nothing
/// written; without them FFmpeg follows the local one.
#[tokio::test]
async fn the_encode_argv_refuses_playlists_by_itself() {
    use nommer_core::ffmpeg::plan;
    use nommer_core::job::{OutputOptions, Probe, ProbeStream};
    use nommer_core::presets::Catalog;
    let dir = tempfile::tempdir().unwrap();
    let canary = Canary::new();
    media::generate_clip(&dir.path().join("secret.ts"), 1, 160, 120, false).unwrap();
    // what the probe would have said of a real 160x120 clip
    let probe = Probe {
        container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
        duration_seconds: Some(1.0),
        size: 1,
        streams: vec![ProbeStream {
            kind: nommer_core::job::StreamKind::Video,
            codec: "h264".into(),
            width: Some(160),
            height: Some(120),
            ..Default::default()
        }],
        ..Probe::default()
    };
    let catalog = Catalog::builtin();
    let limits = Limits::default();
    let cases = [
        ("local.mp4", playlist("secret.ts")),
        ("remote.mp4", playlist(&canary.url("a.ts"))),
    ];
    let plan_of = |preset: &str, input: &std::path::Path, out_dir: &std::path::Path| {
        plan::plan(&plan::PlanInput {
            preset: catalog.find(preset).unwrap(),
            options: &OutputOptions::default(),
            probe: &probe,
            input,
            watermark: None,
            out_dir,
            stem: "clip",
            limits: &limits,
        })
        .unwrap()
    };
    for (name, body) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, body).unwrap();
        let out_dir = dir.path().join(format!("out-{name}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        for preset in ["mp4-360p", "hls"] {
            let pl = plan_of(preset, &input, &out_dir);
            let out = tokio::process::Command::new("ffmpeg")
                .args(&pl.passes[0])
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}/{preset}: FFmpeg encoded it");
            assert!(stderr.contains("not on whitelist"), "{name}/{preset}: {stderr}");
            let made: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
            assert!(made.is_empty(), "{name}/{preset}: it wrote {made:?}");
        }
        canary.assert_untouched();
        if name == "local.mp4" {
            // control: the same argv without the guard reads the playlist's segment
            let pl = plan_of("mp4-360p", &input, &out_dir);
            let guard = ffmpeg::input_guard(&limits);
            let mut argv = pl.passes[0].clone();
            let at = argv.windows(guard.len()).position(|w| w == guard.as_slice()).unwrap();
            argv.drain(at..at + guard.len());
            let out = tokio::process::Command::new("ffmpeg")
                .args(&argv)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success() && out_dir.join("clip.mp4").is_file(),
                "unguarded FFmpeg follows it: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
