//! Worker processes: the real `nommer-worker` binary, started as an EC2 instance would
//! run it, with the stack's environment.

use crate::emulator;
use anyhow::Context;
use nommer_core::settings as s;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

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

/// What starting a worker process needs.
#[derive(Clone)]
pub(crate) struct SpawnInfo {
    pub(crate) env: HashMap<String, String>,
    pub(crate) endpoint: String,
    pub(crate) log_dir: PathBuf,
    pub(crate) worker_env: HashMap<String, String>,
}

/// Starts a worker process with this id (an EC2 instance id in fleet mode).
pub(crate) fn spawn_worker_process(info: &SpawnInfo, id: &str) -> anyhow::Result<WorkerProcess> {
    let bin = locate_binary("nommer-worker")?;
    let log = info.log_dir.join(format!("{id}.log"));
    let f = std::fs::File::create(&log)?;
    let work_dir = info.log_dir.join(format!("{id}-work"));
    std::fs::create_dir_all(&work_dir)?;
    let mut cmd = Command::new(bin);
    cmd.envs(&info.env)
        .env("AWS_ENDPOINT_URL", &info.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", emulator::REGION)
        .env_remove("AWS_PROFILE")
        .env(s::WORKER_ID, id)
        .env(s::WORK_DIR, &work_dir)
        .env(s::POLL_WAIT_SECS, "2")
        .env(s::HEARTBEAT_SECS, "2")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .envs(&info.worker_env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .kill_on_drop(true);
    let child = cmd.spawn().context("starting nommer-worker")?;
    Ok(WorkerProcess {
        id: id.to_string(),
        child,
        log,
    })
}

pub(crate) fn sigterm(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: sends a signal to our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
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
