//! A local stand-in for Encoding.com, for the local stack and the tests: a real HTTP
//! server that speaks the documented API (a form POST whose `json` field holds
//! `{"query": {userid, userkey, action, …}}`) for every action PyPI's `encodingcom`
//! client sends: `AddMedia`, `AddMediaBenchmark`, `ProcessMedia`, `UpdateMedia`,
//! `GetStatus` (plain and extended), `GetMediaInfo`, `GetMediaInfoEx`, `GetMediaList`,
//! `CancelMedia`, `StopMedia`, `RestartMedia`, `RestartMediaErrors`, `RestartMediaTask`.
//! Each task downloads its source URL, really transcodes each `format` with FFmpeg,
//! writes the results to their `https://BUCKET.s3.amazonaws.com/key` destinations (in
//! the emulator), and POSTs the `notify` URL.
//!
//! It keeps Encoding.com's documented defaults, which Nommer must cope with:
//! - every S3 write carries a canned ACL: `authenticated-read` unless the destination
//!   says `?acl=…` (plus FULL_CONTROL for `canonical_id=…`). moto stores Block Public
//!   Access and Object Ownership settings but enforces neither, so before each write the
//!   stand-in reads the target bucket's settings from the emulator and refuses what S3
//!   would: any ACL but `bucket-owner-full-control` under `BucketOwnerEnforced` (S3's
//!   default for new buckets), a public ACL (`public-read`, `authenticated-read`) under
//!   `BlockPublicAcls` (on by default too);
//! - `advanced_hls` / `advanced_dash` deliver ONE tar unless `pack_files` is `no`;
//! - notifications are XML in a form field `xml` unless `notify_format` is `json`.
//!
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
    /// `notify_format` as asked (`xml` when absent, Encoding.com's default).
    notify_json: bool,
    formats: Vec<Value>,
    status: String,
    progress: f64,
    description: String,
    created: String,
    finished: String,
    /// Bumped by every stop, restart or update: a run of an older generation stops.
    generation: u64,
    /// What ffprobe said of the source, once downloaded (for `GetMediaInfo`).
    info: Option<Value>,
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

    /// The source URL a task was added with.
    pub fn source(&self, media_id: &str) -> Option<String> {
        self.inner.lock().unwrap().media.get(media_id).map(|m| m.source.clone())
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
        "AddMedia" => add_media(&ctx, &q, false),
        "AddMediaBenchmark" => add_media(&ctx, &q, true),
        "GetStatus" => get_status(&ctx, &q),
        "CancelMedia" => each_media(&ctx, &q, "CancelMedia", |m| {
            m.status = "Deleted".into();
            m.generation += 1;
            Ok(false)
        }),
        "StopMedia" => each_media(&ctx, &q, "StopMedia", |m| {
            if ["Finished", "Error", "Deleted", "Stopped"].contains(&m.status.as_str()) {
                return Err(format!("Media is already {}", m.status));
            }
            m.status = "Stopped".into();
            m.generation += 1;
            m.finished = now();
            Ok(false)
        }),
        "RestartMedia" | "RestartMediaTask" => each_media(&ctx, &q, &action, |m| {
            if m.status == "Deleted" {
                return Err("Media is deleted".into());
            }
            Ok(true)
        }),
        "RestartMediaErrors" => each_media(&ctx, &q, "RestartMediaErrors", |m| {
            if m.status != "Error" {
                return Err(format!("Media has no errors to restart (it is {})", m.status));
            }
            Ok(true)
        }),
        "ProcessMedia" | "UpdateMedia" => {
            let formats = match formats_of(&q) {
                Ok(f) => f,
                Err(e) => return axum::Json(e),
            };
            let benchmark_only = action == "ProcessMedia";
            each_media(&ctx, &q, &action, move |m| {
                if benchmark_only && m.status != "Ready to process" {
                    return Err(format!(
                        "ProcessMedia starts media added with AddMediaBenchmark; this one is {}",
                        m.status
                    ));
                }
                m.formats = formats.clone();
                Ok(true)
            })
        }
        "GetMediaInfo" => {
            let id = s("mediaid");
            let inner = ctx.inner.lock().unwrap();
            match inner.media.get(&id) {
                Some(Media { info: Some(i), .. }) => json!({ "response": i }),
                Some(m) => error(&format!("Media info is not available yet: the source is {}", m.status)),
                None => error(&format!("Media ID {id} not found")),
            }
        }
        "GetMediaInfoEx" => {
            let id = s("mediaid");
            let inner = ctx.inner.lock().unwrap();
            match inner.media.get(&id) {
                Some(m) => {
                    let mut r = status_json(&id, m, true);
                    if let Some(i) = &m.info {
                        r["mediainfo"] = i.clone();
                    }
                    json!({ "response": { "job": r } })
                }
                None => error(&format!("Media ID {id} not found")),
            }
        }
        "GetMediaList" => {
            let inner = ctx.inner.lock().unwrap();
            let media: Vec<Value> = inner
                .media
                .iter()
                .map(|(id, m)| {
                    json!({"mediafile": m.source, "mediaid": id, "mediastatus": m.status,
                        "createdate": m.created, "startdate": m.created, "finishdate": m.finished})
                })
                .collect();
            json!({"response": {"media": one_or_list(media)}})
        }
        other => error(&format!("Wrong action: {other}")),
    })
}

/// Applies `f` to each media in `mediaid` (comma-separated); `Ok(true)` from `f` starts
/// the media's task again from the download.
fn each_media(ctx: &Ctx, q: &Value, action: &str, f: impl Fn(&mut Media) -> Result<bool, String>) -> Value {
    let ids = q.get("mediaid").and_then(|m| m.as_str()).unwrap_or("").to_string();
    let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if ids.is_empty() {
        return error("Media ID is not indicated");
    }
    let mut restart = Vec::new();
    {
        let mut inner = ctx.inner.lock().unwrap();
        for id in &ids {
            inner.calls.push(format!("{action} {id}"));
            let Some(m) = inner.media.get_mut(*id) else {
                return error(&format!("Media ID {id} not found"));
            };
            match f(m) {
                Ok(true) => {
                    m.generation += 1;
                    m.status = "New".into();
                    m.progress = 0.0;
                    m.description.clear();
                    m.finished = "0000-00-00 00:00:00".into();
                    restart.push((id.to_string(), m.generation));
                }
                Ok(false) => {}
                Err(e) => return error(&e),
            }
        }
    }
    for (id, generation) in restart {
        let c = ctx.clone();
        tokio::spawn(async move { run_task(c, id, generation, false).await });
    }
    let message = match action {
        "CancelMedia" => "Deleted",
        "StopMedia" => "Stopped",
        "ProcessMedia" => "Processing started",
        "UpdateMedia" => "Updated",
        _ => "Restarted",
    };
    json!({"response": {"message": message, "MediaID": ids.join(",")}})
}

/// The `format` list of a query, each with a destination the stand-in can write.
fn formats_of(q: &Value) -> Result<Vec<Value>, Value> {
    let formats: Vec<Value> = match q.get("format") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err(error("No format specified")),
    };
    for f in &formats {
        let Some(d) = f.get("destination").and_then(|d| d.as_str()) else {
            return Err(error("Destination is not indicated"));
        };
        if parse_destination(d).is_none() {
            return Err(error(&format!("Wrong destination: {d}")));
        }
    }
    Ok(formats)
}

fn add_media(ctx: &Ctx, q: &Value, benchmark: bool) -> Value {
    if ctx.switches.refuse_add.load(Ordering::SeqCst) {
        ctx.inner.lock().unwrap().calls.push("AddMedia refused".into());
        return error("Source file is not available (switch: refuse_add)");
    }
    let source = match q.get("source") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().unwrap_or("").to_string(),
        _ => return error("Source file is not indicated"),
    };
    let formats = match formats_of(q) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let notify_json = q
        .get("notify_format")
        .and_then(|n| n.as_str())
        .is_some_and(|n| n.trim().eq_ignore_ascii_case("json"));
    let mut inner = ctx.inner.lock().unwrap();
    inner.next_id += 1;
    let id = inner.next_id.to_string();
    inner.calls.push(format!(
        "{} {id}",
        if benchmark { "AddMediaBenchmark" } else { "AddMedia" }
    ));
    inner.media.insert(
        id.clone(),
        Media {
            source,
            notify: q.get("notify").and_then(|n| n.as_str()).map(str::to_string),
            notify_json,
            formats,
            status: "New".into(),
            progress: 0.0,
            description: String::new(),
            created: now(),
            finished: "0000-00-00 00:00:00".into(),
            generation: 0,
            info: None,
        },
    );
    drop(inner);
    let c = ctx.clone();
    let mid = id.clone();
    tokio::spawn(async move { run_task(c, mid, 0, benchmark).await });
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

/// Sets a task's status unless its run is over (cancelled, stopped, restarted or
/// updated since it began); false once it is.
fn set(ctx: &Ctx, id: &str, generation: u64, status: &str, progress: f64) -> bool {
    let mut inner = ctx.inner.lock().unwrap();
    let Some(m) = inner.media.get_mut(id) else { return false };
    if m.generation != generation || m.status == "Deleted" || m.status == "Stopped" {
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

/// How one run of a task ended.
enum Run {
    Finished,
    /// Cancelled, stopped, restarted or updated on the way.
    Stopped,
    /// Added with `AddMediaBenchmark`: downloaded, waiting for `ProcessMedia`.
    Waiting,
}

async fn run_task(ctx: Ctx, id: String, generation: u64, benchmark: bool) {
    let dir = ctx.work.join(format!("media-{id}-{generation}"));
    let result = process(&ctx, &id, generation, benchmark, &dir).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let stopped = |ctx: &Ctx| ctx.inner.lock().unwrap().calls.push(format!("stopped {id}"));
    match result {
        Ok(Run::Finished) => {
            if !set(&ctx, &id, generation, "Finished", 100.0) {
                return stopped(&ctx);
            }
        }
        Ok(Run::Waiting) => return,
        Ok(Run::Stopped) => return stopped(&ctx),
        Err(e) => {
            tracing::warn!(media_id = %id, error = %e, "stand-in task failed");
            let mut inner = ctx.inner.lock().unwrap();
            match inner.media.get_mut(&id) {
                Some(m) if m.generation == generation && m.status != "Deleted" && m.status != "Stopped" => {
                    m.status = "Error".into();
                    m.description = format!("{e:#}");
                    m.finished = now();
                }
                _ => {
                    inner.calls.push(format!("stopped {id}"));
                    return;
                }
            }
        }
    }
    notify(&ctx, &id).await;
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The documented notify body: `<result>` (or `{"result": …}` for `notify_format: json`).
fn notify_body(id: &str, m: &Media) -> String {
    let saved = m.status == "Finished";
    if m.notify_json {
        let formats: Vec<Value> = m
            .formats
            .iter()
            .map(|f| {
                json!({"output": f.get("output"), "destination": f.get("destination"),
                    "destination_status": if saved { "Saved" } else { "Error" }, "status": m.status})
            })
            .collect();
        let result = json!({"result": {"mediaid": id, "source": m.source, "status": m.status,
            "description": m.description, "format": one_or_list(formats)}});
        return format!(
            "json={}",
            percent_encoding::utf8_percent_encode(&result.to_string(), percent_encoding::NON_ALPHANUMERIC)
        );
    }
    let mut x = format!(
        "<?xml version=\"1.0\"?>\n<result>\n<mediaid>{}</mediaid>\n<source>{}</source>\n<status>{}</status>\n",
        xml_escape(id),
        xml_escape(&m.source),
        xml_escape(&m.status)
    );
    if !m.description.is_empty() {
        x.push_str(&format!("<description>{}</description>\n", xml_escape(&m.description)));
    }
    for f in &m.formats {
        x.push_str(&format!(
            "<format>\n<output>{}</output>\n<destination>{}</destination>\n<destination_status>{}</destination_status>\n<status>{}</status>\n</format>\n",
            xml_escape(field(f, "output").unwrap_or("")),
            xml_escape(field(f, "destination").unwrap_or("")),
            if saved { "Saved" } else { "Error" },
            xml_escape(&m.status)
        ));
    }
    x.push_str("</result>\n");
    format!(
        "xml={}",
        percent_encoding::utf8_percent_encode(&x, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// POSTs the notify URL: a form with an `xml` field (a `json` one when asked).
async fn notify(ctx: &Ctx, id: &str) {
    if ctx.switches.lose_callbacks.load(Ordering::SeqCst) {
        ctx.inner.lock().unwrap().calls.push(format!("notify {id} lost"));
        return;
    }
    let (url, form) = {
        let inner = ctx.inner.lock().unwrap();
        let Some(m) = inner.media.get(id) else { return };
        let Some(url) = m.notify.clone() else { return };
        (url, notify_body(id, m))
    };
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

/// The stand-in's own canonical user id: the template's EncodingComCanonicalUserId in
/// the local stack, so the delivery bucket's policy names it as it names Encoding.com's.
pub const CANONICAL_USER_ID: &str = "5e1c0d1a9b6f4e2c8d3a7b0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5";

/// One object to write: where, and with which ACL.
struct Put {
    path: PathBuf,
    bucket: String,
    key: String,
    acl: String,
    canonical_id: Option<String>,
}

fn code_of<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    e.as_service_error().and_then(|s| s.code()).unwrap_or("").to_string()
}

/// What S3 would say to this write, judged from the bucket's settings as the emulator
/// stores them (moto enforces none of them). A bucket without Object Ownership or Block
/// Public Access settings gets S3's defaults for new buckets: `BucketOwnerEnforced` and
/// every block on.
async fn check_write(ctx: &Ctx, bucket: &str, acl: &str) -> anyhow::Result<()> {
    let ownership = match ctx.s3.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(o) => o
            .ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string()),
        Err(e) if code_of(&e).contains("NotFound") => None,
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    }
    .unwrap_or_else(|| "BucketOwnerEnforced".into());
    let block_public_acls = match ctx.s3.get_public_access_block().bucket(bucket).send().await {
        Ok(o) => o
            .public_access_block_configuration()
            .and_then(|c| c.block_public_acls())
            .unwrap_or(false),
        Err(e) if code_of(&e).contains("NoSuchPublicAccessBlock") => true,
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    };
    if ownership == "BucketOwnerEnforced" && acl != "bucket-owner-full-control" {
        anyhow::bail!(
            "Saving failed: s3://{bucket}: AccessControlListNotSupported: The bucket does not allow ACLs (Object Ownership is BucketOwnerEnforced; the object was written with ACL {acl})"
        );
    }
    if block_public_acls && ["public-read", "public-read-write", "authenticated-read"].contains(&acl) {
        anyhow::bail!(
            "Saving failed: s3://{bucket}: AccessDenied: the public ACL {acl} is blocked by the bucket's BlockPublicAcls setting"
        );
    }
    // the stand-in writes as Encoding.com does, as a foreign account: the bucket's
    // policy must let its canonical user put objects
    let policy = match ctx.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(p) => p.policy().unwrap_or_default().to_string(),
        Err(e) if code_of(&e).contains("NoSuchBucketPolicy") => String::new(),
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    };
    anyhow::ensure!(
        policy_lets_us_put(&policy),
        "Saving failed: s3://{bucket}: AccessDenied: the bucket policy does not grant s3:PutObject to Encoding.com's canonical user"
    );
    Ok(())
}

fn listed(v: Option<&Value>, want: impl Fn(&str) -> bool) -> bool {
    match v {
        Some(Value::String(s)) => want(s),
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str().is_some_and(&want)),
        _ => false,
    }
}

fn policy_lets_us_put(policy: &str) -> bool {
    let Ok(p) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let statements = match p.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return false,
    };
    statements.iter().any(|st| {
        st.get("Effect").and_then(|e| e.as_str()) == Some("Allow")
            && listed(st.get("Principal").and_then(|p| p.get("CanonicalUser")), |c| {
                c == CANONICAL_USER_ID
            })
            && listed(st.get("Action"), |a| a == "s3:PutObject" || a == "s3:*")
    })
}

async fn put(ctx: &Ctx, p: &Put) -> anyhow::Result<()> {
    check_write(ctx, &p.bucket, &p.acl).await?;
    ctx.s3
        .put_object()
        .bucket(&p.bucket)
        .key(&p.key)
        .acl(aws_sdk_s3::types::ObjectCannedAcl::from(p.acl.as_str()))
        .content_type(nommer_shared::content_type::of(&p.key))
        .body(aws_sdk_s3::primitives::ByteStream::from_path(&p.path).await?)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("Saving failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    if let Some(id) = &p.canonical_id {
        // documented: `canonical_id` gets FULL_CONTROL on the object, beside the ACL's grant
        let mut req = ctx
            .s3
            .put_object_acl()
            .bucket(&p.bucket)
            .key(&p.key)
            .grant_full_control(format!("id={id}"));
        match p.acl.as_str() {
            "authenticated-read" => {
                req = req.grant_read("uri=\"http://acs.amazonaws.com/groups/global/AuthenticatedUsers\"")
            }
            "public-read" => req = req.grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""),
            _ => {}
        }
        req.send()
            .await
            .map_err(|e| anyhow::anyhow!("Saving failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}

/// What `GetMediaInfo` answers for a source, from ffprobe.
async fn media_info(ctx: &Ctx, input: &Path) -> anyhow::Result<(Value, bool)> {
    let probe = tokio::process::Command::new(&ctx.ffprobe)
        .args(["-v", "error", "-show_format", "-show_streams", "-of", "json"])
        .arg(input)
        .output()
        .await
        .context("running ffprobe")?;
    anyhow::ensure!(probe.status.success(), "The source file cannot be read as media");
    let p: Value = serde_json::from_slice(&probe.stdout).context("reading ffprobe's answer")?;
    let streams = p["streams"].as_array().cloned().unwrap_or_default();
    let v = streams.iter().find(|s| s["codec_type"] == "video");
    let a = streams.iter().find(|s| s["codec_type"] == "audio");
    let f = &p["format"];
    let kbps = f["bit_rate"]
        .as_str()
        .and_then(|b| b.parse::<u64>().ok())
        .map(|b| format!("{}k", b / 1000))
        .unwrap_or_default();
    let info = json!({
        "bitrate": kbps,
        "duration": f["duration"].as_str().unwrap_or(""),
        "video_codec": v.and_then(|v| v["codec_name"].as_str()).unwrap_or(""),
        "frame_rate": v.and_then(|v| v["r_frame_rate"].as_str()).unwrap_or(""),
        "size": v.map(|v| format!("{}x{}", v["width"], v["height"])).unwrap_or_default(),
        "audio_codec": a.and_then(|a| a["codec_name"].as_str()).unwrap_or(""),
        "audio_sample_rate": a.and_then(|a| a["sample_rate"].as_str()).unwrap_or(""),
        "audio_channels": a.map(|a| a["channels"].to_string()).unwrap_or_default(),
    });
    Ok((info, a.is_some()))
}

/// Runs one task.
async fn process(ctx: &Ctx, id: &str, generation: u64, benchmark: bool, dir: &Path) -> anyhow::Result<Run> {
    tokio::fs::create_dir_all(dir).await?;
    let source = ctx.inner.lock().unwrap().media[id].source.clone();
    macro_rules! step {
        ($status:expr, $progress:expr) => {
            if !set(ctx, id, generation, $status, $progress) {
                return Ok(Run::Stopped);
            }
        };
    }
    pause(ctx).await;
    step!("Downloading", 0.0);
    let input = dir.join("source");
    let res = ctx
        .http
        .get(&source)
        .send()
        .await
        .context("Source file is not available")?;
    anyhow::ensure!(
        res.status().is_success(),
        "Download error: Source file is not available: HTTP {}",
        res.status()
    );
    let bytes = res.bytes().await.context("downloading the source")?;
    tokio::fs::write(&input, &bytes).await?;
    let (info, has_audio) = media_info(ctx, &input).await?;
    if let Some(m) = ctx.inner.lock().unwrap().media.get_mut(id) {
        m.info = Some(info);
    }
    pause(ctx).await;
    step!("Ready to process", 0.0);
    if benchmark {
        return Ok(Run::Waiting);
    }
    pause(ctx).await;
    // Encoding.com's quirk: progress reads 100 while the task waits for an encoder
    step!("Waiting for encoder", 100.0);
    pause(ctx).await;
    if ctx.switches.fail_tasks.load(Ordering::SeqCst) {
        anyhow::bail!("Processing failed: the encoder stopped (switch: fail_tasks)");
    }
    step!("Processing", 0.0);
    let formats = ctx.inner.lock().unwrap().media[id].formats.clone();
    let mut outputs: Vec<Put> = Vec::new();
    for (i, f) in formats.iter().enumerate() {
        let out = dir.join(format!("format-{i}"));
        tokio::fs::create_dir_all(&out).await?;
        let d = f["destination"].as_str().unwrap_or_default();
        let dest = parse_destination(d).context("Wrong destination")?;
        let params = nommer_shared::encodingcom::destination_params(d);
        let acl = params
            .get("acl")
            .cloned()
            .unwrap_or_else(|| "authenticated-read".into());
        let canonical_id = params.get("canonical_id").cloned();
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
        let output = field(f, "output").unwrap_or("");
        let packed = ["advanced_hls", "advanced_dash"].contains(&output)
            && !field(f, "pack_files").is_some_and(|p| p.eq_ignore_ascii_case("no"));
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        if packed {
            // documented default `pack_files: yes`: the whole rendition set as one tar
            let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(&file).to_string();
            let tar = dir.join(format!("format-{i}.tar"));
            let st = tokio::process::Command::new("tar")
                .arg("-cf")
                .arg(&tar)
                .arg("-C")
                .arg(&out)
                .arg(".")
                .status()
                .await
                .context("running tar")?;
            anyhow::ensure!(st.success(), "Processing failed: packing the files");
            files.push((tar, format!("{stem}.tar")));
        } else {
            for entry in std::fs::read_dir(&out)? {
                let p = entry?.path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                files.push((p, name));
            }
        }
        for (path, name) in files {
            outputs.push(Put {
                path,
                bucket: dest.bucket.clone(),
                key: format!("{folder}{name}"),
                acl: acl.clone(),
                canonical_id: canonical_id.clone(),
            });
        }
        step!("Processing", ((i + 1) * 100 / formats.len()) as f64);
    }
    pause(ctx).await;
    step!("Saving", 100.0);
    for p in &outputs {
        put(ctx, p).await?;
    }
    pause(ctx).await;
    Ok(Run::Finished)
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
