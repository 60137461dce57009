//! HLS playlists as the output check reads them (m3u8-rs underneath): a master playlist
//! and a media playlist, each answered with a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nommer_core::ffmpeg::check::{parse_master, parse_media_playlist, safe_join};
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Ok(variants) = parse_master(text) {
        assert!(!variants.is_empty());
        for v in variants {
            let _ = safe_join(Path::new("/out"), &v.uri);
        }
    }
    if let Ok((files, duration)) = parse_media_playlist(text) {
        assert!(!duration.is_nan());
        for f in files {
            let _ = safe_join(Path::new("/out"), &f);
        }
    }
});
