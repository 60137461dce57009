//! Split and stitch with FFmpeg alone on this machine, through the builders the worker
//! runs (`nommer_core::ffmpeg::split`, `plan::chunk`, `plan::audio_plan`,
//! `plan::stitch`), with no stack: the mechanics test compares what it makes with an
//! unchunked encode, and the split simulation times each step.

use anyhow::Context;
use nommer_core::ffmpeg::{plan, split as sx, Limits};
use nommer_core::job::{OutputSpec, Probe, StreamKind};
use nommer_core::presets::{ladder_for, short_side, Preset, PresetKind};
use nommer_core::split::{cuts, Span};
use std::path::{Path, PathBuf};

/// Runs a program (`ffmpeg` or `ffprobe`) with these arguments; returns its stdout and
/// the seconds it took.
pub type Runner<'a> = &'a dyn Fn(&str, &[String]) -> anyhow::Result<(String, f64)>;

/// What a local split and stitch made, and what each step took.
#[derive(Debug)]
pub struct Stitched {
    pub spans: Vec<Span>,
    /// Each output's folder.
    pub out_dirs: Vec<PathBuf>,
    /// Seconds: the split (packets read, pieces cut, audio taken out), every chunk, the
    /// audio's encodes, the stitches.
    pub split: f64,
    pub chunks: f64,
    pub audio: f64,
    pub stitch: f64,
    /// Bytes of every chunk file (what chunk tasks upload and the stitch fetches).
    pub chunk_bytes: u64,
}

/// Splits `src` near every `target` seconds, encodes each chunk for `outputs` and the
/// audio once, and stitches each output into `dir/stitched-<i>`.
pub fn split_and_stitch(
    src: &Path,
    probe: &Probe,
    outputs: &[(OutputSpec, Preset)],
    target: f64,
    dir: &Path,
    run: Runner,
) -> anyhow::Result<Stitched> {
    let limits = Limits::default();
    let video = probe.video().context("the source has no video")?.index;
    let (keys_out, mut split) = run("ffprobe", &sx::keyframe_args(src, video, &limits))?;
    let keys = sx::parse_keyframes(&keys_out);
    let duration = probe.duration_seconds.context("the source has no duration")?;
    let spans = cuts::cut(&keys.times, duration, target, &[]);
    let segment = outputs.iter().find_map(|(_, p)| match &p.kind {
        PresetKind::Ladder { segment_seconds, .. } => Some(f64::from(*segment_seconds)),
        _ => None,
    });
    let work = dir.join("chunks");
    std::fs::create_dir_all(&work)?;
    let mut pieces = Vec::new();
    for (k, span) in spans.iter().enumerate() {
        let piece = work.join(format!("piece-{k}.mkv"));
        // through the keyframe after the chunk's end, for an open GOP's leading frames
        let to = (k + 1 < spans.len())
            .then(|| {
                keys.times
                    .iter()
                    .find(|t| **t > span.end + 1e-6)
                    .map(|t| keys.start + t)
            })
            .flatten();
        split += run(
            "ffmpeg",
            &sx::piece_args(src, video, keys.start + span.start, to, &piece, &limits),
        )?
        .1;
        pieces.push(piece);
    }
    let audio_stream = probe.streams.iter().find(|s| s.kind == StreamKind::Audio);
    let mut audio_offset = 0.0;
    let whole_audio = work.join("audio.mka");
    if let Some(a) = audio_stream {
        let (starts, t) = run("ffprobe", &sx::stream_start_args(src, &limits))?;
        split += t;
        let start = sx::parse_stream_starts(&starts)
            .into_iter()
            .find(|(i, _)| *i == a.index)
            .map(|(_, t)| t);
        audio_offset = start.unwrap_or(keys.start) - keys.start;
        split += run("ffmpeg", &sx::audio_args(src, a.index, &whole_audio, &limits))?.1;
    }
    let (mut chunks, mut chunk_bytes) = (0.0, 0u64);
    for (k, (span, piece)) in spans.iter().zip(&pieces).enumerate() {
        let out_dir = work.join(format!("chunk-{k}"));
        std::fs::create_dir_all(&out_dir)?;
        let cp = plan::chunk(&plan::ChunkInput {
            outputs,
            probe,
            piece,
            span: *span,
            origin: keys.start,
            first: k == 0,
            last: k + 1 == spans.len(),
            segment,
            out_dir: &out_dir,
            limits: &limits,
        })?;
        chunks += run("ffmpeg", &cp.argv)?.1;
        for f in &cp.files {
            chunk_bytes += std::fs::metadata(out_dir.join(&f.name))?.len();
        }
    }
    let (mut audio, mut stitch) = (0.0, 0.0);
    let mut out_dirs = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let encoded = work.join(format!("audio-{i}.audio"));
        let has_audio = match (audio_stream, plan::audio_plan(out, &whole_audio, &encoded, &limits)) {
            (Some(_), Some(argv)) => {
                audio += run("ffmpeg", &argv)?.1;
                true
            }
            _ => false,
        };
        let renditions: Vec<Option<usize>> = match &out.1.kind {
            PresetKind::Ladder { rungs, .. } => (0..ladder_for(rungs, short_side(probe).unwrap_or(0)).len())
                .map(Some)
                .collect(),
            _ => vec![None],
        };
        let mut lists = Vec::new();
        for r in renditions {
            let files: Vec<(String, Span)> = spans
                .iter()
                .enumerate()
                .map(|(k, s)| (format!("chunk-{k}/{}", plan::chunk_file_name(i, r)), *s))
                .collect();
            let list = work.join(format!("list-{i}-{}.txt", r.map(|r| r.to_string()).unwrap_or_default()));
            std::fs::write(&list, plan::concat_list(&files))?;
            lists.push(list);
        }
        let out_dir = dir.join(format!("stitched-{i}"));
        std::fs::create_dir_all(&out_dir)?;
        let argv = plan::stitch(&plan::StitchInput {
            output: out,
            probe,
            lists,
            audio: has_audio.then(|| (encoded, audio_offset)),
            out_dir: &out_dir,
            stem: "clip",
        })?;
        stitch += run("ffmpeg", &argv)?.1;
        out_dirs.push(out_dir);
    }
    Ok(Stitched {
        spans,
        out_dirs,
        split,
        chunks,
        audio,
        stitch,
        chunk_bytes,
    })
}

/// Runs a program and times it; an error with its stderr when it fails. `pin` runs it
/// on the first core only (`taskset -c 0`).
pub fn timed(pin: bool) -> impl Fn(&str, &[String]) -> anyhow::Result<(String, f64)> {
    move |program: &str, args: &[String]| {
        let mut cmd = if pin {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", "0", program]);
            c
        } else {
            std::process::Command::new(program)
        };
        let started = std::time::Instant::now();
        let out = cmd
            .args(args)
            .output()
            .with_context(|| format!("running {program} (apt-get install ffmpeg)"))?;
        anyhow::ensure!(
            out.status.success(),
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            started.elapsed().as_secs_f64(),
        ))
    }
}
