use clap::{Parser, Subcommand};
use nommer::commands::Action;
use std::ffi::OsString;

/// Nommer: serverless media encoding on AWS. A client for its HTTP API; `up` and `demo`
/// run the local stack.
#[derive(Parser)]
#[command(name = "nommer", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole system locally and encode one file end to end (by nommer-devstack)
    ///
    /// [FILE] [--preset P] [--keep-running]: one file (a generated clip unless FILE is
    /// given) encoded on the FFmpeg fleet and, by a routing rule, at the Encoding.com
    /// stand-in. The local stack's own binary, nommer-devstack, runs it (beside this one,
    /// else on PATH); `nommer demo --help` shows its help.
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Start the local stack and keep it running until Ctrl-C (by nommer-devstack)
    ///
    /// [--port 8080] [--workers N] [--stack NAME] [--events]. The local stack's own
    /// binary, nommer-devstack, runs it (beside this one, else on PATH); `nommer up --help`
    /// shows its help.
    #[command(disable_help_flag = true)]
    Up {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
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

/// A command's exit status: 0 returns, anything else exits with it.
fn code(r: anyhow::Result<i32>) -> anyhow::Result<()> {
    let c = r?;
    if c != 0 {
        std::process::exit(c);
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Up { .. } | Cmd::Demo { .. } = cli.command {
        // the local stack's own binary takes over, with these same arguments
        std::process::exit(nommer::handoff::hand_over());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    if let Err(e) = runtime.block_on(run(cli.command)) {
        eprintln!("nommer: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Cmd) -> anyhow::Result<()> {
    use nommer::commands;
    match command {
        Cmd::Up { .. } | Cmd::Demo { .. } => unreachable!("handed over to nommer-devstack"),
        Cmd::Events {
            topic_arn,
            states,
            json,
        } => events(&topic_arn, &states, json).await,
        Cmd::Presets { api } => {
            let t = if api.url.is_some() || std::env::var("NOMMER_API_URL").is_ok() {
                api.target().ok()
            } else {
                None
            };
            code(commands::presets(t).await)
        }
        Cmd::Submit {
            input,
            presets,
            metadata,
            notify_url,
            multipart,
            wait,
            api,
        } => {
            let t = api.target()?;
            code(commands::submit(&t, &input, &presets, &metadata, notify_url, multipart, wait).await)
        }
        Cmd::Status { id, json, api } => code(commands::status(&api.target()?, &id, json).await),
        Cmd::List {
            states,
            limit,
            json,
            api,
        } => code(commands::list(&api.target()?, &states, limit, json).await),
        Cmd::Watch { id, api } => code(commands::watch(&api.target()?, &id).await),
        Cmd::Cancel { id, api } => code(commands::act(&api.target()?, &id, Action::Cancel).await),
        Cmd::Retry { id, api } => code(commands::act(&api.target()?, &id, Action::Retry).await),
    }
}

/// `nommer events`: the SDK's usual configuration (AWS_ENDPOINT_URL for an emulator).
async fn events(topic_arn: &str, states: &[String], json: bool) -> anyhow::Result<()> {
    for st in states {
        if nommer_core::JobState::parse(st).is_none() {
            let all: Vec<&str> = nommer_core::JobState::ALL.iter().map(|s| s.as_str()).collect();
            eprintln!("nommer: `{st}` is not a state; states: {}", all.join(" "));
            std::process::exit(2);
        }
    }
    // nommer_aws::sdk::sdk_config, repeated: the CLI does not link nommer-aws (see
    // watch::queue_arn); the same bounds on every call (NOMMER_AWS_*)
    let limits = nommer_core::settings::CallLimits::from_env()?;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(limits.connect)
        .read_timeout(limits.first_byte)
        .operation_attempt_timeout(limits.attempt)
        .operation_timeout(limits.call)
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(limits.max_attempts)
                .with_initial_backoff(limits.backoff),
        )
        .load()
        .await;
    eprintln!("nommer: watching {topic_arn}; Ctrl-C stops");
    nommer::watch::watch(
        &config,
        topic_arn,
        states,
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
