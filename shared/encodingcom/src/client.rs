//! The API client: requests, answers and their quirks, and the status words.

use nommer_core::settings::UserKey;
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

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

pub use nommer_core::job::TaskStatus as Status;

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
            .connect_timeout(Duration::from_secs(5))
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
                .map_err(|e| Error::Malformed(format!("{action}: {e}: {}", nommer_core::text::clip(&text, 200))))?;
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
