//! The local AWS emulator: moto's server mode from PyPI, installed into a project-local
//! venv on first use and started on a free loopback port.

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The emulator version the project is tested with.
pub const MOTO_VERSION: &str = "5.2.5";
pub const REGION: &str = "us-east-1";
/// moto's default account id; bucket names embed it like the template's do.
pub const ACCOUNT_ID: &str = "123456789012";

/// The variable that says where `.nommer/` lives.
pub const HOME_VAR: &str = "NOMMER_HOME";

/// The folder `.nommer/` lives in (the emulator's venv, the local stack's logs):
/// `NOMMER_HOME` (scripts/setup.sh sets it to the checkout); else the current directory,
/// or the nearest folder above it, that has a `.nommer/` or is a Nommer checkout; else,
/// as a last resort, the source tree this binary was built from, if it is still there.
pub fn project_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    find_home(std::env::var_os(HOME_VAR), cwd.as_deref(), built_from)
}

/// A folder that already holds `.nommer/`, or a Nommer checkout (the workspace's root).
fn is_home(dir: &Path) -> bool {
    dir.join(".nommer").is_dir()
        || (dir.join("Cargo.toml").is_file() && dir.join("devstack").join("Cargo.toml").is_file())
}

fn find_home(var: Option<OsString>, cwd: Option<&Path>, built_from: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(h) = var.filter(|h| !h.is_empty()) {
        let home = PathBuf::from(h);
        if !home.is_dir() {
            bail!(
                "{HOME_VAR}={} is not a directory; set {HOME_VAR} to the folder to keep .nommer/ in (the emulator's venv, logs)",
                home.display()
            );
        }
        return Ok(home);
    }
    if let Some(dir) = cwd.into_iter().flat_map(Path::ancestors).find(|d| is_home(d)) {
        return Ok(dir.to_path_buf());
    }
    match built_from.filter(|d| is_home(d)) {
        Some(src) => Ok(src.to_path_buf()),
        None => bail!(
            "no folder for .nommer/ (the emulator's venv, the local stack's logs): set {HOME_VAR} to one \
             (scripts/setup.sh sets it to the checkout), or run from a folder that has a .nommer/"
        ),
    }
}

pub const JSONSCHEMA_VERSION: &str = "4.26.0";

/// The project venv's Python (moto and jsonschema are installed in it).
pub fn venv_python() -> anyhow::Result<PathBuf> {
    Ok(venv_dir()?.join("bin").join("python"))
}

fn venv_dir() -> anyhow::Result<PathBuf> {
    Ok(project_root()?.join(".nommer").join("venv"))
}

/// The `moto_server` to run: `NOMMER_MOTO_SERVER`, else the project venv's, installing
/// it there first if needed (one process at a time, under a file lock).
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("NOMMER_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let venv = venv_dir()?;
    let bin = venv.join("bin").join("moto_server");
    let stamp = venv.join(format!(".moto-{MOTO_VERSION}-jsonschema-{JSONSCHEMA_VERSION}"));
    if bin.exists() && stamp.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(venv.parent().unwrap())?;
    let lock = std::fs::File::create(venv.parent().unwrap().join("venv.lock"))?;
    lock.lock().context("locking the emulator install")?;
    if bin.exists() && stamp.exists() {
        return Ok(bin);
    }
    eprintln!(
        "nommer: installing the local AWS emulator (moto[server]=={MOTO_VERSION}) into {} ...",
        venv.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let st = std::process::Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .with_context(|| {
            format!("running {python} -m venv; install Python 3 (apt-get install python3 python3-venv)")
        })?;
    if !st.success() {
        bail!("{python} -m venv failed; install the venv module (apt-get install python3-venv)");
    }
    let st = std::process::Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("moto[server]=={MOTO_VERSION}"),
            // validates the event schema in the tests
            &format!("jsonschema=={JSONSCHEMA_VERSION}"),
        ])
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip could not install moto[server]=={MOTO_VERSION}; check that PyPI is reachable");
    }
    std::fs::write(&stamp, MOTO_VERSION)?;
    Ok(bin)
}

/// A running emulator; stopped when dropped, and also when the thread that started it
/// ends (so a test binary never leaves one behind).
pub struct Emulator {
    pub endpoint: String,
    child: Child,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Emulator {
    /// Installs (if needed) and starts the emulator, and waits until it answers.
    pub async fn start(log: Option<&Path>) -> anyhow::Result<Emulator> {
        let bin = tokio::task::spawn_blocking(ensure_installed).await??;
        let port = free_port()?;
        let (out, err) = match log {
            Some(p) => {
                let f = std::fs::File::create(p)?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal the child
        // when the thread that started it ends.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut emu = Emulator { endpoint, child };
        emu.wait_ready(Duration::from_secs(30)).await?;
        Ok(emu)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        let url = format!("{}/moto-api/", self.endpoint);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the emulator exited at start ({status}); is port in use or the venv broken? remove .nommer/venv to reinstall");
            }
            if let Ok(r) = client.get(&url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > limit {
                bail!("the emulator did not answer at {} within {limit:?}", self.endpoint);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the emulator process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(dir: &Path) {
        std::fs::create_dir_all(dir.join("devstack")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(dir.join("devstack/Cargo.toml"), "[package]\n").unwrap();
    }

    #[test]
    fn the_variable_comes_first_and_must_name_a_folder() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        checkout(b.path());
        let home = find_home(Some(a.path().into()), Some(b.path()), Some(b.path())).unwrap();
        assert_eq!(home, a.path());
        let missing = a.path().join("nowhere");
        let e = find_home(Some(missing.clone().into()), Some(b.path()), None).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("NOMMER_HOME") && msg.contains(&missing.display().to_string()),
            "{msg}"
        );
        // set but empty counts as unset
        assert_eq!(find_home(Some("".into()), Some(b.path()), None).unwrap(), b.path());
    }

    #[test]
    fn then_the_current_folder_or_one_above_it_then_the_source_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(".nommer")).unwrap();
        let deep = root.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let src = tempfile::tempdir().unwrap();
        checkout(src.path());
        assert_eq!(find_home(None, Some(&deep), Some(src.path())).unwrap(), root.path());
        // nothing around the current folder: the source tree, if it is still a checkout
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(
            find_home(None, Some(elsewhere.path()), Some(src.path())).unwrap(),
            src.path()
        );
        let gone = src.path().join("removed");
        let e = find_home(None, Some(elsewhere.path()), Some(&gone)).unwrap_err();
        assert!(format!("{e}").contains("set NOMMER_HOME"), "{e}");
    }
}
