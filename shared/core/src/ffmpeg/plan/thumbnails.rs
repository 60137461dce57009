//! Still images: a poster frame, frames spread over the source, or a sprite sheet of them
//! with its WebVTT index.

use super::filters::{deinterlaced, to_sdr_8bit};
use super::{
    even, guarded_start, out_file, s, tail_args, video_spec, window, Plan, PlanError, PlanInput, SpriteLayout,
};
use crate::presets::{display_size, ThumbnailMode, ThumbnailSpec};

/// What every image of one output shares.
struct Shots {
    width: u32,
    height: u32,
    count: u32,
    /// The part of the source the images come from: (start, duration) in seconds.
    start: f64,
    duration: f64,
    /// The filter chain that makes one picture into an image.
    scale: String,
}

/// The one run of a thumbnail output.
pub(super) fn plan(inp: &PlanInput, t: &ThumbnailSpec) -> Result<Plan, PlanError> {
    let (w, h) = display_size(inp.probe).ok_or(PlanError::NoVideo)?;
    let width = inp.options.width.unwrap_or(t.width).min(w.max(2));
    let width = width & !1;
    let height = even(width as f64 * h as f64 / w as f64);
    let (start, duration) = window(inp.options, inp.probe);
    let mut scale = deinterlaced(inp.probe, format!("scale={width}:{height}:flags=bicubic"));
    if inp.probe.video().is_some_and(|v| v.is_hdr()) {
        scale = format!("{scale},{}", to_sdr_8bit(inp.probe));
    }
    scale.push_str(",setsar=1");
    let shots = Shots {
        width,
        height,
        count: inp.options.count.unwrap_or(t.count).max(1),
        start,
        duration: duration.unwrap_or(0.0),
        scale,
    };
    let mut a = guarded_start(inp.limits);
    let (main, images, sprite) = match t.mode {
        ThumbnailMode::Poster => poster(inp, &shots, &mut a),
        ThumbnailMode::Frames => frames(inp, &shots, &mut a)?,
        ThumbnailMode::Sprite => sheet(inp, &shots, t.columns, &mut a)?,
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

type Made = (String, u32, Option<SpriteLayout>);

/// One frame at `at_seconds` (default: a tenth of the way in), kept inside the source.
fn poster(inp: &PlanInput, shots: &Shots, a: &mut Vec<String>) -> Made {
    let (start, dur) = (shots.start, shots.duration);
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
    encode(inp, a, shots.scale.clone(), 1, 3, "poster.jpg");
    ("poster.jpg".to_string(), 1, None)
}

/// Reads the part of the source the frames are spread over; returns the filter that
/// picks a frame at the middle of each of `count` equal slices of it.
fn spread(inp: &PlanInput, shots: &Shots, a: &mut Vec<String>) -> Result<String, PlanError> {
    let (start, dur) = (shots.start, shots.duration);
    if dur <= 0.0 {
        return Err(PlanError::NoDuration);
    }
    let rate = shots.count as f64 / dur;
    a.extend([
        s("-ss"),
        format!("{start:.3}"),
        s("-t"),
        format!("{dur:.3}"),
        s("-i"),
        format!("file:{}", inp.input.display()),
    ]);
    Ok(format!("fps=fps={rate:.6}:start_time={start:.3}:round=near"))
}

/// `count` images, `thumb_0001.jpg` on.
fn frames(inp: &PlanInput, shots: &Shots, a: &mut Vec<String>) -> Result<Made, PlanError> {
    let pick = spread(inp, shots, a)?;
    encode(
        inp,
        a,
        format!("{pick},{}", shots.scale),
        shots.count,
        3,
        "thumb_%04d.jpg",
    );
    Ok(("thumb_0001.jpg".to_string(), shots.count, None))
}

/// One sprite sheet of `count` tiles, `columns` to a row.
fn sheet(inp: &PlanInput, shots: &Shots, columns: u32, a: &mut Vec<String>) -> Result<Made, PlanError> {
    let pick = spread(inp, shots, a)?;
    let count = shots.count;
    let columns = columns.min(count).max(1);
    let rows = count.div_ceil(columns);
    encode(
        inp,
        a,
        format!("{pick},{},tile={columns}x{rows}", shots.scale),
        1,
        4,
        "sprite.jpg",
    );
    let layout = SpriteLayout {
        tile_width: shots.width,
        tile_height: shots.height,
        columns,
        count,
        interval_seconds: shots.duration / count as f64,
    };
    Ok(("sprite.jpg".to_string(), 1, Some(layout)))
}

/// The encode of the images: `frames` pictures of the source's video through `vf`, at
/// JPEG quality `q` (2 is best), into `name` (a numbered pattern, or one file that the
/// last picture rewrites).
fn encode(inp: &PlanInput, a: &mut Vec<String>, vf: String, frames: u32, q: u8, name: &str) {
    a.extend([
        s("-map"),
        video_spec(inp.probe),
        s("-vf"),
        vf,
        s("-frames:v"),
        frames.to_string(),
        s("-q:v"),
        q.to_string(),
    ]);
    if !name.contains('%') {
        a.extend([s("-update"), s("1")]);
    }
    a.extend(tail_args(inp, 0));
    a.push(out_file(inp, name));
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
