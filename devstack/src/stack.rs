//! The local stack: the emulator, the stack's resources, the three functions in-process
//! behind their event sources, and worker processes.

use crate::emulator::{self, Emulator};
use crate::event_sources::{self, SqsHandler};
use crate::faults::{FaultPlan, FaultProxy};
use crate::resources::{self, QueueUrls, StackNames};
use crate::standin::StandIn;
use crate::stream;
use anyhow::Context;
use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use nommer_aws::queue::SqsQueue;
use nommer_core::liveness::LivenessSettings;
use nommer_core::settings::{self as s, ApiSettings, CallLimits, DispatchSettings, IngestSettings, ScalerSettings};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
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
    /// Extra environment for the in-process functions and sweeps (e.g. a shorter stall
    /// time), over what the template would set.
    pub function_env: HashMap<String, String>,
    /// Where logs go (emulator, workers).
    pub log_dir: PathBuf,
    /// Port for the API (0 picks a free one).
    pub api_port: u16,
    /// The config file (presets, output naming) every component reads; default:
    /// `NOMMER_CONFIG` from the environment, if set.
    pub config_path: Option<PathBuf>,
    /// Run the EC2 fleet (scaler + instances as processes) instead of fixed workers.
    pub fleet: Option<FleetOptions>,
    /// How often the Encoding.com poller runs (every 2 minutes on AWS).
    pub encodingcom_poll: Duration,
    /// Require this key in `x-api-key` (none: the API is open).
    pub api_key: Option<String>,
    /// The faults the proxy in front of the emulator injects; default: `NOMMER_FAULTS`
    /// from the environment, else none.
    pub faults: Option<FaultPlan>,
    /// The bounds on every AWS call, the workers' too; default: `NOMMER_AWS_*` from the
    /// environment, else [`CallLimits::default`].
    pub call_limits: Option<CallLimits>,
}

impl StackOptions {
    pub fn new(stack: &str, log_dir: &Path) -> Self {
        StackOptions {
            stack: stack.to_string(),
            endpoint: None,
            workers: 1,
            worker_env: HashMap::new(),
            function_env: HashMap::new(),
            log_dir: log_dir.to_path_buf(),
            api_port: 0,
            config_path: std::env::var_os(s::CONFIG).map(PathBuf::from),
            fleet: None,
            encodingcom_poll: Duration::from_secs(1),
            api_key: None,
            faults: None,
            call_limits: None,
        }
    }
}

/// A running local stack. Dropping it stops its tasks and workers (and the emulator if it
/// started one).
pub struct LocalStack {
    pub names: StackNames,
    pub urls: QueueUrls,
    /// Where every component sends its AWS calls: the fault proxy.
    pub endpoint: String,
    /// The emulator itself, behind the proxy: for a test's own checks, never faulted.
    pub emulator_endpoint: String,
    /// The proxy in front of the emulator, with what it did.
    pub faults: Arc<FaultProxy>,
    pub api_url: String,
    pub config: SdkConfig,
    pub env: HashMap<String, String>,
    pub log_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<WorkerProcess>,
    spawn: SpawnInfo,
    /// In fleet mode: the worker process of each instance.
    pub fleet: FleetProcesses,
    /// The Encoding.com stand-in, when the config file has an Encoding.com backend.
    pub standin: Option<StandIn>,
    /// What dispatch, the callback and the poller use (e.g. to cancel a job).
    pub backends: Arc<nommer_core::flows::Backends>,
    emulator: Option<Emulator>,
}

use crate::fleet::follow_instances;
pub use crate::fleet::{create_launch_template, FleetOptions, FleetProcesses};
pub use crate::workers::{locate_binary, WorkerProcess};
use crate::workers::{sigterm, spawn_worker_process, SpawnInfo};

fn arn_of(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:sqs:{}:{}:{name}", emulator::REGION, emulator::ACCOUNT_ID)
}

/// The emulator (started, or the one given), the fault proxy in front of it, its SDK
/// config and the stack's resources.
struct Base {
    endpoint: String,
    emulator: Option<Emulator>,
    emulator_endpoint: String,
    proxy: Arc<FaultProxy>,
    limits: CallLimits,
    config: SdkConfig,
    names: StackNames,
    urls: QueueUrls,
}

async fn base(opts: &StackOptions) -> anyhow::Result<Base> {
    let (emulator_endpoint, emulator) = match &opts.endpoint {
        Some(e) => (e.clone(), None),
        None => {
            let emu = Emulator::start(Some(&opts.log_dir.join("emulator.log"))).await?;
            (emu.endpoint.clone(), Some(emu))
        }
    };
    let plan = match &opts.faults {
        Some(p) => p.clone(),
        None => FaultPlan::from_env()?.unwrap_or_default(),
    };
    let limits = match &opts.call_limits {
        Some(l) => l.clone(),
        None => CallLimits::from_env()?,
    };
    let proxy = Arc::new(FaultProxy::start(&emulator_endpoint, plan).await?);
    let endpoint = proxy.endpoint.clone();
    let config = nommer_aws::sdk::sdk_config_with(&endpoint, emulator::REGION, &limits).await;
    let names = StackNames::new(&opts.stack, emulator::ACCOUNT_ID);
    let urls = resources::create(&config, &names)
        .await
        .context("creating the stack's resources on the emulator")?;
    Ok(Base {
        endpoint,
        emulator,
        emulator_endpoint,
        proxy,
        limits,
        config,
        names,
        urls,
    })
}

/// The environment every component reads, as the template sets it, for an API at
/// `api_url`; jobs' notify_url deliveries are signed with this stack's own secret.
fn component_env(opts: &StackOptions, b: &Base, api_url: &str) -> HashMap<String, String> {
    let mut env = resources::function_env(&b.names, &b.urls);
    env.insert(
        s::FFPROBE.to_string(),
        std::env::var(s::FFPROBE).unwrap_or_else(|_| "ffprobe".into()),
    );
    if let Some(c) = &opts.config_path {
        env.insert(s::CONFIG.to_string(), c.display().to_string());
    }
    env.insert(
        s::CALLBACK_URL.to_string(),
        format!("{api_url}{}", encodingcom::CALLBACK_PATH),
    );
    env.entry(s::WEBHOOK_SECRET.to_string()).or_insert_with(webhook_secret);
    if let Some(k) = &opts.api_key {
        env.insert(s::API_KEY_HASHES.to_string(), api::key_hash(k));
    }
    env.extend(opts.function_env.clone());
    env
}

/// A fresh `whsec_…` signing secret (32 random bytes).
fn webhook_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The Encoding.com stand-in, when the config file has an Encoding.com backend (with the
/// source reader the template makes for it); its endpoint and keys go into `env`.
async fn standin(opts: &StackOptions, b: &Base, env: &mut HashMap<String, String>) -> anyhow::Result<Option<StandIn>> {
    let file_config = match &opts.config_path {
        Some(p) => nommer_core::config::Config::load(p).map_err(|e| anyhow::anyhow!(e))?,
        None => Default::default(),
    };
    let wanted = file_config
        .routing
        .of_kind(nommer_core::routing::BackendKind::EncodingCom)
        .next()
        .is_some();
    if !wanted {
        return Ok(None);
    }
    resources::source_reader(&b.config, &b.names)
        .await
        .context("creating the Encoding.com source reader")?;
    let si = StandIn::start(&b.config, &opts.log_dir.join("encodingcom-standin")).await?;
    env.insert(s::ENCODINGCOM_ENDPOINT.to_string(), si.url.clone());
    env.insert(
        nommer_encodingcom::USERID_ENV.to_string(),
        crate::standin::USERID.to_string(),
    );
    env.insert(
        nommer_encodingcom::USERKEY_ENV.to_string(),
        crate::standin::USERKEY.to_string(),
    );
    Ok(Some(si))
}

/// How many batches of one queue are handled at once (Lambda runs up to a thousand).
const POLLERS_PER_QUEUE: usize = 3;

/// The functions in-process behind their event sources: ingest and dispatch on their
/// queues, notify on the table's stream and the deliverer on the webhooks queue, the API
/// (with the Encoding.com callback) on `listener`, and the Encoding.com poller when the
/// stand-in runs. Returns the tasks and what dispatch, the callback and the poller use.
async fn functions(
    b: &Base,
    source: &HashMap<String, String>,
    listener: tokio::net::TcpListener,
    poll: Option<Duration>,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Arc<nommer_core::flows::Backends>)> {
    let config = &b.config;
    let notifier = nommer_aws::notify::notifications(nommer_aws::notify::NotifySettings::from_source(source)?, config);
    let ingest = ingest::Ingest::new(IngestSettings::from_source(source)?, config);
    let dispatch = dispatch::Dispatch::new(DispatchSettings::from_source(source)?, config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let backends = Arc::new(dispatch.backends.clone());
    let api_state = Arc::new(
        api::ApiState::new(ApiSettings::from_source(source)?, dispatch.backends.clone(), config)
            .with_liveness(LivenessSettings::from_source(source)?),
    );
    let queue = SqsQueue::new(nommer_aws::sdk::sqs_client(config));
    // as Lambda does, several pollers per queue, each handing its batches to the function
    let on_queue = |url: &str, handler: SqsHandler| {
        (0..POLLERS_PER_QUEUE)
            .map(|_| {
                tokio::spawn(event_sources::poll_sqs(
                    queue.clone(),
                    url.to_string(),
                    arn_of(url),
                    emulator::REGION.to_string(),
                    10,
                    handler.clone(),
                ))
            })
            .collect::<Vec<JoinHandle<()>>>()
    };
    let ingest_handler: SqsHandler = Arc::new(move |event| {
        let ctx = ingest.clone();
        Box::pin(async move {
            let v = serde_json::to_value(event)?;
            let out = ingest::function_handler(&ctx, LambdaEvent::new(v, Default::default())).await?;
            Ok(serde_json::from_value(out)?)
        })
    });
    let dispatch_handler: SqsHandler = Arc::new(move |event| {
        let ctx = dispatch.clone();
        Box::pin(async move { dispatch::function_handler(&ctx, LambdaEvent::new(event, Default::default())).await })
    });
    let stream_ctx = notifier.clone();
    let stream_handler: stream::StreamHandler = Arc::new(move |event| {
        let ctx = stream_ctx.clone();
        Box::pin(async move { notify::stream_handler(&ctx, LambdaEvent::new(event, Default::default())).await })
    });
    let deliver_handler: SqsHandler = Arc::new(move |event| {
        let ctx = notifier.clone();
        Box::pin(async move { notify::deliver_handler(&ctx, LambdaEvent::new(event, Default::default())).await })
    });
    let mut tasks = vec![tokio::spawn(stream::poll_stream(
        config.clone(),
        b.names.table.clone(),
        emulator::REGION.to_string(),
        stream_handler,
    ))];
    tasks.extend(on_queue(&b.urls.ingest, ingest_handler));
    tasks.extend(on_queue(&b.urls.jobs, dispatch_handler));
    tasks.extend(on_queue(&b.urls.webhooks, deliver_handler));
    let router = api::router(api_state).merge(encodingcom::router(backends.clone()));
    if let Some(every) = poll {
        let b = backends.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = encodingcom::poll(&b).await {
                    tracing::warn!(error = %e, "Encoding.com poll failed");
                }
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        if let Err(e) = event_sources::serve_api(listener, router).await {
            tracing::error!(error = %e, "local API server stopped");
        }
    }));
    Ok((tasks, backends))
}

/// Fleet mode: the scaler on a short tick, and each instance it launches mirrored as a
/// worker process. Adds the scaler's settings to `env`; returns its two tasks.
async fn fleet(
    f: &FleetOptions,
    b: &Base,
    spawn: &SpawnInfo,
    env: &mut HashMap<String, String>,
    processes: &FleetProcesses,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let template = create_launch_template(&b.config, &b.names.stack).await?;
    for (k, v) in [
        (s::STACK, b.names.stack.clone()),
        (s::LAUNCH_TEMPLATE_ID, template),
        (s::MIN_INSTANCES, f.min_instances.to_string()),
        (s::MAX_INSTANCES, f.max_instances.to_string()),
        (s::WORKER_CAPACITY, f.capacity.to_string()),
        (s::IDLE_TIMEOUT_SECS, f.idle_timeout_secs.to_string()),
        (s::BOOT_GRACE_SECS, "60".to_string()),
        (s::HEARTBEAT_STALE_SECS, "20".to_string()),
        (s::SCALE_OUT_COOLDOWN_SECS, "4".to_string()),
        (s::SCALE_IN_COOLDOWN_SECS, "4".to_string()),
        (
            s::DEAD_LETTER_QUEUE_URLS,
            format!("{},{},{}", b.urls.jobs_dlq, b.urls.work_dlq, b.urls.chunks_dlq),
        ),
    ] {
        env.insert(k.to_string(), v);
    }
    let mut spawn_info = spawn.clone();
    spawn_info
        .worker_env
        .insert(s::WORKER_CAPACITY.to_string(), f.capacity.to_string());
    let ctx = scaler::Scaler::new(ScalerSettings::from_source(env)?, &b.config)
        .with_liveness(LivenessSettings::from_source(env)?);
    let tick = f.tick;
    let scaler_task = tokio::spawn(async move {
        loop {
            if let Err(e) = scaler::tick(&ctx).await {
                tracing::warn!(error = %e, "scaler tick failed");
            }
            tokio::time::sleep(tick).await;
        }
    });
    let follow = tokio::spawn(follow_instances(
        b.config.clone(),
        b.names.stack.clone(),
        spawn_info,
        processes.clone(),
    ));
    Ok(vec![scaler_task, follow])
}

impl LocalStack {
    pub async fn start(opts: StackOptions) -> anyhow::Result<LocalStack> {
        std::fs::create_dir_all(&opts.log_dir)?;
        let b = base(&opts).await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.api_port))
            .await
            .context("binding the API port")?;
        let api_url = format!("http://{}", listener.local_addr()?);
        let mut env = component_env(&opts, &b, &api_url);
        let standin = standin(&opts, &b, &mut env).await?;
        let poll = standin.as_ref().map(|_| opts.encodingcom_poll);
        let (mut tasks, backends) = functions(&b, &env, listener, poll).await?;
        let mut worker_env = opts.worker_env.clone();
        for (k, v) in b.limits.to_env() {
            worker_env.entry(k.to_string()).or_insert(v);
        }
        // the FFmpeg with libvmaf that scores quality (scripts/setup.sh installs one)
        if let Ok(f) = std::env::var(s::SCORE_FFMPEG) {
            worker_env.entry(s::SCORE_FFMPEG.to_string()).or_insert(f);
        }
        let spawn = SpawnInfo {
            env: env.clone(),
            endpoint: b.endpoint.clone(),
            log_dir: opts.log_dir.clone(),
            worker_env,
        };
        let processes: FleetProcesses = Default::default();
        match &opts.fleet {
            Some(f) => tasks.extend(fleet(f, &b, &spawn, &mut env, &processes).await?),
            // no scaler to run the stall sweep in its round
            None => tasks.push(crate::sweeps::stall(&b.config, &env)?),
        }
        let mut stack = LocalStack {
            names: b.names,
            urls: b.urls,
            endpoint: b.endpoint,
            emulator_endpoint: b.emulator_endpoint,
            faults: b.proxy,
            api_url,
            config: b.config,
            env,
            log_dir: opts.log_dir.clone(),
            tasks,
            workers: Vec::new(),
            spawn,
            fleet: processes,
            standin,
            backends,
            emulator: b.emulator,
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
        let w = spawn_worker_process(&self.spawn, &id)?;
        self.workers.push(w);
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
        sigterm(&w.child);
        Ok(tokio::time::timeout(Duration::from_secs(20), w.child.wait()).await??)
    }

    /// Stops everything: workers get SIGTERM and a few seconds to give their jobs back.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let fleet: Vec<WorkerProcess> = std::mem::take(&mut *self.fleet.lock().unwrap()).into_values().collect();
        self.workers.extend(fleet);
        for w in &self.workers {
            sigterm(&w.child);
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

    /// The emulator's process id, when this stack started the emulator.
    pub fn emulator_pid(&self) -> Option<u32> {
        self.emulator.as_ref().map(Emulator::pid)
    }

    /// The last lines of every worker's log (for a failing test's message).
    pub fn worker_logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let fleet = self.fleet.lock().unwrap();
        for w in self.workers.iter().chain(fleet.values()) {
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
