//! Per-title ladders on the local stack (`hls-auto`): the same preset on a still picture
//! and on heavy noise. The oracle for the rates is the outbox itself: each rendition's
//! bytes as S3 lists them, over the source's duration as ffprobe reads it. The still
//! picture must get no more bits than the noise at any rung, under half at the top, and
//! measure as less complex; every chosen rung is measured whole after the encode, close
//! to the VMAF its trials predicted. Without libvmaf the job fails and says what to
//! install.

use nommer_devstack::LocalStack;
use nommer_tests::{assert_complete, run_job, spawn_stack_with};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A 6 s 640x360 source with a tone, its picture from `lavfi`.
fn source(path: &Path, picture: &str) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(picture)
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6"])
        .args(["-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Each rung's bit rate in kbit/s as the outbox holds it: the bytes of its folder's
/// objects over the source's seconds.
async fn stored_kbps(stack: &LocalStack, job: &nommer_core::Job, rung: u32, seconds: f64) -> f64 {
    let s3 = aws_sdk_s3::Client::new(&stack.direct_config().await);
    let master = job
        .manifest
        .iter()
        .find(|f| f.key.ends_with("/master.m3u8"))
        .expect("a master playlist");
    let prefix = format!("{}/{rung}p/", master.key.trim_end_matches("/master.m3u8"));
    let listed = s3
        .list_objects_v2()
        .bucket(&stack.names.outbox_bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let bytes: i64 = listed
        .contents()
        .iter()
        .filter(|o| o.key().is_some_and(|k| k.ends_with(".m4s") || k.ends_with(".mp4")))
        .map(|o| o.size().unwrap_or(0))
        .sum();
    assert!(bytes > 0, "no segments under {prefix}");
    bytes as f64 * 8.0 / 1000.0 / seconds
}

fn duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_picture_gets_fewer_bits_than_noise_at_each_rung_and_the_ladder_says_why() {
    let ff = nommer_tests::vmaf_ffmpeg();
    let stack = spawn_stack_with("pertitle", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), ff.clone());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let still = dir.path().join("still.mp4");
    let noise = dir.path().join("noise.mp4");
    source(&still, "smptehdbars=size=640x360:rate=25:duration=6");
    source(
        &noise,
        "testsrc2=size=640x360:rate=25:duration=6,noise=alls=40:allf=t+u",
    );

    let mut found = Vec::new();
    for (name, src) in [("still", &still), ("noise", &noise)] {
        let job = run_job(&stack, src, &format!("{name}.mp4"), json!([{ "preset": "hls-auto" }])).await;
        assert_complete(&stack, &job);
        assert_eq!(job.per_title.len(), 1, "{name}: {:?}", job.per_title);
        let rec = job.per_title[0].clone();
        assert_eq!(rec.output, "hls-auto");
        // a 6 s source is sampled whole; two rungs fit a 360p source, three trials each
        assert_eq!((rec.samples, rec.trials), (1, 6), "{name}: {rec:?}");
        assert!(rec.rungs.len() + rec.dropped.len() == 2, "{name}: {rec:?}");
        for c in &rec.rungs {
            let measured = c
                .measured_vmaf
                .unwrap_or_else(|| panic!("{name}: {}p not measured", c.height));
            assert!(
                (measured - c.predicted_vmaf).abs() < 6.0,
                "{name} {}p: measured {measured:.2}, predicted {:.2}",
                c.height,
                c.predicted_vmaf
            );
            // the scores the job carries are of the rungs as made
            let q = job
                .quality
                .iter()
                .find(|q| q.rendition.as_deref() == Some(&format!("{}p", c.height)))
                .unwrap_or_else(|| panic!("{name}: {}p has no scores: {:?}", c.height, job.quality));
            assert_eq!(q.scores.vmaf.as_ref().map(|v| v.mean), Some(measured));
        }
        let secs = duration(src);
        let mut rates = Vec::new();
        for c in &rec.rungs {
            rates.push((c.height, c.kbps, stored_kbps(&stack, &job, c.height, secs).await));
        }
        found.push((name, rec, rates));
    }
    eprintln!("per-title: {found:#?}");
    let (_, still_rec, still_rates) = &found[0];
    let (_, noise_rec, noise_rates) = &found[1];
    assert!(
        still_rec.complexity_bpp * 3.0 < noise_rec.complexity_bpp,
        "the still picture measures simpler: {} vs {}",
        still_rec.complexity_bpp,
        noise_rec.complexity_bpp
    );
    // in the bytes the outbox holds: the still picture never more than the noise at any
    // rung, and at the top rung (above its floor for the noise) under half
    for (h, _, noise_stored) in noise_rates {
        if let Some((_, chosen, stored)) = still_rates.iter().find(|r| r.0 == *h) {
            assert!(
                stored <= noise_stored,
                "{h}p: the still picture holds {stored:.0} kbit/s (chose {chosen}), the noise {noise_stored:.0}"
            );
        }
    }
    let top = |rates: &Vec<(u32, u32, f64)>| rates.iter().max_by_key(|r| r.0).map(|r| r.2).unwrap();
    assert!(
        top(still_rates) * 2.0 < top(noise_rates),
        "top rung: still {:.0} kbit/s, noise {:.0}",
        top(still_rates),
        top(noise_rates)
    );
    let goals = nommer_core::per_title::PerTitle::default_goals();
    for (h, chosen, _) in noise_rates {
        let g = goals.goal(*h).unwrap();
        assert!(*chosen >= g.min_kbps && *chosen <= g.max_kbps, "{h}p at {chosen}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_libvmaf_a_vmaf_output_fails_on_the_worker_then_at_dispatch_saying_what_to_set() {
    // Debian's FFmpeg has no libvmaf; no worker yet, so dispatch cannot know
    let mut stack = spawn_stack_with("pertitle-novmaf", 0, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), "ffmpeg".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    nommer_devstack::media::generate_clip(&src, 2, 320, 240, true).unwrap();
    let objects = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    objects
        .upload_file(&stack.names.inbox_bucket, "sources/clip.mp4", &src, "video/mp4")
        .await
        .unwrap();
    let api = nommer::client::ApiClient::new(&stack.api_url);
    let inbox = stack.names.inbox_bucket.clone();
    let body =
        |preset: &str| json!({ "source": format!("s3://{inbox}/sources/clip.mp4"), "outputs": [{ "preset": preset }] });
    let (status, job) = api.create_job(&body("hls-auto"), None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let queued = nommer_tests::eventually(Duration::from_secs(60), "the job queued", || async {
        api.get_job(&id)
            .await
            .unwrap()
            .filter(|j| j.state == nommer_core::JobState::Queued)
    })
    .await;
    assert_eq!(queued.routing.unwrap().facts.fleet_libvmaf, None, "no worker was live");
    // the worker that takes it has no libvmaf, and no other worker has: it fails, before
    // any download, saying what to set
    stack.spawn_worker().await.unwrap();
    let failed = api.wait(&id, Duration::from_secs(120), |_| {}).await.unwrap();
    assert_eq!(failed.state, nommer_core::JobState::Failed, "{failed:?}");
    let err = failed.error.expect("an error");
    assert!(
        err.message.contains("no libvmaf") && err.message.contains("NOMMER_SCORE_FFMPEG"),
        "{}",
        err.message
    );
    assert!(
        !failed
            .history
            .iter()
            .any(|h| h.state == nommer_core::JobState::Encoding),
        "nothing was encoded: {:?}",
        failed.history
    );
    // now its heartbeat says so: the next such job is refused at dispatch, each backend
    // named with its reason
    let (status, job) = api.create_job(&body("mp4-auto"), None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    let refused = api
        .wait(job["id"].as_str().unwrap(), Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let err = refused.error.expect("an error");
    assert_eq!(err.code, nommer_core::JobErrorCode::NoBackend, "{}", err.message);
    assert!(
        err.message.contains("libvmaf") && err.message.contains("NOMMER_SCORE_FFMPEG"),
        "{}",
        err.message
    );
    assert!(refused.worker.is_none(), "no worker took it");
    stack.shutdown().await;
}

/// The CRF x264 wrote into its own SEI options string (`crf=27.0`).
fn x264_crf(path: &Path) -> Option<f64> {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"crf=")?;
    let tail: String = bytes[at + 4..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    tail.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmaf_target_finds_the_crf_that_reaches_it_and_the_file_made_at_it_does() {
    let ff = nommer_tests::vmaf_ffmpeg();
    let stack = spawn_stack_with("crfsearch", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), ff.clone());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let still = dir.path().join("still.mp4");
    let busy = dir.path().join("busy.mp4");
    source(&still, "smptehdbars=size=640x360:rate=25:duration=6");
    source(&busy, "testsrc2=size=640x360:rate=25:duration=6,noise=alls=12:allf=t+u");
    let mut found = Vec::new();
    for (name, src) in [("still", &still), ("busy", &busy)] {
        let job = run_job(&stack, src, &format!("{name}.mp4"), json!([{ "preset": "mp4-auto" }])).await;
        assert_complete(&stack, &job);
        assert_eq!(job.target_vmaf.len(), 1, "{name}: {:?}", job.target_vmaf);
        let rec = job.target_vmaf[0].clone();
        assert!(rec.reached, "{name}: {rec:?}");
        assert!(rec.trials.len() <= nommer_core::target_vmaf::MAX_TRIALS, "{rec:?}");
        assert!(rec.crf >= rec.crf_range[0] && rec.crf <= rec.crf_range[1], "{rec:?}");
        assert!(rec.predicted_vmaf >= rec.target_vmaf, "{rec:?}");
        let file = nommer_tests::output_file(&stack, &job, "mp4-auto", dir.path()).await;
        // the encoder's own record of the CRF it was given
        assert_eq!(x264_crf(&file), Some(f64::from(rec.crf)), "{name}: {rec:?}");
        // the file as made, scored by a bare libvmaf run of the test's own against the
        // source: it reaches the target (a point's slack for the whole against samples)
        let bare = nommer_tests::bare_vmaf(&file, src, "");
        assert!(
            bare >= rec.target_vmaf - 1.0,
            "{name}: VMAF {bare:.2} for target {}: {rec:?}",
            rec.target_vmaf
        );
        let measured = rec.measured_vmaf.expect("the file is scored whole");
        assert!(
            (measured - bare).abs() < 1.5,
            "{name}: the job says {measured:.2}, libvmaf {bare:.2}"
        );
        found.push((name, rec, std::fs::metadata(&file).unwrap().len()));
    }
    eprintln!("crf search: {found:#?}");
    let (_, still_rec, still_bytes) = &found[0];
    let (_, busy_rec, busy_bytes) = &found[1];
    assert!(
        still_rec.crf > busy_rec.crf,
        "the still picture takes a higher CRF: {still_rec:?} {busy_rec:?}"
    );
    assert!(
        still_bytes < busy_bytes,
        "and fewer bytes: {still_bytes} against {busy_bytes}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dash_auto_ladder_is_shaped_measured_and_its_mpd_lists_just_the_rungs_chosen() {
    let ff = nommer_tests::vmaf_ffmpeg();
    let stack = spawn_stack_with("dashauto", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), ff.clone());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("busy.mp4");
    source(&src, "testsrc2=size=640x360:rate=25:duration=6");
    let job = run_job(&stack, &src, "busy.mp4", json!([{ "preset": "dash-auto" }])).await;
    assert_complete(&stack, &job);
    let rec = job.per_title.first().expect("a per_title record").clone();
    assert_eq!(rec.output, "dash-auto");
    assert!(!rec.rungs.is_empty(), "{rec:?}");
    for c in &rec.rungs {
        assert!(c.measured_vmaf.is_some(), "{}p not measured: {rec:?}", c.height);
    }
    let mpd = job
        .manifest
        .iter()
        .find(|f| f.key.ends_with("manifest.mpd"))
        .expect("an MPD");
    let path = nommer_tests::download_output(&stack, &mpd.key, dir.path()).await;
    let text = std::fs::read_to_string(path).unwrap();
    // the MPD's video representations are the rungs chosen, no more
    let heights: Vec<u32> = text
        .split("<Representation")
        .skip(1)
        .filter_map(|r| {
            let h = r.split("height=\"").nth(1)?;
            h.split('"').next()?.parse().ok()
        })
        .collect();
    let mut chosen: Vec<u32> = rec.rungs.iter().map(|c| c.height).collect();
    let mut listed = heights.clone();
    chosen.sort();
    listed.sort();
    assert_eq!(listed, chosen, "the MPD lists {heights:?}: {rec:?}");
    stack.shutdown().await;
}
