//! The one builder that turns a preset, the output's options and the source's probe into
//! FFmpeg runs, and the checks that what came out is what the preset promised.

use crate::ffmpeg::{input_guard, Limits};
use crate::job::{Corner, OutputOptions, Probe};
use crate::presets::{
    AudioCodec, AudioSpec, Container, LadderFormat, Preset, PresetKind, Rung, ThumbnailMode, ThumbnailSpec, VideoCodec,
    VideoSpec,
};
use std::path::{Path, PathBuf};

/// FFmpeg runs for one output, and where they leave their files.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// argv of each FFmpeg run, in order (two for a two-pass encode).
    pub passes: Vec<Vec<String>>,
    /// The file users open first (the MP4, the master playlist, the MPD, the first image),
    /// relative to the output folder.
    pub main: String,
    /// For a ladder: the renditions it makes, tallest first.
    pub rungs: Vec<Rung>,
    /// For thumbnails: how many images.
    pub images: u32,
    /// For a sprite: the geometry of each tile and the time between them, for the WebVTT
    /// index.
    pub sprite: Option<SpriteLayout>,
    /// The media time the output covers (after trimming), for validation.
    pub expected_duration: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpriteLayout {
    pub tile_width: u32,
    pub tile_height: u32,
    pub columns: u32,
    pub count: u32,
    pub interval_seconds: f64,
}

/// Everything the builder needs to know about a run.
pub struct PlanInput<'a> {
    pub preset: &'a Preset,
    pub options: &'a OutputOptions,
    pub probe: &'a Probe,
    pub input: &'a Path,
    /// A local copy of the watermark image, when the options ask for one.
    pub watermark: Option<&'a Path>,
    /// An empty folder the runs write into.
    pub out_dir: &'a Path,
    /// A stem for file names (the source's, sanitised).
    pub stem: &'a str,
    pub limits: &'a Limits,
}

/// The source's picture as displayed: non-square pixels made square (a 720x576 PAL
/// picture with 16:15 pixels shows 768x576), rotation applied (FFmpeg autorotates on
/// decode).
pub fn display_size(probe: &Probe) -> Option<(u32, u32)> {
    let v = probe.video()?;
    let (w, h) = (v.width?, v.height?);
    let w = match v.sar() {
        Some(sar) => ((w as f64 * sar).round() as u32).max(1),
        None => w,
    };
    match v.rotation.map(|r| r.rem_euclid(180)) {
        Some(90) => Some((h, w)),
        _ => Some((w, h)),
    }
}

/// The short side of the displayed picture: what a preset's or a rung's "height" bounds,
/// so a portrait source keeps its class (720x1280 is 720p, like 1280x720).
pub fn short_side(probe: &Probe) -> Option<u32> {
    display_size(probe).map(|(w, h)| w.min(h))
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32).max(1) * 2
}

/// The output size for a displayed picture of `display` whose short side becomes
/// `short` (never above the source's own, unless `exact`): both sides even, aspect kept.
pub fn output_size(display: (u32, u32), short: u32, exact: bool) -> (u32, u32) {
    let (w, h) = display;
    let src_short = w.min(h).max(1);
    if !exact && short >= src_short {
        return ((w & !1).max(2), (h & !1).max(2));
    }
    let target = (short & !1).max(2);
    let f = target as f64 / src_short as f64;
    if w <= h {
        (target, even(h as f64 * f))
    } else {
        (even(w as f64 * f), target)
    }
}

/// The rungs of a ladder a source whose short side is `source_short` gets: never taller
/// than the source; a source below the smallest rung gets one rendition at its own
/// (even) size. A rung's height is the short side of its rendition.
pub fn ladder_for(rungs: &[Rung], source_short: u32) -> Vec<Rung> {
    let mut out: Vec<Rung> = rungs.iter().filter(|r| r.height <= source_short).cloned().collect();
    out.sort_by(|a, b| b.height.cmp(&a.height));
    out.dedup_by_key(|r| r.height);
    if out.is_empty() {
        let smallest = rungs.iter().min_by_key(|r| r.height).cloned().unwrap_or(Rung {
            height: 240,
            video_kbps: 400,
        });
        out.push(Rung {
            height: (source_short & !1).max(2),
            video_kbps: smallest.video_kbps,
        });
    }
    out
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The stream specifier of the source's video: its real video stream by index, so an
/// attached picture (cover art) is never taken for it.
fn video_spec(probe: &Probe) -> String {
    match probe.video() {
        Some(v) => format!("0:{}", v.index),
        None => s("0:v:0"),
    }
}

/// The part of the source the output covers: (start, duration) in seconds.
fn window(options: &OutputOptions, probe: &Probe) -> (f64, Option<f64>) {
    let start = options.trim.as_ref().map(|t| t.start_seconds).unwrap_or(0.0).max(0.0);
    let end = options.trim.as_ref().and_then(|t| t.end_seconds);
    let total = probe.duration_seconds;
    let stop = match (end, total) {
        (Some(e), Some(t)) => Some(e.min(t)),
        (Some(e), None) => Some(e),
        (None, t) => t,
    };
    (start, stop.map(|s| (s - start).max(0.0)))
}

fn input_args(inp: &PlanInput, pass: usize) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    a.extend(input_guard(inp.limits));
    if let Some(p) = inp.options.advanced.get(pass) {
        a.extend(p.input.iter().cloned());
    }
    let (start, dur) = window(inp.options, inp.probe);
    if inp.options.trim.is_some() {
        if start > 0.0 {
            a.extend([s("-ss"), format!("{start:.3}")]);
        }
        if let Some(d) = dur {
            a.extend([s("-t"), format!("{d:.3}")]);
        }
    }
    a.extend([s("-i"), format!("file:{}", inp.input.display())]);
    if let Some(w) = inp.watermark {
        // the watermark: one still picture, read by the picture demuxers only
        a.extend([
            s("-protocol_whitelist"),
            s("file"),
            s("-format_whitelist"),
            s("image2,png_pipe,jpeg_pipe"),
            s("-i"),
            format!("file:{}", w.display()),
        ]);
    }
    a
}

fn tail_args(inp: &PlanInput, pass: usize) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(p) = inp.options.advanced.get(pass) {
        a.extend(p.output.iter().cloned());
    }
    a.extend([s("-progress"), s("pipe:1"), s("-nostats")]);
    a
}

/// `chain` after the deinterlacer when the source needs one.
fn deinterlaced(probe: &Probe, chain: String) -> String {
    match deinterlace(probe) {
        Some(d) => format!("{d},{chain}"),
        None => chain,
    }
}

/// `bwdif` when the source was found interlaced (one frame per frame, so the frame rate
/// stays; the field order from the decision, else from the frames).
fn deinterlace(probe: &Probe) -> Option<String> {
    let i = probe.interlacing.as_ref().filter(|i| i.interlaced)?;
    let parity = match i.top_field_first {
        Some(true) => "tff",
        Some(false) => "bff",
        None => "auto",
    };
    Some(format!("bwdif=mode=send_frame:parity={parity}:deint=all"))
}

/// The video filter chain for one output height (`None`: keep the height, capped by
/// `max_height`), ending in a labelled pad when `label` is given.
fn video_filters(inp: &PlanInput, height: HeightRule) -> String {
    let mut f = Vec::new();
    if let Some(r) = inp.options.max_frame_rate {
        f.push(format!("fps=fps='min({r},source_fps)'"));
    }
    match (height, display_size(inp.probe)) {
        // the short side is bounded (a portrait source keeps its class), never upscaled,
        // aspect kept, both sides even
        (HeightRule::AtMost(h), Some(d)) => {
            let (w, h) = output_size(d, h, false);
            f.push(format!("scale=w={w}:h={h}:flags=bicubic{},setsar=1", matrix(inp.probe)));
        }
        // a rung keeps the display aspect exactly (scale sets the sample aspect to the
        // rounding left), as DASH wants one aspect per adaptation set
        (HeightRule::Exactly(h), Some(d)) => {
            let (w, h) = output_size(d, h, true);
            f.push(format!("scale=w={w}:h={h}:flags=bicubic{}", matrix(inp.probe)));
        }
        // no size in the probe: bound the height the filter sees
        (HeightRule::AtMost(h), None) => f.push(format!("scale=w=-2:h='trunc(min({h},ih)/2)*2':flags=bicubic")),
        (HeightRule::Exactly(h), None) => f.push(format!("scale=w=-2:h={h}:flags=bicubic")),
    }
    f.push(to_sdr_8bit(inp.probe));
    f.join(",")
}

/// swscale's matrix conversion to BT.709 (limited range) for an SDR source: from the
/// stream's own matrix, or, untagged, the usual guess (BT.601 below 720 lines).
fn matrix(probe: &Probe) -> String {
    let Some(v) = probe.video().filter(|v| !v.is_hdr()) else {
        return String::new();
    };
    let input = match v.color_space.as_deref() {
        Some("bt709") => "bt709",
        Some("smpte170m" | "bt470bg") => "bt601",
        Some("fcc") => "fcc",
        Some("smpte240m") => "smpte240m",
        Some("bt2020nc" | "bt2020c") => "bt2020",
        _ if short_side(probe).unwrap_or(0) >= 720 => "bt709",
        _ => "bt601",
    };
    let range = match v.color_range.as_deref() {
        Some("pc") => "pc",
        _ => "tv",
    };
    format!(":in_color_matrix={input}:in_range={range}:out_color_matrix=bt709:out_range=tv")
}

/// The end of every video chain: 8-bit 4:2:0 BT.709. An HDR source (PQ or HLG, BT.2020)
/// is tone-mapped (linear light, BT.709 primaries, Hable's curve without desaturation)
/// rather than squeezed into 8 bits as if it were SDR, which looks washed out.
fn to_sdr_8bit(probe: &Probe) -> String {
    match probe.video().filter(|v| v.is_hdr()) {
        Some(v) => {
            let tin = v.color_transfer.as_deref().unwrap_or("smpte2084");
            let pin = match v.color_primaries.as_deref() {
                Some(p @ ("bt2020" | "bt709" | "smpte432" | "smpte431")) => p,
                _ => "bt2020",
            };
            let min = match v.color_space.as_deref() {
                Some(m @ ("bt2020nc" | "bt2020c" | "bt709")) => m,
                _ => "bt2020nc",
            };
            let rin = match v.color_range.as_deref() {
                Some("pc") => "pc",
                _ => "tv",
            };
            format!(
                "zscale=tin={tin}:pin={pin}:min={min}:rin={rin}:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
                 tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
            )
        }
        None => s("format=yuv420p"),
    }
}

/// The colour tags every video output carries (what [`to_sdr_8bit`] made).
fn colour_tags() -> Vec<String> {
    [
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-color_range",
        "tv",
    ]
    .iter()
    .map(|x| s(x))
    .collect()
}

#[derive(Clone, Copy)]
enum HeightRule {
    AtMost(u32),
    Exactly(u32),
}

/// Wraps a chain so the watermark (input 1) is laid over it; returns a filter_complex
/// graph reading `[0:v]` and writing `[out]`. (In `scale2ref`, `iw` is the reference
/// video's width and `mdar` the scaled image's own aspect ratio.)
fn with_watermark(inp: &PlanInput, chain: &str) -> Option<String> {
    let w = inp.options.watermark.as_ref()?;
    inp.watermark?;
    let m = w.margin;
    let (x, y) = match w.corner {
        Corner::TopLeft => (format!("{m}"), format!("{m}")),
        Corner::TopRight => (format!("W-w-{m}"), format!("{m}")),
        Corner::BottomLeft => (format!("{m}"), format!("H-h-{m}")),
        Corner::BottomRight => (format!("W-w-{m}"), format!("H-h-{m}")),
    };
    let frac = w.width_fraction.clamp(0.01, 1.0);
    let v = video_spec(inp.probe);
    Some(format!(
        "[{v}]{chain}[base];[1:v][base]scale2ref=w='trunc(iw*{frac}/2)*2':h='trunc(ow/mdar/2)*2'[mark][base2];\
         [base2][mark]overlay=x={x}:y={y}:format=auto,format=yuv420p[out]"
    ))
}

fn video_codec_args(
    codec: VideoCodec,
    speed: &str,
    crf: u8,
    bitrate: Option<u32>,
    max_kbps: u32,
    idx: Option<usize>,
) -> Vec<String> {
    let sfx = |k: &str| match idx {
        Some(i) => format!("{k}:v:{i}"),
        None => format!("{k}:v"),
    };
    let mut a = Vec::new();
    match codec {
        VideoCodec::H264 => a.extend([
            s("-c:v"),
            s("libx264"),
            s("-preset"),
            s(speed),
            s("-profile:v"),
            s("high"),
        ]),
        VideoCodec::H265 => a.extend([
            s("-c:v"),
            s("libx265"),
            s("-preset"),
            s(speed),
            s("-tag:v"),
            s("hvc1"),
            s("-x265-params"),
            s("log-level=error"),
        ]),
        VideoCodec::Vp9 => a.extend([
            s("-c:v"),
            s("libvpx-vp9"),
            s("-deadline"),
            s("good"),
            s("-cpu-used"),
            s(speed),
            s("-row-mt"),
            s("1"),
        ]),
        VideoCodec::Av1 => a.extend([s("-c:v"), s("libsvtav1"), s("-preset"), s(speed), s("-g"), s("240")]),
    }
    match (bitrate, codec) {
        (Some(b), VideoCodec::Av1) => a.extend([sfx("-b"), format!("{b}k")]),
        (Some(b), _) => a.extend([
            sfx("-b"),
            format!("{b}k"),
            sfx("-maxrate"),
            format!("{}k", b * 3 / 2),
            sfx("-bufsize"),
            format!("{}k", b * 3),
        ]),
        (None, VideoCodec::Vp9) => a.extend([s("-crf"), crf.to_string(), sfx("-b"), format!("{max_kbps}k")]),
        (None, VideoCodec::Av1) => a.extend([s("-crf"), crf.to_string()]),
        (None, _) => a.extend([
            s("-crf"),
            crf.to_string(),
            sfx("-maxrate"),
            format!("{max_kbps}k"),
            sfx("-bufsize"),
            format!("{}k", max_kbps * 2),
        ]),
    }
    a
}

fn audio_args(a: &AudioSpec, loudness: Option<&crate::job::Loudness>) -> Vec<String> {
    let mut v = match a.codec {
        AudioCodec::Aac => vec![s("-c:a"), s("aac")],
        AudioCodec::Opus => vec![s("-c:a"), s("libopus")],
        AudioCodec::Mp3 => vec![s("-c:a"), s("libmp3lame")],
    };
    v.extend([
        s("-b:a"),
        format!("{}k", a.bitrate_kbps),
        s("-ac"),
        a.channels.to_string(),
        s("-ar"),
        a.sample_rate.to_string(),
    ]);
    if let Some(l) = loudness {
        v.extend([
            s("-af"),
            format!(
                "loudnorm=I={}:TP={}:LRA={}",
                l.integrated_lufs, l.true_peak_db, l.range_lu
            ),
        ]);
    }
    v
}

/// Builds the FFmpeg runs for one output.
pub fn plan(inp: &PlanInput) -> Result<Plan, String> {
    let has_audio = inp.probe.has("audio");
    let (_, expected_duration) = window(inp.options, inp.probe);
    let out = |name: &str| -> String { format!("file:{}", inp.out_dir.join(name).display()) };
    match &inp.preset.kind {
        PresetKind::File {
            container,
            video,
            audio,
        } => {
            let main = format!("{}.{}", inp.stem, container.extension());
            let passes = if inp.options.two_pass && video.is_some() {
                let log = inp.out_dir.join("ffmpeg2pass");
                let mut p1 = file_pass(
                    inp,
                    *container,
                    video.as_ref(),
                    audio.as_ref(),
                    has_audio,
                    Some((1, &log)),
                    0,
                )?;
                p1.extend([s("-f"), s("null"), s("-")]);
                let mut p2 = file_pass(
                    inp,
                    *container,
                    video.as_ref(),
                    audio.as_ref(),
                    has_audio,
                    Some((2, &log)),
                    1,
                )?;
                p2.push(out(&main));
                vec![p1, p2]
            } else {
                let mut p = file_pass(inp, *container, video.as_ref(), audio.as_ref(), has_audio, None, 0)?;
                p.push(out(&main));
                vec![p]
            };
            Ok(Plan {
                passes,
                main,
                rungs: vec![],
                images: 0,
                sprite: None,
                expected_duration,
            })
        }
        PresetKind::Ladder {
            format,
            codec,
            rungs,
            audio,
            segment_seconds,
        } => {
            let short = short_side(inp.probe).ok_or("the source has no video stream with a size")?;
            let rungs = ladder_for(rungs, short);
            let mut a = input_args(inp, 0);
            let n = rungs.len();
            let mut graph = String::new();
            // deinterlaced once, before the rungs split
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
            a.extend([s("-filter_complex"), graph]);
            for i in 0..n {
                a.extend([s("-map"), format!("[v{i}]")]);
            }
            let speed = codec.default_speed();
            let per_rung: Vec<Vec<String>> = rungs
                .iter()
                .enumerate()
                .map(|(i, r)| video_codec_args(*codec, speed, 23, Some(r.video_kbps), r.video_kbps, Some(i)))
                .collect();
            // codec and preset once, then each rendition's rates
            a.extend(per_rung[0].iter().take_while(|x| !x.starts_with("-b:")).cloned());
            for r in &per_rung {
                a.extend(r.iter().skip_while(|x| !x.starts_with("-b:")).cloned());
            }
            a.extend(colour_tags());
            let seg = *segment_seconds;
            a.extend([
                s("-force_key_frames"),
                format!("expr:gte(t,n_forced*{seg})"),
                s("-sc_threshold"),
                s("0"),
            ]);
            let audio_maps = match (format, has_audio) {
                (_, false) => 0,
                (LadderFormat::Hls, true) => n,  // each variant carries its audio
                (LadderFormat::Dash, true) => 1, // one shared audio adaptation set
            };
            for _ in 0..audio_maps {
                a.extend([s("-map"), s("0:a:0")]);
            }
            if audio_maps > 0 {
                a.extend(audio_args(audio, inp.options.loudness.as_ref()));
            }
            a.extend([s("-sn"), s("-dn"), s("-map_metadata"), s("-1")]);
            if let Some(p) = inp.options.advanced.first() {
                a.extend(p.output.iter().cloned());
            }
            let dir = inp.out_dir.display().to_string();
            let main = match format {
                LadderFormat::Hls => {
                    let map = rungs
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            if audio_maps > 0 {
                                format!("v:{i},a:{i},name:{}p", r.height)
                            } else {
                                format!("v:{i},name:{}p", r.height)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    a.extend([
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
                    ]);
                    a.extend([
                        s("-progress"),
                        s("pipe:1"),
                        s("-nostats"),
                        format!("{dir}/%v/index.m3u8"),
                    ]);
                    "master.m3u8".to_string()
                }
                LadderFormat::Dash => {
                    let sets = if audio_maps > 0 {
                        "id=0,streams=v id=1,streams=a"
                    } else {
                        "id=0,streams=v"
                    };
                    a.extend([
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
                    ]);
                    a.extend([
                        s("-progress"),
                        s("pipe:1"),
                        s("-nostats"),
                        format!("{dir}/manifest.mpd"),
                    ]);
                    "manifest.mpd".to_string()
                }
            };
            Ok(Plan {
                passes: vec![a],
                main,
                rungs,
                images: 0,
                sprite: None,
                expected_duration,
            })
        }
        PresetKind::Thumbnails(t) => thumbnails(inp, t),
    }
}

fn file_pass(
    inp: &PlanInput,
    container: Container,
    video: Option<&VideoSpec>,
    audio: Option<&AudioSpec>,
    has_audio: bool,
    two_pass: Option<(u8, &Path)>,
    pass_index: usize,
) -> Result<Vec<String>, String> {
    let mut a = input_args(inp, pass_index);
    a.extend([s("-map_metadata"), s("-1")]);
    match video {
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
                    return Err("two-pass is not offered for H.265 presets".into());
                }
            }
        }
        None => a.push(s("-vn")),
    }
    match (audio, has_audio, two_pass) {
        (_, _, Some((1, _))) => a.push(s("-an")),
        (Some(au), true, _) => {
            a.extend([s("-map"), s("0:a:0")]);
            a.extend(audio_args(au, inp.options.loudness.as_ref()));
        }
        _ => a.push(s("-an")),
    }
    a.extend([s("-sn"), s("-dn")]);
    if matches!(container, Container::Mp4 | Container::M4a) && !matches!(two_pass, Some((1, _))) {
        a.extend([s("-movflags"), s("+faststart")]);
    }
    if !matches!(two_pass, Some((1, _))) {
        a.extend([s("-f"), s(container.muxer())]);
    }
    a.extend(tail_args(inp, pass_index));
    Ok(a)
}

fn thumbnails(inp: &PlanInput, t: &ThumbnailSpec) -> Result<Plan, String> {
    let (w, h) = display_size(inp.probe).ok_or("the source has no video stream with a size")?;
    let width = inp.options.width.unwrap_or(t.width).min(w.max(2));
    let width = width & !1;
    let height = even(width as f64 * h as f64 / w as f64);
    let count = inp.options.count.unwrap_or(t.count).max(1);
    let (start, dur) = window(inp.options, inp.probe);
    let dur = dur.unwrap_or(0.0);
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    a.extend(input_guard(inp.limits));
    let out = |name: &str| format!("file:{}", inp.out_dir.join(name).display());
    let mut scale = deinterlaced(inp.probe, format!("scale={width}:{height}:flags=bicubic"));
    if inp.probe.video().is_some_and(|v| v.is_hdr()) {
        scale = format!("{scale},{}", to_sdr_8bit(inp.probe));
    }
    scale.push_str(",setsar=1");
    let (main, images, sprite) = match t.mode {
        ThumbnailMode::Poster => {
            let at = inp.options.at_seconds.unwrap_or(start + dur * 0.1);
            let at = if dur > 0.0 {
                at.clamp(0.0, (start + dur - 0.05).max(0.0))
            } else {
                0.0
            };
            a.extend([
                s("-ss"),
                format!("{at:.3}"),
                s("-i"),
                format!("file:{}", inp.input.display()),
            ]);
            a.extend([
                s("-map"),
                video_spec(inp.probe),
                s("-vf"),
                scale,
                s("-frames:v"),
                s("1"),
                s("-q:v"),
                s("3"),
                s("-update"),
                s("1"),
            ]);
            a.extend(tail_args(inp, 0));
            a.push(out("poster.jpg"));
            ("poster.jpg".to_string(), 1, None)
        }
        ThumbnailMode::Frames | ThumbnailMode::Sprite => {
            if dur <= 0.0 {
                return Err("the source has no duration to spread frames over".into());
            }
            let rate = count as f64 / dur;
            a.extend([
                s("-ss"),
                format!("{start:.3}"),
                s("-t"),
                format!("{dur:.3}"),
                s("-i"),
                format!("file:{}", inp.input.display()),
            ]);
            // a frame at the middle of each of `count` equal slices of the source
            let pick = format!("fps=fps={rate:.6}:start_time={start:.3}:round=near");
            if t.mode == ThumbnailMode::Frames {
                a.extend([
                    s("-map"),
                    video_spec(inp.probe),
                    s("-vf"),
                    format!("{pick},{scale}"),
                    s("-frames:v"),
                    count.to_string(),
                    s("-q:v"),
                    s("3"),
                ]);
                a.extend(tail_args(inp, 0));
                a.push(out("thumb_%04d.jpg"));
                ("thumb_0001.jpg".to_string(), count, None)
            } else {
                let columns = t.columns.min(count).max(1);
                let rows = count.div_ceil(columns);
                a.extend([
                    s("-map"),
                    video_spec(inp.probe),
                    s("-vf"),
                    format!("{pick},{scale},tile={columns}x{rows}"),
                    s("-frames:v"),
                    s("1"),
                    s("-q:v"),
                    s("4"),
                    s("-update"),
                    s("1"),
                ]);
                a.extend(tail_args(inp, 0));
                a.push(out("sprite.jpg"));
                let layout = SpriteLayout {
                    tile_width: width,
                    tile_height: height,
                    columns,
                    count,
                    interval_seconds: dur / count as f64,
                };
                ("sprite.jpg".to_string(), 1, Some(layout))
            }
        }
    };
    Ok(Plan {
        passes: vec![a],
        main,
        rungs: vec![],
        images,
        sprite,
        expected_duration: None,
    })
}

/// The WebVTT index of a sprite sheet: one cue per tile, pointing at its rectangle.
pub fn sprite_vtt(layout: &SpriteLayout, image: &str) -> String {
    let ts = |t: f64| {
        let ms = (t * 1000.0).round() as u64;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let mut out = String::from("WEBVTT\n");
    for i in 0..layout.count {
        let (col, row) = (i % layout.columns, i / layout.columns);
        let (start, end) = (
            i as f64 * layout.interval_seconds,
            (i + 1) as f64 * layout.interval_seconds,
        );
        out.push_str(&format!(
            "\n{} --> {}\n{image}#xywh={},{},{},{}\n",
            ts(start),
            ts(end),
            col * layout.tile_width,
            row * layout.tile_height,
            layout.tile_width,
            layout.tile_height
        ));
    }
    out
}

/// Checks a media file against what its preset promised: the expected streams with the
/// expected codecs, and a duration within tolerance.
pub fn validate_file(preset: &Preset, source: &Probe, expected: Option<f64>, output: &Probe) -> Result<(), String> {
    let PresetKind::File { video, audio, .. } = &preset.kind else {
        return Ok(());
    };
    let find = |kind: &str| output.streams.iter().find(|s| s.kind == kind);
    match (video, find("video")) {
        (Some(v), Some(s)) if s.codec != v.codec.probe_name() => {
            return Err(format!(
                "video is {} but the preset makes {}",
                s.codec,
                v.codec.probe_name()
            ))
        }
        (Some(_), None) => return Err("the output has no video stream".into()),
        (None, Some(s)) if s.codec != "mjpeg" && s.codec != "png" => {
            return Err(format!("an audio-only output has a {} video stream", s.codec))
        }
        _ => {}
    }
    match (audio, find("audio")) {
        (Some(a), Some(s)) if s.codec != a.codec.probe_name() => {
            return Err(format!(
                "audio is {} but the preset makes {}",
                s.codec,
                a.codec.probe_name()
            ))
        }
        (Some(_), None) if source.has("audio") => return Err("the output lost the source's audio".into()),
        _ => {}
    }
    check_duration(expected, output.duration_seconds)
}

fn check_duration(expected: Option<f64>, got: Option<f64>) -> Result<(), String> {
    if let Some(want) = expected {
        let got = got.ok_or("the output has no duration")?;
        let tolerance = (want * 0.05).max(0.5);
        if (got - want).abs() > tolerance {
            return Err(format!(
                "it lasts {got:.2} s but should last {want:.2} s (tolerance {tolerance:.2} s)"
            ));
        }
    }
    Ok(())
}

/// One variant of an HLS master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
}

/// Parses an HLS master playlist; every variant must carry BANDWIDTH, RESOLUTION and
/// CODECS.
pub fn parse_master(text: &str) -> Result<Vec<Variant>, String> {
    if !text.starts_with("#EXTM3U") {
        return Err("the master playlist does not start with #EXTM3U".into());
    }
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let Some(attrs) = l.strip_prefix("#EXT-X-STREAM-INF:") else {
            continue;
        };
        let get = |k: &str| -> Option<String> {
            let i = attrs.find(&format!("{k}="))? + k.len() + 1;
            let rest = &attrs[i..];
            Some(if let Some(q) = rest.strip_prefix('"') {
                q.split('"').next()?.to_string()
            } else {
                rest.split(',').next()?.to_string()
            })
        };
        let bandwidth = get("BANDWIDTH")
            .and_then(|b| b.parse().ok())
            .ok_or("a variant has no BANDWIDTH")?;
        let res = get("RESOLUTION").ok_or("a variant has no RESOLUTION")?;
        let (w, h) = res.split_once('x').ok_or("RESOLUTION is not WxH")?;
        let codecs = get("CODECS")
            .filter(|c| !c.is_empty())
            .ok_or("a variant has no CODECS")?;
        let uri = lines
            .by_ref()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or("a variant has no URI")?
            .to_string();
        out.push(Variant {
            uri,
            bandwidth,
            width: w.parse().map_err(|_| "bad RESOLUTION width")?,
            height: h.parse().map_err(|_| "bad RESOLUTION height")?,
            codecs,
        });
    }
    if out.is_empty() {
        return Err("the master playlist lists no variants".into());
    }
    Ok(out)
}

/// Checks a media playlist is complete (VOD, ends with #EXT-X-ENDLIST) and returns the
/// files it names (init segment and media segments) and its total duration.
pub fn parse_media_playlist(text: &str) -> Result<(Vec<String>, f64), String> {
    if !text.starts_with("#EXTM3U") {
        return Err("a media playlist does not start with #EXTM3U".into());
    }
    if !text.contains("#EXT-X-ENDLIST") {
        return Err("a media playlist has no #EXT-X-ENDLIST (incomplete)".into());
    }
    let mut files = Vec::new();
    let mut duration = 0.0;
    for l in text.lines().map(str::trim) {
        if let Some(m) = l.strip_prefix("#EXT-X-MAP:URI=\"") {
            files.push(m.trim_end_matches('"').to_string());
        } else if let Some(d) = l.strip_prefix("#EXTINF:") {
            duration += d
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0);
        } else if !l.is_empty() && !l.starts_with('#') {
            files.push(l.to_string());
        }
    }
    Ok((files, duration))
}

/// Checks the ladder that came out: its renditions are the planned ones, each complete,
/// and it lasts as long as the source.
pub fn validate_hls(dir: &Path, plan: &Plan) -> Result<Vec<(Variant, f64)>, String> {
    let master = std::fs::read_to_string(dir.join(&plan.main)).map_err(|e| format!("no master playlist: {e}"))?;
    let variants = parse_master(&master)?;
    // a rung's height is its rendition's short side (portrait sources stay portrait)
    let heights: Vec<u32> = variants.iter().map(|v| v.width.min(v.height)).collect();
    let planned: Vec<u32> = plan.rungs.iter().map(|r| r.height).collect();
    if heights != planned {
        return Err(format!(
            "the master playlist lists renditions of short side {heights:?}, planned {planned:?}"
        ));
    }
    let mut out = Vec::new();
    for v in variants {
        let path = safe_join(dir, &v.uri)?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", v.uri))?;
        let (files, duration) = parse_media_playlist(&text)?;
        let base = path.parent().unwrap_or(dir);
        for f in &files {
            let p = safe_join(base, f)?;
            if !p.is_file() {
                return Err(format!("{} names {f}, which is missing", v.uri));
            }
        }
        check_duration(plan.expected_duration, Some(duration)).map_err(|e| format!("{}: {e}", v.uri))?;
        out.push((v, duration));
    }
    Ok(out)
}

/// What an MPD says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpd {
    /// Heights of the video representations, in order.
    pub heights: Vec<u32>,
    /// Widths of the video representations, in order.
    pub widths: Vec<u32>,
    pub duration_seconds: Option<f64>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(tag[i..].split('"').next()?.to_string())
}

/// `PT1H2M3.5S` in seconds.
fn iso_duration(d: &str) -> Option<f64> {
    let t = d.strip_prefix("PT")?;
    let mut total = 0.0;
    let mut num = String::new();
    for c in t.chars() {
        match c {
            'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                total += v * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => num.push(c),
        }
    }
    Some(total)
}

/// Reads the parts of a DASH MPD that validation needs.
pub fn parse_mpd(text: &str) -> Result<Mpd, String> {
    let start = text.find("<MPD").ok_or("not an MPD")?;
    let mpd_tag = &text[start..start + text[start..].find('>').ok_or("unterminated <MPD>")?];
    let duration_seconds = attr(mpd_tag, "mediaPresentationDuration").and_then(|d| iso_duration(&d));
    let mut heights = Vec::new();
    let mut widths = Vec::new();
    for chunk in text.split("<Representation ").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap_or(chunk.len())];
        let tag = format!(" {tag}");
        if attr(&tag, "mimeType").as_deref() == Some("video/mp4") {
            heights.push(
                attr(&tag, "height")
                    .and_then(|h| h.parse().ok())
                    .ok_or("a video representation has no height")?,
            );
            widths.push(
                attr(&tag, "width")
                    .and_then(|h| h.parse().ok())
                    .ok_or("a video representation has no width")?,
            );
        }
    }
    if heights.is_empty() {
        return Err("the MPD has no video representation".into());
    }
    Ok(Mpd {
        heights,
        widths,
        duration_seconds,
    })
}

/// `dir/rel` for a relative path that stays inside `dir`.
pub fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("`{rel}` points outside the output"));
    }
    Ok(dir.join(p))
}

/// The content type of an output file, by extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "m4a" => "audio/mp4",
        "mp3" => "audio/mpeg",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        "jpg" | "jpeg" => "image/jpeg",
        "vtt" => "text/vtt",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ProbeStream, Trim};
    use crate::presets::Catalog;

    fn probe(w: u32, h: u32, rotation: Option<i32>, audio: bool, dur: f64) -> Probe {
        let mut streams = vec![ProbeStream {
            index: 0,
            kind: "video".into(),
            codec: "h264".into(),
            width: Some(w),
            height: Some(h),
            rotation,
            ..Default::default()
        }];
        if audio {
            streams.push(ProbeStream {
                index: 1,
                kind: "audio".into(),
                codec: "aac".into(),
                ..Default::default()
            });
        }
        Probe {
            container: "mov".into(),
            duration_seconds: Some(dur),
            size: 1,
            bit_rate: None,
            streams,
            interlacing: None,
        }
    }

    fn plan_for(preset: &str, p: &Probe, options: &OutputOptions) -> Plan {
        let c = Catalog::builtin();
        let limits = Limits::default();
        plan(&PlanInput {
            preset: c.find(preset).unwrap(),
            options,
            probe: p,
            input: Path::new("/w/in.mov"),
            watermark: None,
            out_dir: Path::new("/w/out"),
            stem: "clip",
            limits: &limits,
        })
        .unwrap()
    }

    #[test]
    fn file_argv_caps_height_and_guards_input() {
        let p = plan_for(
            "mp4-720p",
            &probe(1920, 1080, None, true, 10.0),
            &OutputOptions::default(),
        );
        assert_eq!(p.passes.len(), 1);
        let a = &p.passes[0];
        let s = a.join(" ");
        assert!(s.contains("-protocol_whitelist file -format_whitelist mov,"), "{s}");
        assert!(!s.contains("hls") && !s.contains("concat"), "{s}");
        assert!(
            s.contains("scale=w=1280:h=720:") && s.contains("-c:v libx264") && s.contains("-c:a aac"),
            "{s}"
        );
        assert!(s.ends_with("file:/w/out/clip.mp4"), "{s}");
        let i = a.iter().position(|x| x == "-i").unwrap();
        assert_eq!(a[i + 1], "file:/w/in.mov");
        assert!(
            a.iter().position(|x| x == "-protocol_whitelist").unwrap() < i,
            "guard is an input option"
        );
        let silent = plan_for(
            "mp4-720p",
            &probe(1920, 1080, None, false, 10.0),
            &OutputOptions::default(),
        )
        .passes[0]
            .join(" ");
        assert!(silent.contains("-an") && !silent.contains("0:a:0"), "{silent}");
    }

    #[test]
    fn a_preset_height_bounds_the_short_side() {
        let size = |w, h, rot| {
            let a = plan_for("mp4-720p", &probe(w, h, rot, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
            let i = a.find("scale=w=").unwrap();
            a[i..].split(':').take(2).collect::<Vec<_>>().join(":")
        };
        assert_eq!(size(720, 1280, None), "scale=w=720:h=1280");
        assert_eq!(size(1080, 1920, None), "scale=w=720:h=1280");
        assert_eq!(
            size(1280, 720, Some(90)),
            "scale=w=720:h=1280",
            "rotation applied first"
        );
        assert_eq!(size(1920, 1080, None), "scale=w=1280:h=720");
        assert_eq!(size(333, 199, None), "scale=w=332:h=198", "never upscaled, even");
        assert_eq!(output_size((640, 360), 240, true), (426, 240));
        assert_eq!(output_size((360, 640), 240, true), (240, 426));
        assert_eq!(output_size((480, 270), 720, false), (480, 270));
    }

    #[test]
    fn an_attached_picture_is_never_mapped_as_video() {
        let mut p = probe(320, 240, None, true, 2.0);
        for st in &mut p.streams {
            st.index += 1;
        }
        p.streams.insert(
            0,
            ProbeStream {
                index: 0,
                kind: "video".into(),
                codec: "png".into(),
                width: Some(64),
                height: Some(64),
                attached_pic: true,
                ..Default::default()
            },
        );
        let a = plan_for("mp4-360p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(a.contains("-map 0:1 -vf") && a.contains("scale=w=320:h=240:"), "{a}");
        let l = plan_for("hls", &p, &OutputOptions::default());
        assert_eq!(l.rungs.iter().map(|r| r.height).collect::<Vec<_>>(), [240]);
        assert!(l.passes[0].join(" ").contains("[0:1]split=1"), "{:?}", l.passes[0]);
        let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(t.contains("-map 0:1 "), "{t}");
    }

    #[test]
    fn interlaced_sources_are_deinterlaced_first() {
        let mut p = probe(720, 576, None, true, 2.0);
        let plain = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(!plain.contains("bwdif"), "{plain}");
        p.interlacing = crate::ffmpeg::interlacing_from_field_order(Some("bb"));
        let a = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(
            a.contains("-vf bwdif=mode=send_frame:parity=bff:deint=all,scale="),
            "{a}"
        );
        let l = plan_for("hls", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(
            l.contains("[0:0]bwdif=mode=send_frame:parity=bff:deint=all,split=3"),
            "once, before the rungs: {l}"
        );
        assert_eq!(l.matches("bwdif=").count(), 1, "{l}");
        let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(t.contains("bwdif=mode=send_frame:parity=bff:deint=all,scale="), "{t}");
    }

    #[test]
    fn hdr_is_tone_mapped_and_every_output_is_tagged_bt709() {
        let mut p = probe(1920, 1080, None, true, 2.0);
        let sdr = plan_for("mp4-720p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(
            sdr.contains(
                ":in_color_matrix=bt709:in_range=tv:out_color_matrix=bt709:out_range=tv,setsar=1,format=yuv420p"
            ) && !sdr.contains("tonemap"),
            "{sdr}"
        );
        let tags = "-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv";
        assert!(sdr.contains(tags), "{sdr}");
        let sd = plan_for("mp4-360p", &probe(640, 360, None, true, 2.0), &OutputOptions::default()).passes[0].join(" ");
        assert!(sd.contains(":in_color_matrix=bt601:"), "untagged SD is BT.601: {sd}");
        for (trc, name) in [("smpte2084", "PQ"), ("arib-std-b67", "HLG")] {
            let v = &mut p.streams[0];
            v.color_transfer = Some(trc.into());
            v.color_primaries = Some("bt2020".into());
            v.color_space = Some("bt2020nc".into());
            v.pix_fmt = Some("yuv420p10le".into());
            let a = plan_for("mp4-720p", &p, &OutputOptions::default()).passes[0].join(" ");
            assert!(
                a.contains(&format!("zscale=tin={trc}:pin=bt2020:min=bt2020nc:rin=tv:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"))
                    && a.contains(tags)
                    && !a.contains("in_color_matrix"),
                "{name}: {a}"
            );
            let l = plan_for("hls", &p, &OutputOptions::default()).passes[0].join(" ");
            assert_eq!(l.matches("tonemap=hable").count(), 5, "every rung: {l}");
            assert!(l.contains(tags), "{l}");
        }
    }

    #[test]
    fn non_square_pixels_become_square_at_the_display_size() {
        let mut p = probe(720, 576, None, true, 2.0);
        p.streams[0].sample_aspect_ratio = Some("64:45".into());
        assert_eq!(display_size(&p), Some((1024, 576)));
        let a = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(a.contains("scale=w=854:h=480:"), "{a}");
        assert!(a.contains(",setsar=1,"), "{a}");
        p.streams[0].sample_aspect_ratio = Some("16:15".into());
        assert_eq!(display_size(&p), Some((768, 576)));
        let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(t.contains("scale=768:576:flags=bicubic,setsar=1"), "{t}");
    }

    #[test]
    fn options_reach_the_argv() {
        let o = OutputOptions {
            trim: Some(Trim {
                start_seconds: 2.0,
                end_seconds: Some(5.0),
            }),
            max_frame_rate: Some(30.0),
            video_bitrate_kbps: Some(1500),
            two_pass: true,
            loudness: Some(crate::job::Loudness {
                integrated_lufs: -23.0,
                true_peak_db: -1.0,
                range_lu: 7.0,
            }),
            ..Default::default()
        };
        let p = plan_for("mp4-480p", &probe(1280, 720, None, true, 10.0), &o);
        assert_eq!(p.passes.len(), 2);
        assert_eq!(p.expected_duration, Some(3.0));
        let p1 = p.passes[0].join(" ");
        let p2 = p.passes[1].join(" ");
        assert!(
            p1.contains("-ss 2.000 -t 3.000 -i") && p1.contains("-pass 1") && p1.ends_with("-f null -"),
            "{p1}"
        );
        assert!(p1.contains("-an"), "no audio in the analysis pass");
        assert!(
            p2.contains("-pass 2") && p2.contains("-b:v 1500k") && !p2.contains("-crf"),
            "{p2}"
        );
        assert!(p2.contains("fps=fps='min(30,source_fps)'"), "{p2}");
        assert!(p2.contains("loudnorm=I=-23:TP=-1:LRA=7"), "{p2}");
    }

    #[test]
    fn ladders_never_upscale_and_honour_rotation() {
        let rungs = |pr: &Probe| {
            plan_for("hls", pr, &OutputOptions::default())
                .rungs
                .iter()
                .map(|r| r.height)
                .collect::<Vec<_>>()
        };
        assert_eq!(rungs(&probe(1920, 1080, None, true, 10.0)), [1080, 720, 480, 360, 240]);
        assert_eq!(rungs(&probe(1280, 720, None, true, 10.0)), [720, 480, 360, 240]);
        // a rung bounds the short side: a portrait 720x1280 is a 720p source, stored
        // upright or as 1280x720 with rotation
        assert_eq!(rungs(&probe(720, 1280, None, true, 10.0)), [720, 480, 360, 240]);
        assert_eq!(rungs(&probe(1280, 720, Some(-90), true, 10.0)), [720, 480, 360, 240]);
        let portrait =
            plan_for("hls", &probe(360, 640, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
        assert!(
            portrait.contains("scale=w=360:h=640:") && portrait.contains("scale=w=240:h=426:"),
            "{portrait}"
        );
        assert_eq!(rungs(&probe(320, 181, None, true, 10.0)), [180]);
        let hls = plan_for("hls", &probe(640, 360, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
        assert!(
            hls.contains("split=2[s0][s1]") && hls.contains("-var_stream_map v:0,a:0,name:360p v:1,a:1,name:240p"),
            "{hls}"
        );
        assert!(
            hls.contains("-hls_segment_type fmp4") && hls.contains("-master_pl_name master.m3u8"),
            "{hls}"
        );
        let silent =
            plan_for("hls", &probe(640, 360, None, false, 10.0), &OutputOptions::default()).passes[0].join(" ");
        assert!(
            !silent.contains("0:a:0") && silent.contains("v:0,name:360p v:1,name:240p"),
            "{silent}"
        );
        let dash = plan_for("dash", &probe(640, 360, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
        assert_eq!(dash.matches("-map 0:a:0").count(), 1, "{dash}");
        assert!(dash.ends_with("/w/out/manifest.mpd"), "{dash}");
    }

    #[test]
    fn thumbnails_spread_and_tile() {
        let p = plan_for(
            "thumbnails",
            &probe(1920, 1080, None, false, 20.0),
            &OutputOptions {
                count: Some(4),
                width: Some(200),
                ..Default::default()
            },
        );
        assert_eq!(p.images, 4);
        let a = p.passes[0].join(" ");
        assert!(
            a.contains("fps=fps=0.200000") && a.contains("scale=200:112") && a.contains("-frames:v 4"),
            "{a}"
        );
        let s = plan_for(
            "sprite",
            &probe(1280, 720, None, false, 100.0),
            &OutputOptions::default(),
        );
        let l = s.sprite.unwrap();
        assert_eq!((l.tile_width, l.tile_height, l.columns, l.count), (160, 90, 10, 50));
        assert!(s.passes[0].join(" ").contains("tile=10x5"));
        let vtt = sprite_vtt(&l, "sprite.jpg");
        assert!(vtt.starts_with("WEBVTT\n"));
        assert_eq!(vtt.matches(" --> ").count(), 50);
        assert!(
            vtt.contains("00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90"),
            "{vtt}"
        );
        assert!(
            vtt.contains("00:01:38.000 --> 00:01:40.000\nsprite.jpg#xywh=1440,360,160,90"),
            "{vtt}"
        );
        let poster =
            plan_for("poster", &probe(640, 480, None, false, 30.0), &OutputOptions::default()).passes[0].join(" ");
        assert!(
            poster.contains("-ss 3.000 -i") && poster.contains("scale=640:480"),
            "poster at 10%, never upscaled: {poster}"
        );
    }

    #[test]
    fn master_playlists_parse_and_must_carry_their_attributes() {
        let m = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=3440800,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n\n#EXT-X-STREAM-INF:BANDWIDTH=1020800,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n";
        let v = parse_master(m).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].width, v[0].height, v[0].bandwidth), (1280, 720, 3440800));
        assert_eq!(v[0].codecs, "avc1.64001f,mp4a.40.2");
        assert_eq!(v[1].uri, "360p/index.m3u8");
        assert!(parse_master(&m.replace(",CODECS=\"avc1.64001e,mp4a.40.2\"", ""))
            .unwrap_err()
            .contains("CODECS"));
        let (files, d) = parse_media_playlist("#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:4.000000,\nseg_00000.m4s\n#EXTINF:2.5,\nseg_00001.m4s\n#EXT-X-ENDLIST\n").unwrap();
        assert_eq!(files, ["init_0.mp4", "seg_00000.m4s", "seg_00001.m4s"]);
        assert!((d - 6.5).abs() < 1e-9);
        assert!(parse_media_playlist("#EXTM3U\n#EXTINF:4,\na.m4s\n")
            .unwrap_err()
            .contains("ENDLIST"));
        assert!(safe_join(Path::new("/o"), "../etc/passwd").is_err());
        assert!(safe_join(Path::new("/o"), "/etc/passwd").is_err());
    }

    #[test]
    fn mpds_parse() {
        let m = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1M6.0S" minBufferTime="PT4.0S">
<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720" sar="1:1">
<Representation id="1" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1">
<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000">"#;
        let p = parse_mpd(m).unwrap();
        assert_eq!(p.heights, [720, 360]);
        assert_eq!(p.widths, [1280, 640]);
        assert_eq!(p.duration_seconds, Some(66.0));
        assert!(parse_mpd("<html>").is_err());
    }

    #[test]
    fn files_are_checked_against_their_preset() {
        let c = Catalog::builtin();
        let stream = |kind: &str, codec: &str| ProbeStream {
            kind: kind.into(),
            codec: codec.into(),
            ..Default::default()
        };
        let src = probe(1280, 720, None, true, 10.0);
        let good = Probe {
            duration_seconds: Some(10.02),
            streams: vec![stream("video", "vp9"), stream("audio", "opus")],
            ..Probe::default()
        };
        let vp9 = c.find("webm-vp9-720p").unwrap();
        assert_eq!(validate_file(vp9, &src, Some(10.0), &good), Ok(()));
        let short = Probe {
            duration_seconds: Some(8.0),
            ..good.clone()
        };
        assert!(validate_file(vp9, &src, Some(10.0), &short)
            .unwrap_err()
            .contains("lasts 8.00 s"));
        let wrong = Probe {
            streams: vec![stream("video", "h264"), stream("audio", "opus")],
            ..good.clone()
        };
        assert!(validate_file(vp9, &src, Some(10.0), &wrong)
            .unwrap_err()
            .contains("video is h264"));
        let mute = Probe {
            streams: vec![stream("video", "vp9")],
            ..good.clone()
        };
        assert!(validate_file(vp9, &src, Some(10.0), &mute)
            .unwrap_err()
            .contains("lost the source's audio"));
        let mp3 = c.find("audio-mp3").unwrap();
        assert!(validate_file(mp3, &src, Some(10.0), &good)
            .unwrap_err()
            .contains("audio-only output has a vp9"));
    }
}
