//! Range checks on an output's options, and that each applies to its preset's kind; a
//! refusal names the option (relative to `options`) and says why.

use nommer_core::job::{Loudness, OutputOptions, Watermark};
use nommer_core::presets::{Preset, PresetKind, VideoCodec};
use nommer_core::settings::ApiSettings;

/// The option at fault and why.
type Refusal = (String, String);

fn err(f: &str, m: &str) -> Result<(), Refusal> {
    Err((f.to_string(), m.to_string()))
}

/// Range checks on an output's options; the error names the option.
pub(crate) fn check_options(settings: &ApiSettings, preset: &Preset, o: &OutputOptions) -> Result<(), Refusal> {
    let is_file = matches!(preset.kind, PresetKind::File { .. });
    let is_thumbs = matches!(preset.kind, PresetKind::Thumbnails(_));
    check_video(preset, o, is_file)?;
    if let Some(l) = &o.loudness {
        check_loudness(l, is_thumbs)?;
    }
    if let Some(w) = &o.watermark {
        check_watermark(settings, preset, w, is_thumbs)?;
    }
    check_thumbnails(o, is_thumbs)?;
    if o.quality == Some(true) && (is_thumbs || !preset.needs_video()) {
        return err(
            "quality",
            "applies to presets with moving pictures (video files and ladders)",
        );
    }
    if !o.advanced.is_empty() && !is_file {
        return err("advanced", "applies to file presets");
    }
    nommer_core::advanced::check(&o.advanced)
}

/// Trim, frame rate, bit rate or quality, two-pass.
fn check_video(preset: &Preset, o: &OutputOptions, is_file: bool) -> Result<(), Refusal> {
    if let Some(t) = &o.trim {
        if !(t.start_seconds.is_finite() && t.start_seconds >= 0.0) {
            return err("trim.start_seconds", "must be 0 or more");
        }
        if let Some(e) = t.end_seconds {
            if !(e.is_finite() && e > t.start_seconds) {
                return err("trim.end_seconds", "must be after start_seconds");
            }
        }
    }
    if let Some(r) = o.max_frame_rate {
        if !(1.0..=240.0).contains(&r) {
            return err("max_frame_rate", "must be within 1-240");
        }
    }
    if let Some(b) = o.video_bitrate_kbps {
        if !(50..=100_000).contains(&b) {
            return err("video_bitrate_kbps", "must be within 50-100000");
        }
        if !is_file || !preset.needs_video() {
            return err(
                "video_bitrate_kbps",
                "applies to video file presets (ladders set a rate per rendition)",
            );
        }
    }
    if let Some(c) = o.crf {
        if c > 63 || !is_file || !preset.needs_video() {
            return err("crf", "is 0-63 and applies to video file presets");
        }
        if o.video_bitrate_kbps.is_some() {
            return err("crf", "give either crf or video_bitrate_kbps, not both");
        }
    }
    if o.two_pass && (o.video_bitrate_kbps.is_none() || !is_file) {
        return err("two_pass", "needs video_bitrate_kbps, on a video file preset");
    }
    if o.two_pass {
        if let PresetKind::File { video: Some(v), .. } = &preset.kind {
            if v.codec == VideoCodec::H265 {
                return err("two_pass", "is not offered for H.265 presets");
            }
        }
    }
    Ok(())
}

fn check_loudness(l: &Loudness, is_thumbs: bool) -> Result<(), Refusal> {
    if !(-70.0..=-5.0).contains(&l.integrated_lufs) {
        return err("loudness.integrated_lufs", "must be within -70 to -5 LUFS");
    }
    if !(-9.0..=0.0).contains(&l.true_peak_db) {
        return err("loudness.true_peak_db", "must be within -9 to 0 dBTP");
    }
    if !(1.0..=50.0).contains(&l.range_lu) {
        return err("loudness.range_lu", "must be within 1-50 LU");
    }
    if is_thumbs {
        return err("loudness", "thumbnails have no audio");
    }
    Ok(())
}

fn check_watermark(settings: &ApiSettings, preset: &Preset, w: &Watermark, is_thumbs: bool) -> Result<(), Refusal> {
    if !settings.source_buckets.contains(&w.image.bucket) {
        return err(
            "watermark.image",
            &format!("images are accepted only from: {}", settings.source_buckets.join(", ")),
        );
    }
    if !(0.01..=1.0).contains(&w.width_fraction) {
        return err("watermark.width_fraction", "must be within 0.01-1");
    }
    if w.margin > 1000 {
        return err("watermark.margin", "must be at most 1000");
    }
    if is_thumbs || !preset.needs_video() {
        return err("watermark", "applies to video outputs");
    }
    Ok(())
}

/// The thumbnail options: only on thumbnail presets, within range.
fn check_thumbnails(o: &OutputOptions, is_thumbs: bool) -> Result<(), Refusal> {
    let thumbs_only = [
        ("at_seconds", o.at_seconds.is_some()),
        ("count", o.count.is_some()),
        ("width", o.width.is_some()),
    ];
    for (f, set) in thumbs_only {
        if set && !is_thumbs {
            return err(f, "applies to thumbnail presets");
        }
    }
    if o.at_seconds.map(|a| !(a.is_finite() && a >= 0.0)).unwrap_or(false) {
        return err("at_seconds", "must be 0 or more");
    }
    if o.count.map(|c| !(1..=500).contains(&c)).unwrap_or(false) {
        return err("count", "must be within 1-500");
    }
    if o.width.map(|w| !(16..=3840).contains(&w)).unwrap_or(false) {
        return err("width", "must be within 16-3840");
    }
    Ok(())
}
