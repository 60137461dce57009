//! Benchmark (run by hand, not a test): one job end to end on the local stack against a
//! hand-written FFmpeg command making the same output, same source, same machine, same
//! run; wall-clock and CPU seconds of each.
//!
//!     scripts/bench                                  # mp4-720p on a 60 s 720p source
//!     scripts/bench --preset hls --height 1080       # the HLS ladder on a 60 s 1080p source

use anyhow::{bail, Context};
use clap::Parser;
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::{ids, JobState};
use nommer_devstack::{media, LocalStack, StackOptions};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Length of the generated source.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Height of the generated 16:9 source.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// `mp4-720p` or `hls`.
    #[arg(long, default_value = "mp4-720p")]
    preset: String,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The audio both outputs carry: AAC stereo at 128k, 48 kHz.
const AUDIO: [&str; 8] = ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000"];

/// What a person would type to make the same output with FFmpeg alone.
fn hand_written(preset: &str, src: &Path, out: &Path, height: u32) -> anyhow::Result<Vec<String>> {
    let s = |x: &str| x.to_string();
    let mut a = vec![
        s("-hide_banner"),
        s("-loglevel"),
        s("error"),
        s("-y"),
        s("-i"),
        src.display().to_string(),
    ];
    match preset {
        "mp4-720p" => {
            a.extend(
                [
                    "-vf",
                    "scale=-2:720",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-profile:v",
                    "high",
                    "-crf",
                    "23",
                    "-maxrate",
                    "5000k",
                    "-bufsize",
                    "10000k",
                    "-pix_fmt",
                    "yuv420p",
                ]
                .map(s),
            );
            a.extend(AUDIO.map(s));
            a.extend(["-movflags", "+faststart"].map(s));
        }
        "hls" => {
            hls_ladder(&mut a, out, height);
            return Ok(a);
        }
        other => bail!("the benchmark knows mp4-720p and hls, not {other}"),
    }
    a.push(out.display().to_string());
    Ok(a)
}

/// The HLS ladder's part of [`hand_written`]: the rungs up to the source's height, one
/// split and scale each, fMP4 segments, a master playlist beside `out`.
fn hls_ladder(a: &mut Vec<String>, out: &Path, height: u32) {
    let s = |x: &str| x.to_string();
    let rungs: Vec<(u32, u32)> = [(1080, 5000), (720, 3000), (480, 1400), (360, 800), (240, 400)]
        .into_iter()
        .filter(|(h, _)| *h <= height)
        .collect();
    let n = rungs.len();
    let mut graph = format!(
        "[0:v]split={n}{}",
        (0..n).map(|i| format!("[s{i}]")).collect::<String>()
    );
    for (i, (h, _)) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale=-2:{h},format=yuv420p[v{i}]"));
    }
    a.extend([s("-filter_complex"), graph]);
    for i in 0..n {
        a.extend([s("-map"), format!("[v{i}]")]);
    }
    for _ in 0..n {
        a.extend([s("-map"), s("0:a:0")]);
    }
    a.extend(["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high"].map(s));
    for (i, (_, k)) in rungs.iter().enumerate() {
        a.extend([
            format!("-b:v:{i}"),
            format!("{k}k"),
            format!("-maxrate:v:{i}"),
            format!("{}k", k * 3 / 2),
            format!("-bufsize:v:{i}"),
            format!("{}k", k * 3),
        ]);
    }
    a.extend(["-force_key_frames", "expr:gte(t,n_forced*4)", "-sc_threshold", "0"].map(s));
    a.extend(AUDIO.map(s));
    let dir = out.parent().unwrap().display().to_string();
    let map = rungs
        .iter()
        .enumerate()
        .map(|(i, (h, _))| format!("v:{i},a:{i},name:{h}p"))
        .collect::<Vec<_>>()
        .join(" ");
    a.extend([
        s("-f"),
        s("hls"),
        s("-hls_time"),
        s("4"),
        s("-hls_playlist_type"),
        s("vod"),
        s("-hls_segment_type"),
        s("fmp4"),
        s("-hls_segment_filename"),
        format!("{dir}/%v/seg_%05d.m4s"),
        s("-master_pl_name"),
        s("master.m3u8"),
        s("-var_stream_map"),
        map,
    ]);
    a.push(format!("{dir}/%v/index.m3u8"));
}

/// CPU seconds a process and its reaped children have used (from /proc).
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime stime cutime cstime are fields 14-17 (11-14 after the name)
    let ticks: f64 = fields
        .iter()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse::<f64>().ok())
        .sum();
    ticks / 100.0
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
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("bench-source.mp4");
    let width = (args.height * 16 / 9) & !1;
    println!("generating a {} s {width}x{} source ...", args.seconds, args.height);
    media::generate_clip(&src, args.seconds, width, args.height, true)?;
    let src_size = std::fs::metadata(&src)?.len();

    let log_dir = nommer_devstack::emulator::project_root()?
        .join(".nommer")
        .join("logs")
        .join("bench");
    let t = Instant::now();
    let stack = LocalStack::start(StackOptions::new("nommer-bench", &log_dir)).await?;
    let startup = t.elapsed().as_secs_f64();
    let worker_pid = stack.workers()[0].pid().context("worker pid")?;
    let objects = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let api = ApiClient::new(&stack.api_url);

    let (mut plain_wall, mut plain_cpu, mut e2e, mut e2e_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        let out_dir = dir.path().join(format!("plain-{round}"));
        std::fs::create_dir_all(&out_dir)?;
        let cmd = hand_written(&args.preset, &src, &out_dir.join("out.mp4"), args.height)?;
        let before = child_cpu();
        let t = Instant::now();
        let out = std::process::Command::new("ffmpeg").args(&cmd).output()?;
        let w = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let c = child_cpu() - before;
        plain_wall.push(w);
        plain_cpu.push(c);

        let key = format!("inbox/{}/round-{round}.mp4", args.preset);
        let cpu_before = proc_cpu(worker_pid);
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
        let cpu = proc_cpu(worker_pid) - cpu_before;
        if job.state != JobState::Complete {
            bail!("job ended {}: {:?}", job.state, job.error);
        }
        e2e.push(secs);
        e2e_cpu.push(cpu);
        let mut prev = None;
        let mut stages = Vec::new();
        for h in &job.history {
            if let Some((state, at)) = prev {
                let d: chrono::TimeDelta = h.at - at;
                stages.push(format!("{state} {:.2} s", d.num_milliseconds() as f64 / 1000.0));
            }
            prev = Some((h.state, h.at));
        }
        println!(
            "round {round}: hand-written ffmpeg {w:.2} s wall, {c:.2} s CPU · job on the local stack {secs:.2} s, worker {cpu:.2} s CPU · ratio {:.3}",
            secs / w
        );
        println!("  stages: {}", stages.join(" · "));
    }
    stack.shutdown().await;
    let (pw, pc, ee, ec) = (median(plain_wall), median(plain_cpu), median(e2e), median(e2e_cpu));
    println!();
    println!(
        "source: {} s {width}x{} H.264/AAC, {src_size} bytes · preset {} · {} rounds (medians) · {} cores",
        args.seconds,
        args.height,
        args.preset,
        args.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("local stack start-up (emulator + resources + worker): {startup:.2} s (not counted below)");
    println!("hand-written ffmpeg:               {pw:.2} s wall, {pc:.2} s CPU");
    println!(
        "job on the local stack:            {ee:.2} s wall (upload → complete), worker + its FFmpeg {ec:.2} s CPU"
    );
    println!(
        "ratio job / hand-written ffmpeg:   {:.3} wall, {:.3} CPU",
        ee / pw,
        ec / pc
    );
    Ok(())
}
