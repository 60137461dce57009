//! `nommer demo`: the whole system on the local stack: one upload encoded on the FFmpeg fleet,
//! a copy routed by rule to the Encoding.com stand-in.

use crate::{media, LocalStack, StackOptions};
use anyhow::{bail, Context};
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::{ids, Job, JobState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The demo's routing: the own fleet by default; uploads under `inbox/<preset>/partner/` go to
/// Encoding.com (the local stand-in), falling back to the fleet if it fails.
pub fn demo_config(preset: &str) -> String {
    format!(
        r#"
[backends.fleet]
kind = "ffmpeg"
prices = {{ audio = 0.0004, sd = 0.0015, hd = 0.0030, uhd = 0.0090, image = 0.0001 }}

[backends.encodingcom]
kind = "encodingcom"
prices = {{ audio = 0.0050, sd = 0.0100, hd = 0.0200, uhd = 0.0400, image = 0.0010 }}
fallback = "fleet"
poll_seconds = 5

[routing]
default = "fleet"

[[routing.rules]]
name = "partner uploads go to Encoding.com"
backend = "encodingcom"
match = {{ key_prefix = "inbox/{preset}/partner/" }}
"#
    )
}

pub async fn run(file: Option<PathBuf>, preset: &str, keep_running: bool) -> anyhow::Result<()> {
    let catalog = nommer_core::presets::Catalog::builtin();
    if catalog.find(preset).is_none() {
        bail!("{}", catalog.unknown(preset));
    }
    let root = crate::emulator::project_root()?.join(".nommer");
    let log_dir = root
        .join("logs")
        .join(chrono::Utc::now().format("demo-%Y%m%d-%H%M%S").to_string());
    let scratch = tempfile::tempdir()?;
    let source = source_file(file, scratch.path())?;
    let stack = start_stack(preset, &log_dir, scratch.path()).await?;
    let watcher = tokio::spawn(show_fleet(stack.fleet.clone()));
    let objects = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let ids_by_label = upload_both(&stack, &objects, &source, preset).await?;
    let jobs = follow(&stack, &ids_by_label).await?;
    for (job, (label, _)) in jobs.iter().zip(&ids_by_label) {
        report(job, label, &objects, scratch.path()).await?;
    }
    println!("• waiting for the idle fleet to shrink back to zero");
    let idle = Instant::now();
    while !stack.fleet.lock().unwrap().is_empty() && idle.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    watcher.abort();
    if keep_running {
        println!("• the stack keeps running; Ctrl-C stops it. Environment for other tools:");
        print_env(&stack);
        tokio::signal::ctrl_c().await?;
    }
    stack.shutdown().await;
    Ok(())
}

/// The file to encode: the user's, or a generated 10 s 720p clip in `scratch`.
fn source_file(file: Option<PathBuf>, scratch: &Path) -> anyhow::Result<PathBuf> {
    match file {
        Some(f) => {
            if !f.is_file() {
                bail!("{} is not a file", f.display());
            }
            Ok(f)
        }
        None => {
            let p = scratch.join("nommer-demo.mp4");
            println!("• generating a 10 s 1280x720 test clip with FFmpeg");
            media::generate_clip(&p, 10, 1280, 720, true)?;
            Ok(p)
        }
    }
}

/// The stack in fleet mode (no workers until there is work), with the demo's routing
/// unless `NOMMER_CONFIG` names a config file.
async fn start_stack(preset: &str, log_dir: &Path, scratch: &Path) -> anyhow::Result<LocalStack> {
    println!(
        "• starting the local stack (AWS emulator, functions, scaler; no workers until there is work); logs in {}",
        log_dir.display()
    );
    let started = Instant::now();
    let mut opts = StackOptions::new("nommer-demo", log_dir);
    if opts.config_path.is_none() {
        let cfg = scratch.join("nommer.toml");
        std::fs::write(&cfg, demo_config(preset))?;
        println!("• config: the fleet by default, Encoding.com (a local stand-in) for the partner/ folder");
        opts.config_path = Some(cfg);
    }
    // no workers at first: the scaler launches them in the emulator's EC2 as work arrives
    opts.workers = 0;
    opts.fleet = Some(crate::stack::FleetOptions {
        max_instances: 2,
        capacity: 1,
        idle_timeout_secs: 8,
        ..Default::default()
    });
    let stack = LocalStack::start(opts).await?;
    println!(
        "  emulator {} · API {} · ready in {:.1} s",
        stack.endpoint,
        stack.api_url,
        started.elapsed().as_secs_f64()
    );
    Ok(stack)
}

/// Prints the fleet's size whenever it changes (until aborted).
async fn show_fleet(fleet: crate::stack::FleetProcesses) {
    let mut last = usize::MAX;
    loop {
        let ids: Vec<String> = fleet.lock().unwrap().keys().cloned().collect();
        if ids.len() != last {
            println!("\n  fleet: {} worker instance(s) {:?}", ids.len(), ids);
            last = ids.len();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Two uploads: one by the preset folder (the fleet), one into partner/ (a rule sends it
/// to Encoding.com, here its local stand-in); their (label, job id).
async fn upload_both(
    stack: &LocalStack,
    objects: &S3ObjectStore,
    source: &Path,
    preset: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let name = source.file_name().and_then(|n| n.to_str()).unwrap_or("upload.bin");
    let uploads = [
        ("fleet-bound", format!("inbox/{preset}/{name}")),
        ("partner", format!("inbox/{preset}/partner/{name}")),
    ];
    let mut ids_by_label = Vec::new();
    for (label, key) in &uploads {
        println!(
            "• uploading {} to s3://{}/{key}",
            source.display(),
            stack.names.inbox_bucket
        );
        objects
            .upload_file(&stack.names.inbox_bucket, key, source, "application/octet-stream")
            .await?;
        let info = objects
            .head(&stack.names.inbox_bucket, key)
            .await?
            .context("the upload is not in the inbox")?;
        let id = ids::for_upload(
            &stack.names.inbox_bucket,
            key,
            info.version_id.as_deref().or(info.etag.as_deref()).unwrap_or_default(),
        );
        println!("  job {id} ({label})");
        ids_by_label.push((label.to_string(), id));
    }
    Ok(ids_by_label)
}

/// Follows the jobs side by side to their ends, a line at each state and quarter.
async fn follow(stack: &LocalStack, ids_by_label: &[(String, String)]) -> anyhow::Result<Vec<Job>> {
    let mut waits = Vec::new();
    for (label, id) in ids_by_label {
        let client = ApiClient::new(&stack.api_url);
        let (label, id) = (label.clone(), id.clone());
        waits.push(tokio::spawn(async move {
            let mut last_step = (JobState::Submitted, 255u8);
            client
                .wait(&id, Duration::from_secs(1800), |j| {
                    let step = (j.state, j.progress / 25);
                    if step != last_step {
                        last_step = step;
                        println!(
                            "  {label:<12} {:<12} {:>3}% {} {}",
                            j.state.as_str(),
                            j.progress,
                            bar(j.progress),
                            j.backend.as_deref().unwrap_or("")
                        );
                        let _ = std::io::stdout().flush();
                    }
                })
                .await
        }));
    }
    let mut jobs = Vec::new();
    for w in waits {
        jobs.push(w.await??);
    }
    Ok(jobs)
}

/// What a finished job did: where it ran and why, the estimate, and each output probed.
async fn report(job: &Job, label: &str, objects: &S3ObjectStore, scratch: &Path) -> anyhow::Result<()> {
    println!();
    if job.state != JobState::Complete {
        println!("{}", serde_json::to_string_pretty(&job)?);
        bail!("the {label} job ended {}: {:?}", job.state, job.error);
    }
    println!(
        "• {label} job complete in {:.1} s after upload, on backend `{}`",
        (job.updated_at - job.created_at).num_milliseconds() as f64 / 1000.0,
        job.backend.as_deref().unwrap_or("?")
    );
    if let Some(d) = &job.routing {
        println!("  why: {}", d.reason);
        let est: Vec<String> = d.estimates.iter().map(|(b, c)| format!("{b} ${c:.4}")).collect();
        println!(
            "  estimated cost: {} (all able backends: {})",
            d.estimated_cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "unknown".into()),
            est.join(", ")
        );
    }
    if let Some(t) = &job.remote {
        println!("  Encoding.com MediaID {} · status {}", t.media_id, t.status);
    }
    for out in &job.manifest {
        println!("  s3://{}/{} ({} bytes)", out.bucket, out.key, out.size);
        let local = scratch.join(format!(
            "{label}-{}",
            Path::new(&out.key).file_name().unwrap_or_default().to_string_lossy()
        ));
        objects.download_to_file(&out.bucket, &out.key, &local, None).await?;
        for line in media::summary(&media::probe(&local)?).lines() {
            println!("    {line}");
        }
    }
    Ok(())
}

pub fn print_env(stack: &LocalStack) {
    println!(
        "  export AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION={}",
        stack.endpoint,
        crate::emulator::REGION
    );
    let mut env: Vec<_> = stack.env.iter().collect();
    env.sort();
    for (k, v) in env {
        println!("  export {k}={v}");
    }
    println!("  # API: {}", stack.api_url);
}

fn bar(p: u8) -> String {
    let n = (p as usize * 30) / 100;
    format!("[{}{}]", "#".repeat(n), ".".repeat(30 - n))
}
