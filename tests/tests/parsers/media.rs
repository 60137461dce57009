//! What FFmpeg and the sources say: ffprobe's JSON, a source's first bytes, idet's and
//! `-progress`'s lines (shared/core/src/ffmpeg/mod.rs), and the manifests an encode
//! makes (ffmpeg/check.rs: HLS playlists through m3u8-rs, the DASH MPD).

use crate::gen::{broken_json, broken_lines, bytes_after, config, odd_text};
use nommer_core::ffmpeg::check::{parse_master, parse_media_playlist, parse_mpd, safe_join};
use nommer_core::ffmpeg::{self, check_limits, parse_idet, parse_probe, sniff, Limits, ProgressParser};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

fn probe_json() -> Value {
    json!({
        "streams": [
            {"index": 0, "codec_name": "h264", "codec_type": "video", "width": 1920, "height": 1080,
             "avg_frame_rate": "30000/1001", "bit_rate": "5000000", "field_order": "tt", "pix_fmt": "yuv420p",
             "color_transfer": "smpte2084", "sample_aspect_ratio": "4:3",
             "side_data_list": [{"rotation": -90}], "tags": {"rotate": "90"}, "disposition": {"attached_pic": 0}},
            {"index": 1, "codec_name": "aac", "codec_type": "audio", "channels": 2, "sample_rate": "48000"}
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "60.000000", "bit_rate": "5128000"}
    })
}

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=3440800,AVERAGE-BANDWIDTH=3000000,RESOLUTION=1280x720,FRAME-RATE=29.970,CODECS=\"avc1.64001f,mp4a.40.2\"\n720p/index.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,RESOLUTION=1280x720,CODECS=\"avc1.64001f\",URI=\"720p/iframes.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1020800,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n360p/index.m3u8\n";

const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:4.004000,\nseg_00000.m4s\n#EXT-X-BYTERANGE:1000@0\n#EXTINF:2.5,\nseg_00001.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-11-20T10:00:00.000Z\n#EXTINF:1,title\nseg_00002.m4s\n#EXT-X-ENDLIST\n";

const MPD: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1M6.0S" minBufferTime="PT4.0S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
<Period id="0" start="PT0.0S" duration="PT1M6S">
<AdaptationSet id="0" contentType="video" segmentAlignment="true" maxWidth="1280" maxHeight="720" frameRate="30000/1001">
<SegmentTemplate timescale="90000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
<SegmentTimeline><S t="0" d="360360" r="15"/></SegmentTimeline>
</SegmentTemplate>
<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720" sar="1:1"/>
<Representation id="1" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1"/>
</AdaptationSet>
<AdaptationSet id="1" contentType="audio" lang="en">
<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000"/>
</AdaptationSet>
</Period>
</MPD>"#;

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn ffprobe_json_is_read_or_refused(doc in broken_json(probe_json()), size in any::<u64>()) {
        match parse_probe(&doc, size) {
            Ok(p) => {
                prop_assert_eq!(p.size, size);
                prop_assert!(p.duration_seconds.is_none_or(|d| d.is_finite() && d >= 0.0));
                // a probe that was read is judged without a panic
                let _ = check_limits(&p, &Limits::default());
                for s in &p.streams {
                    let _ = s.sar();
                    let _ = ffmpeg::interlacing_from_field_order(s.field_order.as_deref());
                }
            }
            Err(e) => prop_assert!(e.contains("ffprobe")),
        }
    }

    #[test]
    fn first_bytes_are_sniffed_whatever_they_are(head in prop_oneof![
        bytes_after(b"#EXTM3U\n"),
        bytes_after(b"\xef\xbb\xbf <?xml"),
        bytes_after(b"ffconcat version 1.0\n"),
        bytes_after(b"v=0\nm=video"),
        bytes_after(b"RIFF\0\0\0\0AVI LIST"),
        prop::collection::vec(any::<u8>(), 0..6000),
    ]) {
        let refused = sniff(&head).is_err();
        let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).to_ascii_lowercase();
        if text.trim_start_matches('\u{feff}').trim_start().starts_with("#extm3u") {
            prop_assert!(refused);
        }
        let _ = ffmpeg::is_avi(&head);
        let embeds = ffmpeg::avi_embeds_files(head.as_slice()).unwrap();
        prop_assert_eq!(embeds, head.windows(5).any(|w| w == b"GAB2\0"));
    }

    #[test]
    fn idet_lines_are_read_or_ignored(n in prop::collection::vec(prop_oneof![any::<u32>().prop_map(|n| n.to_string()), odd_text()], 4), junk in odd_text()) {
        let line = format!("[Parsed_idet_0 @ 0x1] Multi frame detection: TFF:{} BFF:{} Progressive:{} Undetermined:{}{junk}", n[0], n[1], n[2], n[3]);
        if let Some(c) = parse_idet(&format!("{junk}\n{line}\n")) {
            prop_assert_eq!(c.tff.to_string(), n[0].clone());
            // the verdict on any counts is made without overflowing
            let _ = ffmpeg::interlacing_from_idet(c);
        }
    }

    #[test]
    fn progress_lines_never_go_backwards_past_zero(lines in prop::collection::vec(prop_oneof![
        any::<i64>().prop_map(|n| format!("out_time_us={n}")),
        odd_text().prop_map(|t| format!("out_time_ms={t}")),
        Just("progress=continue".to_string()),
        Just("progress=end".to_string()),
        odd_text(),
    ], 0..20), duration in prop::option::of(any::<f64>())) {
        let mut p = ProgressParser::default();
        for l in &lines {
            if let Some(t) = p.line(l) {
                prop_assert!(t.out_time_seconds >= 0.0);
                prop_assert!(ffmpeg::percent(t.out_time_seconds, duration) <= 99);
            }
        }
    }

    #[test]
    fn master_playlists_are_read_or_refused(text in broken_lines(MASTER)) {
        match parse_master(&text) {
            Ok(vs) => {
                prop_assert!(!vs.is_empty());
                for v in vs {
                    prop_assert!(!v.uri.is_empty() && !v.codecs.is_empty());
                    let _ = safe_join(Path::new("/out"), &v.uri);
                }
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn media_playlists_are_read_or_refused(text in broken_lines(MEDIA)) {
        if let Ok((files, duration)) = parse_media_playlist(&text) {
            prop_assert!(text.contains("#EXT-X-ENDLIST"));
            prop_assert!(!duration.is_nan());
            for f in files {
                if let Ok(p) = safe_join(Path::new("/out"), &f) {
                    prop_assert!(p.starts_with("/out"));
                }
            }
        }
    }

    #[test]
    fn mpds_are_read_or_refused(text in broken_lines(MPD)) {
        match parse_mpd(&text) {
            Ok(m) => {
                prop_assert_eq!(m.heights.len(), m.widths.len());
                prop_assert!(m.duration_seconds.is_none_or(|d| d >= 0.0));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn mpd_durations_and_sizes_of_any_text_are_refused_not_panicked_on(
        dur in prop_oneof![odd_text(), "P[0-9YMDTHS.]{0,24}", "PT[0-9]{1,30}(\\.[0-9]{1,30})?[HMS]", "-PT[0-9]{1,5}S"],
        size in prop_oneof![odd_text(), any::<u64>().prop_map(|n| n.to_string()), any::<i64>().prop_map(|n| n.to_string())],
    ) {
        let text = MPD.replace("PT1M6.0S", &dur).replace("\"720\"", &format!("\"{size}\""));
        if let Ok(m) = parse_mpd(&text) {
            prop_assert!(m.duration_seconds.is_none_or(|d| d >= 0.0));
        }
    }
}

#[test]
fn sizes_past_u32_saturate_and_are_refused() {
    let mut doc = probe_json();
    doc["streams"][0]["width"] = json!((1u64 << 32) + 1920);
    let p = parse_probe(&doc.to_string(), 10).unwrap();
    assert_eq!(p.streams[0].width, Some(u32::MAX));
    assert!(check_limits(&p, &Limits::default()).unwrap_err().contains("pixels"));
}

#[test]
fn the_fixtures_read_as_written() {
    let p = parse_probe(&probe_json().to_string(), 10).unwrap();
    assert_eq!((p.streams[0].width, p.streams[0].rotation), (Some(1920), Some(-90)));
    assert!((p.streams[0].frame_rate.unwrap() - 29.97).abs() < 0.01);
    let v = parse_master(MASTER).unwrap();
    assert_eq!(v.iter().map(|v| v.height).collect::<Vec<_>>(), [720, 360]);
    let (files, d) = parse_media_playlist(MEDIA).unwrap();
    assert_eq!(files.len(), 4);
    assert!((d - 7.504).abs() < 1e-9, "{d}");
    let m = parse_mpd(MPD).unwrap();
    assert_eq!((m.heights, m.duration_seconds), (vec![720, 360], Some(66.0)));
}
