//! One chunk of a split job: its piece decoded once, cut to exactly its frames, and
//! every video output (each file, each ladder rung) encoded from that one decode into a
//! file of its own, without audio. Each starts with a keyframe and places the same
//! keyframes as an unchunked encode (see [`crate::split`]); the rate control is the
//! output's own, the same in every chunk.

use super::codecs::video_codec_args;
use super::filters::{colour_tags, deinterlace, video_filters, HeightRule};
use super::{guarded_start, progress, s, PlanError, PlanInput};
use crate::ffmpeg::Limits;
use crate::job::{OutputSpec, Probe};
use crate::presets::{ladder_for, short_side, Preset, PresetKind};
use crate::split::Span;
use std::path::Path;

/// Everything a chunk's encode needs.
pub struct ChunkInput<'a> {
    /// The job's outputs, with their presets.
    pub outputs: &'a [(OutputSpec, Preset)],
    /// The source's probe (sizes, interlacing, colour).
    pub probe: &'a Probe,
    /// The chunk's piece (Matroska, the source's timestamps).
    pub piece: &'a Path,
    /// The chunk's part of the source, in media seconds.
    pub span: Span,
    /// The source's start time (absolute seconds of media time 0).
    pub origin: f64,
    /// Whether this is the first and the last chunk (no cut before, none after).
    pub first: bool,
    pub last: bool,
    /// The ladders' segment length, if the job has ladders.
    pub segment: Option<f64>,
    pub out_dir: &'a Path,
    pub limits: &'a Limits,
}

/// One encoded file of a chunk: which output, which rung of a ladder, its name.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkFile {
    pub output: usize,
    pub rung: Option<usize>,
    pub name: String,
}

/// A chunk's one run, and the files it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkPlan {
    pub argv: Vec<String>,
    pub files: Vec<ChunkFile>,
}

/// The name of a chunk's file for an output (and rung).
pub fn chunk_file_name(output: usize, rung: Option<usize>) -> String {
    match rung {
        Some(r) => format!("v{output}-r{r}.mp4"),
        None => format!("v{output}.mp4"),
    }
}

/// Builds the chunk's run.
pub fn chunk(c: &ChunkInput) -> Result<ChunkPlan, PlanError> {
    let video = c.probe.video().ok_or(PlanError::NoVideo)?;
    // each frame belongs to the chunk its time falls in, the boundaries half a frame
    // early so a timestamp rounded by the piece's container still lands right
    let half = 0.5 / video.frame_rate.filter(|r| *r > 0.0).unwrap_or(60.0);
    let mut trim = Vec::new();
    if !c.first {
        trim.push(format!("start={:.6}", c.origin + c.span.start - half));
    }
    if !c.last {
        trim.push(format!("end={:.6}", c.origin + c.span.end - half));
    }
    let mut head = format!("[0:{}]", video.index);
    if !trim.is_empty() {
        head.push_str(&format!("trim={},", trim.join(":")));
    }
    head.push_str(&format!("setpts=PTS-{:.6}/TB", c.origin + c.span.start));
    if let Some(d) = deinterlace(c.probe) {
        head.push_str(&format!(",{d}"));
    }

    let targets = targets(c)?;
    let n = targets.len();
    let mut graph = format!(
        "{head},split={n}{}",
        (0..n).map(|k| format!("[s{k}]")).collect::<String>()
    );
    for (k, (_, chain, _)) in targets.iter().enumerate() {
        graph.push_str(&format!(";[s{k}]{chain}[v{k}]"));
    }

    let mut a = guarded_start(c.limits);
    a.extend([s("-copyts"), s("-i"), format!("file:{}", c.piece.display())]);
    a.extend([s("-filter_complex"), graph]);
    a.extend(progress());
    let keys = forced_keyframes(&c.span, c.segment);
    let mut files = Vec::with_capacity(n);
    for (k, (file, _, codec)) in targets.into_iter().enumerate() {
        a.extend([s("-map"), format!("[v{k}]")]);
        a.extend(codec);
        a.extend([s("-force_key_frames"), keys.clone()]);
        a.extend(colour_tags());
        a.extend(crate::ffmpeg::video_only_output(
            "mp4",
            format!("file:{}", c.out_dir.join(&file.name).display()),
        ));
        files.push(file);
    }
    Ok(ChunkPlan { argv: a, files })
}

/// Every picture a chunk makes: its file, its filter chain and its encoder options.
fn targets(c: &ChunkInput) -> Result<Vec<(ChunkFile, String, Vec<String>)>, PlanError> {
    let mut targets: Vec<(ChunkFile, String, Vec<String>)> = Vec::new();
    for (i, (o, preset)) in c.outputs.iter().enumerate() {
        let inp = PlanInput {
            preset,
            options: &o.options,
            probe: c.probe,
            input: c.piece,
            watermark: None,
            out_dir: c.out_dir,
            stem: "",
            limits: c.limits,
        };
        match &preset.kind {
            PresetKind::File { video: Some(v), .. } => {
                let speed = v.speed.clone().unwrap_or_else(|| v.codec.default_speed().to_string());
                let crf = o.options.crf.unwrap_or(v.crf);
                let codec = video_codec_args(
                    v.codec,
                    &speed,
                    crf,
                    o.options.video_bitrate_kbps,
                    v.max_bitrate_kbps,
                    None,
                );
                let file = ChunkFile {
                    output: i,
                    rung: None,
                    name: chunk_file_name(i, None),
                };
                targets.push((file, video_filters(&inp, HeightRule::AtMost(v.max_height)), codec));
            }
            PresetKind::Ladder { codec, rungs, .. } => {
                let short = short_side(c.probe).ok_or(PlanError::NoVideo)?;
                for (k, r) in ladder_for(rungs, short).iter().enumerate() {
                    let mut args = video_codec_args(
                        *codec,
                        codec.default_speed(),
                        23,
                        Some(r.video_kbps),
                        r.video_kbps,
                        None,
                    );
                    args.extend([s("-sc_threshold"), s("0")]);
                    let file = ChunkFile {
                        output: i,
                        rung: Some(k),
                        name: chunk_file_name(i, Some(k)),
                    };
                    targets.push((file, video_filters(&inp, HeightRule::Exactly(r.height)), args));
                }
            }
            _ => return Err(PlanError::NoVideo),
        }
    }
    Ok(targets)
}

/// The keyframes a chunk's encode places: its first frame, then (for ladders) the first
/// frame at or after each media-time multiple of the segment length, as an unchunked
/// ladder's `gte(t,n_forced*seg)` does. An expression on each frame's exact time: a list
/// of times would be rounded to the encoder's frame grid, a frame early.
fn forced_keyframes(span: &Span, segment: Option<f64>) -> String {
    match segment.filter(|s| *s > 0.0) {
        Some(seg) => {
            let first = (span.start / seg + 1e-9).floor() + 1.0;
            format!(
                "expr:if(eq(n,0),1,gte(t+{:.6}+0.000001,(n_forced-1+{first})*{seg}))",
                span.start
            )
        }
        None => s("expr:eq(n,0)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_forces_its_first_frame_and_the_segment_multiples_after_its_start() {
        let span = Span {
            start: 16.016,
            end: 26.0,
        };
        assert_eq!(
            forced_keyframes(&span, Some(4.0)),
            "expr:if(eq(n,0),1,gte(t+16.016000+0.000001,(n_forced-1+5)*4))"
        );
        // a chunk that starts on a multiple: the next one is a segment later
        let on = Span { start: 8.0, end: 16.0 };
        assert!(forced_keyframes(&on, Some(4.0)).contains("(n_forced-1+3)*4"));
        assert_eq!(forced_keyframes(&span, None), "expr:eq(n,0)");
    }
}
