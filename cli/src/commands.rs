//! The `nommer` commands that talk to a Nommer API (local or deployed): submit, status,
//! list, watch, cancel, retry, presets. The endpoint and key come from flags, then
//! `NOMMER_API_URL` / `NOMMER_API_KEY`, then `~/.config/nommer/cli.toml`
//! (`api_url = "…"`, `api_key = "…"`).

use crate::client::ApiClient;
use crate::progress::{Progress, ProgressBody};
use anyhow::{bail, Context};
use nommer_core::JobState;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the API is and the key for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub key: Option<String>,
}

fn config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("nommer").join("cli.toml"))
}

impl Target {
    /// Flags first, then the environment, then the config file.
    pub fn resolve(url: Option<String>, key: Option<String>) -> anyhow::Result<Target> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let mut url = url.or_else(|| env("NOMMER_API_URL"));
        let mut key = key.or_else(|| env("NOMMER_API_KEY"));
        if url.is_none() || key.is_none() {
            if let Some(path) = config_file().filter(|p| p.is_file()) {
                let text = std::fs::read_to_string(&path)?;
                let t: toml::Table = toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
                if url.is_none() {
                    url = t.get("api_url").and_then(|v| v.as_str()).map(str::to_string);
                }
                if key.is_none() {
                    key = t.get("api_key").and_then(|v| v.as_str()).map(str::to_string);
                }
            }
        }
        let Some(url) = url else {
            bail!(
                "no API to talk to: pass --api URL, set NOMMER_API_URL, or put api_url in {} (`nommer up` prints the local one)",
                config_file().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.config/nommer/cli.toml".into())
            );
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("the API URL `{url}` is not an http(s) URL");
        }
        Ok(Target { url, key })
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::with_key(&self.url, self.key.as_deref())
    }
}

/// Turns an API error (problem+json) into a message that says what to do.
fn problem(status: u16, body: &Value) -> anyhow::Error {
    let detail = body["detail"].as_str().unwrap_or("");
    let field = body["field"].as_str().filter(|f| !f.is_empty());
    let hint = match status {
        401 => " (check --key / NOMMER_API_KEY)",
        404 => " (check the job id: `nommer list`)",
        _ => "",
    };
    match field {
        Some(f) => anyhow::anyhow!(
            "{} ({status}): {f}: {detail}{hint}",
            body["title"].as_str().unwrap_or("error")
        ),
        None => anyhow::anyhow!(
            "{} ({status}): {detail}{hint}",
            body["title"].as_str().unwrap_or("error")
        ),
    }
}

async fn call(t: &Target, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let (status, v) = t.client().request(method, path, body).await?;
    if !(200..300).contains(&status) {
        return Err(problem(status, &v));
    }
    Ok(v)
}

/// Uploads a local file through `POST /uploads` (a presigned PUT, or parts); returns the
/// `s3://` source.
pub async fn upload(t: &Target, file: &Path, force_multipart: bool) -> anyhow::Result<String> {
    let meta = std::fs::metadata(file).with_context(|| format!("{} cannot be read", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    let size = meta.len();
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("upload.bin");
    // the type the inbox stores it with, as the outbox's: by extension (mime_guess)
    let content_type = nommer_core::content_type::of(name);
    let plan = call(
        t,
        "POST",
        "/uploads",
        Some(json!({"filename": name, "size": size, "content_type": content_type, "multipart": force_multipart})),
    )
    .await?;
    let source = plan["source"].as_str().context("the API gave no source")?.to_string();
    // no bound on the whole upload (a large file takes long), but on each wait for the
    // other side: a stalled connection fails instead of hanging
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(120))
        .build()?;
    let mut f = std::fs::File::open(file)?;
    let progress = Progress::upload(size);
    if plan["kind"] == "single" {
        let mut bytes = Vec::with_capacity(size as usize);
        std::io::Read::read_to_end(&mut f, &mut bytes)?;
        let r = put(&http, plan["url"].as_str().context("no url")?, bytes, &progress)
            .header("content-type", content_type)
            .send()
            .await
            .context("uploading")?;
        if !r.status().is_success() {
            bail!("the upload was refused: HTTP {}", r.status());
        }
        progress.finish();
        return Ok(source);
    }
    let part_size = plan["part_size"].as_u64().context("no part_size")?;
    let parts = plan["parts"].as_array().context("no parts")?;
    let mut etags = Vec::new();
    let mut sent = 0u64;
    for p in parts {
        let mut buf = vec![0u8; part_size.min(size - sent) as usize];
        std::io::Read::read_exact(&mut f, &mut buf)?;
        let len = buf.len() as u64;
        let r = put(&http, p["url"].as_str().context("no part url")?, buf, &progress)
            .send()
            .await
            .context("uploading a part")?;
        if !r.status().is_success() {
            bail!("part {} was refused: HTTP {}", p["part_number"], r.status());
        }
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .context("a part's answer has no ETag")?
            .to_string();
        etags.push(etag);
        sent += len;
    }
    progress.finish();
    call(
        t,
        "POST",
        "/uploads/complete",
        Some(json!({"source": source, "upload_id": plan["upload_id"], "etags": etags})),
    )
    .await?;
    Ok(source)
}

/// A presigned PUT of `bytes` whose progress moves as they go out.
fn put(http: &reqwest::Client, url: &str, bytes: Vec<u8>, progress: &Progress) -> reqwest::RequestBuilder {
    http.put(url)
        .header(reqwest::header::CONTENT_LENGTH, bytes.len())
        .body(reqwest::Body::wrap(ProgressBody::new(bytes, progress.clone())))
}

/// `nommer submit`.
pub async fn submit(
    t: &Target,
    input: &str,
    presets: &[String],
    metadata: &[String],
    notify_url: Option<String>,
    multipart: bool,
    wait: bool,
) -> anyhow::Result<i32> {
    let source = if input.starts_with("s3://") {
        input.to_string()
    } else {
        upload(t, Path::new(input), multipart).await?
    };
    let mut body = json!({ "source": source });
    match presets.len() {
        0 => {}
        1 => body["preset"] = json!(presets[0]),
        _ => body["outputs"] = json!(presets.iter().map(|p| json!({"preset": p})).collect::<Vec<_>>()),
    }
    if !metadata.is_empty() {
        let mut m = serde_json::Map::new();
        for kv in metadata {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--metadata `{kv}`: write key=value"))?;
            m.insert(k.to_string(), json!(v));
        }
        body["user_metadata"] = Value::Object(m);
    }
    if let Some(u) = notify_url {
        body["notify_url"] = json!(u);
    }
    let job = call(t, "POST", "/jobs", Some(body)).await?;
    let id = job["id"].as_str().context("no job id")?.to_string();
    println!("{id}");
    if wait {
        return watch(t, &id).await;
    }
    Ok(0)
}

/// `nommer watch`: the job's state and progress until it ends; 0 when complete.
pub async fn watch(t: &Target, id: &str) -> anyhow::Result<i32> {
    let client = t.client();
    // one bar for each state the job goes through, each left on its own line
    let mut shown: Option<(JobState, Progress)> = None;
    let job = client
        .wait(id, Duration::from_secs(24 * 3600), |j| {
            if let Some((_, p)) = shown.take_if(|(st, _)| *st != j.state) {
                p.finish();
            }
            let (_, p) = shown.get_or_insert_with(|| (j.state, Progress::job(j.state.as_str())));
            p.set_note(j.backend.as_deref().unwrap_or(""));
            p.set(j.progress as u64);
        })
        .await?;
    if let Some((_, p)) = shown {
        p.finish();
    }
    print_job(&serde_json::to_value(&job)?);
    Ok(if job.state == JobState::Complete { 0 } else { 1 })
}

fn print_job(j: &Value) {
    println!("job      {}", j["id"].as_str().unwrap_or(""));
    println!("state    {} ({}%)", j["state"].as_str().unwrap_or(""), j["progress"]);
    println!("source   {}", j["source"].as_str().unwrap_or(""));
    if let Some(b) = j["backend"].as_str() {
        let why = j["routing"]["reason"].as_str().unwrap_or("");
        println!("backend  {b}  {why}");
    }
    if let Some(c) = j["routing"]["estimated_cost_usd"].as_f64() {
        println!("estimate ${c:.4}");
    }
    if let Some(e) = j["error"].as_object() {
        println!(
            "error    {}: {}",
            e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
            e.get("message").and_then(|c| c.as_str()).unwrap_or("")
        );
    }
    for o in j["manifest"].as_array().into_iter().flatten() {
        println!(
            "output   s3://{}/{} ({} bytes)",
            o["bucket"].as_str().unwrap_or(""),
            o["key"].as_str().unwrap_or(""),
            o["size"]
        );
    }
}

/// `nommer status`.
pub async fn status(t: &Target, id: &str, as_json: bool) -> anyhow::Result<i32> {
    let j = call(t, "GET", &format!("/jobs/{id}"), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print_job(&j);
    }
    Ok(0)
}

/// `nommer list`: a table, newest first.
pub async fn list(t: &Target, states: &[String], limit: u32, as_json: bool) -> anyhow::Result<i32> {
    let mut q = format!("limit={limit}");
    if !states.is_empty() {
        q.push_str(&format!("&state={}", states.join(",")));
    }
    let page = call(t, "GET", &format!("/jobs?{q}"), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(0);
    }
    println!(
        "{:<34} {:<12} {:>4}  {:<12} {:<20} SOURCE",
        "ID", "STATE", "%", "BACKEND", "CREATED"
    );
    for j in page["jobs"].as_array().into_iter().flatten() {
        println!(
            "{:<34} {:<12} {:>4}  {:<12} {:<20} {}",
            j["id"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            j["progress"],
            j["backend"].as_str().unwrap_or("-"),
            j["created_at"].as_str().unwrap_or("").get(..19).unwrap_or(""),
            j["source"].as_str().unwrap_or("")
        );
    }
    if page["next_cursor"].is_string() {
        println!("(more: raise --limit, or use the API's cursor)");
    }
    Ok(0)
}

/// What `nommer cancel` and `nommer retry` ask of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cancel,
    Retry,
}

impl Action {
    /// The API's path segment: `POST /jobs/{id}/{action}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Retry => "retry",
        }
    }
}

/// `nommer cancel` / `nommer retry`.
pub async fn act(t: &Target, id: &str, action: Action) -> anyhow::Result<i32> {
    let j = call(t, "POST", &format!("/jobs/{id}/{}", action.as_str()), None).await?;
    match action {
        Action::Retry => println!("{} (retries {id})", j["id"].as_str().unwrap_or("")),
        Action::Cancel => println!(
            "{} {}",
            j["id"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or("")
        ),
    }
    Ok(0)
}

/// `nommer presets`: the API's (with --api or NOMMER_API_URL), else the built-in ones.
pub async fn presets(t: Option<Target>) -> anyhow::Result<i32> {
    let list: Vec<(String, String)> = match t {
        Some(t) => call(&t, "GET", "/presets", None).await?["presets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["description"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        None => nommer_core::presets::Catalog::builtin()
            .iter()
            .map(|p| (p.name.clone(), p.description.clone()))
            .collect(),
    };
    for (n, d) in list {
        println!("{n:<16} {d}");
    }
    Ok(0)
}
