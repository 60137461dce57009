//! One run of a task: download the source, probe it, step through Encoding.com's
//! statuses, transcode each `format`, save the results, then POST the notify URL.

use super::model::{notify_body, now, set};
use super::storage::{put, Put};
use super::transcode::make_format;
use super::Ctx;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

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

pub(super) async fn run_task(ctx: Ctx, id: String, generation: u64, benchmark: bool) {
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

/// Fetches the source URL into `input`.
async fn download(ctx: &Ctx, source: &str, input: &Path) -> anyhow::Result<()> {
    let res = ctx
        .http
        .get(source)
        .send()
        .await
        .context("Source file is not available")?;
    anyhow::ensure!(
        res.status().is_success(),
        "Download error: Source file is not available: HTTP {}",
        res.status()
    );
    let bytes = res.bytes().await.context("downloading the source")?;
    tokio::fs::write(input, &bytes).await?;
    Ok(())
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
    download(ctx, &source, &input).await?;
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
        outputs.extend(make_format(ctx, f, &input, &dir.join(format!("format-{i}")), has_audio).await?);
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
