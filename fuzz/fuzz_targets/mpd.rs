//! The DASH MPD as the output check reads it (dash-mpd-core's XML parser and its
//! xs:duration reading underneath).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nommer_core::ffmpeg::check::parse_mpd;

fuzz_target!(|text: &str| {
    if let Ok(m) = parse_mpd(text) {
        assert_eq!(m.heights.len(), m.widths.len());
    }
});
