//! FFmpeg for a split job outside the encode plans: the source's keyframes (ffprobe on
//! its packets, nothing decoded), the cut of the source into pieces by stream copy, and
//! its audio taken out whole. Every read of the source carries the input guard; each
//! piece is read with it again by the worker that encodes it.

use super::{input_guard, Limits};
use std::path::Path;

fn s(x: &str) -> String {
    x.to_string()
}

/// ffprobe argv listing the packets of the video stream `index` (time and flags) and
/// the source's start time.
pub fn keyframe_args(input: &Path, index: u32, limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-v"), s("error")];
    a.extend(input_guard(limits));
    a.extend([
        s("-select_streams"),
        index.to_string(),
        s("-show_entries"),
        s("format=start_time:packet=pts_time,flags"),
        s("-of"),
        s("csv=p=0"),
        format!("file:{}", input.display()),
    ]);
    a
}

/// The source's keyframes, from [`keyframe_args`]' output.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyframes {
    /// The source's start time (seconds): media time 0.
    pub start: f64,
    /// Each keyframe's time in media seconds (from `start`), in order.
    pub times: Vec<f64>,
}

/// Reads ffprobe's packet lines (`pts,flags`) and its format line (`start_time`).
/// Packets without a time are skipped; a missing start time is 0.
pub fn parse_keyframes(out: &str) -> Keyframes {
    let mut start = None;
    let mut raw = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(',') {
            Some((pts, flags)) => {
                if flags.starts_with('K') {
                    if let Ok(t) = pts.parse::<f64>() {
                        if t.is_finite() {
                            raw.push(t);
                        }
                    }
                }
            }
            None => start = line.parse::<f64>().ok().filter(|t| t.is_finite()),
        }
    }
    let start = start.unwrap_or(0.0);
    let mut times: Vec<f64> = raw.into_iter().map(|t| t - start).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    Keyframes { start, times }
}

/// ffprobe argv listing every stream's index and start time.
pub fn stream_start_args(input: &Path, limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-v"), s("error")];
    a.extend(input_guard(limits));
    a.extend([
        s("-show_entries"),
        s("stream=index,start_time"),
        s("-of"),
        s("csv=p=0"),
        format!("file:{}", input.display()),
    ]);
    a
}

/// Each stream's start time (absolute seconds), from [`stream_start_args`]' output;
/// streams without one are left out.
pub fn parse_stream_starts(out: &str) -> Vec<(u32, f64)> {
    out.lines()
        .filter_map(|l| {
            let (i, t) = l.trim().split_once(',')?;
            Some((i.parse().ok()?, t.parse::<f64>().ok().filter(|t| t.is_finite())?))
        })
        .collect()
}

/// FFmpeg argv looking for scene changes in the video stream `index` from `from`
/// (absolute seconds) for `seconds`: FFmpeg's `scdet`, which logs each change's time
/// (absolute, kept by `-copyts`) and score.
pub fn scene_args(input: &Path, index: u32, from: f64, seconds: f64, limits: &Limits) -> Vec<String> {
    let mut a = vec![
        s("-hide_banner"),
        s("-nostdin"),
        s("-nostats"),
        s("-loglevel"),
        s("info"),
    ];
    a.extend(input_guard(limits));
    a.extend([
        s("-ss"),
        format!("{:.6}", from.max(0.0)),
        s("-t"),
        format!("{seconds:.6}"),
        s("-copyts"),
        s("-i"),
        format!("file:{}", input.display()),
        s("-map"),
        format!("0:{index}"),
        s("-an"),
        s("-sn"),
        s("-dn"),
        s("-vf"),
        s("scdet=threshold=10"),
        s("-f"),
        s("null"),
        s("-"),
    ]);
    a
}

/// The scene changes `scdet` logged (absolute seconds), in order.
pub fn parse_scenes(stderr: &str) -> Vec<f64> {
    let mut times: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.split("lavfi.scd.time:").nth(1))
        .filter_map(|t| {
            t.trim()
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()?
                .parse()
                .ok()
        })
        .filter(|t: &f64| t.is_finite())
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    times
}

/// FFmpeg argv cutting the video stream `index` from the keyframe at `from` (absolute
/// seconds, a keyframe's time) up to `to` (absolute, exclusive; the end when `None`)
/// into a Matroska piece, by stream copy, keeping the source's timestamps.
pub fn piece_args(input: &Path, index: u32, from: f64, to: Option<f64>, out: &Path, limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    a.extend(input_guard(limits));
    // a hair past the keyframe, so the seek cannot land on the one before it when the
    // time printed rounds down
    if from > 0.0 {
        a.extend([s("-ss"), format!("{:.6}", from + 0.0005)]);
    }
    a.extend([
        s("-i"),
        format!("file:{}", input.display()),
        s("-map"),
        format!("0:{index}"),
        s("-c"),
        s("copy"),
        s("-copyts"),
    ]);
    if let Some(t) = to {
        a.extend([s("-to"), format!("{t:.6}")]);
    }
    a.extend(super::video_only_output("matroska", format!("file:{}", out.display())));
    a
}

/// FFmpeg argv taking the audio stream `index` out of the source whole, decoded into
/// FLAC (lossless) in Matroska. Decoded, not copied: the source's container says which
/// samples to drop (an MP4's edit list trims AAC's priming and padding), and a copy into
/// another container would lose that, making the audio longer and shifted by its
/// priming against an unchunked encode.
pub fn audio_args(input: &Path, index: u32, out: &Path, limits: &Limits) -> Vec<String> {
    let mut a = vec![s("-hide_banner"), s("-nostdin"), s("-y"), s("-loglevel"), s("error")];
    a.extend(input_guard(limits));
    a.extend([
        s("-i"),
        format!("file:{}", input.display()),
        s("-map"),
        format!("0:{index}"),
        s("-c:a"),
        s("flac"),
        s("-vn"),
        s("-sn"),
        s("-dn"),
        s("-map_metadata"),
        s("-1"),
        s("-f"),
        s("matroska"),
        format!("file:{}", out.display()),
    ]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_read_relative_to_the_start_and_junk_is_skipped() {
        let out = "1.400000,K_\n1.433367,__\nN/A,K_\n2.000000,K__\n1.400000,K_\nnan,K_\n\n1.400000\n";
        let k = parse_keyframes(out);
        assert_eq!(k.start, 1.4);
        assert_eq!(k.times.len(), 2);
        assert!(k.times[0].abs() < 1e-9 && (k.times[1] - 0.6).abs() < 1e-9, "{k:?}");
        assert_eq!(
            parse_keyframes("garbage\n,\n"),
            Keyframes {
                start: 0.0,
                times: vec![]
            }
        );
        assert_eq!(
            parse_stream_starts("0,0.000000\n1,0.021333\n2,N/A\nx,1\n"),
            [(0, 0.0), (1, 0.021333)]
        );
    }

    #[test]
    fn a_piece_is_a_guarded_stream_copy_from_its_keyframe() {
        let a = piece_args(
            Path::new("/w/src"),
            0,
            8.008,
            Some(9.6096),
            Path::new("/w/p.mkv"),
            &Limits::default(),
        );
        let j = a.join(" ");
        assert!(j.contains("-protocol_whitelist file"), "{j}");
        assert!(
            j.contains("-ss 8.008500 -i file:/w/src -map 0:0 -c copy -copyts -to 9.609600"),
            "{j}"
        );
        assert!(j.ends_with("-f matroska file:/w/p.mkv"), "{j}");
        let first = piece_args(
            Path::new("/w/src"),
            1,
            0.0,
            None,
            Path::new("/w/p.mkv"),
            &Limits::default(),
        );
        assert!(!first.contains(&s("-ss")) && !first.contains(&s("-to")));
    }
}
