//! Quality scores on the local stack: `quality: true` outputs (a file, an HLS and a DASH
//! ladder) scored by the workers' libvmaf FFmpeg, each rung scaled back up to the
//! source's size. The oracle is the test's own libvmaf run on the file that landed in
//! the outbox. A worker whose FFmpeg has no libvmaf gives PSNR and SSIM and says so.

use aws_sdk_dynamodb::types::AttributeValue;
use nommer_devstack::{media, LocalStack};
use nommer_tests::{assert_complete, run_job, spawn_stack_with};
use serde_json::json;
use std::path::Path;

/// The test's own VMAF of `distorted` against `source`: a file of the source's own size,
/// compared as decoded, with no filter of the worker's.
fn oracle_vmaf(distorted: &Path, source: &Path) -> f64 {
    nommer_tests::bare_vmaf(distorted, source, "")
}

/// Each worker's published capabilities, from its registry item.
async fn published(stack: &LocalStack) -> Vec<bool> {
    let ddb = aws_sdk_dynamodb::Client::new(&stack.direct_config().await);
    let items = ddb
        .scan()
        .table_name(&stack.names.table)
        .filter_expression("begins_with(pk, :w)")
        .expression_attribute_values(":w", AttributeValue::S("worker#".into()))
        .send()
        .await
        .unwrap();
    items
        .items()
        .iter()
        .filter_map(|i| {
            i.get("capabilities")?
                .as_m()
                .ok()?
                .get("libvmaf")?
                .as_bool()
                .ok()
                .copied()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scored_outputs_carry_vmaf_psnr_and_ssim_for_the_file_and_every_rung() {
    let ff = nommer_tests::vmaf_ffmpeg();
    let stack = spawn_stack_with("quality", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), ff.clone());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 4, 640, 360, true).unwrap();
    let outputs = json!([
        { "preset": "mp4-720p", "options": { "quality": true } },
        { "preset": "hls", "options": { "quality": true } },
        { "preset": "dash", "options": { "quality": true } },
        // not asked (and the config's default is off): not scored
        { "preset": "mp4-360p", "name": "plain" },
    ]);
    let job = run_job(&stack, &src, "clip.mp4", outputs).await;
    assert_complete(&stack, &job);

    let of = |output: &str| job.quality.iter().filter(|q| q.output == output).collect::<Vec<_>>();
    assert!(of("plain").is_empty(), "{:?}", job.quality);
    let file = of("mp4-720p");
    assert_eq!(file.len(), 1, "{:?}", job.quality);
    for (name, rungs) in [("hls", of("hls")), ("dash", of("dash"))] {
        let names: Vec<_> = rungs.iter().map(|q| q.rendition.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["360p", "240p"], "{name}: {:?}", job.quality);
        // a smaller rung, scaled back up, scores lower
        let (top, low) = (
            rungs[0].scores.vmaf.as_ref().unwrap(),
            rungs[1].scores.vmaf.as_ref().unwrap(),
        );
        assert!(top.mean > low.mean, "{name}: {} ≤ {}", top.mean, low.mean);
        assert_eq!((rungs[1].width, rungs[1].height), (426, 240), "{name}");
    }
    // the same encodes packaged twice: HLS's joined segments and DASH's score alike
    for (h, d) in of("hls").iter().zip(of("dash")) {
        let (h, d) = (h.scores.vmaf.as_ref().unwrap(), d.scores.vmaf.as_ref().unwrap());
        assert!((h.mean - d.mean).abs() < 0.2, "HLS {} vs DASH {}", h.mean, d.mean);
    }
    for q in &job.quality {
        let v = q.scores.vmaf.as_ref().unwrap_or_else(|| panic!("no VMAF: {q:?}"));
        assert_eq!(v.model, "vmaf_v0.6.1");
        assert_eq!((q.scored_width, q.scored_height), (640, 360), "{q:?}");
        assert!((90..=110).contains(&v.frames), "4 s at 25 fps: {q:?}");
        assert!(
            v.min <= v.p5 && v.p5 <= 100.0 && v.mean > 20.0 && v.mean <= 100.0,
            "{q:?}"
        );
        assert!(q.scores.psnr.unwrap() > 20.0 && q.scores.ssim.unwrap() > 0.5, "{q:?}");
        assert!(q.scores.note.is_none(), "{q:?}");
    }

    // the oracle: the file in the outbox scored by the test's own libvmaf run
    let entry = job.manifest.iter().find(|f| f.output == "mp4-720p").unwrap();
    let path = nommer_tests::download_output(&stack, &entry.key, dir.path()).await;
    let ours = oracle_vmaf(&path, &src);
    let theirs = file[0].scores.vmaf.as_ref().unwrap().mean;
    assert!(
        (ours - theirs).abs() < 0.5,
        "the worker's VMAF {theirs} vs the test's {ours}"
    );

    // the manifest: the file and each variant playlist carry their own, master and MPD all
    assert_eq!(entry.quality.len(), 1);
    let hls_entries: Vec<_> = job.manifest.iter().filter(|f| f.output == "hls").collect();
    let master = hls_entries.iter().find(|f| f.key.ends_with("/master.m3u8")).unwrap();
    assert_eq!(master.quality.len(), 2);
    let variant = hls_entries
        .iter()
        .find(|f| f.key.ends_with("/240p/index.m3u8"))
        .unwrap();
    assert_eq!(variant.quality.len(), 1);
    assert_eq!(variant.quality[0].rendition.as_deref(), Some("240p"));
    let mpd = job.manifest.iter().find(|f| f.output == "dash").unwrap();
    assert_eq!(mpd.quality.len(), 2);

    assert_eq!(published(&stack).await, [true], "the worker publishes libvmaf");
    eprintln!(
        "quality: {}",
        job.quality
            .iter()
            .map(|q| format!(
                "{} {}: VMAF {:.2} (p5 {:.2}), {:.2} s",
                q.output,
                q.rendition.as_deref().unwrap_or("file"),
                q.scores.vmaf.as_ref().unwrap().mean,
                q.scores.vmaf.as_ref().unwrap().p5,
                q.seconds
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_libvmaf_a_worker_gives_psnr_and_ssim_and_says_why_there_is_no_vmaf() {
    // Debian's FFmpeg has no libvmaf
    let stack = spawn_stack_with("quality-nolibvmaf", 1, |o| {
        o.worker_env
            .insert(nommer_core::settings::SCORE_FFMPEG.into(), "ffmpeg".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 2, 320, 180, true).unwrap();
    let job = run_job(
        &stack,
        &src,
        "clip.mp4",
        json!([{ "preset": "mp4-360p", "options": { "quality": true } }]),
    )
    .await;
    assert_complete(&stack, &job);
    assert_eq!(job.quality.len(), 1, "{:?}", job.quality);
    let q = &job.quality[0].scores;
    assert!(q.vmaf.is_none(), "{q:?}");
    assert!(q.psnr.unwrap() > 20.0 && q.ssim.unwrap() > 0.5, "{q:?}");
    let note = q.note.as_deref().unwrap();
    assert!(
        note.contains("no libvmaf") && note.contains("NOMMER_SCORE_FFMPEG"),
        "{note}"
    );
    assert_eq!(published(&stack).await, [false], "the worker publishes no libvmaf");
    stack.shutdown().await;
}
