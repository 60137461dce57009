//! The local stack: the emulator, the stack's resources, the three functions in-process
//! behind their event sources, and worker processes.

use crate::emulator::{self, Emulator};
use crate::event_sources::{self, SqsHandler};
use crate::resources::{self, QueueUrls, StackNames};
use anyhow::Context;
use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use nommer_shared::queue::SqsQueue;
use nommer_shared::settings::{self as s, ApiSettings, DispatchSettings, IngestSettings};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How to run a local stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Resource name prefix (`<stack>-inbox-…`); unique per test.
    pub stack: String,
    /// Use this emulator instead of starting one.
    pub endpoint: Option<String>,
    /// Worker processes to start.
    pub workers: usize,
    /// Extra environment for the workers (e.g. a shorter visibility timeout).
    pub worker_env: HashMap<String, String>,
    /// Where logs go (emulator, workers).
    pub log_dir: PathBuf,
    /// Port for the API (0 picks a free one).
    pub api_port: u16,
    /// The config file (presets, output naming) every component reads; default:
    /// `NOMMER_CONFIG` from the environment, if set.
    pub config_path: Option<PathBuf>,
}

impl StackOptions {
    pub fn new(stack: &str, log_dir: &Path) -> Self {
        StackOptions {
            stack: stack.to_string(),
            endpoint: None,
            workers: 1,
            worker_env: HashMap::new(),
            log_dir: log_dir.to_path_buf(),
            api_port: 0,
            config_path: std::env::var_os(s::CONFIG).map(PathBuf::from),
        }
    }
}

/// A running local stack. Dropping it stops its tasks and workers (and the emulator if it
/// started one).
pub struct LocalStack {
    pub names: StackNames,
    pub urls: QueueUrls,
    pub endpoint: String,
    pub api_url: String,
    pub config: SdkConfig,
    pub env: HashMap<String, String>,
    pub log_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<WorkerProcess>,
    worker_env: HashMap<String, String>,
    _emulator: Option<Emulator>,
}

/// A worker running as its own process, as on an EC2 instance.
pub struct WorkerProcess {
    pub id: String,
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Finds one of the workspace's binaries: `$NOMMER_BIN_DIR/<name>`, else next to the
/// running executable (or one folder up, for test executables in `deps/`).
pub fn locate_binary(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("NOMMER_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "cannot find the `{name}` binary next to {}; build the workspace first (cargo build --workspace --bins)",
        exe.display()
    )
}

fn arn_of(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:sqs:{}:{}:{name}", emulator::REGION, emulator::ACCOUNT_ID)
}

impl LocalStack {
    pub async fn start(opts: StackOptions) -> anyhow::Result<LocalStack> {
        std::fs::create_dir_all(&opts.log_dir)?;
        let (endpoint, emu) = match &opts.endpoint {
            Some(e) => (e.clone(), None),
            None => {
                let emu = Emulator::start(Some(&opts.log_dir.join("emulator.log"))).await?;
                (emu.endpoint.clone(), Some(emu))
            }
        };
        let config = nommer_shared::aws::sdk_config_for_endpoint(&endpoint, emulator::REGION).await;
        let names = StackNames::new(&opts.stack, emulator::ACCOUNT_ID);
        let urls = resources::create(&config, &names)
            .await
            .context("creating the stack's resources on the emulator")?;
        let mut env = resources::function_env(&names, &urls);
        if let Some(c) = &opts.config_path {
            env.insert(s::CONFIG.to_string(), c.display().to_string());
        }
        let source = env.clone();

        let ingest = ingest::Ingest::new(IngestSettings::from_source(&source)?, &config);
        let dispatch = dispatch::Dispatch::new(DispatchSettings::from_source(&source)?, &config);
        let api_state = Arc::new(api::ApiState::new(ApiSettings::from_source(&source)?, &config));

        let queue = SqsQueue::new(nommer_shared::aws::sqs_client(&config));
        let region = emulator::REGION.to_string();
        let mut tasks = Vec::new();

        let ingest_handler: SqsHandler = Arc::new(move |event| {
            let ctx = ingest.clone();
            Box::pin(async move {
                let v = serde_json::to_value(event)?;
                let out = ingest::function_handler(&ctx, LambdaEvent::new(v, Default::default())).await?;
                Ok(serde_json::from_value(out)?)
            })
        });
        tasks.push(tokio::spawn(event_sources::poll_sqs(
            queue.clone(),
            urls.ingest.clone(),
            arn_of(&urls.ingest),
            region.clone(),
            10,
            ingest_handler,
        )));

        let dispatch_handler: SqsHandler = Arc::new(move |event| {
            let ctx = dispatch.clone();
            Box::pin(async move { dispatch::function_handler(&ctx, LambdaEvent::new(event, Default::default())).await })
        });
        tasks.push(tokio::spawn(event_sources::poll_sqs(
            queue.clone(),
            urls.jobs.clone(),
            arn_of(&urls.jobs),
            region.clone(),
            10,
            dispatch_handler,
        )));

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.api_port))
            .await
            .context("binding the API port")?;
        let api_url = format!("http://{}", listener.local_addr()?);
        let router = api::router(api_state);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = event_sources::serve_api(listener, router).await {
                tracing::error!(error = %e, "local API server stopped");
            }
        }));

        let mut stack = LocalStack {
            names,
            urls,
            endpoint,
            api_url,
            config,
            env,
            log_dir: opts.log_dir.clone(),
            tasks,
            workers: Vec::new(),
            worker_env: opts.worker_env.clone(),
            _emulator: emu,
        };
        for _ in 0..opts.workers {
            stack.spawn_worker().await?;
        }
        Ok(stack)
    }

    /// Starts one more worker process.
    pub async fn spawn_worker(&mut self) -> anyhow::Result<&WorkerProcess> {
        let n = self.workers.len() + 1;
        let id = format!("{}-worker-{n}", self.names.stack);
        let bin = locate_binary("nommer-worker")?;
        let log = self.log_dir.join(format!("{id}.log"));
        let f = std::fs::File::create(&log)?;
        let work_dir = self.log_dir.join(format!("{id}-work"));
        std::fs::create_dir_all(&work_dir)?;
        let mut cmd = Command::new(bin);
        cmd.envs(&self.env)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", emulator::REGION)
            .env_remove("AWS_PROFILE")
            .env(s::WORKER_ID, &id)
            .env(s::WORK_DIR, &work_dir)
            .env(s::POLL_WAIT_SECS, "2")
            .env(s::HEARTBEAT_SECS, "2")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(&self.worker_env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone()?))
            .stderr(Stdio::from(f))
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting nommer-worker")?;
        self.workers.push(WorkerProcess { id, child, log });
        Ok(self.workers.last().unwrap())
    }

    pub fn workers(&self) -> &[WorkerProcess] {
        &self.workers
    }

    /// Kills a worker at once (SIGKILL), as when an instance dies.
    pub async fn kill_worker(&mut self, index: usize) -> anyhow::Result<()> {
        let w = &mut self.workers[index];
        w.child.kill().await?;
        Ok(())
    }

    /// Stops a worker as EC2 would before terminating it (SIGTERM), and waits for it.
    pub async fn stop_worker(&mut self, index: usize) -> anyhow::Result<std::process::ExitStatus> {
        let w = &mut self.workers[index];
        if let Some(pid) = w.child.id() {
            // SAFETY: sends a signal to our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        Ok(tokio::time::timeout(Duration::from_secs(20), w.child.wait()).await??)
    }

    /// Stops everything: workers get SIGTERM and a few seconds to give their jobs back.
    pub async fn shutdown(mut self) {
        for w in &mut self.workers {
            if let Some(pid) = w.child.id() {
                // SAFETY: sends a signal to our own child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.kill().await;
            }
        }
        for t in &self.tasks {
            t.abort();
        }
    }

    /// The last lines of every worker's log (for a failing test's message).
    pub fn worker_logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for w in &self.workers {
            let text = std::fs::read_to_string(&w.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ({})\n", w.id, w.log.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
