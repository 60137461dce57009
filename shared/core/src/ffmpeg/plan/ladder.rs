//! An adaptive-streaming ladder: one FFmpeg run that decodes the source once, splits the
//! picture into its rungs and muxes HLS (a master playlist and a media playlist per rung)
//! or DASH (one MPD).

use super::codecs::{audio_args, video_codec_args};
use super::filters::{colour_tags, deinterlace, video_filters, with_watermark, HeightRule};
use super::{input_args, s, video_spec, window, Plan, PlanError, PlanInput};
use crate::presets::{ladder_for, short_side, AudioSpec, LadderFormat, Rung, VideoCodec};

/// What a ladder preset asks for.
pub(super) struct Ladder<'a> {
    pub format: LadderFormat,
    pub codec: VideoCodec,
    pub rungs: &'a [Rung],
    pub audio: &'a AudioSpec,
    pub segment_seconds: u32,
}

/// The one run of a ladder: its rungs are the preset's that the source can fill.
pub(super) fn plan(inp: &PlanInput, ladder: &Ladder) -> Result<Plan, PlanError> {
    let short = short_side(inp.probe).ok_or(PlanError::NoVideo)?;
    let rungs = ladder_for(ladder.rungs, short);
    let n = rungs.len();
    let mut a = input_args(inp, 0);
    a.extend([s("-filter_complex"), split_graph(inp, &rungs)]);
    for i in 0..n {
        a.extend([s("-map"), format!("[v{i}]")]);
    }
    a.extend(rates(ladder.codec, &rungs));
    a.extend(colour_tags());
    let seg = ladder.segment_seconds;
    a.extend([
        s("-force_key_frames"),
        format!("expr:gte(t,n_forced*{seg})"),
        s("-sc_threshold"),
        s("0"),
    ]);
    let audio_maps = match (ladder.format, inp.probe.has(crate::job::StreamKind::Audio)) {
        (_, false) => 0,
        (LadderFormat::Hls, true) => n,  // each variant carries its audio
        (LadderFormat::Dash, true) => 1, // one shared audio adaptation set
    };
    for _ in 0..audio_maps {
        a.extend([s("-map"), s("0:a:0")]);
    }
    if audio_maps > 0 {
        a.extend(audio_args(ladder.audio, inp.options.loudness.as_ref()));
    }
    a.extend([s("-sn"), s("-dn"), s("-map_metadata"), s("-1")]);
    if let Some(p) = inp.options.advanced.first() {
        a.extend(p.output.iter().cloned());
    }
    let dir = inp.out_dir.display().to_string();
    let main = match ladder.format {
        LadderFormat::Hls => {
            a.extend(hls_muxer(&dir, &rungs, audio_maps > 0, seg));
            "master.m3u8"
        }
        LadderFormat::Dash => {
            a.extend(dash_muxer(&dir, audio_maps > 0, seg));
            "manifest.mpd"
        }
    };
    let (_, expected_duration) = window(inp.options, inp.probe);
    Ok(Plan {
        passes: vec![a],
        main: main.to_string(),
        rungs,
        images: 0,
        sprite: None,
        expected_duration,
    })
}

/// The filter graph: the picture deinterlaced once (and watermarked) before it splits,
/// then each rung's chain, writing `[v0]`, `[v1]`, …
pub(super) fn split_graph(inp: &PlanInput, rungs: &[Rung]) -> String {
    let n = rungs.len();
    let mut graph = String::new();
    let deint = deinterlace(inp.probe);
    let base = match with_watermark(inp, deint.as_deref().unwrap_or("null")) {
        Some(g) => {
            graph.push_str(&g);
            graph.push(';');
            "[out]".to_string()
        }
        None => match &deint {
            Some(d) => format!("[{}]{d},", video_spec(inp.probe)),
            None => format!("[{}]", video_spec(inp.probe)),
        },
    };
    graph.push_str(&format!(
        "{base}split={n}{}",
        (0..n).map(|i| format!("[s{i}]")).collect::<String>()
    ));
    for (i, r) in rungs.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]{}[v{i}]",
            video_filters(inp, HeightRule::Exactly(r.height))
        ));
    }
    graph
}

/// The encoder and its preset once, then each rendition's rates.
fn rates(codec: VideoCodec, rungs: &[Rung]) -> Vec<String> {
    let speed = codec.default_speed();
    let per_rung: Vec<Vec<String>> = rungs
        .iter()
        .enumerate()
        .map(|(i, r)| video_codec_args(codec, speed, 23, Some(r.video_kbps), r.video_kbps, Some(i)))
        .collect();
    let mut a: Vec<String> = per_rung[0]
        .iter()
        .take_while(|x| !x.starts_with("-b:"))
        .cloned()
        .collect();
    for r in &per_rung {
        a.extend(r.iter().skip_while(|x| !x.starts_with("-b:")).cloned());
    }
    a
}

/// HLS with fMP4 segments: a folder per rung (named for its height) and the master
/// playlist beside them.
pub(super) fn hls_muxer(dir: &str, rungs: &[Rung], with_audio: bool, seg: u32) -> Vec<String> {
    let map = rungs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if with_audio {
                format!("v:{i},a:{i},name:{}p", r.height)
            } else {
                format!("v:{i},name:{}p", r.height)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        s("-f"),
        s("hls"),
        s("-hls_time"),
        seg.to_string(),
        s("-hls_playlist_type"),
        s("vod"),
        s("-hls_segment_type"),
        s("fmp4"),
        s("-hls_fmp4_init_filename"),
        s("init.mp4"),
        s("-hls_segment_filename"),
        format!("{dir}/%v/seg_%05d.m4s"),
        s("-master_pl_name"),
        s("master.m3u8"),
        s("-var_stream_map"),
        map,
        s("-progress"),
        s("pipe:1"),
        s("-nostats"),
        format!("{dir}/%v/index.m3u8"),
    ]
}

/// DASH with templated fMP4 segments: the video rungs in one adaptation set, the audio in
/// another.
pub(super) fn dash_muxer(dir: &str, with_audio: bool, seg: u32) -> Vec<String> {
    let sets = if with_audio {
        "id=0,streams=v id=1,streams=a"
    } else {
        "id=0,streams=v"
    };
    vec![
        s("-f"),
        s("dash"),
        s("-seg_duration"),
        seg.to_string(),
        s("-use_template"),
        s("1"),
        s("-use_timeline"),
        s("1"),
        s("-adaptation_sets"),
        s(sets),
        s("-init_seg_name"),
        s("init-$RepresentationID$.m4s"),
        s("-media_seg_name"),
        s("chunk-$RepresentationID$-$Number%05d$.m4s"),
        s("-progress"),
        s("pipe:1"),
        s("-nostats"),
        format!("{dir}/manifest.mpd"),
    ]
}
