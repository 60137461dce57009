//! Simulation (run by hand, not a test): a long job split across W = 1…200 workers,
//! fed with costs measured on this machine in this run. On a short 1080p source it
//! measures, on one core: the `hls` ladder's encode per source second (whole, and as a
//! chunk), the audio's, the split's (packets read, pieces cut), the stitch's (join and
//! segment) and the object store's transfer rate; then it plays a `--hours` job through
//! the split → chunks → stitch pipeline for each W and prints the wall time, the speed-up
//! per worker and the instance-minutes against one worker encoding it whole.
//!
//!     cargo run --bin nommer-split-sim -- --hours 2

use anyhow::Context;
use clap::Parser;
use nommer_core::ffmpeg::{plan, Limits};
use nommer_core::job::{OutputSpec, Probe};
use nommer_core::presets::{Catalog, Preset};
use nommer_devstack::local_split;
use std::path::Path;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The simulated job's length.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// The measured sample's length (1080p).
    #[arg(long, default_value_t = 24)]
    sample_seconds: u32,
    /// The chunks' target length.
    #[arg(long, default_value_t = 60.0)]
    chunk_seconds: f64,
    /// Bytes of source per second of the simulated job (a 1080p mezzanine at ~25 Mbit/s).
    #[arg(long, default_value_t = 3_125_000.0)]
    source_bytes_per_second: f64,
    /// Object store throughput per worker, MB/s (measured against the emulator when 0;
    /// S3 from EC2 gives a worker roughly 100 or more).
    #[arg(long, default_value_t = 0.0)]
    store_mb_per_second: f64,
    /// A task's fixed cost: taking its message, probing its piece, starting FFmpeg (s).
    #[arg(long, default_value_t = 2.0)]
    task_overhead: f64,
}

/// Costs per second of source, measured on one core.
#[derive(Debug)]
struct Costs {
    whole: f64,
    chunk: f64,
    audio: f64,
    split: f64,
    stitch: f64,
    /// Output bytes per second of source (what chunks upload and the stitch fetches).
    output_bytes: f64,
}

fn measure(src: &Path, probe: &Probe, preset: &Preset, dir: &Path) -> anyhow::Result<Costs> {
    let limits = Limits::default();
    let seconds = probe.duration_seconds.context("a duration")?;
    let o = OutputSpec::new("hls", &preset.name);
    let whole_dir = dir.join("whole");
    std::fs::create_dir_all(&whole_dir)?;
    let whole = plan::plan(&plan::PlanInput {
        preset,
        options: &o.options,
        probe,
        input: src,
        watermark: None,
        out_dir: &whole_dir,
        stem: "whole",
        limits: &limits,
    })?;
    let run = local_split::timed(true);
    let mut t_whole = 0.0;
    for p in &whole.passes {
        t_whole += run("ffmpeg", p)?.1;
    }
    let made = local_split::split_and_stitch(
        src,
        probe,
        &[(o, preset.clone())],
        seconds / 2.0,
        &dir.join("split"),
        &run,
    )?;
    Ok(Costs {
        whole: t_whole / seconds,
        chunk: made.chunks / seconds,
        audio: made.audio / seconds,
        split: made.split / seconds,
        stitch: made.stitch / seconds,
        output_bytes: made.chunk_bytes as f64 / seconds,
    })
}

/// The emulator's object store throughput, MB/s (a put and a get of 64 MiB).
async fn store_rate(dir: &Path) -> anyhow::Result<f64> {
    let logs = dir.join("logs");
    let mut opts = nommer_devstack::StackOptions::new(&format!("splitsim{}", std::process::id()), &logs);
    opts.workers = 0;
    let stack = nommer_devstack::LocalStack::start(opts).await?;
    let objects = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    let blob = dir.join("blob");
    std::fs::write(&blob, vec![7u8; 64 << 20])?;
    let started = Instant::now();
    objects
        .upload_file(&stack.names.outbox_bucket, "blob", &blob, "application/octet-stream")
        .await?;
    objects
        .download_to_file(&stack.names.outbox_bucket, "blob", &dir.join("blob2"), None)
        .await?;
    let rate = 2.0 * 64.0 * 1.048576 / started.elapsed().as_secs_f64();
    stack.shutdown().await;
    Ok(rate)
}

/// One simulated run on `w` workers (each one core): wall seconds and busy seconds.
/// As the worker does it: the splitter downloads the source and reads its keyframes,
/// then cuts and uploads each piece and sends its chunk at once, the audio after the
/// first chunk; the other workers take each task as it is sent (in order, as the queue
/// gives them), and the splitter joins them when its split is done.
fn simulate(a: &Args, c: &Costs, store: f64, w: usize) -> (f64, f64) {
    let total = a.hours * 3600.0;
    let bytes = |b: f64| b / (store * 1e6);
    let n = (total / a.chunk_seconds).round().max(1.0) as usize;
    let chunk = total / n as f64;
    // the source in, then per piece its cut and its upload
    let head = bytes(total * a.source_bytes_per_second);
    let per_piece = bytes(chunk * a.source_bytes_per_second) + chunk * c.split;
    let split = head + n as f64 * per_piece;
    let chunk_task = a.task_overhead + chunk * c.chunk + bytes(chunk * (a.source_bytes_per_second + c.output_bytes));
    // (sent at, length): each chunk when its piece is up, the audio after the first
    let mut tasks: Vec<(f64, f64)> = (0..n)
        .map(|k| (head + (k + 1) as f64 * per_piece, chunk_task))
        .collect();
    tasks.insert(1.min(n), (head + per_piece, a.task_overhead + total * c.audio));
    let mut free = vec![0.0f64; w];
    free[0] = split;
    for (sent, length) in &tasks {
        let i = (0..w).min_by(|&x, &y| free[x].total_cmp(&free[y])).unwrap();
        free[i] = free[i].max(*sent) + length;
    }
    let middle = free.iter().cloned().fold(0.0, f64::max);
    let stitch = a.task_overhead + bytes(total * c.output_bytes) * 2.0 + total * c.stitch;
    let wall = middle + stitch;
    let busy = split + tasks.iter().map(|t| t.1).sum::<f64>() + stitch;
    (wall, busy)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("sample.mp4");
    println!("measuring on a {} s 1920x1080 sample, one core…", args.sample_seconds);
    nommer_devstack::media::generate_clip(&src, args.sample_seconds, 1920, 1080, true)?;
    let size = std::fs::metadata(&src)?.len();
    let prober = nommer_media::FfprobeProber::new("ffprobe", "ffmpeg", Limits::default());
    let probe = prober.probe_file(&src, size).await?;
    let catalog = Catalog::builtin();
    let preset = catalog.find("hls").context("the hls preset")?;
    let c = measure(&src, &probe, preset, dir.path())?;
    let store = if args.store_mb_per_second > 0.0 {
        args.store_mb_per_second
    } else {
        store_rate(dir.path()).await?
    };
    println!(
        "measured per source second, one core: whole encode {:.2} s, as chunks {:.2} s, audio {:.3} s, split {:.3} s, stitch {:.3} s; outputs {:.2} MB/s of source; object store {store:.0} MB/s",
        c.whole, c.chunk, c.audio, c.split, c.stitch, c.output_bytes / 1e6
    );
    let total = args.hours * 3600.0;
    // one worker, whole: the source in, the encode, the outputs out
    let single = (total * (args.source_bytes_per_second + c.output_bytes)) / (store * 1e6) + total * c.whole;
    println!(
        "\n{} h 1080p `hls` job, {} s chunks; one worker encoding it whole: {:.0} min wall, {:.0} instance-minutes",
        args.hours,
        args.chunk_seconds,
        single / 60.0,
        single / 60.0
    );
    println!(
        "{:>5} {:>11} {:>9} {:>11} {:>16} {:>16}",
        "W", "wall (min)", "speed-up", "per worker", "inst-min (held)", "inst-min (busy)"
    );
    for w in [1usize, 2, 4, 8, 16, 32, 64, 100, 128, 200] {
        let (wall, busy) = simulate(&args, &c, store, w);
        let speedup = single / wall;
        println!(
            "{w:>5} {:>11.1} {:>9.1} {:>11.2} {:>16.0} {:>16.0}",
            wall / 60.0,
            speedup,
            speedup / w as f64,
            wall * w as f64 / 60.0,
            busy / 60.0
        );
    }
    println!(
        "\nMediaConvert's accelerated transcoding, for comparison: its user guide gives no speed-up figure; it says \
         the feature \"can significantly speed up jobs with long, visually complex content\", suits jobs that would take \
         10 minutes or longer, and is billed at the Professional tier."
    );
    Ok(())
}
