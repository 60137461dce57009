//! A split job's outputs from its chunks: each output's chunk files joined without
//! re-encoding (FFmpeg's concat demuxer, each chunk placed at its own start), its audio
//! (encoded once, by the audio task) muxed in, into the file or the ladder an unchunked
//! encode makes.

use super::ladder::{dash_muxer, hls_muxer};
use super::{progress, s, PlanError};
use crate::job::{OutputSpec, Probe};
use crate::presets::{ladder_for, short_side, LadderFormat, Preset, PresetKind};
use crate::split::Span;
use std::path::{Path, PathBuf};

/// The formats a stitch reads: its own lists, and the chunk and audio files Nommer made.
const STITCH_FORMATS: &str = "concat,mov,matroska";

/// An ffconcat list of a rendition's chunk files, each at its chunk's start: the file
/// names (beside the list) and the chunks' spans.
pub fn concat_list(files: &[(String, Span)]) -> String {
    let mut out = String::from("ffconcat version 1.0\n");
    for (name, span) in files {
        out.push_str(&format!("file '{name}'\ninpoint 0\nduration {:.6}\n", span.seconds()));
    }
    out
}

/// Everything one output's stitch needs.
pub struct StitchInput<'a> {
    pub output: &'a (OutputSpec, Preset),
    pub probe: &'a Probe,
    /// A concat list per rendition: one for a file, one per rung (tallest first) for a
    /// ladder.
    pub lists: Vec<PathBuf>,
    /// The output's audio, encoded whole, and where it starts in media time.
    pub audio: Option<(PathBuf, f64)>,
    pub out_dir: &'a Path,
    /// A stem for file names (the source's, sanitised).
    pub stem: &'a str,
}

fn inputs(st: &StitchInput) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    for l in &st.lists {
        a.extend([
            s("-protocol_whitelist"),
            s("file"),
            s("-format_whitelist"),
            s(STITCH_FORMATS),
            s("-f"),
            s("concat"),
            s("-safe"),
            s("0"),
            s("-i"),
            format!("file:{}", l.display()),
        ]);
    }
    if let Some((path, offset)) = &st.audio {
        a.extend([
            s("-protocol_whitelist"),
            s("file"),
            s("-format_whitelist"),
            s(STITCH_FORMATS),
            s("-itsoffset"),
            format!("{offset:.6}"),
            s("-i"),
            format!("file:{}", path.display()),
        ]);
    }
    a
}

/// The run that builds one output from its joined chunks.
pub fn stitch(st: &StitchInput) -> Result<Vec<String>, PlanError> {
    let mut a = inputs(st);
    let n = st.lists.len();
    for k in 0..n {
        a.extend([s("-map"), format!("{k}:v:0")]);
    }
    let (_, preset) = st.output;
    match &preset.kind {
        PresetKind::File { container, .. } => {
            if st.audio.is_some() {
                a.extend([s("-map"), format!("{n}:a:0")]);
            }
            a.extend([s("-c"), s("copy"), s("-map_metadata"), s("-1")]);
            if matches!(container, crate::presets::Container::Mp4) {
                a.extend([s("-movflags"), s("+faststart")]);
            }
            a.extend([s("-f"), s(container.muxer())]);
            a.extend(progress());
            let main = format!("{}.{}", st.stem, container.extension());
            a.push(format!("file:{}", st.out_dir.join(main).display()));
        }
        PresetKind::Ladder {
            format,
            rungs,
            segment_seconds,
            ..
        } => {
            let short = short_side(st.probe).ok_or(PlanError::NoVideo)?;
            let rungs = ladder_for(rungs, short);
            let audio_maps = match (format, st.audio.is_some()) {
                (_, false) => 0,
                (LadderFormat::Hls, true) => rungs.len(),
                (LadderFormat::Dash, true) => 1,
            };
            for _ in 0..audio_maps {
                a.extend([s("-map"), format!("{n}:a:0")]);
            }
            a.extend([s("-c"), s("copy"), s("-map_metadata"), s("-1")]);
            let dir = st.out_dir.display().to_string();
            match format {
                LadderFormat::Hls => a.extend(hls_muxer(&dir, &rungs, audio_maps > 0, *segment_seconds)),
                LadderFormat::Dash => a.extend(dash_muxer(&dir, audio_maps > 0, *segment_seconds)),
            }
        }
        PresetKind::Thumbnails(_) => return Err(PlanError::NoVideo),
    }
    Ok(a)
}

/// The audio task's run for one output: the source's audio (taken out whole) encoded
/// with the output's audio settings; `None` when the output has no audio.
pub fn audio(
    output: &(OutputSpec, Preset),
    input: &Path,
    out: &Path,
    limits: &crate::ffmpeg::Limits,
) -> Option<Vec<String>> {
    let (o, preset) = output;
    let spec = match &preset.kind {
        PresetKind::File { audio, .. } => audio.as_ref()?,
        PresetKind::Ladder { audio, .. } => audio,
        PresetKind::Thumbnails(_) => return None,
    };
    let mut a = super::guarded_start(limits);
    a.extend([s("-i"), format!("file:{}", input.display()), s("-map"), s("0:a:0")]);
    a.extend(super::codecs::audio_args(spec, o.options.loudness.as_ref()));
    // a container that records the encoder's priming (an MP4 edit list for AAC and
    // MP3, Matroska's codec delay for Opus), so the stitch's stream copy keeps the audio
    // exactly as long as an unchunked encode's
    let muxer = match spec.codec {
        crate::presets::AudioCodec::Opus => "matroska",
        _ => "mp4",
    };
    a.extend([
        s("-vn"),
        s("-sn"),
        s("-dn"),
        s("-map_metadata"),
        s("-1"),
        s("-f"),
        s(muxer),
    ]);
    a.extend(progress());
    a.push(format!("file:{}", out.display()));
    Some(a)
}
