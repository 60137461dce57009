//! The runs behind a per-title ladder (issue 15): the source's samples cut into one
//! lossless file (FFV1, so the trials are scored against the source's own pictures),
//! and the trial encodes of that file, every rung at each of its trial rates from one
//! decode, with the ladder's filters and rate control.

use super::codecs::video_codec_args;
use super::filters::colour_tags;
use super::ladder::split_graph;
use super::{input_args, s, PlanInput};
use crate::ffmpeg::{input_guard, Limits};
use crate::presets::{Rung, VideoCodec};
use std::path::Path;

/// Cuts the excerpts `spans` (start, length in seconds) of the source's video stream
/// `index` and joins them into one FFV1 file at `to`.
pub fn samples_args(input: &Path, index: u32, spans: &[(f64, f64)], to: &Path, limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    // the guard is an input option: every input of the source gets its own
    for (start, len) in spans {
        a.extend(input_guard(limits));
        a.extend([
            s("-ss"),
            format!("{start:.3}"),
            s("-t"),
            format!("{len:.3}"),
            s("-i"),
            format!("file:{}", input.display()),
        ]);
    }
    let ins: String = (0..spans.len()).map(|k| format!("[{k}:{index}]")).collect();
    a.extend([
        s("-filter_complex"),
        format!("{ins}concat=n={}:v=1:a=0[v]", spans.len()),
        s("-map"),
        s("[v]"),
        s("-c:v"),
        s("ffv1"),
    ]);
    a.extend(crate::ffmpeg::video_only_output(
        "matroska",
        format!("file:{}", to.display()),
    ));
    a
}

/// One trial encode: a rung's height at one rate, into `file` in the output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub height: u32,
    pub kbps: u32,
    pub file: String,
}

/// The trials' one run: `inp` is the samples file (and the output's options, without
/// its trim), each trial a video-only MP4 made as the ladder makes its rung.
pub fn trials_args(inp: &PlanInput, codec: VideoCodec, segment_seconds: u32, trials: &[Trial]) -> Vec<String> {
    let rungs: Vec<Rung> = trials
        .iter()
        .map(|t| Rung {
            height: t.height,
            video_kbps: t.kbps,
        })
        .collect();
    let mut a = input_args(inp, 0);
    a.extend([s("-filter_complex"), split_graph(inp, &rungs)]);
    for (i, t) in trials.iter().enumerate() {
        a.extend([s("-map"), format!("[v{i}]")]);
        a.extend(video_codec_args(
            codec,
            codec.default_speed(),
            23,
            Some(t.kbps),
            t.kbps,
            None,
        ));
        a.extend(colour_tags());
        a.extend([
            s("-force_key_frames"),
            format!("expr:gte(t,n_forced*{segment_seconds})"),
            s("-sc_threshold"),
            s("0"),
        ]);
        a.extend(crate::ffmpeg::video_only_output(
            "mp4",
            format!("file:{}", inp.out_dir.join(&t.file).display()),
        ));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{OutputOptions, Probe, ProbeStream, StreamKind};
    use crate::presets::Catalog;

    #[test]
    fn samples_are_cut_from_the_source_and_trials_made_as_the_ladder_makes_its_rungs() {
        let limits = Limits::default();
        let a = samples_args(
            Path::new("/w/src"),
            0,
            &[(9.0, 2.0), (29.0, 2.0)],
            Path::new("/w/s.mkv"),
            &limits,
        );
        let j = a.join(" ");
        assert!(
            j.contains("-ss 9.000 -t 2.000 -i file:/w/src") && j.contains("-ss 29.000 -t 2.000 -i file:/w/src"),
            "{j}"
        );
        assert!(
            j.contains("[0:0][1:0]concat=n=2:v=1:a=0[v]") && j.contains("-c:v ffv1"),
            "{j}"
        );
        assert!(
            j.contains("-protocol_whitelist"),
            "the source is read under the input guard: {j}"
        );

        let probe = Probe {
            streams: vec![ProbeStream {
                index: 0,
                kind: StreamKind::Video,
                width: Some(1280),
                height: Some(720),
                ..Default::default()
            }],
            duration_seconds: Some(4.0),
            ..Default::default()
        };
        let catalog = Catalog::builtin();
        let preset = catalog.find("hls-auto").unwrap();
        let trials = [
            Trial {
                height: 720,
                kbps: 800,
                file: "t-720-800.mp4".into(),
            },
            Trial {
                height: 720,
                kbps: 5000,
                file: "t-720-5000.mp4".into(),
            },
        ];
        let inp = PlanInput {
            preset,
            options: &OutputOptions::default(),
            probe: &probe,
            input: Path::new("/w/s.mkv"),
            watermark: None,
            out_dir: Path::new("/w/trials"),
            stem: "",
            limits: &limits,
        };
        let j = trials_args(&inp, VideoCodec::H264, 4, &trials).join(" ");
        assert!(j.contains("split=2[s0][s1]"), "one decode for every trial: {j}");
        assert!(j.contains("-b:v 800k") && j.contains("-b:v 5000k"), "{j}");
        assert!(j.contains("file:/w/trials/t-720-800.mp4") && j.contains("file:/w/trials/t-720-5000.mp4"));
        assert!(
            j.contains("expr:gte(t,n_forced*4)"),
            "keyframes as the ladder places them: {j}"
        );
    }
}
