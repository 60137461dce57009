//! One FFmpeg encode pass, within the encode time limit, its `-progress` fed to a
//! callback, and its failure sorted by cause so the caller can tell the media's fault
//! from the machine's.

use crate::runner::{self, RunError};
use nommer_core::ffmpeg::{self, ProgressTick};
use std::time::Duration;

/// Runs FFmpeg encode passes.
#[derive(Debug, Clone)]
pub struct FfmpegEncoder {
    /// The FFmpeg binary.
    pub ffmpeg: String,
    /// How long one pass may run before its process group is killed.
    pub timeout: Duration,
}

/// Why an encode pass did not make its output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeFailure {
    /// The disk filled up ("No space left on device"), even when FFmpeg exited 0 (5.1
    /// can, at the trailer, leaving a file without its index).
    #[error("no space left on device")]
    DiskFull,
    /// A signal ended FFmpeg (the OOM killer): the machine's fault, not the media's.
    #[error("{0}")]
    Killed(String),
    /// FFmpeg failed on the media (its exit code and reason).
    #[error("{0}")]
    Failed(String),
    /// It ran past the time limit and was killed.
    #[error("{0}")]
    TimedOut(String),
    /// FFmpeg could not be started or read.
    #[error("{0}")]
    NotRun(String),
}

impl FfmpegEncoder {
    pub fn new(ffmpeg: impl Into<String>, timeout: Duration) -> Self {
        FfmpegEncoder {
            ffmpeg: ffmpeg.into(),
            timeout,
        }
    }

    /// Runs one pass (`args` should ask for `-progress pipe:1`), feeding each tick to
    /// `on_tick`. Dropping the future kills FFmpeg's process group.
    pub async fn encode(&self, args: &[String], on_tick: impl FnMut(ProgressTick)) -> Result<(), EncodeFailure> {
        let f = match runner::run(&self.ffmpeg, args, self.timeout, on_tick).await {
            Ok(f) => f,
            Err(e @ RunError::TimedOut { .. }) => return Err(EncodeFailure::TimedOut(e.to_string())),
            Err(e) => return Err(EncodeFailure::NotRun(e.to_string())),
        };
        // out of disk: whatever FFmpeg's exit, the output cannot be trusted
        if f.stderr.contains("No space left on device") {
            return Err(EncodeFailure::DiskFull);
        }
        if f.success {
            return Ok(());
        }
        let reason = format!(
            "ffmpeg exited with {:?}: {}",
            f.code,
            ffmpeg::reason_from_stderr(&f.stderr)
        );
        Err(match f.code {
            None => EncodeFailure::Killed(reason),
            Some(_) => EncodeFailure::Failed(reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::tests::{args, lavfi_argv};

    #[tokio::test]
    async fn an_encode_reports_progress_and_makes_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.mp4");
        let a = lavfi_argv("sine=frequency=440:duration=3", &["-c:a", "aac"], &out, true);
        let mut percents = Vec::new();
        FfmpegEncoder::new("ffmpeg", Duration::from_secs(60))
            .encode(&a, |t| percents.push(ffmpeg::percent(t.out_time_seconds, Some(3.0))))
            .await
            .unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
        assert_eq!(
            percents.last(),
            Some(&99),
            "the end of the source is 99 %: {percents:?}"
        );
    }

    #[tokio::test]
    async fn a_bad_option_is_the_media_s_failure_with_ffmpeg_s_reason() {
        let a = args(&["-hide_banner", "-f", "lavfi", "-i", "nosuchsource", "-f", "null", "-"]);
        let e = FfmpegEncoder::new("ffmpeg", Duration::from_secs(30))
            .encode(&a, |_| {})
            .await
            .unwrap_err();
        let EncodeFailure::Failed(reason) = &e else {
            panic!("expected Failed: {e:?}");
        };
        assert!(reason.starts_with("ffmpeg exited with Some("), "{reason}");
        assert!(reason.contains("nosuchsource"), "{reason}");
    }

    #[tokio::test]
    async fn a_pass_past_the_limit_times_out() {
        let a = args(&[
            "-hide_banner",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=60",
            "-f",
            "null",
            "-",
        ]);
        let e = FfmpegEncoder::new("ffmpeg", Duration::from_millis(500))
            .encode(&a, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&e, EncodeFailure::TimedOut(m) if m.contains("ran longer than")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_ffmpeg_is_not_run() {
        let e = FfmpegEncoder::new("/nonexistent/ffmpeg", Duration::from_secs(5))
            .encode(&args(&["-version"]), |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&e, EncodeFailure::NotRun(m) if m.contains("could not start")),
            "{e:?}"
        );
    }
}
