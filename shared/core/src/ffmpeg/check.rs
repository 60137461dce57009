//! The checks that what FFmpeg made is what the preset promised: a file's streams and
//! duration, an HLS ladder's playlists (read with `m3u8-rs`) and the files they name, a
//! DASH MPD (read with `dash-mpd-core`, the parser of the `dash-mpd` crate).

use crate::ffmpeg::plan::Plan;
use crate::job::{Probe, StreamKind};
use crate::presets::{Preset, PresetKind};
use std::path::{Component, Path, PathBuf};

/// Checks a media file against what its preset promised: the expected streams with the
/// expected codecs, and a duration within tolerance.
pub fn validate_file(preset: &Preset, source: &Probe, expected: Option<f64>, output: &Probe) -> Result<(), String> {
    let PresetKind::File { video, audio, .. } = &preset.kind else {
        return Ok(());
    };
    let find = |kind: StreamKind| output.streams.iter().find(|s| s.kind == kind);
    match (video, find(StreamKind::Video)) {
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
    match (audio, find(StreamKind::Audio)) {
        (Some(a), Some(s)) if s.codec != a.codec.probe_name() => {
            return Err(format!(
                "audio is {} but the preset makes {}",
                s.codec,
                a.codec.probe_name()
            ))
        }
        (Some(_), None) if source.has(crate::job::StreamKind::Audio) => {
            return Err("the output lost the source's audio".into())
        }
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
    let playlist = m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .map_err(|e| format!("the master playlist does not parse ({:?})", e.map(|e| e.code)))?;
    // m3u8-rs keeps an #EXT-X-STREAM-INF it cannot read (no BANDWIDTH, a malformed
    // attribute) as an unknown tag rather than failing: a variant lost, so refused here
    if let Some(tag) = playlist.unknown_tags.iter().find(|t| t.tag == "X-STREAM-INF") {
        return Err(unreadable_variant(tag.rest.as_deref().unwrap_or("")));
    }
    let variants = playlist
        .variants
        .into_iter()
        .filter(|v| !v.is_i_frame)
        .map(variant)
        .collect::<Result<Vec<_>, _>>()?;
    if variants.is_empty() {
        return Err("the master playlist lists no variants".into());
    }
    Ok(variants)
}

fn unreadable_variant(attributes: &str) -> String {
    if attributes.split(',').any(|a| a.split('=').next() == Some("BANDWIDTH")) {
        format!("a variant's #EXT-X-STREAM-INF has a malformed attribute: {attributes}")
    } else {
        "a variant has no BANDWIDTH".into()
    }
}

fn variant(v: m3u8_rs::VariantStream) -> Result<Variant, String> {
    let res = v.resolution.ok_or("a variant has no RESOLUTION")?;
    let codecs = v.codecs.filter(|c| !c.is_empty()).ok_or("a variant has no CODECS")?;
    let uri = v.uri.trim();
    if uri.is_empty() {
        return Err("a variant has no URI".into());
    }
    Ok(Variant {
        uri: uri.to_string(),
        bandwidth: v.bandwidth,
        width: u32::try_from(res.width).map_err(|_| "bad RESOLUTION width")?,
        height: u32::try_from(res.height).map_err(|_| "bad RESOLUTION height")?,
        codecs,
    })
}

/// Checks a media playlist is complete (VOD, ends with #EXT-X-ENDLIST) and returns the
/// files it names (init segment and media segments) and its total duration.
pub fn parse_media_playlist(text: &str) -> Result<(Vec<String>, f64), String> {
    if !text.starts_with("#EXTM3U") {
        return Err("a media playlist does not start with #EXTM3U".into());
    }
    let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .map_err(|e| format!("a media playlist does not parse ({:?})", e.map(|e| e.code)))?;
    if !playlist.end_list {
        return Err("a media playlist has no #EXT-X-ENDLIST (incomplete)".into());
    }
    let mut files = Vec::new();
    let mut duration = 0.0;
    for segment in playlist.segments {
        if let Some(map) = segment.map {
            files.push(map.uri.trim().to_string());
        }
        files.push(segment.uri.trim().to_string());
        duration += seconds(segment.duration);
    }
    Ok((files, duration))
}

/// An `#EXTINF` duration as written: m3u8-rs keeps it as an `f32`, whose shortest
/// decimal form is what FFmpeg wrote (`4.004`, not `4.003999948501587`).
fn seconds(d: f32) -> f64 {
    d.to_string().parse().unwrap_or(d as f64)
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

/// Reads the parts of a DASH MPD that validation needs: the size of each MP4 video
/// representation (its own attributes, else its adaptation set's) and the duration.
pub fn parse_mpd(text: &str) -> Result<Mpd, String> {
    names_are_xml(text)?;
    durations_fit(text)?;
    let mpd = dash_mpd_core::parse(text).map_err(|e| format!("not an MPD: {e}"))?;
    let mut heights = Vec::new();
    let mut widths = Vec::new();
    for set in mpd.periods.iter().flat_map(|p| &p.adaptations) {
        for r in &set.representations {
            if r.mimeType.as_ref().or(set.mimeType.as_ref()).map(String::as_str) != Some("video/mp4") {
                continue;
            }
            heights.push(dimension(r.height.or(set.height), "height")?);
            widths.push(dimension(r.width.or(set.width), "width")?);
        }
    }
    if heights.is_empty() {
        return Err("the MPD has no video representation".into());
    }
    Ok(Mpd {
        heights,
        widths,
        duration_seconds: mpd.mediaPresentationDuration.map(|d| d.as_secs_f64()),
    })
}

/// Refuses a tag whose name is no XML name (`<@start>`, `<x:@start>`, `<$value>`, `<>`).
/// quick-xml 0.42's deserializer, under dash-mpd-core, maps attributes to `@`-named
/// fields (and text to `$`-named ones), so an element named `@start`, or with a prefix
/// before it, is mistaken for an attribute and trips its debug assertion on the end tag
/// (a panic in a debug build, a misread MPD in a release one). XML allows a `<` only
/// before `/`, `?`, `!` or a name of letters, digits and `-._:` (comments and CDATA are
/// skipped).
fn names_are_xml(text: &str) -> Result<(), String> {
    let is_start = |c: char| c.is_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    let is_part = |c: char| is_start(c) || c.is_ascii_digit() || c == '-' || c == '.';
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let skip_to = if rest.starts_with("!--") {
            Some("-->")
        } else if rest.starts_with("![CDATA[") {
            Some("]]>")
        } else {
            None
        };
        if let Some(end) = skip_to {
            rest = rest.find(end).map_or("", |j| &rest[j + end.len()..]);
            continue;
        }
        if rest.starts_with(['?', '!']) {
            continue;
        }
        let name: String = rest
            .strip_prefix('/')
            .unwrap_or(rest)
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
            .collect();
        let fits = name.starts_with(is_start) && name.chars().all(is_part);
        if !fits {
            let name = crate::text::clip(&name, 40);
            return Err(format!("not an MPD: a tag is named `{name}`, not an XML name"));
        }
    }
    Ok(())
}

/// Refuses an MPD with an xs:duration too long for 64 bits of seconds. dash-mpd-core
/// 0.1 adds a duration's parts up unchecked: one such value panics a debug build and
/// wraps to a wrong duration in a release one. Every `P…` in the text is checked, with
/// entities decoded as the XML parser will (an escaped digit cannot slip past, and no
/// quoting trick can hide an attribute from a scan that ignores quoting).
fn durations_fit(text: &str) -> Result<(), String> {
    let text = unescape(text);
    for (i, _) in text.match_indices('P') {
        let run: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || "YMWDTHS.".contains(*c))
            .collect();
        if !xs_duration_fits(&run) {
            return Err(format!("not an MPD: the duration P{run} is out of range"));
        }
    }
    Ok(())
}

/// Whether the parts of an xs:duration (`nYnMnWnDTnHnMnS`, after the `P`) add up within
/// u64 seconds. A part too long for u64 itself is left out: dash-mpd-core refuses it
/// when it reads it, but adds up the others before, in any order.
fn xs_duration_fits(parts: &str) -> bool {
    let (mut total, mut n, mut in_time, mut in_fraction) = (0u64, Some(0u64), false, false);
    for c in parts.chars() {
        let unit: u64 = match c {
            '0'..='9' if in_fraction => continue,
            '0'..='9' => {
                n = n.and_then(|n| n.checked_mul(10)?.checked_add(u64::from(c) - u64::from('0')));
                continue;
            }
            '.' => {
                in_fraction = true;
                continue;
            }
            'T' => {
                in_time = true;
                continue;
            }
            'Y' => 365 * 86_400,
            'M' if in_time => 60,
            'M' => 30 * 86_400,
            'W' => 7 * 86_400,
            'D' => 86_400,
            'H' => 3_600,
            _ => 1,
        };
        if let Some(n) = n {
            match n.checked_mul(unit).and_then(|s| total.checked_add(s)) {
                Some(t) => total = t,
                None => return false,
            }
        }
        (n, in_fraction) = (Some(0), false);
    }
    true
}

/// An attribute value with XML's entities and character references decoded.
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        let Some(end) = rest[i..].find(';') else { break };
        out.push_str(&rest[..i]);
        let name = &rest[i + 1..i + end];
        let c = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| name.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        out.extend(c);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

fn dimension(v: Option<u64>, name: &str) -> Result<u32, String> {
    v.and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("a video representation has no {name}"))
}

/// `dir/rel` for a relative path that stays inside `dir`.
pub fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("`{rel}` points outside the output"));
    }
    Ok(dir.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ProbeStream;
    use crate::presets::Catalog;

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
    fn a_variant_the_parser_cannot_read_is_refused_not_dropped() {
        let m = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3440800,RESOLUTION=1280x720,CODECS=\"avc1.64001f\"\n720p/index.m3u8\n#EXT-X-STREAM-INF:RESOLUTION=640x360,CODECS=\"avc1.64001e\"\n360p/index.m3u8\n";
        assert_eq!(parse_master(m).unwrap_err(), "a variant has no BANDWIDTH");
        let bad_size = m.replace("RESOLUTION=640x360,CODECS", "BANDWIDTH=1,RESOLUTION=640,CODECS");
        assert!(parse_master(&bad_size).unwrap_err().contains("malformed attribute"));
        let no_size = m.replace("RESOLUTION=640x360,CODECS", "BANDWIDTH=1,CODECS");
        assert_eq!(parse_master(&no_size).unwrap_err(), "a variant has no RESOLUTION");
        assert!(parse_master("#EXTM3U\n#EXT-X-VERSION:7\n")
            .unwrap_err()
            .contains("no variants"));
        assert!(parse_master("<html>").unwrap_err().contains("#EXTM3U"));
        // durations add up as FFmpeg wrote them, not as f32 rounding leaves them
        let (_, d) =
            parse_media_playlist("#EXTM3U\n#EXTINF:4.004000,\na.m4s\n#EXTINF:0.1,\nb.m4s\n#EXT-X-ENDLIST\n").unwrap();
        assert!((d - 4.104).abs() < 1e-12, "{d}");
    }

    #[test]
    fn tags_that_name_no_element_are_refused() {
        // found by the fuzz target: quick-xml took `<@start>` for Period's attribute
        for m in [
            "<><Period>\n<@start><\"\"/>",
            "<MPD><Period><@start><x/>",
            "<MPD><$value/></MPD>",
            "<MPD></@x>",
            "<M><Period><:@start><p/>",
            "<a b='<'/>",
        ] {
            assert!(parse_mpd(m).unwrap_err().contains("not an XML name"), "{m}");
        }
        assert!(names_are_xml("<?xml?><!-- <@ --><![CDATA[<@]]><!DOCTYPE x><a:b/><_x></_x><é/>").is_ok());
    }

    #[test]
    fn durations_past_64_bits_are_refused_not_added_up() {
        let m = |d: &str| format!(r#"<MPD mediaPresentationDuration="{d}"><Period/></MPD>"#);
        for d in [
            "PT5124095576030432H",
            "P5124095576030432Y",
            "-P99999999999999999999YT5124095576030432H",
            "P&#x31;84467440737095516&#49;5S&#x31;S",
        ] {
            assert!(parse_mpd(&m(d)).unwrap_err().contains("out of range"), "{d}");
        }
        // an attribute hidden from a scan by quotes within quotes is found all the same
        let hidden = r#"<MPD a='"' mediaPresentationDuration="PT5124095576030432H"><Period/></MPD>"#;
        assert!(parse_mpd(hidden).unwrap_err().contains("out of range"));
        assert!(xs_duration_fits("T1M6.0S") && xs_duration_fits("1Y2M3W4DT5H6M7.89S"));
        // a part past u64 is dash-mpd-core's to refuse; the others still add up
        assert!(xs_duration_fits("99999999999999999999Y"));
        assert!(!xs_duration_fits("T18446744073709551615S1S"));
        assert_eq!(unescape("a&lt;&#66;&#x43;&bogus;"), "a<BC");
    }

    #[test]
    fn mpds_parse() {
        let m = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1M6.0S" minBufferTime="PT4.0S">
<Period id="0" start="PT0.0S"><AdaptationSet id="0" contentType="video">
<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720" sar="1:1"/>
<Representation id="1" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1"/>
</AdaptationSet><AdaptationSet id="1" contentType="audio">
<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000"/>
</AdaptationSet></Period></MPD>"#;
        let p = parse_mpd(m).unwrap();
        assert_eq!(p.heights, [720, 360]);
        assert_eq!(p.widths, [1280, 640]);
        assert_eq!(p.duration_seconds, Some(66.0));
        assert!(parse_mpd("<html>").is_err());
        // the sizes an adaptation set gives its representations count for them
        let shared = m
            .replace(
                r#"contentType="video">"#,
                r#"contentType="video" mimeType="video/mp4" width="1280">"#,
            )
            .replace(
                r#"mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280""#,
                "",
            );
        assert_eq!(parse_mpd(&shared).unwrap().widths, [1280, 640]);
        let no_height = m.replace(r#" height="360""#, "");
        assert_eq!(
            parse_mpd(&no_height).unwrap_err(),
            "a video representation has no height"
        );
        let no_mp4 = m.replace("video/mp4", "video/webm");
        assert_eq!(parse_mpd(&no_mp4).unwrap_err(), "the MPD has no video representation");
    }

    fn source() -> Probe {
        let stream = |index, kind: &str| ProbeStream {
            index,
            kind: kind.into(),
            codec: "h264".into(),
            ..Default::default()
        };
        Probe {
            container: "mov".into(),
            duration_seconds: Some(10.0),
            size: 1,
            bit_rate: None,
            streams: vec![stream(0, "video"), stream(1, "audio")],
            interlacing: None,
        }
    }

    #[test]
    fn files_are_checked_against_their_preset() {
        let c = Catalog::builtin();
        let stream = |kind: &str, codec: &str| ProbeStream {
            kind: kind.into(),
            codec: codec.into(),
            ..Default::default()
        };
        let src = source();
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
