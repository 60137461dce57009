//! FFmpeg and ffprobe: argv builders and parsers of what they print. Running them is the
//! worker's business; everything here is pure.

use crate::job::{Probe, ProbeStream};
use crate::presets::{AudioCodec, Preset, VideoCodec};
use std::path::Path;

/// Input options that keep FFmpeg to the local file it was given: no network, no
/// other protocols, bounded probing.
fn input_guard() -> Vec<String> {
    [
        "-protocol_whitelist",
        "file",
        "-probesize",
        "50000000",
        "-analyzeduration",
        "30000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `ffprobe` argv for a local file, printing JSON.
pub fn probe_args(input: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-v", "error"].iter().map(|s| s.to_string()).collect();
    a.extend(input_guard());
    a.extend(
        ["-show_format", "-show_streams", "-of", "json"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.push(format!("file:{}", input.display()));
    a
}

/// `ffmpeg` argv that encodes `input` to `output` with `preset`, reporting progress as
/// `key=value` lines on stdout. `has_audio` drops the audio part when the source has
/// none.
pub fn encode_args(preset: &Preset, input: &Path, output: &Path, has_audio: bool) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(input_guard());
    a.push("-i".into());
    a.push(format!("file:{}", input.display()));
    a.push("-map_metadata".into());
    a.push("-1".into());
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match &preset.video {
        Some(v) => {
            push(&["-map", "0:v:0"]);
            let vf = format!(
                // never upscale, keep the aspect ratio, keep both dimensions even
                "scale=w=-2:h='trunc(min({h},ih)/2)*2':flags=bicubic,format=yuv420p",
                h = v.max_height
            );
            push(&["-vf", &vf]);
            match v.codec {
                VideoCodec::H264 => push(&["-c:v", "libx264", "-preset", v.speed, "-profile:v", v.profile]),
            }
            let crf = v.crf.to_string();
            let maxrate = format!("{}k", v.max_bitrate_kbps);
            let bufsize = format!("{}k", v.max_bitrate_kbps * 2);
            push(&["-crf", &crf, "-maxrate", &maxrate, "-bufsize", &bufsize]);
        }
        None => push(&["-vn"]),
    }
    match (&preset.audio, has_audio) {
        (Some(au), true) => {
            push(&["-map", "0:a:0"]);
            match au.codec {
                AudioCodec::Aac => push(&["-c:a", "aac"]),
            }
            let br = format!("{}k", au.bitrate_kbps);
            let ch = au.channels.to_string();
            let sr = au.sample_rate.to_string();
            push(&["-b:a", &br, "-ac", &ch, "-ar", &sr]);
        }
        _ => push(&["-an"]),
    }
    push(&[
        "-sn",
        "-dn",
        "-movflags",
        "+faststart",
        "-progress",
        "pipe:1",
        "-nostats",
    ]);
    a.push(format!("file:{}", output.display()));
    a
}

/// Reads FFmpeg's `-progress` output line by line.
#[derive(Debug, Default)]
pub struct ProgressParser {
    out_time_us: Option<i64>,
}

/// One block of `-progress` output, complete at its `progress=` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressTick {
    pub out_time_seconds: f64,
    pub done: bool,
}

impl ProgressParser {
    /// Feeds one line; returns a tick at the end of each block.
    pub fn line(&mut self, line: &str) -> Option<ProgressTick> {
        let (k, v) = line.trim().split_once('=')?;
        match k {
            // out_time_ms is also microseconds (a historical FFmpeg quirk)
            "out_time_us" | "out_time_ms" => {
                if let Ok(us) = v.trim().parse::<i64>() {
                    self.out_time_us = Some(us.max(0));
                }
                None
            }
            "progress" => Some(ProgressTick {
                out_time_seconds: self.out_time_us.unwrap_or(0) as f64 / 1e6,
                done: v.trim() == "end",
            }),
            _ => None,
        }
    }
}

/// Percent done (0-99 while running; 100 is for the finished state) for an output time
/// against the source duration.
pub fn percent(out_time_seconds: f64, duration_seconds: Option<f64>) -> u8 {
    match duration_seconds {
        Some(d) if d > 0.0 => ((out_time_seconds / d) * 100.0).clamp(0.0, 99.0) as u8,
        _ => 0,
    }
}

/// Parses `ffprobe -show_format -show_streams -of json`.
pub fn parse_probe(json: &str, size: u64) -> Result<Probe, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("ffprobe printed no JSON: {e}"))?;
    let format = v.get("format").ok_or("ffprobe found no container format")?;
    let num = |x: Option<&serde_json::Value>| -> Option<f64> {
        x.and_then(|x| x.as_str().and_then(|s| s.parse().ok()).or_else(|| x.as_f64()))
    };
    let mut streams = Vec::new();
    for s in v.get("streams").and_then(|s| s.as_array()).into_iter().flatten() {
        let rotation = s
            .get("side_data_list")
            .and_then(|l| l.as_array())
            .and_then(|l| l.iter().find_map(|d| d.get("rotation").and_then(|r| r.as_i64())))
            .or_else(|| {
                s.get("tags")
                    .and_then(|t| t.get("rotate"))
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.parse().ok())
            })
            .map(|r| r as i32);
        let frame_rate = s.get("avg_frame_rate").and_then(|r| r.as_str()).and_then(|r| {
            let (n, d) = r.split_once('/')?;
            let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
            (d > 0.0 && n > 0.0).then(|| n / d)
        });
        streams.push(ProbeStream {
            index: s.get("index").and_then(|i| i.as_u64()).unwrap_or(0) as u32,
            kind: s
                .get("codec_type")
                .and_then(|c| c.as_str())
                .unwrap_or("unknown")
                .to_string(),
            codec: s
                .get("codec_name")
                .and_then(|c| c.as_str())
                .unwrap_or("unknown")
                .to_string(),
            width: s.get("width").and_then(|w| w.as_u64()).map(|w| w as u32),
            height: s.get("height").and_then(|w| w.as_u64()).map(|w| w as u32),
            frame_rate,
            rotation,
            bit_rate: num(s.get("bit_rate")).map(|b| b as u64),
            channels: s.get("channels").and_then(|w| w.as_u64()).map(|w| w as u32),
            sample_rate: num(s.get("sample_rate")).map(|b| b as u32),
        });
    }
    Ok(Probe {
        container: format
            .get("format_name")
            .and_then(|f| f.as_str())
            .unwrap_or("unknown")
            .to_string(),
        duration_seconds: num(format.get("duration")).filter(|d| d.is_finite() && *d >= 0.0),
        size,
        bit_rate: num(format.get("bit_rate")).map(|b| b as u64),
        streams,
    })
}

/// The last few meaningful lines FFmpeg wrote to stderr: its reason for failing.
pub fn reason_from_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    let s = tail.join(" | ");
    if s.is_empty() {
        "FFmpeg gave no reason".to_string()
    } else {
        crate::telemetry::clip(&s, 600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::find;

    #[test]
    fn argv_for_720p_caps_height_and_guards_input() {
        let a = encode_args(
            find("mp4-720p").unwrap(),
            Path::new("/w/in.mov"),
            Path::new("/w/out.mp4"),
            true,
        );
        let s = a.join(" ");
        assert!(s.contains("-protocol_whitelist file -probesize"), "{s}");
        assert!(s.contains("min(720,ih)"), "{s}");
        assert!(s.contains("-c:v libx264") && s.contains("-c:a aac"), "{s}");
        assert!(s.ends_with("file:/w/out.mp4"), "{s}");
        let i = a.iter().position(|x| x == "-i").unwrap();
        assert_eq!(a[i + 1], "file:/w/in.mov");
        assert!(
            a.iter().position(|x| x == "-protocol_whitelist").unwrap() < i,
            "guard is an input option"
        );
        let no_audio = encode_args(find("mp4-720p").unwrap(), Path::new("in"), Path::new("out"), false).join(" ");
        assert!(no_audio.contains("-an") && !no_audio.contains("0:a:0"), "{no_audio}");
    }

    #[test]
    fn progress_blocks_give_ticks() {
        let mut p = ProgressParser::default();
        let mut ticks = vec![];
        for l in "frame=10\nout_time_us=1500000\nout_time_ms=1500000\nprogress=continue\nout_time_us=N/A\nprogress=continue\nout_time_us=3000000\nprogress=end\n".lines() {
            ticks.extend(p.line(l));
        }
        assert_eq!(ticks.len(), 3);
        assert_eq!(
            ticks[0],
            ProgressTick {
                out_time_seconds: 1.5,
                done: false
            }
        );
        assert_eq!(ticks[1].out_time_seconds, 1.5, "N/A keeps the last time");
        assert!(ticks[2].done);
        assert_eq!(percent(1.5, Some(3.0)), 50);
        assert_eq!(percent(9.0, Some(3.0)), 99);
        assert_eq!(percent(1.0, None), 0);
    }

    #[test]
    fn probe_json_parses() {
        let json = r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":1280,"height":720,"avg_frame_rate":"30000/1001","bit_rate":"1000000","side_data_list":[{"rotation":-90}]},{"index":1,"codec_type":"audio","codec_name":"aac","channels":2,"sample_rate":"48000"}],"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"10.010000","bit_rate":"1100000"}}"#;
        let p = parse_probe(json, 1234).unwrap();
        assert_eq!(p.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!(p.duration_seconds, Some(10.01));
        assert_eq!(p.streams.len(), 2);
        assert_eq!(p.streams[0].rotation, Some(-90));
        assert!((p.streams[0].frame_rate.unwrap() - 29.97).abs() < 0.01);
        assert_eq!(p.streams[1].sample_rate, Some(48000));
        assert!(p.has("audio") && !p.has("subtitle"));
        assert!(parse_probe("{}", 0).is_err());
    }

    #[test]
    fn stderr_reason_is_the_tail() {
        assert_eq!(reason_from_stderr("a\n\nb\nc\nd\n"), "b | c | d");
        assert_eq!(reason_from_stderr(""), "FFmpeg gave no reason");
    }
}
