//! `nommer demo`: the whole system on the local stack, one upload end to end.

use crate::client::ApiClient;
use crate::{media, LocalStack, StackOptions};
use anyhow::{bail, Context};
use nommer_shared::objects::S3ObjectStore;
use nommer_shared::{ids, JobState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub async fn run(file: Option<PathBuf>, preset: &str, keep_running: bool) -> anyhow::Result<()> {
    let catalog = nommer_shared::presets::Catalog::builtin();
    if catalog.find(preset).is_none() {
        bail!("{}", catalog.unknown(preset));
    }
    let root = crate::emulator::project_root().join(".nommer");
    let log_dir = root
        .join("logs")
        .join(chrono::Utc::now().format("demo-%Y%m%d-%H%M%S").to_string());
    let scratch = tempfile::tempdir()?;
    let source = match file {
        Some(f) => {
            if !f.is_file() {
                bail!("{} is not a file", f.display());
            }
            f
        }
        None => {
            let p = scratch.path().join("nommer-demo.mp4");
            println!("• generating a 10 s 1280x720 test clip with FFmpeg");
            media::generate_clip(&p, 10, 1280, 720, true)?;
            p
        }
    };

    println!(
        "• starting the local stack (AWS emulator, functions, scaler; no workers until there is work); logs in {}",
        log_dir.display()
    );
    let started = Instant::now();
    let mut opts = StackOptions::new("nommer-demo", &log_dir);
    // no workers at first: the scaler launches them in the emulator's EC2 as work arrives
    opts.workers = 0;
    opts.fleet = Some(crate::stack::FleetOptions {
        max_instances: 2,
        capacity: 1,
        idle_timeout_secs: 8,
        ..Default::default()
    });
    let stack = LocalStack::start(opts).await?;
    let fleet = stack.fleet.clone();
    let watcher = tokio::spawn(async move {
        let mut last = usize::MAX;
        loop {
            let ids: Vec<String> = fleet.lock().unwrap().keys().cloned().collect();
            if ids.len() != last {
                println!("\n  fleet: {} worker instance(s) {:?}", ids.len(), ids);
                last = ids.len();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    println!(
        "  emulator {} · API {} · ready in {:.1} s",
        stack.endpoint,
        stack.api_url,
        started.elapsed().as_secs_f64()
    );

    let name = source.file_name().and_then(|n| n.to_str()).unwrap_or("upload.bin");
    let key = format!("inbox/{preset}/{name}");
    let objects = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    println!(
        "• uploading {} to s3://{}/{key}",
        source.display(),
        stack.names.inbox_bucket
    );
    objects
        .upload_file(&stack.names.inbox_bucket, &key, &source, "application/octet-stream")
        .await?;
    let info = objects
        .head(&stack.names.inbox_bucket, &key)
        .await?
        .context("the upload is not in the inbox")?;
    let id = ids::for_upload(
        &stack.names.inbox_bucket,
        &key,
        info.version_id.as_deref().or(info.etag.as_deref()).unwrap_or_default(),
    );
    println!("• job {id}");

    let client = ApiClient::new(&stack.api_url);
    let job = client
        .wait(&id, Duration::from_secs(1800), |j| {
            print!(
                "\r  {:<12} {:>3}% {:<40}",
                j.state.as_str(),
                j.progress,
                bar(j.progress)
            );
            let _ = std::io::stdout().flush();
            if j.state != JobState::Encoding {
                println!();
            }
        })
        .await?;
    println!();
    if job.state != JobState::Complete {
        println!("{}", serde_json::to_string_pretty(&job)?);
        bail!("the job ended {}: {:?}", job.state, job.error);
    }
    println!(
        "• complete in {:.1} s after upload",
        (job.updated_at - job.created_at).num_milliseconds() as f64 / 1000.0
    );
    for out in &job.manifest {
        println!("  s3://{}/{} ({} bytes)", out.bucket, out.key, out.size);
        let local = scratch.path().join(Path::new(&out.key).file_name().unwrap_or_default());
        objects.download_to_file(&out.bucket, &out.key, &local, None).await?;
        for line in media::summary(&media::probe(&local)?).lines() {
            println!("    {line}");
        }
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
