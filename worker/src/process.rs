//! Running FFmpeg and ffprobe: argv only (never a shell), in their own process group so a
//! timeout or shutdown kills every process they started, with stderr kept (bounded) for
//! the reason of a failure and `-progress` lines fed to a callback.

use nommer_core::ffmpeg::{ProgressParser, ProgressTick};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Keep this much of stderr (the end of it, where the reason is).
const STDERR_KEEP: usize = 64 * 1024;

#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program}: {source}; is FFmpeg installed (apt-get install ffmpeg)?")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} ran longer than {limit:?} and was killed")]
    TimedOut { program: String, limit: Duration },
    #[error("reading {program}'s output: {0}", program = "ffmpeg")]
    Io(#[from] std::io::Error),
}

/// Kills the child's whole process group when dropped (on timeout, error, or when the
/// job is abandoned at shutdown).
struct GroupGuard(Option<u32>);
impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: killpg only sends a signal; the group id is our child's pid.
            unsafe {
                libc::killpg(pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn spawn(program: &str, args: &[String]) -> Result<Child, RunError> {
    let mut cmd = Command::new(program);
    // SAFETY: prctl is async-signal-safe; it asks the kernel to kill FFmpeg if the
    // worker dies without cleaning up (SIGKILL, OOM), so no orphan keeps encoding.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.to_string(),
            source,
        })
}

/// Runs `program args`, feeding each `-progress` tick on stdout to `on_tick`, within
/// `limit`.
pub async fn run<F>(program: &str, args: &[String], limit: Duration, mut on_tick: F) -> Result<Finished, RunError>
where
    F: FnMut(ProgressTick),
{
    let mut child = spawn(program, args)?;
    let mut guard = GroupGuard(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEEP * 2 {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let work = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut parser = ProgressParser::default();
        let mut out = String::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(t) = parser.line(&line) {
                on_tick(t);
            }
            if out.len() < 4 * 1024 * 1024 {
                out.push_str(&line);
                out.push('\n');
            }
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    };
    let (status, stdout) = match tokio::time::timeout(limit, work).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(RunError::TimedOut {
                program: program.to_string(),
                limit,
            })
        }
    };
    guard.0 = None; // exited by itself
    let stderr = stderr_task.await.unwrap_or_default();
    Ok(Finished {
        success: status.success(),
        code: status.code(),
        stdout,
        stderr,
    })
}
