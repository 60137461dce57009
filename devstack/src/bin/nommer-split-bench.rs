//! Benchmark (run by hand, not a test): split and stitch against one FFmpeg. The same
//! source and preset, same machine, same run: the worker's own FFmpeg command for the
//! whole job on one core (`taskset`), against the job split across `--workers` workers,
//! each pinned to a core of its own, the emulator and the stack niced out of their way.
//! Prints both wall times, the speed-up per worker (the goal: 0.85 or more) and where the
//! rest went: the split, the chunks, the stitch and upload, each from the job's history.
//!
//!     cargo run --bin nommer-split-bench -- --minutes 10 --preset mp4-720p

use anyhow::Context;
use clap::Parser;
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::ffmpeg::{plan, Limits};
use nommer_core::job::OutputSpec;
use nommer_core::presets::Catalog;
use nommer_core::JobState;
use nommer_devstack::{media, LocalStack, StackOptions};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Length of the generated 720p source.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    #[arg(long, default_value = "mp4-720p")]
    preset: String,
    /// Workers for the split job, each pinned to one core (at most the machine's cores).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The chunks' target length.
    #[arg(long, default_value_t = 60)]
    chunk_seconds: u32,
    /// Keep the stack's and the workers' logs in this folder (they go with the run's
    /// temporary folder otherwise).
    #[arg(long)]
    logs: Option<std::path::PathBuf>,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Sets the nice value of every thread of a process (Linux's is per thread, and a
/// thread started later takes its starter's): 19 puts the bench's background out of the
/// workers' way, 0 gives a worker a whole core.
fn nice(pid: u32, value: i32) {
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_else(|_| vec![pid]);
    for tid in tids {
        // SAFETY: setpriority on a thread of ours.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, tid, value);
        }
    }
}

/// The whole job as the worker runs it, on one core; its wall time.
async fn plain(src: &Path, preset: &str, dir: &Path) -> anyhow::Result<Duration> {
    let catalog = Catalog::builtin();
    let p = catalog.find(preset).with_context(|| format!("no preset {preset}"))?;
    let size = std::fs::metadata(src)?.len();
    let prober = nommer_media::FfprobeProber::new("ffprobe", "ffmpeg", Limits::default());
    let mut probe = prober.probe_file(src, size).await?;
    probe.interlacing = prober.interlacing(src, &probe).await?;
    let out = dir.join("plain");
    std::fs::create_dir_all(&out)?;
    let o = OutputSpec::new(preset, preset);
    let pl = plan::plan(&plan::PlanInput {
        preset: p,
        options: &o.options,
        probe: &probe,
        input: src,
        watermark: None,
        out_dir: &out,
        stem: "plain",
        limits: &Limits::default(),
    })?;
    let started = Instant::now();
    for pass in &pl.passes {
        run(Command::new("taskset").args(["-c", "0", "ffmpeg"]).args(pass))?;
    }
    Ok(started.elapsed())
}

fn config(dir: &Path, chunk: u32) -> anyhow::Result<std::path::PathBuf> {
    let p = dir.join("nommer.toml");
    std::fs::write(
        &p,
        format!("[backends.fleet]\nkind = \"ffmpeg\"\nsplit_after_seconds = {chunk}\nchunk_seconds = {chunk}\n\n[routing]\ndefault = \"fleet\"\n"),
    )?;
    Ok(p)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.mp4");
    let seconds = (args.minutes * 60.0).round() as u32;
    println!("generating a {seconds} s 1280x720 source…");
    media::generate_clip(&src, seconds, 1280, 720, true)?;

    println!("plain: the worker's FFmpeg command for {} on one core…", args.preset);
    let plain = plain(&src, &args.preset, dir.path()).await?;
    println!("plain: {:.1} s", plain.as_secs_f64());

    let mut opts = StackOptions::new(
        &format!("splitbench{}", std::process::id()),
        &args.logs.clone().unwrap_or_else(|| dir.path().join("logs")),
    );
    opts.workers = 0;
    opts.config_path = Some(config(dir.path(), args.chunk_seconds)?);
    let mut stack = LocalStack::start(opts).await?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for k in 0..args.workers {
        let pid = stack.spawn_worker().await?.pid().context("a worker pid")?;
        run(Command::new("taskset").args(["-a", "-p", "-c", &(k % cores).to_string(), &pid.to_string()]))?;
        nice(pid, 0);
    }
    // the stack (this process) and the emulator behind the workers
    nice(std::process::id(), 19);
    if let Some(pid) = stack.emulator_pid() {
        nice(pid, 19);
    }
    let objects = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    objects
        .upload_file(&stack.names.inbox_bucket, "sources/bench.mp4", &src, "video/mp4")
        .await?;
    let api = ApiClient::new(&stack.api_url);
    let body = serde_json::json!({
        "source": format!("s3://{}/sources/bench.mp4", stack.names.inbox_bucket),
        "outputs": [{"preset": args.preset}],
    });
    let started = Instant::now();
    let submitted = chrono::Utc::now();
    let (status, job) = api.create_job(&body, None).await?;
    anyhow::ensure!(status == 201, "POST /jobs answered {status}: {job}");
    let id = job["id"].as_str().context("a job id")?.to_string();
    let done = api.wait(&id, Duration::from_secs(6 * 3600), |_| {}).await?;
    let split = started.elapsed();
    anyhow::ensure!(
        done.state == JobState::Complete,
        "the split job ended {:?}: {:?}",
        done.state,
        done.error
    );
    let chunks = done.split.as_ref().map(|p| p.chunks.len()).unwrap_or(0);
    anyhow::ensure!(chunks > 1, "the job was not split");

    let speedup = plain.as_secs_f64() / split.as_secs_f64();
    println!();
    println!(
        "source: {seconds} s 720p, preset {}, {chunks} chunks of ~{} s",
        args.preset, args.chunk_seconds
    );
    println!("plain FFmpeg on 1 core:      {:8.1} s", plain.as_secs_f64());
    println!(
        "split on {} workers x 1 core: {:8.1} s (submit to complete)",
        args.workers,
        split.as_secs_f64()
    );
    println!(
        "speed-up {speedup:.2}x; per worker {:.2} (goal 0.85)",
        speedup / args.workers as f64
    );
    phases(&done, &args, plain);
    println!("each worker's tasks (seconds from submit; busy share of the job's wall time):");
    for w in stack.workers() {
        let text = std::fs::read_to_string(&w.log).unwrap_or_default();
        let (line, busy) = timeline(&text, submitted);
        println!(
            "  {}: busy {:.0} % — {line}",
            w.id.rsplit('-').take(2).collect::<Vec<_>>().join("-"),
            100.0 * busy / split.as_secs_f64()
        );
    }
    stack.shutdown().await;
    Ok(())
}

/// The job's time between its states, against the ideal.
fn phases(done: &nommer_core::Job, args: &Args, plain: Duration) {
    let at = |s: JobState| done.history.iter().find(|h| h.state == s).map(|h| h.at);
    let phase = |a: JobState, b: JobState| match (at(a), at(b)) {
        (Some(x), Some(y)) => (y - x).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    println!("where the time went:");
    println!(
        "  submit to the split starting:  {:7.1} s",
        phase(JobState::Submitted, JobState::Downloading)
    );
    println!(
        "  source in and split (chunks start meanwhile): {:7.1} s",
        phase(JobState::Downloading, JobState::Encoding)
    );
    println!(
        "  chunks left and audio, and the stitch:       {:7.1} s",
        phase(JobState::Encoding, JobState::Uploading)
    );
    println!(
        "  upload and complete:                         {:7.1} s",
        phase(JobState::Uploading, JobState::Complete)
    );
    println!(
        "  ideal chunk phase (plain / workers):         {:7.1} s",
        plain.as_secs_f64() / args.workers as f64
    );
}

/// A worker's tasks from its log, as `name start–end` in seconds from `from`, and the
/// seconds they held it (the split from the job's `downloading` to the hand-over).
fn timeline(log: &str, from: chrono::DateTime<chrono::Utc>) -> (String, f64) {
    let mut out = Vec::new();
    let mut open: Option<(String, f64)> = None;
    let mut busy = 0.0;
    for raw in log.lines() {
        let line = strip_ansi(raw);
        let Some(at) = line
            .split_whitespace()
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let t = (at.with_timezone(&chrono::Utc) - from).num_milliseconds() as f64 / 1000.0;
        let task = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("task="))
            .map(str::to_string);
        let start = if line.contains(" task taken ") {
            task.clone()
        } else if line.contains("job state changed") && line.contains("state=downloading") {
            Some("split".to_string())
        } else {
            None
        };
        let end = line.contains(" task done ")
            || line.contains(" task failed ")
            || line.contains("task attempt failed")
            || line.contains("job split;");
        if let Some(name) = start {
            open = Some((name, t));
        } else if end {
            if let Some((name, t0)) = open.take() {
                busy += t - t0;
                out.push(format!("{name} {t0:.0}-{t:.0}"));
            }
        }
    }
    (out.join(", "), busy)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
