//! The content type an output file is stored with, by its extension: `mime_guess`'s
//! answer, but for the few formats where the type its spec registers differs.

use std::path::Path;

/// Where `mime_guess` answers otherwise (or not at all), the type each format's spec
/// registers, which players and CDNs key on.
const OVERRIDES: &[(&str, &str)] = &[
    // HLS playlists (RFC 8216, section 4); mime_guess says audio/x-mpegurl
    ("m3u8", "application/vnd.apple.mpegurl"),
    // fMP4 media segments of DASH and HLS (registered with IANA); unknown to mime_guess
    ("m4s", "video/iso.segment"),
    // AAC in MP4 (RFC 4337); mime_guess says audio/m4a, which is not registered
    ("m4a", "audio/mp4"),
    // MPEG-2 transport stream segments (RFC 3555, as HLS names them); mime_guess says
    // video/vnd.dlna.mpeg-tts
    ("ts", "video/mp2t"),
];

/// The content type of an output file, by extension (`application/octet-stream` when
/// the extension says nothing).
pub fn of(name: &str) -> &'static str {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
    OVERRIDES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, t)| *t)
        .or_else(|| mime_guess::from_ext(ext).first_raw())
        .unwrap_or("application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn every_output_gets_its_registered_type() {
        let want = [
            ("out/web/talk.mp4", "video/mp4"),
            ("talk.webm", "video/webm"),
            ("talk.m4a", "audio/mp4"),
            ("talk.mp3", "audio/mpeg"),
            ("hls/master.m3u8", "application/vnd.apple.mpegurl"),
            ("hls/720p/index.m3u8", "application/vnd.apple.mpegurl"),
            ("hls/720p/init.mp4", "video/mp4"),
            ("hls/720p/seg_00001.m4s", "video/iso.segment"),
            ("hls/720p/seg_00001.ts", "video/mp2t"),
            ("dash/manifest.mpd", "application/dash+xml"),
            ("dash/chunk-0-00001.m4s", "video/iso.segment"),
            ("poster.jpg", "image/jpeg"),
            ("thumb_0001.jpeg", "image/jpeg"),
            ("sprite.vtt", "text/vtt"),
        ];
        for (name, t) in want {
            assert_eq!(of(name), t, "{name}");
        }
        assert_eq!(of("ffmpeg2pass"), "application/octet-stream");
        assert_eq!(of("a.no-such-extension"), "application/octet-stream");
        assert_eq!(of("dir.m3u8/file"), "application/octet-stream");
    }
}
