//! Scoring a video output against its source with FFmpeg: the argv of one run, in which
//! the output (input 0) and the source (input 1, the output's part of it, through the
//! same deinterlacing, frame-rate cap and colour conversion) are scaled to the score size
//! and compared by libvmaf (per-frame JSON log), then `psnr` and `ssim` (their summaries
//! on stderr), each passing the output's frames on to the next. Without libvmaf it is
//! PSNR and SSIM alone. The readers of the log and of stderr are here too.

use crate::ffmpeg::plan::{reference_chain, window};
use crate::ffmpeg::{input_guard, Limits};
use crate::job::{OutputOptions, Probe};
use crate::quality::{Capabilities, PSNR_IDENTICAL, VMAF_4K_MODEL, VMAF_MODEL};
use std::path::Path;

/// The size a source of displayed size `display` is scored at, and the VMAF model: its
/// own size up to 1080 lines (the short side), 1080 lines above that, and from 1440 lines
/// up its own size up to 2160 lines with the 4K model. Both sides even.
pub fn score_size(display: (u32, u32)) -> ((u32, u32), &'static str) {
    let short = display.0.min(display.1);
    let (target, model) = if short >= 1440 {
        (short.min(2160), VMAF_4K_MODEL)
    } else {
        (short.min(1080), VMAF_MODEL)
    };
    (crate::ffmpeg::plan::output_size(display, target, false), model)
}

/// One scoring run.
pub struct ScoreInput<'a> {
    /// What the fleet made (a file, or a rung's segments joined into one fMP4).
    pub distorted: &'a Path,
    pub source: &'a Path,
    pub probe: &'a Probe,
    /// The output's options (its trim and frame-rate cap apply to the source too).
    pub options: &'a OutputOptions,
    pub caps: Capabilities,
    /// Where libvmaf writes its per-frame log.
    pub vmaf_log: &'a Path,
    pub threads: u32,
    pub limits: &'a Limits,
}

/// The run's argv, the size both pictures are scored at, and the VMAF model (`None`
/// without libvmaf); `None` when the source has no displayed size.
pub fn score_args(inp: &ScoreInput) -> Option<(Vec<String>, (u32, u32), Option<&'static str>)> {
    let display = crate::presets::display_size(inp.probe)?;
    let video = inp.probe.video()?.index;
    let ((w, h), model) = score_size(display);
    let s = |x: &str| x.to_string();
    let mut a = vec![
        s("-hide_banner"),
        s("-nostdin"),
        s("-nostats"),
        s("-loglevel"),
        s("info"),
    ];
    a.extend([s("-protocol_whitelist"), s("file")]);
    a.extend([s("-i"), format!("file:{}", inp.distorted.display())]);
    a.extend(input_guard(inp.limits));
    let (start, dur) = window(inp.options, inp.probe);
    if inp.options.trim.is_some() {
        if start > 0.0 {
            a.extend([s("-ss"), format!("{start:.3}")]);
        }
        if let Some(d) = dur {
            a.extend([s("-t"), format!("{d:.3}")]);
        }
    }
    a.extend([s("-i"), format!("file:{}", inp.source.display())]);
    let reference = reference_chain(inp.probe, inp.options, (w, h));
    // the output is BT.709 (every output is made so): scaled up with no matrix change
    let dist = format!(
        "[0:v:0]scale=w={w}:h={h}:flags=bicubic:in_color_matrix=bt709:in_range=tv:out_color_matrix=bt709:out_range=tv,\
         format=yuv420p,setsar=1,setpts=PTS-STARTPTS[d]"
    );
    let (graph, model) = if inp.caps.libvmaf {
        // quoted for the graph (the path is the worker's own, under its work folder)
        let log = format!("'{}'", inp.vmaf_log.display());
        (
            format!(
                "{dist};[1:{video}]{reference},setpts=PTS-STARTPTS,split=3[r0][r1][r2];\
                 [d][r0]libvmaf=model=version={model}:log_fmt=json:log_path={log}:n_threads={t}[v];\
                 [v][r1]psnr[p];[p][r2]ssim[out]",
                t = inp.threads.max(1)
            ),
            Some(model),
        )
    } else {
        (
            format!(
                "{dist};[1:{video}]{reference},setpts=PTS-STARTPTS,split=2[r0][r1];[d][r0]psnr[p];[p][r1]ssim[out]"
            ),
            None,
        )
    };
    a.extend([
        s("-filter_complex"),
        graph,
        s("-map"),
        s("[out]"),
        s("-f"),
        s("null"),
        s("-"),
    ]);
    Some((a, (w, h), model))
}

/// libvmaf's JSON log: each frame's `vmaf`, in order.
pub fn parse_vmaf_log(json: &str) -> Result<Vec<f64>, String> {
    #[derive(serde::Deserialize)]
    struct Log {
        frames: Vec<Frame>,
    }
    #[derive(serde::Deserialize)]
    struct Frame {
        metrics: Metrics,
    }
    #[derive(serde::Deserialize)]
    struct Metrics {
        vmaf: f64,
    }
    let log: Log = serde_json::from_str(json).map_err(|e| format!("libvmaf's log does not read: {e}"))?;
    if log.frames.is_empty() {
        return Err("libvmaf scored no frames".into());
    }
    Ok(log.frames.into_iter().map(|f| f.metrics.vmaf).collect())
}

/// The number after `key` on the first line of `stderr` that holds `marker`.
fn summary_value(stderr: &str, marker: &str, key: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| l.contains(marker))?;
    let rest = &line[line.find(key)? + key.len()..];
    Some(rest.split_whitespace().next()?.to_string())
}

/// `psnr`'s summary: `PSNR y:… u:… v:… average:38.2 min:… max:…`. Identical pictures
/// (`inf`) read as [`PSNR_IDENTICAL`].
pub fn parse_psnr(stderr: &str) -> Option<f64> {
    let v = summary_value(stderr, "PSNR y:", "average:")?;
    if v == "inf" {
        return Some(PSNR_IDENTICAL);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(|x| crate::quality::round3(x.min(PSNR_IDENTICAL)))
}

/// `ssim`'s summary: `SSIM Y:0.98 (17.9) U:… V:… All:0.985 (18.3)`.
pub fn parse_ssim(stderr: &str) -> Option<f64> {
    summary_value(stderr, "SSIM Y:", "All:")?
        .parse::<f64>()
        .ok()
        .filter(|x| (0.0..=1.0).contains(x))
        .map(|x| (x * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ProbeStream, StreamKind};
    use proptest::prelude::*;

    fn probe(w: u32, h: u32) -> Probe {
        Probe {
            streams: vec![ProbeStream {
                index: 0,
                kind: StreamKind::Video,
                width: Some(w),
                height: Some(h),
                ..Default::default()
            }],
            duration_seconds: Some(10.0),
            ..Default::default()
        }
    }

    #[test]
    fn the_run_scores_the_output_against_its_part_of_the_source() {
        let p = probe(1920, 1080);
        let opts = OutputOptions {
            trim: Some(crate::job::Trim {
                start_seconds: 2.0,
                end_seconds: Some(6.0),
            }),
            max_frame_rate: Some(30.0),
            ..Default::default()
        };
        let inp = ScoreInput {
            distorted: Path::new("/w/out.mp4"),
            source: Path::new("/w/source"),
            probe: &p,
            options: &opts,
            caps: Capabilities {
                libvmaf: true,
                psnr: true,
                ssim: true,
            },
            vmaf_log: Path::new("/w/vmaf.json"),
            threads: 2,
            limits: &Limits::default(),
        };
        let (argv, size, model) = score_args(&inp).unwrap();
        assert_eq!(size, (1920, 1080));
        assert_eq!(model, Some(VMAF_MODEL));
        let joined = argv.join(" ");
        // the trim applies to the source's input, not the output's
        let src = joined.find("-i file:/w/source").unwrap();
        let ss = joined.find("-ss 2.000 -t 4.000").unwrap();
        assert!(ss < src && joined.find("-i file:/w/out.mp4").unwrap() < ss, "{joined}");
        let graph = &argv[argv.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(graph.contains("fps=fps='min(30,source_fps)'"), "{graph}");
        assert!(
            graph.contains("libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path='/w/vmaf.json'"),
            "{graph}"
        );
        assert!(graph.contains("psnr") && graph.contains("ssim"));

        let without = ScoreInput {
            caps: Capabilities {
                libvmaf: false,
                psnr: true,
                ssim: true,
            },
            ..inp
        };
        let (argv, _, model) = score_args(&without).unwrap();
        assert_eq!(model, None);
        assert!(!argv.join(" ").contains("libvmaf"));
    }

    #[test]
    fn sources_are_scored_at_their_size_up_to_1080_lines_and_4k_from_1440() {
        assert_eq!(score_size((1280, 720)), ((1280, 720), VMAF_MODEL));
        assert_eq!(score_size((1920, 1080)), ((1920, 1080), VMAF_MODEL));
        assert_eq!(score_size((2048, 1152)), ((1920, 1080), VMAF_MODEL));
        assert_eq!(score_size((2560, 1440)), ((2560, 1440), VMAF_4K_MODEL));
        assert_eq!(score_size((7680, 4320)), ((3840, 2160), VMAF_4K_MODEL));
        // portrait keeps its class by the short side
        assert_eq!(score_size((1080, 1920)), ((1080, 1920), VMAF_MODEL));
    }

    #[test]
    fn ffmpegs_summaries_read() {
        let err = "[Parsed_psnr_4 @ 0x1] PSNR y:38.123 u:42.0 v:41.9 average:39.004 min:30.1 max:50.2\n\
                   [Parsed_ssim_5 @ 0x2] SSIM Y:0.980123 (17.0) U:0.99 (20.0) V:0.99 (20.0) All:0.985432 (18.3)\n";
        assert_eq!(parse_psnr(err), Some(39.004));
        assert_eq!(parse_ssim(err), Some(0.985432));
        assert_eq!(
            parse_psnr("PSNR y:inf u:inf v:inf average:inf min:inf max:inf"),
            Some(100.0)
        );
        assert_eq!(parse_psnr("nothing"), None);
        assert_eq!(parse_ssim("SSIM Y:1 All:7 (1)"), None);
        let log = r#"{"version":"3","frames":[{"frameNum":0,"metrics":{"vmaf":91.5,"psnr_y":40}},{"frameNum":1,"metrics":{"vmaf":88.25}}],"pooled_metrics":{}}"#;
        assert_eq!(parse_vmaf_log(log).unwrap(), vec![91.5, 88.25]);
        assert!(parse_vmaf_log(r#"{"frames":[]}"#).unwrap_err().contains("no frames"));
        assert!(parse_vmaf_log("{").is_err());
    }

    proptest! {
        #[test]
        fn the_readers_never_panic(s in ".{0,300}") {
            let _ = parse_psnr(&s);
            let _ = parse_ssim(&s);
            let _ = parse_vmaf_log(&s);
        }
    }
}
