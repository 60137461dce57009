//! Split and stitch, the FFmpeg mechanics on their own (no stack): a source cut at its
//! keyframes into pieces, each chunk encoded for a file and a ladder, the audio once,
//! and the outputs stitched, compared with the source and with an unchunked encode by
//! what ffprobe reads from the files FFmpeg made.

use nommer_core::ffmpeg::{plan, split as sx, Limits};
use nommer_core::job::{OutputSpec, Probe};
use nommer_core::presets::{Catalog, Preset};
use nommer_core::split::{cuts, Span};
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The job split, chunked, its audio encoded once and stitched.
fn chunked(src: &Path, probe: &Probe, dir: &Path, target: f64) -> (Made, Vec<Span>) {
    let limits = Limits::default();
    let outs = outputs();
    let video = probe.video().unwrap().index;
    let keys = sx::parse_keyframes(&run("ffprobe", &sx::keyframe_args(src, video, &limits)));
    let duration = probe.duration_seconds.unwrap();
    let spans = cuts::cut(&keys.times, duration, target, &[]);
    assert!(spans.len() >= 3, "{spans:?}");
    let starts_of = sx::parse_stream_starts(&run("ffprobe", &sx::stream_start_args(src, &limits)));
    let audio_index = probe
        .streams
        .iter()
        .find(|s| s.kind == nommer_core::job::StreamKind::Audio)
        .unwrap()
        .index;
    let audio_offset = starts_of.iter().find(|(i, _)| *i == audio_index).unwrap().1 - keys.start;

    let work = dir.join("chunks");
    std::fs::create_dir_all(&work).unwrap();
    for (k, span) in spans.iter().enumerate() {
        let piece = work.join(format!("piece-{k}.mkv"));
        // through the keyframe after the chunk's end, for leading frames of an open GOP
        let to = keys
            .times
            .iter()
            .find(|t| **t > span.end + 1e-6)
            .map(|t| keys.start + t);
        let to = if k + 1 == spans.len() { None } else { to };
        run(
            "ffmpeg",
            &sx::piece_args(src, video, keys.start + span.start, to, &piece, &limits),
        );
        let out_dir = work.join(format!("chunk-{k}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let cp = plan::chunk(&plan::ChunkInput {
            outputs: &outs,
            probe,
            piece: &piece,
            span: *span,
            origin: keys.start,
            first: k == 0,
            last: k + 1 == spans.len(),
            segment: Some(4.0),
            out_dir: &out_dir,
            limits: &limits,
        })
        .unwrap();
        run("ffmpeg", &cp.argv);
        assert_eq!(
            cp.files.len(),
            1 + 2,
            "the file and the ladder's two rungs for 360 lines: {:?}",
            cp.files
        );
    }
    let whole_audio = work.join("audio.mka");
    run("ffmpeg", &sx::audio_args(src, audio_index, &whole_audio, &limits));
    let mut mains = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        let audio = work.join(format!("audio-{i}.mka"));
        run("ffmpeg", &plan::audio_plan(out, &whole_audio, &audio, &limits).unwrap());
        let out_dir = dir.join(format!("stitched-{i}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let rungs = if i == 0 { vec![None] } else { vec![Some(0), Some(1)] };
        let lists: Vec<PathBuf> = rungs
            .iter()
            .map(|r| {
                let files: Vec<(String, Span)> = spans
                    .iter()
                    .enumerate()
                    .map(|(k, s)| (format!("chunk-{k}/{}", plan::chunk_file_name(i, *r)), *s))
                    .collect();
                let list = work.join(format!("list-{i}-{r:?}.txt"));
                std::fs::write(&list, plan::concat_list(&files)).unwrap();
                list
            })
            .collect();
        let argv = plan::stitch(&plan::StitchInput {
            output: out,
            probe,
            lists,
            audio: Some((audio, audio_offset)),
            out_dir: &out_dir,
            stem: "clip",
        })
        .unwrap();
        run("ffmpeg", &argv);
        mains.push(out_dir.join("clip.mp4"));
    }
    (
        Made {
            file: mains[0].clone(),
            hls: dir.join("stitched-1"),
        },
        spans,
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
