//! Benchmark (run by hand, not a test): the end-to-end time of one job on the local
//! stack against a plain FFmpeg run of the same preset on the same source, same machine,
//! same run.
//!
//!     scripts/bench                       # 60 s 720p source, preset mp4-720p, 3 rounds
//!     nommer-bench --seconds 60 --rounds 3 --preset mp4-720p

use anyhow::{bail, Context};
use clap::Parser;
use nommer::client::ApiClient;
use nommer::{media, LocalStack, StackOptions};
use nommer_shared::objects::S3ObjectStore;
use nommer_shared::{ffmpeg, ids, presets, JobState};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Length of the generated 1280x720 source.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    #[arg(long, default_value = "mp4-720p")]
    preset: String,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Wall-clock and CPU seconds (user+sys of children) of a plain FFmpeg run.
fn plain_ffmpeg(preset: &presets::Preset, input: &Path, output: &Path) -> anyhow::Result<(f64, f64)> {
    let args = ffmpeg::encode_args(preset, input, output, true, &ffmpeg::Limits::default());
    let before = child_cpu();
    let t = Instant::now();
    let out = std::process::Command::new("ffmpeg")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((wall, child_cpu() - before))
}

fn child_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let preset = presets::find(&args.preset).with_context(|| format!("no preset {}", args.preset))?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("bench-source.mp4");
    println!("generating a {} s 1280x720 source ...", args.seconds);
    media::generate_clip(&src, args.seconds, 1280, 720, true)?;
    let src_size = std::fs::metadata(&src)?.len();

    let log_dir = nommer::emulator::project_root()
        .join(".nommer")
        .join("logs")
        .join("bench");
    let t = Instant::now();
    let stack = LocalStack::start(StackOptions::new("nommer-bench", &log_dir)).await?;
    let startup = t.elapsed().as_secs_f64();
    let objects = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    let api = ApiClient::new(&stack.api_url);

    let (mut plain_wall, mut plain_cpu, mut e2e) = (vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        let (w, c) = plain_ffmpeg(preset, &src, &dir.path().join("plain.mp4"))?;
        plain_wall.push(w);
        plain_cpu.push(c);

        let key = format!("inbox/{}/round-{round}.mp4", preset.name);
        let t = Instant::now();
        objects
            .upload_file(&stack.names.inbox_bucket, &key, &src, "video/mp4")
            .await?;
        let etag = objects
            .head(&stack.names.inbox_bucket, &key)
            .await?
            .and_then(|i| i.etag)
            .unwrap_or_default();
        let id = ids::for_upload(&stack.names.inbox_bucket, &key, &etag);
        let job = api.wait(&id, Duration::from_secs(3600), |_| {}).await?;
        let secs = t.elapsed().as_secs_f64();
        if job.state != JobState::Complete {
            bail!("job ended {}: {:?}", job.state, job.error);
        }
        e2e.push(secs);
        let mut prev = None;
        let mut stages = Vec::new();
        for h in &job.history {
            if let Some((state, at)) = prev {
                let d: chrono::TimeDelta = h.at - at;
                stages.push(format!("{state} {:.2} s", d.num_milliseconds() as f64 / 1000.0));
            }
            prev = Some((h.state, h.at));
        }
        println!("  stages: {}", stages.join(" · "));
        println!("round {round}: plain ffmpeg {w:.2} s wall ({c:.2} s CPU) · local stack end to end {secs:.2} s · ratio {:.3}", secs / w);
    }
    stack.shutdown().await;
    let (pw, pc, ee) = (median(plain_wall), median(plain_cpu), median(e2e));
    println!();
    println!(
        "source: {} s 1280x720 H.264/AAC, {} bytes · preset {} · {} rounds · {} cores",
        args.seconds,
        src_size,
        preset.name,
        args.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("local stack start-up (emulator + resources + worker): {startup:.2} s (not counted below)");
    println!("plain ffmpeg (median):            {pw:.2} s wall, {pc:.2} s CPU");
    println!("end-to-end job on the local stack: {ee:.2} s (upload → complete)");
    println!("ratio end-to-end / plain ffmpeg:   {:.3}", ee / pw);
    Ok(())
}
