//! Our presets as Encoding.com `format` objects, and its S3 destinations.

use nommer_core::capability;
use nommer_core::job::{OutputOptions, S3Uri};
use nommer_core::presets::{AudioCodec, AudioSpec, Container, LadderFormat, Preset, PresetKind, VideoCodec, VideoSpec};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn video_codec(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "libx264",
        VideoCodec::H265 => "libx265",
        VideoCodec::Vp9 => "libvpx-vp9",
        VideoCodec::Av1 => unreachable!("AV1 is refused by capability::encodingcom"),
    }
}

fn audio_codec(c: AudioCodec) -> &'static str {
    match c {
        AudioCodec::Aac => "dolby_aac",
        // Encoding.com documents Vorbis for WebM
        AudioCodec::Opus => "libvorbis",
        AudioCodec::Mp3 => "libmp3lame",
    }
}

/// The canned ACL Nommer asks for on every delivered object. It is Encoding.com's default
/// (and one of the two it documents); the delivery bucket accepts it but ignores the
/// grant (`IgnorePublicAcls`), so nothing is readable beyond the account.
pub const DELIVERY_ACL: &str = "authenticated-read";

/// An Encoding.com S3 destination for a key in the delivery bucket, in its documented
/// form `https://BUCKET.s3.amazonaws.com/key?acl=…&canonical_id=…`: the bucket grants
/// Encoding.com's canonical user `s3:PutObject`, so no keys travel in the URL, and
/// `canonical_id` (the bucket owner's) gives our account FULL_CONTROL of each object
/// Encoding.com writes, so Nommer can copy it into the outbox.
pub fn destination(bucket: &str, key: &str, owner_canonical_id: Option<&str>) -> String {
    let key = percent_encoding::utf8_percent_encode(key, KEY_SET);
    let mut d = format!("https://{bucket}.s3.amazonaws.com/{key}?acl={DELIVERY_ACL}");
    if let Some(id) = owner_canonical_id {
        d.push_str("&canonical_id=");
        d.push_str(&percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string());
    }
    d
}

/// The query parameters of a destination URL (`acl`, `canonical_id`, …), decoded.
pub fn destination_params(d: &str) -> BTreeMap<String, String> {
    let Some((_, q)) = d.split_once('?') else {
        return BTreeMap::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| percent_encoding::percent_decode_str(x).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

/// The `size` (`WxH`, 0 = keep the aspect ratio) that bounds the picture's SHORT side by
/// `max`, so a portrait source keeps its class: 720x1280 through a 720p preset is
/// `720x0`, 1280x720 is `0x720`; never above the source. `source` is the displayed
/// (rotation applied) width and height, when known.
pub fn size_for(source: Option<(u32, u32)>, max: u32) -> String {
    match source {
        Some((w, h)) if w > 0 && h > 0 => {
            let short = (w.min(h).min(max) / 2 * 2).max(2);
            if h > w {
                format!("{short}x0")
            } else {
                format!("0x{short}")
            }
        }
        _ => format!("0x{}", max / 2 * 2),
    }
}

/// Reads a destination back into bucket and key (`https://BUCKET.s3.amazonaws.com/key`,
/// with or without a query; or `s3://bucket/key`).
pub fn parse_destination(d: &str) -> Option<S3Uri> {
    let d = d.split('?').next()?;
    let (bucket, key) = if let Some(rest) = d.strip_prefix("https://").or_else(|| d.strip_prefix("http://")) {
        let (host, key) = rest.split_once('/')?;
        (host.strip_suffix(".s3.amazonaws.com")?.to_string(), key)
    } else {
        let rest = d.strip_prefix("s3://")?;
        let (b, k) = rest.split_once('/')?;
        (b.to_string(), k)
    };
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .ok()?
        .into_owned();
    S3Uri::parse(&format!("s3://{bucket}/{key}")).ok()
}

/// What stays unescaped in a key: S3's safe characters and `/`.
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The Encoding.com `format` for one of our outputs. `source` is the source's displayed
/// width and height when known; `prefix` the output's folder in the delivery bucket
/// (`s3://bucket/key-prefix/`), `stem` the file name stem; `owner` the delivery
/// bucket owner's canonical id (granted FULL_CONTROL of each delivered object).
pub fn format_for(
    preset: &Preset,
    o: &OutputOptions,
    source: Option<(u32, u32)>,
    prefix: &S3Uri,
    stem: &str,
    owner: Option<&str>,
) -> Result<Value, String> {
    capability::encodingcom(preset, o)?;
    let dest = |file: &str| destination(&prefix.bucket, &format!("{}{file}", prefix.key), owner);
    let mut f = Map::new();
    match &preset.kind {
        PresetKind::File {
            container,
            video,
            audio,
        } => {
            file_format(&mut f, o, source, container, video.as_ref(), audio.as_ref());
            f.insert(
                "destination".into(),
                json!(dest(&format!("{stem}.{}", container.extension()))),
            );
        }
        PresetKind::Ladder { format, .. } => {
            ladder_format(&mut f, &preset.kind, source);
            let master = match format {
                LadderFormat::Hls => "master.m3u8",
                LadderFormat::Dash => "manifest.mpd",
            };
            f.insert("destination".into(), json!(dest(master)));
        }
        PresetKind::Thumbnails(t) => {
            f.insert("output".into(), json!("thumbnail"));
            f.insert("time".into(), json!(format!("{}", o.at_seconds.unwrap_or(1.0))));
            f.insert("width".into(), json!(format!("{}", o.width.unwrap_or(t.width))));
            f.insert("destination".into(), json!(dest("poster.jpg")));
        }
    }
    if let Some(t) = &o.trim {
        f.insert("start".into(), json!(format!("{}", t.start_seconds)));
        if let Some(end) = t.end_seconds {
            f.insert("duration".into(), json!(format!("{}", end - t.start_seconds)));
        }
    }
    Ok(Value::Object(f))
}

/// A file preset's fields: container, video (never above the preset's height), audio.
fn file_format(
    f: &mut Map<String, Value>,
    o: &OutputOptions,
    source: Option<(u32, u32)>,
    container: &Container,
    video: Option<&VideoSpec>,
    audio: Option<&AudioSpec>,
) {
    let output = match container {
        Container::Mp4 => "mp4",
        Container::WebM => "webm",
        Container::M4a => "m4a",
        Container::Mp3 => "mp3",
    };
    f.insert("output".into(), json!(output));
    if let Some(v) = video {
        f.insert("video_codec".into(), json!(video_codec(v.codec)));
        let kbps = o.video_bitrate_kbps.unwrap_or(v.max_bitrate_kbps);
        f.insert("bitrate".into(), json!(format!("{kbps}k")));
        f.insert("size".into(), json!(size_for(source, v.max_height)));
        f.insert("keep_aspect_ratio".into(), json!("yes"));
        f.insert("two_pass".into(), json!(if o.two_pass { "yes" } else { "no" }));
        let fps = o.max_frame_rate.unwrap_or(30.0);
        if let Some(r) = o.max_frame_rate {
            f.insert("framerate".into(), json!(format!("{r}")));
        }
        f.insert("keyframe".into(), json!(format!("{}", (fps * 2.0).round() as u32)));
    }
    match audio {
        Some(a) => {
            f.insert("audio_codec".into(), json!(audio_codec(a.codec)));
            f.insert("audio_bitrate".into(), json!(format!("{}k", a.bitrate_kbps)));
            f.insert("audio_channels_number".into(), json!(format!("{}", a.channels)));
            f.insert("audio_sample_rate".into(), json!(format!("{}", a.sample_rate)));
        }
        None => {
            f.insert("audio_codec".into(), json!("none"));
        }
    }
}

/// A ladder preset's fields: `advanced_hls` / `advanced_dash` with one stream a rung,
/// the same rungs the fleet would make (never above the source's short side).
fn ladder_format(f: &mut Map<String, Value>, kind: &PresetKind, source: Option<(u32, u32)>) {
    let PresetKind::Ladder {
        format,
        codec,
        rungs,
        audio,
        segment_seconds,
        ..
    } = kind
    else {
        return;
    };
    let output = match format {
        LadderFormat::Hls => "advanced_hls",
        LadderFormat::Dash => "advanced_dash",
    };
    f.insert("output".into(), json!(output));
    f.insert("segment_duration".into(), json!(format!("{segment_seconds}")));
    // playlists and segments as files, not one tar (`pack_files` defaults to yes)
    f.insert("pack_files".into(), json!("no"));
    let kept = match source {
        Some((w, h)) if w > 0 && h > 0 => nommer_core::presets::ladder_for(rungs, w.min(h)),
        _ => rungs.clone(),
    };
    let streams: Vec<Value> = kept
        .iter()
        .map(|r| {
            json!({
                "video_codec": video_codec(*codec),
                "size": size_for(source, r.height),
                "bitrate": format!("{}k", r.video_kbps),
                "audio_codec": audio_codec(audio.codec),
                "audio_bitrate": format!("{}k", audio.bitrate_kbps),
                "keyframe": "60",
            })
        })
        .collect();
    f.insert("stream".into(), Value::Array(streams));
}
