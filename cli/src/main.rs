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
    /// List the presets (the API's with --api or NOMMER_API_URL, else the built-in ones).
    Presets {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Submit a file (uploaded through a presigned URL) or an s3:// source.
    Submit {
        /// A local file, or s3://bucket/key in a bucket the API accepts.
        input: String,
        /// Preset of an output (repeat for several outputs; default: the API's default).
        #[arg(long = "preset")]
        presets: Vec<String>,
        /// key=value user metadata (repeatable).
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// Webhook for the job's events.
        #[arg(long)]
        notify_url: Option<String>,
        /// Upload in parts even when the file is small.
        #[arg(long)]
        multipart: bool,
        /// Show the progress until the job ends (exit status 1 unless it completes).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A job's state, backend, estimate and outputs.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Jobs, newest first.
    List {
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Follow a job until it ends.
    Watch {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job.
    Cancel {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Retry a failed or cancelled job (as a new job).
    Retry {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the API is: flags, else NOMMER_API_URL / NOMMER_API_KEY, else
/// ~/.config/nommer/cli.toml.
#[derive(clap::Args, Clone)]
struct ApiArgs {
    /// The API's base URL.
    #[arg(long = "api")]
    url: Option<String>,
    /// An API key (sent as x-api-key).
    #[arg(long)]
    key: Option<String>,
}

impl ApiArgs {
    fn target(self) -> anyhow::Result<nommer::commands::Target> {
        nommer::commands::Target::resolve(self.url, self.key)
    }
}

async fn code(r: anyhow::Result<i32>) -> anyhow::Result<()> {
    let c = r?;
    if c != 0 {
        std::process::exit(c);
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // the demo shows its own progress; the functions' logs go to warnings only
    // the stack's own logs for `up`; the other commands show their own output
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
        Cmd::Events {
            topic_arn,
            states,
            json,
        } => {
            for st in &states {
                if nommer_core::JobState::parse(st).is_none() {
                    eprintln!("nommer: `{st}` is not a state; states: submitted queued downloading encoding uploading complete failed cancelled");
                    std::process::exit(2);
                }
            }
            let config = nommer_aws::sdk::sdk_config().await;
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
        Cmd::Presets { api } => {
            let t = if api.url.is_some() || std::env::var("NOMMER_API_URL").is_ok() {
                api.target().ok()
            } else {
                None
            };
            code(nommer::commands::presets(t).await).await
        }
        Cmd::Submit {
            input,
            presets,
            metadata,
            notify_url,
            multipart,
            wait,
            api,
        } => match api.target() {
            Ok(t) => {
                code(nommer::commands::submit(&t, &input, &presets, &metadata, notify_url, multipart, wait).await).await
            }
            Err(e) => Err(e),
        },
        Cmd::Status { id, json, api } => match api.target() {
            Ok(t) => code(nommer::commands::status(&t, &id, json).await).await,
            Err(e) => Err(e),
        },
        Cmd::List {
            states,
            limit,
            json,
            api,
        } => match api.target() {
            Ok(t) => code(nommer::commands::list(&t, &states, limit, json).await).await,
            Err(e) => Err(e),
        },
        Cmd::Watch { id, api } => match api.target() {
            Ok(t) => code(nommer::commands::watch(&t, &id).await).await,
            Err(e) => Err(e),
        },
        Cmd::Cancel { id, api } => match api.target() {
            Ok(t) => code(nommer::commands::act(&t, &id, "cancel").await).await,
            Err(e) => Err(e),
        },
        Cmd::Retry { id, api } => match api.target() {
            Ok(t) => code(nommer::commands::act(&t, &id, "retry").await).await,
            Err(e) => Err(e),
        },
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
