use clap::{Parser, Subcommand};
use nommer::{demo, LocalStack, StackOptions};
use std::path::PathBuf;

/// Nommer: serverless media encoding on AWS, and its local stack.
#[derive(Parser)]
#[command(name = "nommer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole system locally and encode one file end to end (a generated clip
    /// unless FILE is given).
    Demo {
        file: Option<PathBuf>,
        #[arg(long, default_value = nommer_shared::presets::DEFAULT)]
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
    /// Print job events as they arrive on the events topic (of the local stack or AWS:
    /// the SDK's usual configuration, AWS_ENDPOINT_URL for an emulator).
    Events {
        /// The events topic (default: NOMMER_EVENTS_TOPIC_ARN).
        #[arg(long, env = "NOMMER_EVENTS_TOPIC_ARN")]
        topic_arn: String,
        /// Only these states (repeatable), through an SNS filter policy.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Print the whole event as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the presets.
    Presets,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // the demo shows its own progress; the functions' logs go to warnings only
    let level = if matches!(cli.command, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    nommer_shared::telemetry::init_with_default(level);
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
        Cmd::Events {
            topic_arn,
            states,
            json,
        } => {
            for st in &states {
                if nommer_shared::JobState::parse(st).is_none() {
                    eprintln!("nommer: `{st}` is not a state; states: submitted queued downloading encoding uploading complete failed cancelled");
                    std::process::exit(2);
                }
            }
            let config = nommer_shared::aws::sdk_config().await;
            eprintln!("nommer: watching {topic_arn}; Ctrl-C stops");
            nommer::watch::watch(
                &config,
                &topic_arn,
                &states,
                |e| {
                    if json {
                        println!("{}", serde_json::to_string(&e).unwrap_or_default());
                    } else {
                        println!("{}", nommer::watch::line(&e));
                    }
                },
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            )
            .await
        }
        Cmd::Presets => {
            for p in nommer_shared::presets::Catalog::builtin().iter() {
                println!("{:<12} {}", p.name, p.description);
            }
            Ok(())
        }
    };
    if let Err(e) = r {
        eprintln!("nommer: {e:#}");
        std::process::exit(1);
    }
}

async fn up(port: u16, workers: usize, stack: &str, events: bool) -> anyhow::Result<()> {
    let log_dir = nommer::emulator::project_root()
        .join(".nommer")
        .join("logs")
        .join(stack);
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
