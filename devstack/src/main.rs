use clap::{Parser, Subcommand};
use nommer_devstack::{demo, emulator, LocalStack, StackOptions};
use std::path::PathBuf;

/// Nommer's local stack: the whole system on this machine, on the moto emulator.
/// (`nommer up` and `nommer demo` run this.)
#[derive(Parser)]
#[command(name = "nommer-devstack", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole system locally and encode one file end to end, on the FFmpeg fleet
    /// and (by a routing rule) at the Encoding.com stand-in (a generated clip unless FILE
    /// is given).
    Demo {
        file: Option<PathBuf>,
        #[arg(long, default_value = nommer_core::presets::DEFAULT)]
        preset: String,
        /// Keep the stack running after the job completes.
        #[arg(long)]
        keep_running: bool,
    },
    /// Start the local stack and keep it running until Ctrl-C.
    Up {
        /// Port for the local API.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value = "nommer")]
        stack: String,
        /// Print job events (the SNS topic's) as they arrive.
        #[arg(long)]
        events: bool,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // `up` shows the stack's own logs; the demo shows its own progress, the functions'
    // logs go to warnings only
    let level = if matches!(cli.command, Cmd::Up { .. }) {
        "info"
    } else {
        "warn"
    };
    nommer_aws::telemetry::init_with_default(level);
    let r = match cli.command {
        Cmd::Demo {
            file,
            preset,
            keep_running,
        } => demo::run(file, &preset, keep_running).await,
        Cmd::Up {
            port,
            workers,
            stack,
            events,
        } => up(port, workers, &stack, events).await,
    };
    if let Err(e) = r {
        eprintln!("nommer: {e:#}");
        std::process::exit(1);
    }
}

async fn up(port: u16, workers: usize, stack: &str, events: bool) -> anyhow::Result<()> {
    let log_dir = emulator::project_root()?.join(".nommer").join("logs").join(stack);
    let mut opts = StackOptions::new(stack, &log_dir);
    opts.api_port = port;
    // the local API asks for a key, as a deployed one does
    let key = std::env::var("NOMMER_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| format!("nk_{}", uuid::Uuid::new_v4().simple()));
    opts.api_key = Some(key.clone());
    opts.workers = workers;
    let s = LocalStack::start(opts).await?;
    println!("nommer: local stack `{stack}` is up; logs in {}", log_dir.display());
    println!("  inbox  s3://{}/inbox/<preset>/<file>", s.names.inbox_bucket);
    println!("  outbox s3://{}/", s.names.outbox_bucket);
    demo::print_env(&s);
    println!(
        "  export NOMMER_API_URL={} NOMMER_API_KEY={key}   # send it as x-api-key",
        s.api_url
    );
    println!("Ctrl-C stops it.");
    if events {
        let topic = s.urls.topic_arn.clone();
        println!("events (job.state_changed, job.progress):");
        nommer::watch::watch(
            &s.config,
            &topic,
            &[],
            |e| println!("  {}", nommer::watch::line(&e)),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    } else {
        tokio::signal::ctrl_c().await?;
    }
    s.shutdown().await;
    Ok(())
}
