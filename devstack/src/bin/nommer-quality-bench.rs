//! Benchmark (run by hand, not a test): what quality scoring costs. On one generated
//! source, the same machine and run, it times the worker's own FFmpeg encode of a preset,
//! then the worker's scoring run of that output (libvmaf, PSNR and SSIM, the source
//! through the output's filters), the same without libvmaf (PSNR and SSIM only), and a
//! bare `libvmaf` run of plain FFmpeg on the same two files. It prints each time, the
//! scores and the ratios: scoring against the encode, and ours against the bare run.
//!
//!     NOMMER_SCORE_FFMPEG=$(scripts/second-ffmpeg) cargo run --bin nommer-quality-bench -- --seconds 30

use anyhow::Context;
use clap::Parser;
use nommer_core::ffmpeg::{plan, quality as fq, Limits};
use nommer_core::job::OutputSpec;
use nommer_core::presets::Catalog;
use nommer_core::quality::{summarise_vmaf, Capabilities};
use nommer_devstack::media;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value = "mp4-720p")]
    preset: String,
}

fn timed(program: &str, args: &[String]) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(out.status.success(), "{program} failed: {stderr}");
    Ok((took, stderr))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scorer = std::env::var(nommer_core::settings::SCORE_FFMPEG)
        .context("set NOMMER_SCORE_FFMPEG to an FFmpeg with libvmaf (scripts/second-ffmpeg prints one)")?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.mp4");
    println!("generating a {} s {}x{} source…", args.seconds, args.width, args.height);
    media::generate_clip(&src, args.seconds, args.width, args.height, true)?;
    let limits = Limits::default();
    let prober = nommer_media::FfprobeProber::new("ffprobe", "ffmpeg", limits.clone());
    let size = std::fs::metadata(&src)?.len();
    let probe = prober.probe_file(&src, size).await?;
    let catalog = Catalog::builtin();
    let preset = catalog.find(&args.preset).context("no such preset")?;
    let o = OutputSpec::new(&args.preset, &args.preset);
    let pl = plan::plan(&plan::PlanInput {
        preset,
        options: &o.options,
        probe: &probe,
        input: &src,
        watermark: None,
        out_dir: dir.path(),
        stem: "out",
        limits: &limits,
    })?;
    anyhow::ensure!(
        pl.rungs.is_empty(),
        "pick a file preset (a ladder's rungs are scored one by one)"
    );
    let mut encode = Duration::ZERO;
    for pass in &pl.passes {
        encode += timed("ffmpeg", pass)?.0;
    }
    let out = dir.path().join(&pl.main);
    let m = measure(
        &scorer,
        &out,
        &src,
        &probe,
        &o.options,
        &dir.path().join("vmaf.json"),
        &limits,
    )?;
    let (full, light, plain, at, vmaf, psnr, ssim) = (m.full, m.light, m.plain, m.at, m.vmaf, m.psnr, m.ssim);
    let secs = |d: Duration| d.as_secs_f64();
    println!();
    println!(
        "source {} s at {}x{}; scored at {}x{}, {}",
        args.seconds, args.width, args.height, at.0, at.1, vmaf.model
    );
    println!(
        "scores: VMAF mean {:.2} min {:.2} p5 {:.2}; PSNR {:?} dB; SSIM {:?}",
        vmaf.mean, vmaf.min, vmaf.p5, psnr, ssim
    );
    println!("{:<44} {:>8}  {:>9}", "run", "seconds", "÷ encode");
    println!(
        "{:<44} {:>8.2}  {:>9.2}",
        format!("encode ({})", args.preset),
        secs(encode),
        1.0
    );
    println!(
        "{:<44} {:>8.2}  {:>9.2}",
        "scoring: VMAF + PSNR + SSIM (the worker's)",
        secs(full),
        secs(full) / secs(encode)
    );
    println!(
        "{:<44} {:>8.2}  {:>9.2}",
        "scoring: PSNR + SSIM only (no libvmaf)",
        secs(light),
        secs(light) / secs(encode)
    );
    println!(
        "{:<44} {:>8.2}  {:>9.2}",
        "plain FFmpeg: bare libvmaf, same files",
        secs(plain),
        secs(plain) / secs(encode)
    );
    println!(
        "ours ÷ bare libvmaf: {:.2} (the extra: scaling, the source's filters, PSNR and SSIM)",
        secs(full) / secs(plain)
    );
    Ok(())
}

/// The three scoring runs' times, and what the full one scored.
struct Measured {
    full: Duration,
    light: Duration,
    plain: Duration,
    at: (u32, u32),
    vmaf: nommer_core::quality::Vmaf,
    psnr: Option<f64>,
    ssim: Option<f64>,
}

fn measure(
    scorer: &str,
    out: &std::path::Path,
    src: &std::path::Path,
    probe: &nommer_core::job::Probe,
    options: &nommer_core::job::OutputOptions,
    log: &std::path::Path,
    limits: &Limits,
) -> anyhow::Result<Measured> {
    let caps = Capabilities::from_filters(&String::from_utf8_lossy(
        &Command::new(scorer).args(["-hide_banner", "-filters"]).output()?.stdout,
    ));
    anyhow::ensure!(caps.libvmaf, "{scorer} has no libvmaf");
    let input = |caps| fq::ScoreInput {
        distorted: out,
        source: src,
        probe,
        options,
        caps,
        vmaf_log: log,
        threads: 2,
        limits,
    };
    let (argv, at, model) = fq::score_args(&input(caps)).context("the source has a size")?;
    let (full, stderr) = timed(scorer, &argv)?;
    let frames = fq::parse_vmaf_log(&std::fs::read_to_string(log)?).map_err(anyhow::Error::msg)?;
    let vmaf = summarise_vmaf(&frames, model.unwrap_or_default()).context("frames")?;
    let no_vmaf = Capabilities { libvmaf: false, ..caps };
    let (argv, _, _) = fq::score_args(&input(no_vmaf)).context("the source has a size")?;
    let (light, _) = timed(scorer, &argv)?;
    let bare: Vec<String> = [
        "-hide_banner",
        "-nostats",
        "-i",
        &out.display().to_string(),
        "-i",
        &src.display().to_string(),
        "-lavfi",
        "[0:v][1:v]libvmaf=n_threads=2",
        "-f",
        "null",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (plain, _) = timed(scorer, &bare)?;
    Ok(Measured {
        full,
        light,
        plain,
        at,
        vmaf,
        psnr: fq::parse_psnr(&stderr),
        ssim: fq::parse_ssim(&stderr),
    })
}
