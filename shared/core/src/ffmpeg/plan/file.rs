//! A media file: one run, or two for a two-pass encode (an analysis pass into the null
//! muxer, then the encode).

use super::codecs::{audio_args, video_codec_args};
use super::filters::{colour_tags, deinterlaced, video_filters, with_watermark, HeightRule};
use super::{input_args, out_file, s, tail_args, video_spec, window, Plan, PlanError, PlanInput};
use crate::presets::{AudioSpec, Container, VideoCodec, VideoSpec};
use std::path::Path;

/// What a file preset asks for.
pub(super) struct File<'a> {
    pub container: Container,
    /// `None` for audio-only presets.
    pub video: Option<&'a VideoSpec>,
    pub audio: Option<&'a AudioSpec>,
}

/// The runs of a file output, named for the source's stem.
pub(super) fn plan(inp: &PlanInput, file: &File) -> Result<Plan, PlanError> {
    let main = format!("{}.{}", inp.stem, file.container.extension());
    let passes = if inp.options.two_pass && file.video.is_some() {
        let log = inp.out_dir.join("ffmpeg2pass");
        let mut p1 = pass(inp, file, Some((1, &log)), 0)?;
        p1.extend([s("-f"), s("null"), s("-")]);
        let mut p2 = pass(inp, file, Some((2, &log)), 1)?;
        p2.push(out_file(inp, &main));
        vec![p1, p2]
    } else {
        let mut p = pass(inp, file, None, 0)?;
        p.push(out_file(inp, &main));
        vec![p]
    };
    let (_, expected_duration) = window(inp.options, inp.probe);
    Ok(Plan {
        passes,
        main,
        rungs: vec![],
        images: 0,
        sprite: None,
        expected_duration,
    })
}

/// One run's argv up to its output; `two_pass` is the pass number and the log's path.
fn pass(
    inp: &PlanInput,
    file: &File,
    two_pass: Option<(u8, &Path)>,
    pass_index: usize,
) -> Result<Vec<String>, PlanError> {
    let mut a = input_args(inp, pass_index);
    a.extend([s("-map_metadata"), s("-1")]);
    match file.video {
        Some(v) => {
            let chain = deinterlaced(inp.probe, video_filters(inp, HeightRule::AtMost(v.max_height)));
            match with_watermark(inp, &chain) {
                Some(graph) => a.extend([s("-filter_complex"), graph, s("-map"), s("[out]")]),
                None => a.extend([s("-map"), video_spec(inp.probe), s("-vf"), chain]),
            }
            let speed = v.speed.clone().unwrap_or_else(|| v.codec.default_speed().to_string());
            let crf = inp.options.crf.unwrap_or(v.crf);
            a.extend(video_codec_args(
                v.codec,
                &speed,
                crf,
                inp.options.video_bitrate_kbps,
                v.max_bitrate_kbps,
                None,
            ));
            a.extend(colour_tags());
            if let Some((n, log)) = two_pass {
                a.extend([s("-pass"), n.to_string(), s("-passlogfile"), log.display().to_string()]);
                if v.codec == VideoCodec::H265 {
                    return Err(PlanError::TwoPassH265);
                }
            }
        }
        None => a.push(s("-vn")),
    }
    match (file.audio, inp.probe.has(crate::job::StreamKind::Audio), two_pass) {
        (_, _, Some((1, _))) => a.push(s("-an")),
        (Some(au), true, _) => {
            a.extend([s("-map"), s("0:a:0")]);
            a.extend(audio_args(au, inp.options.loudness.as_ref()));
        }
        _ => a.push(s("-an")),
    }
    a.extend([s("-sn"), s("-dn")]);
    let analysis = matches!(two_pass, Some((1, _)));
    if matches!(file.container, Container::Mp4 | Container::M4a) && !analysis {
        a.extend([s("-movflags"), s("+faststart")]);
    }
    if !analysis {
        a.extend([s("-f"), s(file.container.muxer())]);
    }
    a.extend(tail_args(inp, pass_index));
    Ok(a)
}
