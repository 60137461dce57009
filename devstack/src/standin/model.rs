//! The tasks the stand-in holds, and how they read in Encoding.com's words: the status
//! answers (`GetStatus`, plain and extended) and the notify body (XML, or JSON if asked).

use super::transcode::field;
use super::{Ctx, USERID};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub(super) struct Media {
    pub source: String,
    pub notify: Option<String>,
    /// `notify_format` as asked (`xml` when absent, Encoding.com's default).
    pub notify_json: bool,
    pub formats: Vec<Value>,
    pub status: String,
    pub progress: f64,
    pub description: String,
    pub created: String,
    pub finished: String,
    /// Bumped by every stop, restart or update: a run of an older generation stops.
    pub generation: u64,
    /// What ffprobe said of the source, once downloaded (for `GetMediaInfo`).
    pub info: Option<Value>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub next_id: u64,
    pub media: BTreeMap<String, Media>,
    /// Every action received, e.g. `AddMedia 1001`, `CancelMedia 1001`.
    pub calls: Vec<String>,
}

pub(super) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn error(msg: &str) -> Value {
    json!({"response": {"errors": {"error": msg}}})
}

/// A list of one goes out as a bare object, as Encoding.com sends it.
pub(super) fn one_or_list(mut v: Vec<Value>) -> Value {
    if v.len() == 1 {
        v.pop().unwrap()
    } else {
        Value::Array(v)
    }
}

pub(super) fn status_json(id: &str, m: &Media, extended: bool) -> Value {
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

/// Sets a task's status unless its run is over (cancelled, stopped, restarted or
/// updated since it began); false once it is.
pub(super) fn set(ctx: &Ctx, id: &str, generation: u64, status: &str, progress: f64) -> bool {
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The documented notify body: `<result>` (or `{"result": …}` for `notify_format: json`).
pub(super) fn notify_body(id: &str, m: &Media) -> String {
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
