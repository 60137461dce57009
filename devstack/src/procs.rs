//! What a process holds, read from Linux's /proc: resident memory, open file
//! descriptors and threads; and the trend of a series of such samples, as the soak
//! benchmark judges it (flat, or growing).

use std::path::Path;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// Samples a process; `None` when it is gone (or /proc is not there).
pub fn sample(pid: u32) -> Option<Sample> {
    let proc = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(proc.join("status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let fds = std::fs::read_dir(proc.join("fd")).ok()?.count() as u64;
    Some(Sample {
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// The process's children (their pids): each thread keeps its own list, so all of them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The name a process runs under (`comm`), e.g. `ffmpeg`.
pub fn name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// How a series moved once warmed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    /// The least-squares slope over the judged window, per minute.
    pub per_minute: f64,
    /// The slope times the judged window's length.
    pub growth: f64,
    /// Minutes judged (after the warm-up).
    pub minutes: f64,
    pub growing: bool,
}

/// How much growth a series may show and still be flat: `absolute` plus `share` of its
/// mean over the judged window.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub absolute: f64,
    pub share: f64,
}

/// The trend of `(minute, value)` points. The first third of the run (at least its first
/// point) is warm-up: caches and pools filling, not leaking. The rest is judged by its
/// least-squares slope; it is growing when the slope over that window exceeds the
/// tolerance. `None` with fewer than three points to judge.
pub fn trend(points: &[(f64, f64)], tolerance: Tolerance) -> Option<Trend> {
    let (start, end) = (points.first()?.0, points.last()?.0);
    let warm = start + (end - start) / 3.0;
    let judged: Vec<(f64, f64)> = points.iter().skip(1).copied().filter(|(t, _)| *t >= warm).collect();
    if judged.len() < 3 {
        return None;
    }
    let n = judged.len() as f64;
    let (mt, mv) = (
        judged.iter().map(|p| p.0).sum::<f64>() / n,
        judged.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = judged.iter().map(|(t, v)| (t - mt) * (v - mv)).sum();
    let var: f64 = judged.iter().map(|(t, _)| (t - mt).powi(2)).sum();
    let per_minute = if var > 0.0 { cov / var } else { 0.0 };
    let minutes = judged.last().unwrap().0 - judged[0].0;
    let growth = per_minute * minutes;
    let values = points.iter().map(|p| p.1);
    Some(Trend {
        first: points[0].1,
        last: points.last().unwrap().1,
        min: values.clone().fold(f64::INFINITY, f64::min),
        max: values.fold(f64::NEG_INFINITY, f64::max),
        per_minute,
        growth,
        minutes,
        growing: growth > tolerance.absolute + tolerance.share * mv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: Tolerance = Tolerance {
        absolute: 2.0,
        share: 0.05,
    };

    #[test]
    fn a_file_this_process_opens_is_one_more_descriptor() {
        let me = std::process::id();
        let before = sample(me).expect("this process is sampled");
        assert!(before.rss_kib > 0 && before.threads >= 1);
        let held: Vec<std::fs::File> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let after = sample(me).unwrap();
        // other test threads open and close files meanwhile: most of the five held show
        assert!(after.fds >= before.fds + 3, "{before:?} then {after:?}");
        drop(held);
        assert_eq!(sample(u32::MAX), None, "no such process");
    }

    #[test]
    fn a_child_is_listed_with_its_name() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(children(std::process::id()).contains(&pid));
        // spawn can return before the child's exec: until then it carries the name of
        // the thread that forked it, so wait for the exec (bounded), then check
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while name(pid).as_deref() != Some("sleep") && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(name(pid).as_deref(), Some("sleep"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_warm_up_then_a_plateau_is_flat() {
        // filling for five minutes, then a sawtooth around 100 for twenty-five
        let points: Vec<(f64, f64)> = (0..=30)
            .map(|m| (m as f64, if m < 5 { 20.0 * m as f64 } else { 100.0 + (m % 3) as f64 }))
            .collect();
        let t = trend(&points, MIB).unwrap();
        assert!(!t.growing, "{t:?}");
        assert_eq!((t.first, t.max), (0.0, 102.0));
    }

    #[test]
    fn a_slow_steady_climb_is_growing() {
        // half a MiB a minute on 100 MiB: 10 MiB over the judged twenty minutes
        let points: Vec<(f64, f64)> = (0..=30).map(|m| (m as f64, 100.0 + 0.5 * m as f64)).collect();
        let t = trend(&points, MIB).unwrap();
        assert!(t.growing, "{t:?}");
        assert!(
            (t.per_minute - 0.5).abs() < 1e-9 && (t.minutes - 20.0).abs() < 1e-9,
            "{t:?}"
        );
    }

    #[test]
    fn too_few_points_are_not_judged() {
        assert_eq!(trend(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)], MIB), None);
        assert_eq!(trend(&[], MIB), None);
    }
}
