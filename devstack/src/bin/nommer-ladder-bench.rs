//! Benchmark (run by hand, not a test): the per-title ladder against the fixed one. On
//! generated sources of low, medium and high complexity (a still picture with slowly
//! moving text, `testsrc2`, a zooming `mandelbrot` under heavy noise), the same machine
//! and run, the local stack makes `hls` (scored, `quality: true`) and `hls-auto` of each.
//! It prints per source each rung's bit rate (the bytes the outbox holds over the
//! source's length) and VMAF, the total bits, the seconds the analysis took and each
//! job's wall time, and whether the goals are met: at least 25 % fewer bits on
//! low complexity with the top rung within 1 VMAF point, and on high complexity no rung
//! more than 1 point worse at the same or fewer bits.
//!
//!     NOMMER_SCORE_FFMPEG=$(scripts/second-ffmpeg) cargo run --bin nommer-ladder-bench -- --seconds 20

use anyhow::Context;
use clap::Parser;
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::{Job, JobState};
use nommer_devstack::{LocalStack, StackOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Only these sources (low, medium, high).
    #[arg(long, value_delimiter = ',', default_value = "low,medium,high")]
    sources: Vec<String>,
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The lavfi picture of each source.
fn picture(kind: &str, a: &Args) -> anyhow::Result<String> {
    let (w, h, s) = (a.width, a.height, a.seconds);
    Ok(match kind {
        "low" => {
            let text = if Path::new(FONT).exists() {
                format!(
                    ",drawtext=fontfile={FONT}:text='Quarterly results':fontcolor=white:fontsize={}:x=(w-tw)/2:y=h/4+t*3,\
                     drawtext=fontfile={FONT}:text='Revenue up 12 percent':fontcolor=yellow:fontsize={}:x=w/8+t*2:y=h*2/3",
                    h / 10,
                    h / 16
                )
            } else {
                String::new()
            };
            format!("smptehdbars=size={w}x{h}:rate=25:duration={s}{text}")
        }
        "medium" => format!("testsrc2=size={w}x{h}:rate=25:duration={s}"),
        "high" => format!("mandelbrot=size={w}x{h}:rate=25,trim=duration={s},noise=alls=30:allf=t+u"),
        other => anyhow::bail!("no source `{other}`: low, medium or high"),
    })
}

fn generate(kind: &str, a: &Args, to: &Path) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(picture(kind, a)?)
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate=48000:duration={}", a.seconds))
        .args([
            "-t",
            &a.seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "8",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(to)
        .output()?;
    anyhow::ensure!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// One ladder as made: each rung's kbit/s in the outbox and its VMAF.
struct Made {
    rungs: BTreeMap<u32, (f64, Option<f64>)>,
    wall: f64,
}

impl Made {
    fn total_kbps(&self) -> f64 {
        self.rungs.values().map(|r| r.0).sum()
    }
    fn top(&self) -> Option<(u32, f64, Option<f64>)> {
        self.rungs.iter().next_back().map(|(h, r)| (*h, r.0, r.1))
    }
}

async fn make(stack: &LocalStack, key: &str, output: serde_json::Value, seconds: f64) -> anyhow::Result<(Job, Made)> {
    let api = ApiClient::new(&stack.api_url);
    let body = serde_json::json!({
        "source": format!("s3://{}/{key}", stack.names.inbox_bucket),
        "outputs": [output],
    });
    let started = Instant::now();
    let (status, job) = api.create_job(&body, None).await?;
    anyhow::ensure!(status == 201, "POST /jobs answered {status}: {job}");
    let id = job["id"].as_str().context("a job id")?.to_string();
    let done = api.wait(&id, Duration::from_secs(3 * 3600), |_| {}).await?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        done.state == JobState::Complete,
        "the job ended {:?}: {:?}",
        done.state,
        done.error
    );
    let s3 = aws_sdk_s3::Client::new(&stack.direct_config().await);
    let master = done
        .manifest
        .iter()
        .find(|f| f.key.ends_with("/master.m3u8"))
        .context("a master playlist")?;
    let root = master.key.trim_end_matches("master.m3u8").to_string();
    let listed = s3
        .list_objects_v2()
        .bucket(&stack.names.outbox_bucket)
        .prefix(&root)
        .send()
        .await?;
    let mut rungs: BTreeMap<u32, (f64, Option<f64>)> = BTreeMap::new();
    for o in listed.contents() {
        let (Some(k), Some(size)) = (o.key(), o.size()) else {
            continue;
        };
        let Some(h) = k[root.len()..]
            .split('/')
            .next()
            .and_then(|d| d.strip_suffix('p'))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        if k.ends_with(".m4s") || k.ends_with(".mp4") {
            rungs.entry(h).or_insert((0.0, None)).0 += size as f64 * 8.0 / 1000.0 / seconds;
        }
    }
    for q in &done.quality {
        let h = q
            .rendition
            .as_deref()
            .and_then(|r| r.strip_suffix('p'))
            .and_then(|r| r.parse().ok());
        if let Some(r) = h.and_then(|h: u32| rungs.get_mut(&h)) {
            r.1 = q.scores.vmaf.as_ref().map(|v| v.mean);
        }
    }
    Ok((done, Made { rungs, wall }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::env::var(nommer_core::settings::SCORE_FFMPEG)
        .context("set NOMMER_SCORE_FFMPEG to an FFmpeg with libvmaf (scripts/second-ffmpeg prints one)")?;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::new(&format!("ladderbench{}", std::process::id()), &dir.path().join("logs"));
    opts.workers = 1;
    let stack = LocalStack::start(opts).await?;
    let objects = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    let mut verdicts = Vec::new();
    for kind in &args.sources {
        let src = dir.path().join(format!("{kind}.mp4"));
        println!(
            "generating the {kind}-complexity source ({} s {}x{})…",
            args.seconds, args.width, args.height
        );
        generate(kind, &args, &src)?;
        let key = format!("sources/{kind}.mp4");
        objects
            .upload_file(&stack.names.inbox_bucket, &key, &src, "video/mp4")
            .await?;
        let seconds = f64::from(args.seconds);
        let (_, fixed) = make(
            &stack,
            &key,
            serde_json::json!({"preset": "hls", "options": {"quality": true}}),
            seconds,
        )
        .await?;
        let (job, auto) = make(&stack, &key, serde_json::json!({"preset": "hls-auto"}), seconds).await?;
        let rec = job.per_title.first().context("hls-auto recorded no per_title")?;
        println!();
        println!(
            "{kind} complexity: {} s {}x{}, complexity_bpp {:.4}",
            args.seconds, args.width, args.height, rec.complexity_bpp
        );
        println!(
            "{:<6} {:>12} {:>8}   {:>12} {:>8} {:>10}",
            "rung", "hls kbit/s", "VMAF", "auto kbit/s", "VMAF", "predicted"
        );
        let heights: std::collections::BTreeSet<u32> = fixed.rungs.keys().chain(auto.rungs.keys()).copied().collect();
        let f2 = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        for h in heights.iter().rev() {
            let f = fixed.rungs.get(h);
            let a = auto.rungs.get(h);
            let pred = rec.rungs.iter().find(|c| c.height == *h).map(|c| c.predicted_vmaf);
            println!(
                "{:<6} {:>12} {:>8}   {:>12} {:>8} {:>10}",
                format!("{h}p"),
                f.map(|r| format!("{:.0}", r.0)).unwrap_or_else(|| "-".into()),
                f2(f.and_then(|r| r.1)),
                a.map(|r| format!("{:.0}", r.0)).unwrap_or_else(|| "dropped".into()),
                f2(a.and_then(|r| r.1)),
                f2(pred)
            );
        }
        for d in &rec.dropped {
            println!("  dropped {}: {}", d.name, d.reason);
        }
        let (ft, at) = (fixed.total_kbps(), auto.total_kbps());
        let saved = 100.0 * (1.0 - at / ft);
        println!(
            "total: hls {:.0} kbit/s ({:.1} Mbit), hls-auto {:.0} kbit/s ({:.1} Mbit): {saved:+.1} % fewer bits",
            ft,
            ft * seconds / 1000.0,
            at,
            at * seconds / 1000.0
        );
        println!(
            "analysis (samples, {} trials, their scoring): {:.1} s; wall: hls (scored) {:.1} s, hls-auto {:.1} s ({:.2}x)",
            rec.trials,
            rec.seconds,
            fixed.wall,
            auto.wall,
            auto.wall / fixed.wall
        );
        verdicts.push(verdict(kind, &fixed, &auto, saved));
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    stack.shutdown().await;
    Ok(())
}

/// The goal for the source's complexity, and whether it was met.
fn verdict(kind: &str, fixed: &Made, auto: &Made, saved: f64) -> String {
    match kind {
        "low" => {
            let top = match (fixed.top(), auto.top()) {
                (Some((_, _, Some(f))), Some((_, _, Some(a)))) => a - f,
                _ => f64::NAN,
            };
            let met = saved >= 25.0 && top >= -1.0;
            format!(
                "low: {saved:.1} % fewer bits (goal ≥ 25 %), top rung {top:+.2} VMAF (goal ≥ −1): {}",
                if met { "met" } else { "NOT met" }
            )
        }
        "high" => {
            let mut worst = f64::INFINITY;
            for (h, (ak, av)) in &auto.rungs {
                if let (Some((fk, Some(fv))), Some(av)) = (fixed.rungs.get(h), av) {
                    if ak <= fk {
                        worst = worst.min(av - fv);
                    }
                }
            }
            if worst.is_infinite() {
                return format!(
                    "high: every hls-auto rung spends more bits than hls's ({saved:+.1} % bits), so none is at the same or fewer bits: met (vacuously)"
                );
            }
            let met = worst >= -1.0;
            format!(
                "high: the worst rung at the same or fewer bits is {worst:+.2} VMAF against hls (goal ≥ −1), {saved:+.1} % bits: {}",
                if met { "met" } else { "NOT met" }
            )
        }
        _ => format!("{kind}: {saved:+.1} % bits (no goal set for medium)"),
    }
}
