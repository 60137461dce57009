//! Holding a worker's FFmpeg still, so a test can act "in the middle of an encode"
//! without racing the encode: the FFmpeg processes a worker runs are stopped with
//! SIGSTOP (the worker itself keeps running: heartbeats, shutdown, cancel) and let go
//! again with SIGCONT. A stopped process still dies of SIGKILL, which is how the worker
//! ends its FFmpeg, so interrupting a frozen encode is the real path.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The FFmpeg encodes running under a worker: its FFmpeg children that report
/// `-progress` (which the worker asks of every encode, and of nothing else: not of
/// `ffmpeg -version` at start, nor of an analysis pass).
pub fn encodes_under(pid: u32) -> Vec<u32> {
    ffmpeg_children(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == b"-progress")
        })
        .collect()
}

/// The FFmpeg processes running under a process (its children, by /proc).
pub fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            // `ffmpeg`, or a static build's longer name (comm keeps 15 characters)
            if comm.trim().starts_with("ffmpeg") {
                out.push(c);
            }
        }
    }
    out
}

/// True while `pid` runs (or is stopped): not gone, not a zombie waiting to be reaped.
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) S ...": the state follows the last ')'
    match stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) {
        Some(state) => state != "Z" && state != "X",
        None => false,
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal to a process of ours.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// FFmpeg processes held stopped; every one is let go when this is dropped.
#[derive(Default)]
pub struct Frozen {
    pids: BTreeSet<u32>,
}

impl Frozen {
    /// Stops every FFmpeg encode now running under any of `workers` that is not held
    /// yet, and returns how many are held in all.
    pub fn catch(&mut self, workers: &[u32]) -> usize {
        for w in workers {
            for c in encodes_under(*w) {
                if self.pids.insert(c) {
                    signal(c, libc::SIGSTOP);
                }
            }
        }
        self.pids.retain(|p| alive(*p));
        self.pids.len()
    }

    /// Waits (polling /proc every few milliseconds: an encode of a clip of several
    /// seconds cannot end in between) until `n` FFmpeg processes under `workers` are
    /// held.
    pub async fn until(&mut self, workers: &[u32], n: usize, limit: Duration) {
        let started = Instant::now();
        while self.catch(workers) < n {
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {n} FFmpeg processes to hold (held {})",
                self.pids.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets the held processes run for `quantum`, then holds them again: the encode
    /// advances by at most that much work, so it cannot finish between two looks.
    pub async fn step(&self, quantum: Duration) {
        self.thaw();
        tokio::time::sleep(quantum).await;
        for p in &self.pids {
            signal(*p, libc::SIGSTOP);
        }
    }

    /// True when every process held has ended (killed while stopped, say).
    pub fn all_gone(&self) -> bool {
        !self.pids.iter().any(|p| alive(*p))
    }

    pub fn thaw(&self) {
        for p in &self.pids {
            signal(*p, libc::SIGCONT);
        }
    }

    /// Lets every held process go for good.
    pub fn release(mut self) {
        self.thaw();
        self.pids.clear();
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// Waits until one of the worker processes `workers` runs the encode of job `id` and holds it
/// stopped: an FFmpeg under the worker while the job is `encoding` (the worker records
/// `encoding` before it starts the encoder). An FFmpeg seen while the job is in another
/// state (a probe or an analysis pass) is let go, and the wait goes on.
pub async fn freeze_encode(api: &nommer::client::ApiClient, id: &str, workers: &[u32], limit: Duration) -> Frozen {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting to hold the encode of {id}"
        );
        let mut f = Frozen::default();
        if f.catch(workers) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let job = api.get_job(id).await.unwrap();
        if job.as_ref().map(|j| j.state) == Some(nommer_core::JobState::Encoding) {
            return f;
        }
        let held: Vec<u32> = f.pids.iter().copied().collect();
        f.release();
        // wait for those to end before looking again
        while held.iter().any(|p| alive(*p)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
