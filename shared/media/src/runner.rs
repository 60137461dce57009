//! Running FFmpeg and ffprobe: argv only (never a shell), in their own process group so a
//! timeout, a cancel or a shutdown kills every process they started, with stderr kept
//! (bounded) for the reason of a failure and `-progress` lines fed to a callback.

use nommer_core::ffmpeg::{ProgressParser, ProgressTick};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Keep this much of stderr (the end of it, where the reason is).
const STDERR_KEEP: usize = 64 * 1024;
/// Keep at most this much of stdout (ffprobe's JSON; FFmpeg's `-progress` lines).
const STDOUT_KEEP: usize = 4 * 1024 * 1024;

/// A program that ran to its end, whatever its exit.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    /// `None` when a signal ended it (the OOM killer).
    pub code: Option<i32>,
    pub stdout: String,
    /// The last 64 KiB or more of it.
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program}: {source}; is FFmpeg installed (apt-get install ffmpeg)?")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} ran longer than {limit:?} and was killed")]
    TimedOut { program: String, limit: Duration },
    #[error("reading {program}'s output: {source}")]
    Io { program: String, source: std::io::Error },
}

/// Kills the child's whole process group when dropped (on timeout, error, or when the
/// future running it is dropped: a cancel, a shutdown).
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

/// Reads a pipe to its end, keeping the last [`STDERR_KEEP`] bytes or so.
async fn tail_of(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
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
}

/// Runs `program args`, feeding each `-progress` tick on stdout to `on_tick`, within
/// `limit`. Past the limit, or when the returned future is dropped, the program's whole
/// process group is killed.
pub async fn run<F>(program: &str, args: &[String], limit: Duration, mut on_tick: F) -> Result<Finished, RunError>
where
    F: FnMut(ProgressTick),
{
    let mut child = spawn(program, args)?;
    let mut guard = GroupGuard(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr_task = tokio::spawn(tail_of(child.stderr.take().expect("piped stderr")));
    let work = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut parser = ProgressParser::default();
        let mut out = String::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(t) = parser.line(&line) {
                on_tick(t);
            }
            if out.len() < STDOUT_KEEP {
                out.push_str(&line);
                out.push('\n');
            }
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    };
    let (status, stdout) = match tokio::time::timeout(limit, work).await {
        Ok(r) => r.map_err(|source| RunError::Io {
            program: program.to_string(),
            source,
        })?,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// H.264 that every player reads, made fast.
    pub(crate) const H264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

    /// FFmpeg argv that encodes lavfi's `source` with `options` into `out`, with
    /// `-progress` on stdout when asked.
    pub(crate) fn lavfi_argv(source: &str, options: &[&str], out: &Path, progress: bool) -> Vec<String> {
        let mut a = args(&["-hide_banner", "-nostdin", "-y"]);
        if progress {
            a.extend(args(&["-progress", "pipe:1", "-nostats"]));
        }
        a.extend(args(&["-f", "lavfi", "-i", source]));
        a.extend(args(options));
        a.push(out.display().to_string());
        a
    }

    /// Makes a clip from lavfi's `source`, through the runner.
    pub(crate) async fn lavfi_clip(path: &Path, source: &str, options: &[&str]) {
        let a = lavfi_argv(source, options, path, false);
        let f = run("ffmpeg", &a, Duration::from_secs(60), |_| {}).await.unwrap();
        assert!(f.success, "ffmpeg made no clip: {}", f.stderr);
    }

    /// Whether a process is gone (or a zombie nobody has reaped yet).
    fn dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
        }
    }

    async fn eventually_dead(pid: u32) -> bool {
        for _ in 0..50 {
            if dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A shell that leaves a grandchild sleeping in its group and writes its pid.
    fn sleeper(pid_file: &Path) -> Vec<String> {
        args(&["-c", &format!("sleep 300 & echo $! > {}; wait", pid_file.display())])
    }

    async fn read_pid(pid_file: &Path) -> u32 {
        for _ in 0..100 {
            if let Ok(t) = std::fs::read_to_string(pid_file) {
                if let Ok(pid) = t.trim().parse() {
                    return pid;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the shell wrote no pid to {}", pid_file.display());
    }

    #[tokio::test]
    async fn a_lavfi_encode_reports_progress_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.mp4");
        let a = lavfi_argv("testsrc2=size=160x120:rate=25:duration=2", H264, &out, true);
        let mut ticks = Vec::new();
        let f = run("ffmpeg", &a, Duration::from_secs(60), |t| ticks.push(t))
            .await
            .unwrap();
        assert!(f.success, "{}", f.stderr);
        assert_eq!(f.code, Some(0));
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
        let last = ticks.last().expect("at least one progress tick");
        assert!(last.done, "the last tick is progress=end: {ticks:?}");
        assert!(
            (last.out_time_seconds - 2.0).abs() < 0.2,
            "the encode ends at 2 s: {ticks:?}"
        );
        assert!(ticks[..ticks.len() - 1].iter().all(|t| !t.done), "{ticks:?}");
        assert!(
            ticks.windows(2).all(|w| w[0].out_time_seconds <= w[1].out_time_seconds),
            "{ticks:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_program_gives_its_exit_code_and_stderr() {
        let a = args(&["-hide_banner", "-i", "/nonexistent/nothing.mp4"]);
        let f = run("ffmpeg", &a, Duration::from_secs(30), |_| {}).await.unwrap();
        assert!(!f.success);
        assert!(matches!(f.code, Some(c) if c != 0), "{f:?}");
        assert!(f.stderr.contains("No such file or directory"), "{}", f.stderr);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = std::time::Instant::now();
        let limit = Duration::from_millis(1500);
        let sh = sleeper(&pid_file);
        let (r, pid) = tokio::join!(run("sh", &sh, limit, |_| {}), read_pid(&pid_file));
        match r {
            Err(e @ RunError::TimedOut { .. }) => {
                assert_eq!(e.to_string(), "sh ran longer than 1.5s and was killed")
            }
            other => panic!("expected a timeout: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            eventually_dead(pid).await,
            "the shell's background child {pid} was killed too"
        );
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let sh = sleeper(&pid_file);
        let running = run("sh", &sh, Duration::from_secs(300), |_| {});
        let pid = tokio::select! {
            _ = running => panic!("the shell should still be sleeping"),
            pid = read_pid(&pid_file) => pid,
        };
        assert!(eventually_dead(pid).await, "the abandoned run's child {pid} was killed");
    }

    #[tokio::test]
    async fn a_missing_program_says_it_could_not_start_and_what_to_install() {
        let r = run(
            "/nonexistent/ffmpeg",
            &args(&["-version"]),
            Duration::from_secs(5),
            |_| {},
        )
        .await;
        let e = r.unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.starts_with("could not start /nonexistent/ffmpeg: "), "{m}");
        assert!(m.contains("No such file or directory"), "{m}");
        assert!(m.contains("apt-get install ffmpeg"), "{m}");
    }
}
