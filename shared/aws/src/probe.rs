//! ffprobe as a process, on a URL, with the input guard: the dispatcher's [`Prober`].

use async_trait::async_trait;
use nommer_core::ffmpeg::Limits;
use nommer_core::job::Probe;
use nommer_core::ports::{ProbeFailure, Prober};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FfprobeProber {
    pub ffprobe: String,
    pub limits: Limits,
}

#[async_trait]
impl Prober for FfprobeProber {
    async fn probe_url(&self, url: &str, size: u64) -> Result<Probe, ProbeFailure> {
        let args = nommer_core::ffmpeg::url_probe_args(url, &self.limits);
        let run = tokio::process::Command::new(&self.ffprobe)
            .args(&args)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(60), run).await {
            Ok(Ok(out)) if out.status.success() => {
                nommer_core::ffmpeg::parse_probe(&String::from_utf8_lossy(&out.stdout), size)
                    .map_err(ProbeFailure::Unreadable)
            }
            Ok(Ok(out)) => Err(ProbeFailure::Unreadable(nommer_core::ffmpeg::reason_from_stderr(
                &String::from_utf8_lossy(&out.stderr),
            ))),
            Ok(Err(e)) => Err(ProbeFailure::Unavailable(format!("cannot run {}: {e}", self.ffprobe))),
            Err(_) => Err(ProbeFailure::Unavailable("ffprobe timed out".into())),
        }
    }
}

impl FfprobeProber {
    /// The prober the backend settings ask for (`NOMMER_FFPROBE`, the input limits).
    pub fn for_backends(settings: &nommer_core::settings::BackendSettings) -> std::sync::Arc<FfprobeProber> {
        std::sync::Arc::new(FfprobeProber {
            ffprobe: settings.ffprobe.clone(),
            limits: settings.limits.clone(),
        })
    }
}
