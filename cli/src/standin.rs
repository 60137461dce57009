//! A local stand-in for Encoding.com, for the local stack and the tests: a real HTTP
//! server that speaks the documented API (a form POST whose `json` field holds
//! `{"query": {userid, userkey, action, …}}`) for `AddMedia`, `GetStatus` (plain and
//! extended), `CancelMedia` and `GetMediaInfo`. Each task downloads its source URL,
//! really transcodes each `format` with FFmpeg, writes the results to their
//! `https://BUCKET.s3.amazonaws.com/key` destinations (in the emulator, as Encoding.com
//! would with the write access a bucket grants it), and POSTs the `notify` URL.
//! It answers like Encoding.com does: errors in `response.errors.error`, one-item lists
//! as bare objects, `progress` reading 100 while "Waiting for encoder".
//!
//! [`Switches`] inject failures: an error response to `AddMedia`, slow processing, lost
//! callbacks, tasks that end in `Error`.

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use nommer_shared::encodingcom::parse_destination;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const USERID: &str = "nommer-local";
pub const USERKEY: &str = "local-stand-in-key";

/// Failure injection, changeable while it runs.
#[derive(Debug, Default)]
pub struct Switches {
    /// `AddMedia` answers with an error.
    pub refuse_add: AtomicBool,
    /// Pause at each status, milliseconds (slow processing).
    pub step_delay_ms: AtomicU64,
    /// Never POST the notify URL.
    pub lose_callbacks: AtomicBool,
    /// Tasks end in `Error` after downloading.
    pub fail_tasks: AtomicBool,
}

#[derive(Debug, Clone)]
struct Media {
    source: String,
    notify: Option<String>,
    formats: Vec<Value>,
    status: String,
    progress: f64,
    description: String,
    created: String,
    finished: String,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    media: BTreeMap<String, Media>,
    /// Every action received, e.g. `AddMedia 1001`, `CancelMedia 1001`.
    calls: Vec<String>,
}

/// A running stand-in.
pub struct StandIn {
    pub url: String,
    pub switches: Arc<Switches>,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    switches: Arc<Switches>,
    s3: aws_sdk_s3::Client,
    http: reqwest::Client,
    work: PathBuf,
    ffmpeg: String,
    ffprobe: String,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn error(msg: &str) -> Value {
    json!({"response": {"errors": {"error": msg}}})
}

/// A list of one goes out as a bare object, as Encoding.com sends it.
fn one_or_list(mut v: Vec<Value>) -> Value {
    if v.len() == 1 {
        v.pop().unwrap()
    } else {
        Value::Array(v)
    }
}

impl StandIn {
    /// Starts it on a free local port. `s3` writes the outputs; `work` holds its files.
    pub async fn start(sdk: &aws_config::SdkConfig, work: &Path) -> anyhow::Result<StandIn> {
        std::fs::create_dir_all(work)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let switches = Arc::new(Switches::default());
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1000,
            ..Default::default()
        }));
        let ctx = Ctx {
            inner: inner.clone(),
            switches: switches.clone(),
            s3: nommer_shared::aws::s3_client(sdk),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            work: work.to_path_buf(),
            ffmpeg: std::env::var("NOMMER_FFMPEG").unwrap_or_else(|_| "ffmpeg".into()),
            ffprobe: std::env::var("NOMMER_FFPROBE").unwrap_or_else(|_| "ffprobe".into()),
        };
        let app = Router::new().route("/", post(handle)).with_state(ctx);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Encoding.com stand-in stopped");
            }
        });
        Ok(StandIn {
            url,
            switches,
            inner,
            task,
        })
    }

    /// Every action received so far.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// A task's status word.
    pub fn status(&self, media_id: &str) -> Option<String> {
        self.inner.lock().unwrap().media.get(media_id).map(|m| m.status.clone())
    }
}

fn form_field<'a>(body: &'a str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn handle(State(ctx): State<Ctx>, body: Bytes) -> axum::Json<Value> {
    let body = String::from_utf8_lossy(&body);
    let Some(j) = form_field(&body, "json") else {
        let msg = if form_field(&body, "xml").is_some() {
            "the stand-in speaks the json form field only"
        } else {
            "No query given"
        };
        return axum::Json(error(msg));
    };
    let Ok(v) = serde_json::from_str::<Value>(&j) else {
        return axum::Json(error("Wrong query format"));
    };
    let q = v.get("query").cloned().unwrap_or(Value::Null);
    let s = |k: &str| q.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    if s("userid") != USERID || s("userkey") != USERKEY {
        return axum::Json(error("Wrong user id or key!"));
    }
    let action = s("action");
    axum::Json(match action.as_str() {
        "AddMedia" => add_media(&ctx, &q),
        "GetStatus" => get_status(&ctx, &q),
        "CancelMedia" => {
            let id = s("mediaid");
            let mut inner = ctx.inner.lock().unwrap();
            inner.calls.push(format!("CancelMedia {id}"));
            match inner.media.get_mut(&id) {
                Some(m) => {
                    m.status = "Deleted".into();
                    json!({"response": {"message": "Deleted"}})
                }
                None => error(&format!("Media ID {id} not found")),
            }
        }
        "GetMediaInfo" => {
            let id = s("mediaid");
            let inner = ctx.inner.lock().unwrap();
            match inner.media.get(&id) {
                Some(_) => json!({"response": {"duration": "", "size": ""}}),
                None => error(&format!("Media ID {id} not found")),
            }
        }
        other => error(&format!("Wrong action: {other}")),
    })
}

fn add_media(ctx: &Ctx, q: &Value) -> Value {
    if ctx.switches.refuse_add.load(Ordering::SeqCst) {
        ctx.inner.lock().unwrap().calls.push("AddMedia refused".into());
        return error("Source file is not available (switch: refuse_add)");
    }
    let source = match q.get("source") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().unwrap_or("").to_string(),
        _ => return error("Source file is not indicated"),
    };
    let formats: Vec<Value> = match q.get("format") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return error("No format specified"),
    };
    for f in &formats {
        let Some(d) = f.get("destination").and_then(|d| d.as_str()) else {
            return error("Destination is not indicated");
        };
        if parse_destination(d).is_none() {
            return error(&format!("Wrong destination: {d}"));
        }
    }
    let mut inner = ctx.inner.lock().unwrap();
    inner.next_id += 1;
    let id = inner.next_id.to_string();
    inner.calls.push(format!("AddMedia {id}"));
    inner.media.insert(
        id.clone(),
        Media {
            source,
            notify: q.get("notify").and_then(|n| n.as_str()).map(str::to_string),
            formats,
            status: "New".into(),
            progress: 0.0,
            description: String::new(),
            created: now(),
            finished: "0000-00-00 00:00:00".into(),
        },
    );
    drop(inner);
    let c = ctx.clone();
    let mid = id.clone();
    tokio::spawn(async move { run_task(c, mid).await });
    json!({"response": {"message": "Added", "MediaID": id}})
}

fn status_json(id: &str, m: &Media, extended: bool) -> Value {
    let formats: Vec<Value> = m
        .formats
        .iter()
        .map(|f| {
            json!({
                "id": format!("{id}-{}", f.get("output").and_then(|o| o.as_str()).unwrap_or("")),
                "status": m.status,
                "output": f.get("output").cloned().unwrap_or(Value::Null),
                "destination": f.get("destination").cloned().unwrap_or(Value::Null),
                "destination_status": if m.status == "Finished" { "Saved" } else { "Open" },
            })
        })
        .collect();
    let mut r = Map::new();
    r.insert("id".into(), json!(id));
    r.insert("userid".into(), json!(USERID));
    r.insert("sourcefile".into(), json!(m.source));
    r.insert("status".into(), json!(m.status));
    r.insert("notifyurl".into(), json!(m.notify.clone().unwrap_or_default()));
    r.insert("created".into(), json!(m.created));
    r.insert("finished".into(), json!(m.finished));
    r.insert("progress".into(), json!(format!("{:.1}", m.progress)));
    r.insert("time_left".into(), json!("0"));
    r.insert(
        "description".into(),
        if m.description.is_empty() {
            json!([])
        } else {
            json!(m.description)
        },
    );
    if extended {
        r.insert("format".into(), one_or_list(formats));
    }
    Value::Object(r)
}

fn get_status(ctx: &Ctx, q: &Value) -> Value {
    let ids = q.get("mediaid").and_then(|m| m.as_str()).unwrap_or("").to_string();
    let extended = q.get("extended").and_then(|e| e.as_str()) == Some("yes");
    let inner = ctx.inner.lock().unwrap();
    let mut jobs = Vec::new();
    for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match inner.media.get(id) {
            Some(m) => jobs.push(status_json(id, m, extended)),
            None => return error(&format!("Media ID {id} not found")),
        }
    }
    if jobs.is_empty() {
        return error("Media ID is not indicated");
    }
    if extended {
        json!({"response": {"job": one_or_list(jobs)}})
    } else {
        json!({"response": jobs.swap_remove(0)})
    }
}

/// Sets a task's status unless it was cancelled; false once it is.
fn set(ctx: &Ctx, id: &str, status: &str, progress: f64) -> bool {
    let mut inner = ctx.inner.lock().unwrap();
    let Some(m) = inner.media.get_mut(id) else { return false };
    if m.status == "Deleted" {
        return false;
    }
    m.status = status.into();
    m.progress = progress;
    if status == "Finished" || status == "Error" {
        m.finished = now();
    }
    true
}

async fn pause(ctx: &Ctx) {
    let ms = ctx.switches.step_delay_ms.load(Ordering::SeqCst).max(100);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn run_task(ctx: Ctx, id: String) {
    let dir = ctx.work.join(format!("media-{id}"));
    let result = process(&ctx, &id, &dir).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    match result {
        Ok(true) => {
            set(&ctx, &id, "Finished", 100.0);
        }
        Ok(false) => return, // cancelled
        Err(e) => {
            tracing::warn!(media_id = %id, error = %e, "stand-in task failed");
            if let Some(m) = ctx.inner.lock().unwrap().media.get_mut(&id) {
                if m.status != "Deleted" {
                    m.status = "Error".into();
                    m.description = format!("{e:#}");
                    m.finished = now();
                }
            }
        }
    }
    notify(&ctx, &id).await;
}

/// POSTs the notify URL: a form with a `json` field holding `{"result": …}`.
async fn notify(ctx: &Ctx, id: &str) {
    if ctx.switches.lose_callbacks.load(Ordering::SeqCst) {
        ctx.inner.lock().unwrap().calls.push(format!("notify {id} lost"));
        return;
    }
    let (url, result) = {
        let inner = ctx.inner.lock().unwrap();
        let Some(m) = inner.media.get(id) else { return };
        let Some(url) = m.notify.clone() else { return };
        let formats: Vec<Value> = m
            .formats
            .iter()
            .map(|f| json!({"output": f.get("output"), "destination": f.get("destination"), "status": m.status}))
            .collect();
        (
            url,
            json!({"result": {"mediaid": id, "source": m.source, "status": m.status,
                "description": m.description, "format": one_or_list(formats)}}),
        )
    };
    let form = format!(
        "json={}",
        percent_encoding::utf8_percent_encode(&result.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    // Encoding.com retries a failed callback up to 3 times
    for attempt in 0..3 {
        let res = ctx
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await;
        let ok = matches!(&res, Ok(r) if r.status().is_success());
        ctx.inner
            .lock()
            .unwrap()
            .calls
            .push(format!("notify {id} {}", res.map(|r| r.status().as_u16()).unwrap_or(0)));
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
    }
}

/// Runs one task; `Ok(false)` when it was cancelled on the way.
async fn process(ctx: &Ctx, id: &str, dir: &Path) -> anyhow::Result<bool> {
    tokio::fs::create_dir_all(dir).await?;
    let (source, formats) = {
        let inner = ctx.inner.lock().unwrap();
        let m = &inner.media[id];
        (m.source.clone(), m.formats.clone())
    };
    pause(ctx).await;
    if !set(ctx, id, "Downloading", 0.0) {
        return Ok(false);
    }
    let input = dir.join("source");
    let res = ctx
        .http
        .get(&source)
        .send()
        .await
        .context("Source file is not available")?;
    anyhow::ensure!(
        res.status().is_success(),
        "Source file is not available: HTTP {}",
        res.status()
    );
    let bytes = res.bytes().await.context("downloading the source")?;
    tokio::fs::write(&input, &bytes).await?;
    pause(ctx).await;
    if !set(ctx, id, "Ready to process", 0.0) {
        return Ok(false);
    }
    pause(ctx).await;
    // Encoding.com's quirk: progress reads 100 while the task waits for an encoder
    if !set(ctx, id, "Waiting for encoder", 100.0) {
        return Ok(false);
    }
    pause(ctx).await;
    if ctx.switches.fail_tasks.load(Ordering::SeqCst) {
        anyhow::bail!("Processing failed: the encoder stopped (switch: fail_tasks)");
    }
    if !set(ctx, id, "Processing", 0.0) {
        return Ok(false);
    }
    let probe = tokio::process::Command::new(&ctx.ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_entries",
            "stream=index",
            "-of",
            "csv=p=0",
        ])
        .arg(&input)
        .output()
        .await
        .context("running ffprobe")?;
    anyhow::ensure!(probe.status.success(), "The source file cannot be read as media");
    let has_audio = !String::from_utf8_lossy(&probe.stdout).trim().is_empty();
    let mut outputs: Vec<(PathBuf, String)> = Vec::new();
    for (i, f) in formats.iter().enumerate() {
        let out = dir.join(format!("format-{i}"));
        tokio::fs::create_dir_all(&out).await?;
        let dest = parse_destination(f["destination"].as_str().unwrap_or_default()).context("Wrong destination")?;
        let file = dest.file_name().to_string();
        for args in ffmpeg_args(f, &input, &out, &file, has_audio)? {
            let o = tokio::process::Command::new(&ctx.ffmpeg)
                .args(&args)
                .kill_on_drop(true)
                .output()
                .await
                .context("running FFmpeg")?;
            anyhow::ensure!(
                o.status.success(),
                "Processing failed: {}",
                nommer_shared::ffmpeg::reason_from_stderr(&String::from_utf8_lossy(&o.stderr))
            );
        }
        let folder = dest
            .key
            .rsplit_once('/')
            .map(|(p, _)| format!("{p}/"))
            .unwrap_or_default();
        for entry in std::fs::read_dir(&out)? {
            let p = entry?.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            outputs.push((p, format!("{}|{folder}{name}", dest.bucket)));
        }
        if !set(ctx, id, "Processing", ((i + 1) * 100 / formats.len()) as f64) {
            return Ok(false);
        }
    }
    pause(ctx).await;
    if !set(ctx, id, "Saving", 100.0) {
        return Ok(false);
    }
    for (path, target) in outputs {
        let (bucket, key) = target.split_once('|').unwrap();
        ctx.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(nommer_shared::plan::content_type(key))
            .body(aws_sdk_s3::primitives::ByteStream::from_path(&path).await?)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("Saving failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    pause(ctx).await;
    Ok(true)
}

fn field<'a>(f: &'a Value, k: &str) -> Option<&'a str> {
    f.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

fn audio_encoder(name: &str) -> &str {
    match name {
        "dolby_aac" | "libfaac" | "dolby_heaac" | "dolby_heaacv2" | "libfdk_aac" | "aac" => "aac",
        "libvorbis" => "libvorbis",
        "libopus" => "libopus",
        "libmp3lame" => "libmp3lame",
        _ => "aac",
    }
}

fn video_args(f: &Value, a: &mut Vec<String>) -> anyhow::Result<()> {
    let codec = field(f, "video_codec").unwrap_or("libx264");
    anyhow::ensure!(
        ["libx264", "libx265", "libvpx-vp9", "libvpx"].contains(&codec),
        "Wrong video codec: {codec}"
    );
    a.extend(["-c:v".into(), codec.into()]);
    match codec {
        "libx264" => a.extend(["-preset".into(), "veryfast".into(), "-pix_fmt".into(), "yuv420p".into()]),
        "libx265" => a.extend(["-preset".into(), "ultrafast".into(), "-tag:v".into(), "hvc1".into()]),
        _ => a.extend(["-deadline".into(), "realtime".into(), "-cpu-used".into(), "8".into()]),
    }
    if let Some(b) = field(f, "bitrate") {
        a.extend(["-b:v".into(), b.into()]);
    }
    if let Some(s) = field(f, "size") {
        let (w, h) = s.split_once('x').context("Wrong size")?;
        let w: i64 = w.parse().context("Wrong size")?;
        let h: i64 = h.parse().context("Wrong size")?;
        let scale = match (w, h) {
            (0, h) => format!("scale=-2:{h}"),
            (w, 0) => format!("scale={w}:-2"),
            (w, h) => format!("scale={w}:{h}"),
        };
        a.extend(["-vf".into(), scale]);
    }
    if let Some(r) = field(f, "framerate") {
        a.extend(["-r".into(), r.into()]);
    }
    if let Some(k) = field(f, "keyframe") {
        a.extend(["-g".into(), k.into()]);
    }
    Ok(())
}

fn audio_args(f: &Value, a: &mut Vec<String>) {
    match field(f, "audio_codec") {
        Some("none") => a.push("-an".into()),
        c => {
            a.extend(["-c:a".into(), audio_encoder(c.unwrap_or("dolby_aac")).into()]);
            if let Some(b) = field(f, "audio_bitrate") {
                a.extend(["-b:a".into(), b.into()]);
            }
            if let Some(n) = field(f, "audio_channels_number") {
                a.extend(["-ac".into(), n.into()]);
            }
            if let Some(r) = field(f, "audio_sample_rate") {
                a.extend(["-ar".into(), r.into()]);
            }
        }
    }
}

/// FFmpeg runs for one `format`, writing into `out` (the destination's file is `file`).
fn ffmpeg_args(f: &Value, input: &Path, out: &Path, file: &str, has_audio: bool) -> anyhow::Result<Vec<Vec<String>>> {
    let output = field(f, "output").context("Output format is not indicated")?;
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(s) = field(f, "start") {
        a.extend(["-ss".into(), s.into()]);
    }
    a.extend(["-i".into(), input.display().to_string()]);
    if let Some(d) = field(f, "duration") {
        a.extend(["-t".into(), d.into()]);
    }
    let target = out.join(file).display().to_string();
    match output {
        "mp4" | "webm" => {
            video_args(f, &mut a)?;
            audio_args(f, &mut a);
            if output == "mp4" {
                a.extend(["-movflags".into(), "+faststart".into()]);
            }
            if field(f, "two_pass") == Some("yes") {
                // a real second pass needs a log file per task; one pass is enough here
            }
            a.push(target);
            Ok(vec![a])
        }
        "m4a" | "mp3" => {
            a.push("-vn".into());
            audio_args(f, &mut a);
            a.push(target);
            Ok(vec![a])
        }
        "thumbnail" => {
            let t = field(f, "time").unwrap_or("5");
            let mut b: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", t, "-i"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            b.push(input.display().to_string());
            let w = field(f, "width").unwrap_or("640");
            b.extend([
                "-frames:v".into(),
                "1".into(),
                "-vf".into(),
                format!("scale={w}:-2"),
                target,
            ]);
            Ok(vec![b])
        }
        "advanced_hls" | "advanced_dash" => {
            let streams: Vec<Value> = match f.get("stream") {
                Some(Value::Array(s)) => s.clone(),
                Some(o @ Value::Object(_)) => vec![o.clone()],
                _ => anyhow::bail!("No streams given for {output}"),
            };
            anyhow::ensure!(!streams.is_empty() && streams.len() <= 15, "1-15 streams are allowed");
            let seg = field(f, "segment_duration").unwrap_or("6").to_string();
            for (i, s) in streams.iter().enumerate() {
                a.extend(["-map".into(), "0:v:0".into()]);
                let codec = field(s, "video_codec").unwrap_or("libx264");
                a.extend([format!("-c:v:{i}"), codec.into()]);
                if let Some(b) = field(s, "bitrate") {
                    a.extend([format!("-b:v:{i}"), b.into()]);
                }
                if let Some(sz) = field(s, "size") {
                    let h = sz.split_once('x').map(|(_, h)| h).unwrap_or("360");
                    a.extend([format!("-filter:v:{i}"), format!("scale=-2:{h}")]);
                }
            }
            a.extend(["-preset".into(), "veryfast".into(), "-g".into(), "48".into()]);
            // HLS: each rendition carries the audio; DASH: one audio adaptation set
            let audio_maps = if !has_audio {
                0
            } else if output == "advanced_hls" {
                streams.len()
            } else {
                1
            };
            for _ in 0..audio_maps {
                a.extend(["-map".into(), "0:a:0".into()]);
            }
            if audio_maps > 0 {
                a.extend(["-c:a".into(), "aac".into()]);
                if let Some(b) = streams.first().and_then(|s| field(s, "audio_bitrate")) {
                    a.extend(["-b:a".into(), b.into()]);
                }
            }
            if output == "advanced_hls" {
                let vmap: Vec<String> = (0..streams.len())
                    .map(|i| {
                        if has_audio {
                            format!("v:{i},a:{i}")
                        } else {
                            format!("v:{i}")
                        }
                    })
                    .collect();
                a.extend([
                    "-f".into(),
                    "hls".into(),
                    "-hls_time".into(),
                    seg,
                    "-hls_playlist_type".into(),
                    "vod".into(),
                    "-master_pl_name".into(),
                    file.to_string(),
                    "-var_stream_map".into(),
                    vmap.join(" "),
                    "-hls_segment_filename".into(),
                    out.join("stream_%v_%03d.ts").display().to_string(),
                    out.join("stream_%v.m3u8").display().to_string(),
                ]);
            } else {
                a.extend(["-f".into(), "dash".into(), "-seg_duration".into(), seg, target]);
            }
            Ok(vec![a])
        }
        other => anyhow::bail!("Wrong output format: {other}"),
    }
}
