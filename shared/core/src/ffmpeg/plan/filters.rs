//! The video filter chains: deinterlacing, scaling to a height, the matrix and tone
//! mapping to 8-bit BT.709, and the watermark overlay.

use super::{output_size, s, video_spec, PlanInput};
use crate::job::{Corner, Probe};
use crate::presets::{display_size, short_side};

/// `chain` after the deinterlacer when the source needs one.
pub(super) fn deinterlaced(probe: &Probe, chain: String) -> String {
    match deinterlace(probe) {
        Some(d) => format!("{d},{chain}"),
        None => chain,
    }
}

/// `bwdif` when the source was found interlaced (one frame per frame, so the frame rate
/// stays; the field order from the decision, else from the frames).
pub(super) fn deinterlace(probe: &Probe) -> Option<String> {
    let i = probe.interlacing.as_ref().filter(|i| i.interlaced)?;
    let parity = match i.top_field_first {
        Some(true) => "tff",
        Some(false) => "bff",
        None => "auto",
    };
    Some(format!("bwdif=mode=send_frame:parity={parity}:deint=all"))
}

/// The video filter chain for one output: the frame-rate cap, the scale `height` asks
/// for, and the 8-bit BT.709 end.
pub(super) fn video_filters(inp: &PlanInput, height: HeightRule) -> String {
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

/// The source's pictures as an output sees them, at `size`, for scoring the output
/// against them: the output's deinterlacing, frame-rate cap, matrix and tone mapping
/// (the output is compared with what it was made to be, not with another picture).
pub fn reference_chain(probe: &Probe, options: &crate::job::OutputOptions, size: (u32, u32)) -> String {
    let mut f = Vec::new();
    if let Some(d) = deinterlace(probe) {
        f.push(d);
    }
    if let Some(r) = options.max_frame_rate {
        f.push(format!("fps=fps='min({r},source_fps)'"));
    }
    f.push(format!(
        "scale=w={}:h={}:flags=bicubic{}",
        size.0,
        size.1,
        matrix(probe)
    ));
    f.push(to_sdr_8bit(probe));
    f.push(s("setsar=1"));
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
pub(super) fn to_sdr_8bit(probe: &Probe) -> String {
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
pub(super) fn colour_tags() -> Vec<String> {
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
pub(super) enum HeightRule {
    /// A file's cap: the short side at most this, never upscaled.
    AtMost(u32),
    /// A rung: the short side exactly this.
    Exactly(u32),
}

/// Wraps a chain so the watermark (input 1) is laid over it; returns a filter_complex
/// graph reading `[0:v]` and writing `[out]`. (In `scale2ref`, `iw` is the reference
/// video's width and `mdar` the scaled image's own aspect ratio.)
pub(super) fn with_watermark(inp: &PlanInput, chain: &str) -> Option<String> {
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
