//! A client for Encoding.com's API (`https://manage.encoding.com/`): every request is a
//! form POST whose `json` field holds `{"query": {"userid", "userkey", "action", …}}`.
//! Speaks `AddMedia`, `GetStatus` (extended) and `CancelMedia`, maps our presets onto its
//! `format` objects, and reads its answers leniently: errors come in
//! `response.errors.error`, a list of one is often sent as a bare object or string, and
//! `progress` can read 100 while a job still waits for an encoder.
//!
//! Credentials live in a [`UserKey`] that never prints; requests are never logged whole.

use crate::job::{OutputOptions, S3Uri};
use crate::presets::{AudioCodec, Container, LadderFormat, Preset, PresetKind, ThumbnailMode, VideoCodec};
use crate::state::JobState;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The API key; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKey(String);

impl UserKey {
    pub fn new(s: impl Into<String>) -> Self {
        UserKey(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKey(***)")
    }
}
impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub const USERID_ENV: &str = "NOMMER_ENCODINGCOM_USERID";
pub const USERKEY_ENV: &str = "NOMMER_ENCODINGCOM_USERKEY";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Encoding.com answered with errors (bad credentials, bad request, unknown media).
    #[error("Encoding.com refused the request: {}", .0.join("; "))]
    Api(Vec<String>),
    /// It could not be reached, or answered with an HTTP error: worth retrying.
    #[error("Encoding.com could not be reached: {0}")]
    Transport(String),
    /// Its answer was not what its documentation describes.
    #[error("Encoding.com sent an answer that cannot be read: {0}")]
    Malformed(String),
    #[error("Encoding.com credentials: {0}")]
    Credentials(String),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transport(_))
    }
}

/// A task's status at Encoding.com.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    New,
    Downloading,
    ReadyToProcess,
    WaitingForEncoder,
    Processing,
    Saving,
    Finished,
    Error,
    Deleted,
    Other(String),
}

impl Status {
    /// Reads a status word whatever its spelling: case, spaces, `_` and `-` are ignored,
    /// so `Waiting for encoder`, `Waitingforencoder` and `waiting_for_encoder` are one
    /// status (Encoding.com's answers and its clients use all of these).
    pub fn parse(s: &str) -> Status {
        let folded: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match folded.as_str() {
            "new" => Status::New,
            "downloading" | "downloaded" => Status::Downloading,
            "readytoprocess" => Status::ReadyToProcess,
            "waitingforencoder" => Status::WaitingForEncoder,
            "processing" => Status::Processing,
            "saving" | "saved" => Status::Saving,
            "finished" => Status::Finished,
            "error" => Status::Error,
            "deleted" | "stopped" | "canceled" | "cancelled" => Status::Deleted,
            _ => Status::Other(s.trim().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::New => "New",
            Status::Downloading => "Downloading",
            Status::ReadyToProcess => "Ready to process",
            Status::WaitingForEncoder => "Waiting for encoder",
            Status::Processing => "Processing",
            Status::Saving => "Saving",
            Status::Finished => "Finished",
            Status::Error => "Error",
            Status::Deleted => "Deleted",
            Status::Other(s) => s,
        }
    }

    /// Our state for this status and the progress to show in it; `None` for a word we do
    /// not know, which leaves the job where it is (still running at Encoding.com, never
    /// queued again from scratch). `Finished`, `Error` and `Deleted` map to terminal
    /// states the caller handles (outputs to check, fallback). Before processing starts,
    /// Encoding.com's `progress` is ignored: it can read 100 while the task waits for an
    /// encoder.
    pub fn ours(&self, progress: f64) -> Option<(JobState, u8)> {
        let pct = |p: f64| if p.is_finite() { p.clamp(0.0, 99.0) as u8 } else { 0 };
        Some(match self {
            Status::New => (JobState::Queued, 0),
            Status::Other(_) => return None,
            Status::Downloading => (JobState::Downloading, 0),
            // the source is fetched; the task waits for a machine
            Status::ReadyToProcess | Status::WaitingForEncoder => (JobState::Downloading, 100),
            Status::Processing => (JobState::Encoding, pct(progress)),
            Status::Saving => (JobState::Uploading, 0),
            Status::Finished => (JobState::Complete, 100),
            Status::Error => (JobState::Failed, 0),
            Status::Deleted => (JobState::Cancelled, 0),
        })
    }
}

/// What `GetStatus` says about one media.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaStatus {
    pub media_id: String,
    pub status: Status,
    /// 0-100 as Encoding.com reports it (see [`Status::ours`]).
    pub progress: f64,
    /// Error text of the task or its formats.
    pub errors: Vec<String>,
    /// Each format's status and destination.
    pub formats: Vec<FormatStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormatStatus {
    pub output: String,
    pub status: String,
    pub destinations: Vec<String>,
}

/// A value Encoding.com may send as one item, a list, or nothing.
pub fn one_or_many(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The texts of `response.errors.error` (a string, a list, or an object of one).
pub fn errors_of(response: &Value) -> Vec<String> {
    let Some(errors) = response.get("errors") else {
        return Vec::new();
    };
    let list = match errors.get("error") {
        Some(e) => one_or_many(Some(e)),
        None => one_or_many(Some(errors)),
    };
    list.into_iter()
        .filter_map(|e| text(Some(e)).or_else(|| text(e.get("message"))))
        .filter(|e| !e.trim().is_empty())
        .collect()
}

fn number(v: Option<&Value>) -> f64 {
    text(v).and_then(|s| s.trim().parse().ok()).unwrap_or(0.0)
}

/// Reads one media's status from a `GetStatus` answer (plain or extended), or from the
/// `result` of a notify callback.
pub fn parse_media(v: &Value) -> Result<MediaStatus, Error> {
    let media_id = text(v.get("id"))
        .or_else(|| text(v.get("mediaid")))
        .or_else(|| text(v.get("MediaID")))
        .ok_or_else(|| Error::Malformed("no media id".into()))?;
    let status = text(v.get("status")).ok_or_else(|| Error::Malformed("no status".into()))?;
    let mut errors = Vec::new();
    for key in ["description", "error"] {
        if let Some(t) = text(v.get(key)).filter(|t| !t.trim().is_empty()) {
            errors.push(t);
        }
    }
    errors.extend(errors_of(v));
    let mut formats = Vec::new();
    for f in one_or_many(v.get("format")) {
        let destinations = one_or_many(f.get("destination"))
            .into_iter()
            .filter_map(|d| text(Some(d)))
            .collect();
        if let Some(d) = text(f.get("description")).filter(|t| !t.trim().is_empty()) {
            errors.push(d);
        }
        formats.push(FormatStatus {
            output: text(f.get("output")).unwrap_or_default(),
            status: text(f.get("status")).unwrap_or_default(),
            destinations,
        });
    }
    Ok(MediaStatus {
        media_id,
        status: Status::parse(&status),
        progress: number(v.get("progress")),
        errors,
        formats,
    })
}

/// Reads the body Encoding.com POSTs to a `notify` URL: a form with a `json` (or `xml`)
/// field. Only the media id is trusted; the caller confirms with `GetStatus`.
pub fn parse_notify(content_type: Option<&str>, body: &[u8]) -> Result<String, String> {
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let is_form = content_type
        .map(|c| c.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(true);
    let mut json_field = None;
    let mut xml_field = None;
    if is_form {
        for pair in body.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "json" => json_field = Some(v),
                "xml" => xml_field = Some(v),
                _ => {}
            }
        }
    } else if body.trim_start().starts_with('{') {
        json_field = Some(body.to_string());
    } else {
        xml_field = Some(body.to_string());
    }
    if let Some(j) = json_field {
        let v: Value = serde_json::from_str(&j).map_err(|e| format!("the json field is not JSON: {e}"))?;
        let r = v.get("result").unwrap_or(&v);
        return text(r.get("mediaid"))
            .or_else(|| text(r.get("id")))
            .ok_or_else(|| "the notification has no result.mediaid".to_string());
    }
    if let Some(x) = xml_field {
        return xml_tag(&x, "mediaid").ok_or_else(|| "the notification has no <mediaid>".to_string());
    }
    Err("expected a form with a `json` or `xml` field".into())
}

/// The text of the first `<tag>…</tag>` (enough for the one field a callback is read for).
fn xml_tag(x: &str, tag: &str) -> Option<String> {
    let start = x.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = x[start..].find(&format!("</{tag}>"))? + start;
    let v = x[start..end].trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')).then(|| v.to_string())
}

/// An Encoding.com API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    userid: String,
    userkey: UserKey,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("userid", &self.userid)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(endpoint: &str, userid: &str, userkey: UserKey) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Client {
            http,
            endpoint: endpoint.to_string(),
            userid: userid.to_string(),
            userkey,
        }
    }

    /// Sends one action; returns `response` or the errors in it. Transport errors and
    /// 5xx are retried here three times with a growing pause.
    async fn call(&self, action: &str, fields: Map<String, Value>) -> Result<Value, Error> {
        let mut query = Map::new();
        query.insert("userid".into(), json!(self.userid));
        query.insert("userkey".into(), json!(self.userkey.expose()));
        query.insert("action".into(), json!(action));
        query.extend(fields);
        let body = json!({ "query": query }).to_string();
        let form = format!(
            "json={}",
            percent_encoding::utf8_percent_encode(&body, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut last = String::new();
        // AddMedia is not idempotent: a retried one may start a second task
        let tries = if action == "AddMedia" { 1 } else { 3 };
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
            let res = self
                .http
                .post(&self.endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.clone())
                .send()
                .await;
            let res = match res {
                Ok(r) => r,
                Err(e) => {
                    last = e.without_url().to_string();
                    continue;
                }
            };
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            if status.is_server_error() || status.as_u16() == 429 {
                last = format!("HTTP {status}");
                continue;
            }
            if !status.is_success() {
                return Err(Error::Transport(format!("HTTP {status} for {action}")));
            }
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Error::Malformed(format!("{action}: {e}: {}", crate::telemetry::clip(&text, 200))))?;
            let response = v
                .get("response")
                .cloned()
                .ok_or_else(|| Error::Malformed(format!("{action}: no `response`")))?;
            let errors = errors_of(&response);
            if !errors.is_empty() {
                return Err(Error::Api(errors));
            }
            return Ok(response);
        }
        Err(Error::Transport(format!("{action}: {last}")))
    }

    /// Starts a task: the source (a URL Encoding.com can GET), one format per output,
    /// and where to tell us of changes. Returns the MediaID.
    pub async fn add_media(&self, source_url: &str, notify_url: &str, formats: Vec<Value>) -> Result<String, Error> {
        let mut f = Map::new();
        f.insert("source".into(), json!(source_url));
        f.insert("notify".into(), json!(notify_url));
        // no `notify_format`: Encoding.com's default, XML in a form field `xml`, which the
        // callback reads (as it reads `json`)
        f.insert("notify_encoding_errors".into(), json!(notify_url));
        f.insert("format".into(), Value::Array(formats));
        let r = self.call("AddMedia", f).await?;
        text(r.get("MediaID"))
            .or_else(|| text(r.get("mediaid")))
            .ok_or_else(|| Error::Malformed("AddMedia: no MediaID".into()))
    }

    /// The task's status, in the extended form (per-format detail).
    pub async fn get_status(&self, media_id: &str) -> Result<MediaStatus, Error> {
        let mut f = Map::new();
        f.insert("mediaid".into(), json!(media_id));
        f.insert("extended".into(), json!("yes"));
        let r = self.call("GetStatus", f).await?;
        let jobs = match r.get("job") {
            Some(j) => one_or_many(Some(j)),
            None => vec![&r],
        };
        let mut found = None;
        for j in jobs {
            let m = parse_media(j)?;
            if m.media_id == media_id {
                found = Some(m);
            }
        }
        found.ok_or_else(|| Error::Malformed(format!("GetStatus: no status for media {media_id}")))
    }

    /// Stops a task and deletes it at Encoding.com.
    pub async fn cancel_media(&self, media_id: &str) -> Result<(), Error> {
        let mut f = Map::new();
        f.insert("mediaid".into(), json!(media_id));
        self.call("CancelMedia", f).await.map(|_| ())
    }
}

/// Why an output cannot go to Encoding.com, if it cannot.
pub fn check_output(preset: &Preset, options: &OutputOptions) -> Result<(), String> {
    format_for(preset, options, None, &S3Uri::new("bucket", "check/"), "x", None).map(|_| ())
}

fn video_codec(c: VideoCodec) -> Result<&'static str, String> {
    match c {
        VideoCodec::H264 => Ok("libx264"),
        VideoCodec::H265 => Ok("libx265"),
        VideoCodec::Vp9 => Ok("libvpx-vp9"),
        VideoCodec::Av1 => Err("AV1 is made by the FFmpeg fleet only".into()),
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
    if o.watermark.is_some() {
        return Err("watermarks are made by the FFmpeg fleet only".into());
    }
    if o.loudness.is_some() {
        return Err("loudness normalisation is made by the FFmpeg fleet only".into());
    }
    if !o.advanced.is_empty() {
        return Err("advanced FFmpeg options need the FFmpeg fleet".into());
    }
    if o.crf.is_some() {
        return Err("Encoding.com takes a bit rate, not crf".into());
    }
    let dest = |file: &str| destination(&prefix.bucket, &format!("{}{file}", prefix.key), owner);
    let mut f = Map::new();
    match &preset.kind {
        PresetKind::File {
            container,
            video,
            audio,
        } => {
            let ext = container.extension();
            f.insert(
                "output".into(),
                json!(match container {
                    Container::Mp4 => "mp4",
                    Container::WebM => "webm",
                    Container::M4a => "m4a",
                    Container::Mp3 => "mp3",
                }),
            );
            if let Some(v) = video {
                f.insert("video_codec".into(), json!(video_codec(v.codec)?));
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
            } else if o.two_pass {
                return Err("two_pass needs video".into());
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
            f.insert("destination".into(), json!(dest(&format!("{stem}.{ext}"))));
        }
        PresetKind::Ladder {
            format,
            codec,
            rungs,
            audio,
            segment_seconds,
        } => {
            if *codec != VideoCodec::H264 && *codec != VideoCodec::H265 {
                return Err("Encoding.com ladders are H.264 or H.265".into());
            }
            let (output, master) = match format {
                LadderFormat::Hls => ("advanced_hls", "master.m3u8"),
                LadderFormat::Dash => ("advanced_dash", "manifest.mpd"),
            };
            f.insert("output".into(), json!(output));
            f.insert("segment_duration".into(), json!(format!("{segment_seconds}")));
            // playlists and segments as files, not one tar (`pack_files` defaults to yes)
            f.insert("pack_files".into(), json!("no"));
            // the same rungs the fleet would make (never above the source's short side)
            let kept = match source {
                Some((w, h)) if w > 0 && h > 0 => crate::presets::ladder_for(rungs, w.min(h)),
                _ => rungs.clone(),
            };
            let streams: Vec<Value> = kept
                .iter()
                .map(|r| {
                    json!({
                        "video_codec": video_codec(*codec).unwrap_or("libx264"),
                        "size": size_for(source, r.height),
                        "bitrate": format!("{}k", r.video_kbps),
                        "audio_codec": audio_codec(audio.codec),
                        "audio_bitrate": format!("{}k", audio.bitrate_kbps),
                        "keyframe": "60",
                    })
                })
                .collect();
            f.insert("stream".into(), Value::Array(streams));
            f.insert("destination".into(), json!(dest(master)));
        }
        PresetKind::Thumbnails(t) => {
            if t.mode != ThumbnailMode::Poster {
                return Err("thumbnail series and sprite sheets are made by the FFmpeg fleet only".into());
            }
            f.insert("output".into(), json!("thumbnail"));
            f.insert("time".into(), json!(format!("{}", o.at_seconds.unwrap_or(1.0))));
            f.insert("width".into(), json!(format!("{}", o.width.unwrap_or(t.width))));
            f.insert("destination".into(), json!(dest("poster.jpg")));
        }
    }
    if let Some(t) = &o.trim {
        if matches!(preset.kind, PresetKind::Thumbnails(_)) {
            return Err("trim does not apply to thumbnails".into());
        }
        f.insert("start".into(), json!(format!("{}", t.start_seconds)));
        if let Some(end) = t.end_seconds {
            f.insert("duration".into(), json!(format!("{}", end - t.start_seconds)));
        }
    }
    Ok(Value::Object(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_come_as_a_string_a_list_or_an_object_of_one() {
        let one = json!({"errors": {"error": "Wrong user id or key!"}});
        assert_eq!(errors_of(&one), ["Wrong user id or key!"]);
        let many = json!({"errors": {"error": ["a", "b"]}});
        assert_eq!(errors_of(&many), ["a", "b"]);
        let none = json!({"message": "Added", "MediaID": "1"});
        assert!(errors_of(&none).is_empty());
    }

    #[test]
    fn status_reads_plain_and_one_item_lists() {
        let plain = json!({"id": "77", "status": "Processing", "progress": "41.5",
            "format": {"output": "mp4", "status": "Processing", "destination": "s3://b/k.mp4"}});
        let m = parse_media(&plain).unwrap();
        assert_eq!((m.media_id.as_str(), &m.status), ("77", &Status::Processing));
        assert_eq!(m.formats.len(), 1);
        assert_eq!(m.formats[0].destinations, ["s3://b/k.mp4"]);
        assert_eq!(m.status.ours(m.progress), Some((JobState::Encoding, 41)));
        let list = json!({"id": 78, "status": "Error", "description": "Source file is corrupt",
            "format": [{"output": "mp4", "status": "Error"}, {"output": "thumbnail", "status": "Error"}]});
        let m = parse_media(&list).unwrap();
        assert_eq!(m.media_id, "78");
        assert_eq!(m.formats.len(), 2);
        assert_eq!(m.errors, ["Source file is corrupt"]);
    }

    #[test]
    fn progress_while_waiting_is_not_encoding_progress() {
        assert_eq!(
            Status::WaitingForEncoder.ours(100.0),
            Some((JobState::Downloading, 100))
        );
        assert_eq!(Status::New.ours(100.0), Some((JobState::Queued, 0)));
        assert_eq!(Status::Processing.ours(100.0), Some((JobState::Encoding, 99)));
        assert_eq!(Status::parse("Ready to process"), Status::ReadyToProcess);
        assert_eq!(Status::parse("Finished").ours(3.0).unwrap().0, JobState::Complete);
    }

    #[test]
    fn status_words_are_read_whatever_their_spelling() {
        // the spellings seen in Encoding.com's answers and in its clients (PyPI's
        // `encodingcom` lists `Waitingforencoder`)
        for w in [
            "Waiting for encoder",
            "Waitingforencoder",
            "waiting_for_encoder",
            "WAITING FOR ENCODER",
            " waiting-for-encoder ",
        ] {
            assert_eq!(Status::parse(w), Status::WaitingForEncoder, "{w:?}");
            assert_eq!(
                Status::parse(w).ours(100.0),
                Some((JobState::Downloading, 100)),
                "{w:?} is not queued again"
            );
        }
        for (w, want) in [
            ("ReadyToProcess", Status::ReadyToProcess),
            ("ready_to_process", Status::ReadyToProcess),
            ("FINISHED", Status::Finished),
            ("Stopped", Status::Deleted),
            ("Downloaded", Status::Downloading),
        ] {
            assert_eq!(Status::parse(w), want, "{w:?}");
        }
    }

    #[test]
    fn an_unknown_status_word_leaves_the_job_where_it_is() {
        let s = Status::parse("Transmuxing");
        assert_eq!(s, Status::Other("Transmuxing".into()));
        assert_eq!(s.ours(50.0), None, "never read as queued from scratch");
    }

    #[test]
    fn notify_bodies_in_json_and_xml() {
        let body = format!(
            "json={}",
            percent_encoding::utf8_percent_encode(
                r#"{"result":{"mediaid":"123","status":"Finished"}}"#,
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        assert_eq!(
            parse_notify(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap(),
            "123"
        );
        let xml = "xml=%3Cresult%3E%3Cmediaid%3E456%3C%2Fmediaid%3E%3C%2Fresult%3E";
        assert_eq!(parse_notify(None, xml.as_bytes()).unwrap(), "456");
        assert!(parse_notify(None, b"hello=1").is_err());
        assert!(parse_notify(None, b"xml=%3Cmediaid%3E..%2F..%3C%2Fmediaid%3E").is_err());
    }

    #[test]
    fn presets_map_to_formats_or_say_why_not() {
        let c = crate::presets::Catalog::builtin();
        let prefix = S3Uri::new("outbox", "j1/web/");
        let f = format_for(
            c.find("mp4-720p").unwrap(),
            &OutputOptions::default(),
            Some((854, 480)),
            &prefix,
            "clip",
            Some("abc123"),
        )
        .unwrap();
        assert_eq!(f["output"], "mp4");
        assert_eq!(f["video_codec"], "libx264");
        assert_eq!(f["size"], "0x480", "never upscaled");
        assert_eq!(
            f["destination"],
            "https://outbox.s3.amazonaws.com/j1/web/clip.mp4?acl=authenticated-read&canonical_id=abc123"
        );
        assert_eq!(
            parse_destination("https://outbox.s3.amazonaws.com/j1/web/a%20b.mp4?acl=public-read").unwrap(),
            S3Uri::new("outbox", "j1/web/a b.mp4")
        );
        assert!(parse_destination("https://evil.example/x").is_none());
        let hls = format_for(
            c.find("hls").unwrap(),
            &OutputOptions::default(),
            Some((1280, 720)),
            &prefix,
            "clip",
            None,
        )
        .unwrap();
        assert_eq!(hls["output"], "advanced_hls");
        assert_eq!(hls["pack_files"], "no", "playlists and segments, not one tar");
        let heights = sizes(&hls);
        assert!(heights.len() >= 2, "{hls}");
        assert!(
            heights.iter().all(|(w, h)| *w == 0 && *h <= 720),
            "never above the source: {heights:?}"
        );
        // the same ladder from a 1080p source has a rung above 720: the check can fail
        let full = format_for(
            c.find("hls").unwrap(),
            &OutputOptions::default(),
            Some((1920, 1080)),
            &prefix,
            "clip",
            None,
        )
        .unwrap();
        assert!(sizes(&full).iter().any(|(_, h)| *h > 720), "{full}");
        assert!(check_output(c.find("sprite").unwrap(), &OutputOptions::default()).is_err());
        assert!(check_output(c.find("mp4-av1-720p").unwrap(), &OutputOptions::default())
            .unwrap_err()
            .contains("AV1"));
        let crf = OutputOptions {
            crf: Some(20),
            ..Default::default()
        };
        assert!(check_output(c.find("mp4-720p").unwrap(), &crf)
            .unwrap_err()
            .contains("crf"));
        assert!(check_output(c.find("audio-mp3").unwrap(), &OutputOptions::default()).is_ok());
    }

    /// The (width, height) of each ladder stream's `size`, as numbers.
    fn sizes(f: &Value) -> Vec<(u32, u32)> {
        f["stream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let (w, h) = s["size"].as_str().unwrap().split_once('x').unwrap();
                (w.parse().unwrap(), h.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_presets_height_bounds_the_short_side_so_portrait_stays_portrait() {
        let c = crate::presets::Catalog::builtin();
        let prefix = S3Uri::new("delivery", "j1/web/");
        let mp4 = |src| {
            format_for(
                c.find("mp4-720p").unwrap(),
                &OutputOptions::default(),
                src,
                &prefix,
                "c",
                None,
            )
            .unwrap()
        };
        // a phone video, 720x1280: its short side is already 720, so it stays 720x1280
        assert_eq!(mp4(Some((720, 1280)))["size"], "720x0");
        assert_eq!(mp4(Some((1080, 1920)))["size"], "720x0");
        assert_eq!(mp4(Some((1920, 1080)))["size"], "0x720");
        assert_eq!(mp4(Some((360, 640)))["size"], "360x0", "never upscaled");
        assert_eq!(mp4(None)["size"], "0x720");
        let hls = format_for(
            c.find("hls").unwrap(),
            &OutputOptions::default(),
            Some((720, 1280)),
            &prefix,
            "c",
            None,
        )
        .unwrap();
        let rungs = sizes(&hls);
        assert!(
            rungs.len() >= 2,
            "a 720-wide portrait source keeps its 720 rung and those below: {hls}"
        );
        assert!(
            rungs.iter().all(|(w, h)| *h == 0 && *w <= 720),
            "every rung bounds the width of a portrait picture: {rungs:?}"
        );
        assert!(rungs.iter().any(|(w, _)| *w == 720), "{rungs:?}");
    }

    #[test]
    fn destinations_carry_the_acl_and_read_back() {
        let d = destination("deliv", "j 1/a.mp4", Some("owner/id"));
        assert_eq!(
            d,
            "https://deliv.s3.amazonaws.com/j%201/a.mp4?acl=authenticated-read&canonical_id=owner%2Fid"
        );
        let p = destination_params(&d);
        assert_eq!(p["acl"], "authenticated-read");
        assert_eq!(p["canonical_id"], "owner/id");
        assert_eq!(parse_destination(&d).unwrap(), S3Uri::new("deliv", "j 1/a.mp4"));
        assert!(destination_params("https://b.s3.amazonaws.com/k").is_empty());
    }

    #[test]
    fn the_documented_xml_notification_is_read() {
        let xml = "<?xml version=\"1.0\"?>\n<result>\n <mediaid>1234</mediaid>\n <source>https://x/y</source>\n <status>Finished</status>\n <format><output>mp4</output><destination>https://b.s3.amazonaws.com/k.mp4</destination><destination_status>Saved</destination_status><status>Finished</status></format>\n</result>";
        let body = format!(
            "xml={}",
            percent_encoding::utf8_percent_encode(xml, percent_encoding::NON_ALPHANUMERIC)
        );
        assert_eq!(
            parse_notify(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap(),
            "1234"
        );
    }

    #[test]
    fn the_key_never_prints() {
        let c = Client::new("https://manage.encoding.com/", "42", UserKey::new("sekrit"));
        assert!(!format!("{c:?}").contains("sekrit"));
        assert_eq!(format!("{}", UserKey::new("sekrit")), "***");
    }
}
