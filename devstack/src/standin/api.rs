//! The stand-in's HTTP front: one form POST whose `json` field holds `{"query": …}`, an
//! action each, answered in Encoding.com's shape.

use super::model::{error, now, one_or_list, status_json, Media};
use super::task::run_task;
use super::{Ctx, USERID, USERKEY};
use axum::body::Bytes;
use axum::extract::State;
use nommer_encodingcom::parse_destination;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

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

pub(super) async fn handle(State(ctx): State<Ctx>, body: Bytes) -> axum::Json<Value> {
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
        "ProcessMedia" | "UpdateMedia" => process_or_update(&ctx, &q, &action),
        "GetMediaInfo" => media_info(&ctx, &s("mediaid")),
        "GetMediaInfoEx" => media_info_ex(&ctx, &s("mediaid")),
        "GetMediaList" => media_list(&ctx),
        other => error(&format!("Wrong action: {other}")),
    })
}

/// `ProcessMedia` (starts media added with `AddMediaBenchmark`) and `UpdateMedia` (new
/// formats for any media): both run the task again with the query's formats.
fn process_or_update(ctx: &Ctx, q: &Value, action: &str) -> Value {
    let formats = match formats_of(q) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let benchmark_only = action == "ProcessMedia";
    each_media(ctx, q, action, move |m| {
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

/// `GetMediaInfo`: what ffprobe said of the source, once it is downloaded.
fn media_info(ctx: &Ctx, id: &str) -> Value {
    let inner = ctx.inner.lock().unwrap();
    match inner.media.get(id) {
        Some(Media { info: Some(i), .. }) => json!({ "response": i }),
        Some(m) => error(&format!("Media info is not available yet: the source is {}", m.status)),
        None => error(&format!("Media ID {id} not found")),
    }
}

/// `GetMediaInfoEx`: the extended status with the media info in it.
fn media_info_ex(ctx: &Ctx, id: &str) -> Value {
    let inner = ctx.inner.lock().unwrap();
    match inner.media.get(id) {
        Some(m) => {
            let mut r = status_json(id, m, true);
            if let Some(i) = &m.info {
                r["mediainfo"] = i.clone();
            }
            json!({ "response": { "job": r } })
        }
        None => error(&format!("Media ID {id} not found")),
    }
}

/// `GetMediaList`: every task.
fn media_list(ctx: &Ctx) -> Value {
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
