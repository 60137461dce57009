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

/// The source cut at its keyframes: the spans, each piece, the audio taken out whole.
struct Cut {
    spans: Vec<Span>,
    pieces: Vec<PathBuf>,
    origin: f64,
    /// The whole audio (FLAC in Matroska) and its start after the video's, if any.
    audio: Option<(PathBuf, f64)>,
    seconds: f64,
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
    let work = dir.join("chunks");
    std::fs::create_dir_all(&work)?;
    let cut = cut(src, probe, target, &work, run)?;
    let (chunks, chunk_bytes) = encode_chunks(probe, outputs, &cut, &work, run)?;
    let (mut audio, mut stitch) = (0.0, 0.0);
    let mut out_dirs = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let (a, st, out_dir) = stitch_output(probe, out, i, &cut, dir, &work, run)?;
        audio += a;
        stitch += st;
        out_dirs.push(out_dir);
    }
    Ok(Stitched {
        spans: cut.spans,
        out_dirs,
        split: cut.seconds,
        chunks,
        audio,
        stitch,
        chunk_bytes,
    })
}

/// The split step: keyframes, cuts, pieces by stream copy, the audio taken out.
fn cut(src: &Path, probe: &Probe, target: f64, work: &Path, run: Runner) -> anyhow::Result<Cut> {
    let limits = Limits::default();
    let video = probe.video().context("the source has no video")?.index;
    let (keys_out, mut seconds) = run("ffprobe", &sx::keyframe_args(src, video, &limits))?;
    let keys = sx::parse_keyframes(&keys_out);
    let duration = probe.duration_seconds.context("the source has no duration")?;
    let spans = cuts::cut(&keys.times, duration, target, &[]);
    let mut pieces = Vec::new();
    for (k, span) in spans.iter().enumerate() {
        let piece = work.join(format!("piece-{k}.mkv"));
        // through the keyframe after the chunk's end, for an open GOP's leading frames
        let to = (k + 1 < spans.len())
            .then(|| cuts::piece_end(&keys.times, span.end).map(|t| keys.start + t))
            .flatten();
        seconds += run(
            "ffmpeg",
            &sx::piece_args(src, video, keys.start + span.start, to, &piece, &limits),
        )?
        .1;
        pieces.push(piece);
    }
    let mut audio = None;
    if let Some(a) = probe.streams.iter().find(|s| s.kind == StreamKind::Audio) {
        let (starts, t) = run("ffprobe", &sx::stream_start_args(src, &limits))?;
        seconds += t;
        let start = sx::parse_stream_starts(&starts)
            .into_iter()
            .find(|(i, _)| *i == a.index)
            .map(|(_, t)| t);
        let whole = work.join("audio.mka");
        seconds += run("ffmpeg", &sx::audio_args(src, a.index, &whole, &limits))?.1;
        audio = Some((whole, start.unwrap_or(keys.start) - keys.start));
    }
    Ok(Cut {
        spans,
        pieces,
        origin: keys.start,
        audio,
        seconds,
    })
}

/// Every chunk's one decode into every video output; the seconds and the bytes made.
fn encode_chunks(
    probe: &Probe,
    outputs: &[(OutputSpec, Preset)],
    cut: &Cut,
    work: &Path,
    run: Runner,
) -> anyhow::Result<(f64, u64)> {
    let limits = Limits::default();
    let segment = outputs.iter().find_map(|(_, p)| match &p.kind {
        PresetKind::Ladder { segment_seconds, .. } => Some(f64::from(*segment_seconds)),
        _ => None,
    });
    let (mut seconds, mut bytes) = (0.0, 0u64);
    let n = cut.spans.len();
    for (k, (span, piece)) in cut.spans.iter().zip(&cut.pieces).enumerate() {
        let out_dir = work.join(format!("chunk-{k}"));
        std::fs::create_dir_all(&out_dir)?;
        let cp = plan::chunk(&plan::ChunkInput {
            outputs,
            probe,
            piece,
            span: *span,
            origin: cut.origin,
            first: k == 0,
            last: k + 1 == n,
            segment,
            out_dir: &out_dir,
            limits: &limits,
        })?;
        seconds += run("ffmpeg", &cp.argv)?.1;
        for f in &cp.files {
            bytes += std::fs::metadata(out_dir.join(&f.name))?.len();
        }
    }
    Ok((seconds, bytes))
}

/// One output's audio encoded and its chunks joined with it into `dir/stitched-<i>`;
/// the seconds of each and the folder.
fn stitch_output(
    probe: &Probe,
    out: &(OutputSpec, Preset),
    i: usize,
    cut: &Cut,
    dir: &Path,
    work: &Path,
    run: Runner,
) -> anyhow::Result<(f64, f64, PathBuf)> {
    let limits = Limits::default();
    let encoded = work.join(format!("audio-{i}.audio"));
    let mut audio = 0.0;
    let mut with_audio = None;
    if let Some((whole, offset)) = &cut.audio {
        if let Some(argv) = plan::audio_plan(out, whole, &encoded, &limits) {
            audio += run("ffmpeg", &argv)?.1;
            with_audio = Some((encoded, *offset));
        }
    }
    let renditions: Vec<Option<usize>> = match &out.1.kind {
        PresetKind::Ladder { rungs, .. } => (0..ladder_for(rungs, short_side(probe).unwrap_or(0)).len())
            .map(Some)
            .collect(),
        _ => vec![None],
    };
    let mut lists = Vec::new();
    for r in renditions {
        let files: Vec<(String, Span)> = cut
            .spans
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
        audio: with_audio,
        out_dir: &out_dir,
        stem: "clip",
    })?;
    let stitch = run("ffmpeg", &argv)?.1;
    Ok((audio, stitch, out_dir))
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
