//! FFmpeg and ffprobe, as pure code: the input guard and the limits, the argv of probes,
//! the parsers of what they print (here); the argv of every encode ([`plan`]); the checks
//! that what came out is what the preset promised ([`check`]). Running them is
//! `nommer-media`'s business.

pub mod check;
pub mod plan;
pub mod quality;
pub mod split;

use crate::job::{IdetCounts, Interlacing, Probe, ProbeStream, StreamKind};
use std::path::Path;

/// The demuxers a source may be read with: real media containers only. Playlists and
/// scripts that make FFmpeg open other files or URLs (hls, dash, concat, ffconcat, sdp,
/// image2 patterns, tee, ...) are not on it, and nested demuxers inherit the list (an
/// AVI that smuggles in an HLS playlist is refused too).
pub const DEFAULT_FORMAT_WHITELIST: &str = "mov,matroska,webm,avi,mpegts,flv,mpeg,mpegvideo,ogg,wav,mp3,aac,flac,\
asf,mxf,gif,h264,hevc,m4v,dv,w64,aiff,ivf,obu,caf,amr,ac3,eac3,dts,truehd,wv,nut,gxf,yuv4mpegpipe";

/// What a source may be, and how hard FFmpeg may look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_duration_seconds: f64,
    /// Width × height of the largest video stream.
    pub max_pixels: u64,
    pub max_streams: usize,
    /// Bytes FFmpeg may read to find the streams.
    pub probe_size: u64,
    /// Media time FFmpeg may analyse to find the streams, in microseconds.
    pub analyze_duration_us: u64,
    pub format_whitelist: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_duration_seconds: 6.0 * 3600.0,
            max_pixels: 8192 * 4320,
            max_streams: 16,
            probe_size: 50_000_000,
            analyze_duration_us: 30_000_000,
            format_whitelist: DEFAULT_FORMAT_WHITELIST.to_string(),
        }
    }
}

/// The end of a picture-only output: no audio, subtitles, data or the source's
/// metadata, then its muxer and its URL.
pub fn video_only_output(muxer: &str, url: String) -> Vec<String> {
    let mut a: Vec<String> = ["-an", "-sn", "-dn", "-map_metadata", "-1", "-f", muxer]
        .iter()
        .map(|x| x.to_string())
        .collect();
    a.push(url);
    a
}

/// Input options that keep FFmpeg to the one local file it was given: only the `file`
/// protocol, only media demuxers, bounded probing.
pub fn input_guard(limits: &Limits) -> Vec<String> {
    vec![
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        limits.format_whitelist.clone(),
        "-probesize".into(),
        limits.probe_size.to_string(),
        "-analyzeduration".into(),
        limits.analyze_duration_us.to_string(),
    ]
}

/// Refuses sources that are really playlists or scripts, from their first bytes, before
/// any FFmpeg process sees them.
pub fn sniff(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let lower = t.to_ascii_lowercase();
    if t.starts_with("#EXTM3U") || lower.starts_with("#extm3u") {
        return Err("the source is an HLS playlist (#EXTM3U), not a media file; playlists can make FFmpeg read other files or URLs, so they are refused".into());
    }
    if lower.starts_with("ffconcat") {
        return Err("the source is an FFmpeg concat script, not a media file; refused".into());
    }
    if lower.starts_with("<?xml") || lower.starts_with("<mpd") {
        if lower.contains("<mpd") {
            return Err("the source is a DASH manifest (MPD), not a media file; refused".into());
        }
        return Err("the source is an XML document, not a media file; refused".into());
    }
    if lower.starts_with("v=0") && lower.contains("\nm=") {
        return Err("the source is an SDP session description, not a media file; refused".into());
    }
    Ok(())
}

/// True for an AVI file (RIFF form type `AVI `).
pub fn is_avi(head: &[u8]) -> bool {
    head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI "
}

/// Scans an AVI for GAB2 chunks: subtitle "files" embedded in the AVI, which FFmpeg
/// probes and opens with any demuxer (the known way to smuggle an HLS playlist into a
/// harmless-looking video). Streams through the file in bounded memory.
pub fn avi_embeds_files<R: std::io::Read>(mut r: R) -> std::io::Result<bool> {
    const NEEDLE: &[u8] = b"GAB2\0";
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    loop {
        let n = r.read(&mut buf[carry..])?;
        if n == 0 {
            return Ok(false);
        }
        let end = carry + n;
        if buf[..end].windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return Ok(true);
        }
        // keep the tail in case the marker straddles two reads
        let keep = (NEEDLE.len() - 1).min(end);
        buf.copy_within(end - keep..end, 0);
        carry = keep;
    }
}

/// Checks a probed source against the limits; the error says which one it broke.
pub fn check_limits(probe: &Probe, limits: &Limits) -> Result<(), String> {
    if probe.streams.len() > limits.max_streams {
        return Err(format!(
            "the source has {} streams; the limit is {}",
            probe.streams.len(),
            limits.max_streams
        ));
    }
    if let Some(d) = probe.duration_seconds {
        if d > limits.max_duration_seconds {
            return Err(format!(
                "the source lasts {d:.0} s; the limit is {:.0} s",
                limits.max_duration_seconds
            ));
        }
    }
    for s in &probe.streams {
        if let (Some(w), Some(h)) = (s.width, s.height) {
            let px = u64::from(w) * u64::from(h);
            if px > limits.max_pixels {
                return Err(format!(
                    "stream {} is {w}x{h} ({px} pixels); the limit is {} pixels",
                    s.index, limits.max_pixels
                ));
            }
        }
    }
    Ok(())
}

/// `ffprobe` argv for a local file, printing JSON.
pub fn probe_args(input: &Path, limits: &Limits) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-v", "error"].iter().map(|s| s.to_string()).collect();
    a.extend(input_guard(limits));
    a.extend(
        ["-show_format", "-show_streams", "-of", "json"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.push(format!("file:{}", input.display()));
    a
}

/// `ffprobe` argv for a source behind a presigned URL (the dispatcher probes before
/// routing): HTTP(S) for that one URL, and the same demuxer whitelist, so a playlist
/// inside cannot be followed.
pub fn url_probe_args(url: &str, limits: &Limits) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-v", "error"].iter().map(|s| s.to_string()).collect();
    let mut guard = input_guard(limits);
    guard[1] = "http,https,tcp,tls".into();
    a.extend(guard);
    a.extend(
        ["-show_format", "-show_streams", "-of", "json"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.push(url.to_string());
    a
}

/// `ffprobe` argv for a file Nommer made itself (an output, its playlists), which may
/// be a playlist of local segments: files only, still no network.
pub fn own_output_probe_args(path: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-v", "error", "-protocol_whitelist", "file"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(
        ["-show_format", "-show_streams", "-of", "json"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.push(format!("file:{}", path.display()));
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
        // a count past u32 saturates rather than wrapping: 2^32 + 1920 pixels wide must
        // not read as 1920 and slip under the pixel limit
        let count = |k: &str| -> Option<u32> {
            s.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        };
        let text = |k: &str| -> Option<String> {
            s.get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty() && *v != "unknown" && *v != "N/A")
                .map(str::to_string)
        };
        streams.push(ProbeStream {
            index: count("index").unwrap_or(0),
            kind: StreamKind::parse(s.get("codec_type").and_then(|c| c.as_str()).unwrap_or_default()),
            codec: s
                .get("codec_name")
                .and_then(|c| c.as_str())
                .unwrap_or("unknown")
                .to_string(),
            width: count("width"),
            height: count("height"),
            frame_rate,
            rotation,
            bit_rate: num(s.get("bit_rate")).map(|b| b as u64),
            channels: count("channels"),
            sample_rate: num(s.get("sample_rate")).map(|b| b as u32),
            attached_pic: s
                .get("disposition")
                .and_then(|d| d.get("attached_pic"))
                .and_then(|a| a.as_i64())
                == Some(1),
            field_order: text("field_order"),
            pix_fmt: text("pix_fmt"),
            color_transfer: text("color_transfer"),
            color_primaries: text("color_primaries"),
            color_space: text("color_space"),
            color_range: text("color_range"),
            sample_aspect_ratio: text("sample_aspect_ratio").filter(|r| r != "1:1" && r != "0:1"),
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
        interlacing: None,
    })
}

/// What a stream's `field_order` says: interlaced (with the field shown first), or
/// progressive; `None` when it does not say (absent or `unknown`), which `idet` decides.
pub fn interlacing_from_field_order(field_order: Option<&str>) -> Option<Interlacing> {
    // tt/bb: coded and shown top (bottom) first; tb: top coded, bottom shown first; bt: the reverse
    let (interlaced, top) = match field_order? {
        "progressive" => (false, None),
        "tt" | "bt" => (true, Some(true)),
        "bb" | "tb" => (true, Some(false)),
        _ => return None,
    };
    Some(Interlacing {
        interlaced,
        detected_by: "field_order".into(),
        top_field_first: top,
        idet: None,
    })
}

/// How many frames `idet` looks at when the field order is unknown.
pub const IDET_FRAMES: u32 = 200;

/// FFmpeg argv that runs `idet` on the first frames of stream `index` of a local source
/// (guarded like every read of a source); its verdict is on stderr, at `info` level.
pub fn idet_args(input: &Path, index: u32, limits: &Limits) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(input_guard(limits));
    a.extend(["-i".into(), format!("file:{}", input.display())]);
    a.extend(
        [
            "-map".to_string(),
            format!("0:{index}"),
            "-frames:v".into(),
            IDET_FRAMES.to_string(),
            "-vf".into(),
            "idet".into(),
            "-an".into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ]
        .into_iter(),
    );
    a
}

/// Reads idet's "Multi frame detection" totals from FFmpeg's stderr.
pub fn parse_idet(stderr: &str) -> Option<IdetCounts> {
    let line = stderr.lines().rev().find(|l| l.contains("Multi frame detection:"))?;
    let rest = &line[line.find("Multi frame detection:")? + "Multi frame detection:".len()..];
    let get = |k: &str| -> Option<u32> {
        let i = rest.find(&format!("{k}:"))? + k.len() + 1;
        rest[i..].split_whitespace().next()?.parse().ok()
    };
    Some(IdetCounts {
        tff: get("TFF")?,
        bff: get("BFF")?,
        progressive: get("Progressive")?,
        undetermined: get("Undetermined")?,
    })
}

/// The decision from idet's totals.
pub fn interlacing_from_idet(counts: IdetCounts) -> Interlacing {
    let interlaced = counts.interlaced();
    Interlacing {
        interlaced,
        detected_by: "idet".into(),
        top_field_first: interlaced.then_some(counts.tff >= counts.bff),
        idet: Some(counts),
    }
}

/// The last few meaningful lines FFmpeg wrote to stderr: its reason for failing.
pub fn reason_from_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    let s = tail.join(" | ");
    if s.is_empty() {
        "FFmpeg gave no reason".to_string()
    } else {
        crate::text::clip(&s, 600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(p.has(crate::job::StreamKind::Audio) && !p.has(crate::job::StreamKind::Subtitle));
        assert!(parse_probe("{}", 0).is_err());
    }

    #[test]
    fn interlacing_is_read_from_field_order_or_idet() {
        let fo = |f| interlacing_from_field_order(f).map(|i| (i.interlaced, i.top_field_first));
        assert_eq!(fo(Some("tt")), Some((true, Some(true))));
        assert_eq!(fo(Some("bb")), Some((true, Some(false))));
        assert_eq!(fo(Some("tb")), Some((true, Some(false))), "bottom shown first");
        assert_eq!(fo(Some("bt")), Some((true, Some(true))));
        assert_eq!(fo(Some("progressive")), Some((false, None)));
        assert_eq!(fo(None), None);
        assert_eq!(fo(Some("unknown")), None);
        let stderr = "[Parsed_idet_0 @ 0x55d1] Repeated Fields: Neither:    51 Top:     0 Bottom:     0\n\
[Parsed_idet_0 @ 0x55d1] Single frame detection: TFF:    40 BFF:     0 Progressive:     3 Undetermined:     7\n\
[Parsed_idet_0 @ 0x55d1] Multi frame detection: TFF:    48 BFF:     0 Progressive:     2 Undetermined:     0\n";
        let c = parse_idet(stderr).unwrap();
        assert_eq!((c.tff, c.bff, c.progressive, c.undetermined), (48, 0, 2, 0));
        let i = interlacing_from_idet(c);
        assert!(i.interlaced && i.top_field_first == Some(true) && i.detected_by == "idet");
        let p = IdetCounts {
            tff: 1,
            bff: 0,
            progressive: 190,
            undetermined: 9,
        };
        assert!(!interlacing_from_idet(p).interlaced);
        assert_eq!(parse_idet("no verdict"), None);
        let a = idet_args(Path::new("/w/in.mp4"), 0, &Limits::default()).join(" ");
        assert!(
            a.contains("-protocol_whitelist file") && a.contains("-map 0:0 -frames:v 200 -vf idet -an -f null -"),
            "{a}"
        );
    }

    #[test]
    fn cover_art_is_not_video() {
        let json = r#"{"streams":[{"index":0,"codec_type":"audio","codec_name":"mp3"},{"index":1,"codec_type":"video","codec_name":"png","width":64,"height":64,"disposition":{"default":0,"attached_pic":1}}],"format":{"format_name":"mp3","duration":"2.0"}}"#;
        let p = parse_probe(json, 10).unwrap();
        assert!(p.streams[1].attached_pic);
        assert!(!p.has(crate::job::StreamKind::Video) && p.video().is_none() && p.has(crate::job::StreamKind::Audio));
    }

    #[test]
    fn playlists_and_scripts_are_sniffed_out() {
        assert!(sniff(b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
            .unwrap_err()
            .contains("HLS playlist"));
        assert!(sniff(b"\xef\xbb\xbf  #extm3u\n").unwrap_err().contains("HLS playlist"));
        assert!(sniff(b"ffconcat version 1.0\nfile 'concat:/etc/passwd'\n")
            .unwrap_err()
            .contains("concat script"));
        assert!(sniff(b"<?xml version=\"1.0\"?><MPD>").unwrap_err().contains("DASH"));
        assert!(sniff(b"v=0\no=- 0 0 IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n")
            .unwrap_err()
            .contains("SDP"));
        assert!(sniff(b"\x00\x00\x00\x18ftypmp42").is_ok());
        assert!(sniff(b"").is_ok());
    }

    #[test]
    fn avis_with_embedded_files_are_found() {
        let mut avi = b"RIFF\0\0\0\0AVI LIST".to_vec();
        assert!(is_avi(&avi));
        assert!(!is_avi(b"RIFF\0\0\0\0WAVEfmt "));
        avi.extend(std::iter::repeat_n(0u8, (1 << 20) - 3 - avi.len()));
        assert!(!avi_embeds_files(&avi[..]).unwrap());
        // the marker straddles the 1 MiB read boundary
        avi.extend(b"GAB2\0\x02\x00#EXTM3U");
        assert!(avi_embeds_files(&avi[..]).unwrap());
    }

    #[test]
    fn limits_name_what_they_refuse() {
        let l = Limits {
            max_duration_seconds: 60.0,
            max_pixels: 1920 * 1080,
            max_streams: 2,
            ..Limits::default()
        };
        let mut p = Probe {
            duration_seconds: Some(30.0),
            ..Probe::default()
        };
        p.streams.push(ProbeStream {
            index: 0,
            kind: crate::job::StreamKind::Video,
            width: Some(1920),
            height: Some(1080),
            ..Default::default()
        });
        assert!(check_limits(&p, &l).is_ok());
        p.streams[0].width = Some(3840);
        assert!(check_limits(&p, &l).unwrap_err().contains("3840x1080"));
        p.streams[0].width = Some(1920);
        p.duration_seconds = Some(61.0);
        assert!(check_limits(&p, &l).unwrap_err().contains("lasts 61 s"));
        p.duration_seconds = None;
        p.streams.extend([ProbeStream::default(), ProbeStream::default()]);
        assert!(check_limits(&p, &l).unwrap_err().contains("3 streams"));
    }

    #[test]
    fn stderr_reason_is_the_tail() {
        assert_eq!(reason_from_stderr("a\n\nb\nc\nd\n"), "b | c | d");
        assert_eq!(reason_from_stderr(""), "FFmpeg gave no reason");
    }
}
