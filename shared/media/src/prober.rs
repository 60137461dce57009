//! ffprobe as a prober: on a source the worker downloaded, on a file Nommer made, on an
//! object behind a URL (the dispatcher routes on it), and FFmpeg's `idet` when a video
//! stream does not say whether it is interlaced. Every read of a source carries the
//! input guard (`nommer_core::ffmpeg::input_guard`). One shape for every failure:
//! the media's fault ([`ProbeFailure::Unreadable`]) or nobody's knowledge
//! ([`ProbeFailure::Unavailable`]).

use crate::runner::{self, RunError};
use nommer_core::ffmpeg::{self, Limits};
use nommer_core::job::{Interlacing, Probe};
use std::path::Path;
use std::time::Duration;

/// How long ffprobe may take on one input.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `idet` may take on the first frames of a source.
pub const IDET_TIMEOUT: Duration = Duration::from_secs(120);

pub use nommer_core::ports::ProbeFailure;

/// Probes with ffprobe (and FFmpeg's `idet`), within `limits`.
#[derive(Debug, Clone)]
pub struct FfprobeProber {
    pub ffprobe: String,
    /// For `idet` only.
    pub ffmpeg: String,
    pub limits: Limits,
}

/// What a run that exited non-zero, or ran out of time, means.
struct Reading<'a> {
    /// The reason for a non-zero exit, from FFmpeg's own.
    failed: &'a (dyn Fn(&str) -> String + Sync),
    /// A timeout: the media's fault (a local file that takes this long is pathological)
    /// or unknown (a URL over a slow network).
    timed_out: fn(String) -> ProbeFailure,
}

impl FfprobeProber {
    pub fn new(ffprobe: impl Into<String>, ffmpeg: impl Into<String>, limits: Limits) -> Self {
        FfprobeProber {
            ffprobe: ffprobe.into(),
            ffmpeg: ffmpeg.into(),
            limits,
        }
    }

    /// A source on local disk, read with the input guard; `size` is its size in bytes.
    pub async fn probe_file(&self, path: &Path, size: u64) -> Result<Probe, ProbeFailure> {
        let reading = Reading {
            failed: &|r| format!("ffprobe could not read the source: {r}"),
            timed_out: ProbeFailure::Unreadable,
        };
        self.ffprobe(&ffmpeg::probe_args(path, &self.limits), size, reading)
            .await
    }

    /// A file Nommer made (an output, its playlist of local segments): local files only,
    /// no demuxer list. Failures name the file.
    pub async fn probe_own_output(&self, path: &Path, size: u64) -> Result<Probe, ProbeFailure> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reading = Reading {
            failed: &|r| format!("ffprobe could not read {name}: {r}"),
            timed_out: ProbeFailure::Unreadable,
        };
        self.ffprobe(&ffmpeg::own_output_probe_args(path), size, reading).await
    }

    /// An object behind `url` (a presigned GET), read with the input guard over
    /// HTTP(S) for that URL alone. The URL (it carries a signature) is cut out of
    /// FFmpeg's reason. A timeout is `Unavailable`: the network may be what is slow.
    pub async fn probe_url(&self, url: &str, size: u64) -> Result<Probe, ProbeFailure> {
        let reading = Reading {
            failed: &|r| r.replace(url, "the object"),
            timed_out: ProbeFailure::Unavailable,
        };
        self.ffprobe(&ffmpeg::url_probe_args(url, &self.limits), size, reading)
            .await
    }

    /// Whether the probed source's video is interlaced: its `field_order` when it says,
    /// else FFmpeg's `idet` on its first frames. `None` without video.
    pub async fn interlacing(&self, input: &Path, probe: &Probe) -> Result<Option<Interlacing>, ProbeFailure> {
        let Some(video) = probe.video() else {
            return Ok(None);
        };
        if let Some(i) = ffmpeg::interlacing_from_field_order(video.field_order.as_deref()) {
            return Ok(Some(i));
        }
        let args = ffmpeg::idet_args(input, video.index, &self.limits);
        tracing::info!(argv = %args.join(" "), "ffmpeg idet");
        let reading = Reading {
            failed: &|r| format!("FFmpeg could not decode the start of the source: {r}"),
            timed_out: ProbeFailure::Unreadable,
        };
        let f = self.run(&self.ffmpeg, &args, IDET_TIMEOUT, reading).await?;
        match ffmpeg::parse_idet(&f.stderr) {
            Some(c) => Ok(Some(ffmpeg::interlacing_from_idet(c))),
            None => Err(ProbeFailure::Unreadable(format!(
                "FFmpeg's interlace detector gave no verdict on the source: {}",
                ffmpeg::reason_from_stderr(&f.stderr)
            ))),
        }
    }

    async fn ffprobe(&self, args: &[String], size: u64, reading: Reading<'_>) -> Result<Probe, ProbeFailure> {
        let f = self.run(&self.ffprobe, args, PROBE_TIMEOUT, reading).await?;
        ffmpeg::parse_probe(&f.stdout, size).map_err(ProbeFailure::Unreadable)
    }

    /// Runs one analysis; `Ok` when it exited 0. A program that cannot be started or
    /// read is `Unavailable`.
    async fn run(
        &self,
        program: &str,
        args: &[String],
        limit: Duration,
        reading: Reading<'_>,
    ) -> Result<runner::Finished, ProbeFailure> {
        match runner::run(program, args, limit, |_| {}).await {
            Ok(f) if f.success => Ok(f),
            Ok(f) => Err(ProbeFailure::Unreadable((reading.failed)(&ffmpeg::reason_from_stderr(
                &f.stderr,
            )))),
            Err(e @ RunError::TimedOut { .. }) => Err((reading.timed_out)(e.to_string())),
            Err(e) => Err(ProbeFailure::Unavailable(e.to_string())),
        }
    }
}

impl FfprobeProber {
    /// The dispatcher's prober: `NOMMER_FFPROBE` and the input limits of the backend
    /// settings (dispatch never runs `idet`).
    pub fn for_backends(settings: &nommer_core::settings::BackendSettings) -> std::sync::Arc<FfprobeProber> {
        std::sync::Arc::new(FfprobeProber::new(&settings.ffprobe, "ffmpeg", settings.limits.clone()))
    }
}

#[async_trait::async_trait]
impl nommer_core::ports::Prober for FfprobeProber {
    async fn probe_url(&self, url: &str, size: u64) -> Result<Probe, ProbeFailure> {
        FfprobeProber::probe_url(self, url, size).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::tests::{lavfi_clip, H264};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn prober() -> FfprobeProber {
        FfprobeProber::new("ffprobe", "ffmpeg", Limits::default())
    }

    async fn clip(dir: &Path, name: &str) -> (std::path::PathBuf, u64) {
        let path = dir.join(name);
        lavfi_clip(&path, "testsrc2=size=160x120:rate=25:duration=1", H264).await;
        let size = std::fs::metadata(&path).unwrap().len();
        (path, size)
    }

    fn unreadable(r: Result<impl std::fmt::Debug, ProbeFailure>) -> String {
        match r {
            Err(ProbeFailure::Unreadable(reason)) => reason,
            other => panic!("expected Unreadable: {other:?}"),
        }
    }

    fn unavailable(r: Result<impl std::fmt::Debug, ProbeFailure>) -> String {
        match r {
            Err(ProbeFailure::Unavailable(reason)) => reason,
            other => panic!("expected Unavailable: {other:?}"),
        }
    }

    /// Serves `body` over HTTP/1.1 on localhost (no ranges) until dropped; the URL.
    async fn serve(body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = std::sync::Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (
            format!("http://127.0.0.1:{port}/bucket/clip.mkv?X-Amz-Signature=secret"),
            task,
        )
    }

    #[tokio::test]
    async fn a_lavfi_clip_probes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = clip(dir.path(), "clip.mp4").await;
        let p = prober().probe_file(&path, size).await.unwrap();
        assert_eq!(p.size, size);
        let d = p.duration_seconds.unwrap();
        assert!((d - 1.0).abs() < 0.1, "{d}");
        let v = p.video().expect("a video stream");
        assert_eq!((v.width, v.height), (Some(160), Some(120)));
        assert!(!p.has(nommer_core::job::StreamKind::Audio));
    }

    #[tokio::test]
    async fn a_file_that_is_not_media_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.mp4");
        std::fs::write(&path, "these are notes, not a video\n").unwrap();
        let reason = unreadable(prober().probe_file(&path, 29).await);
        assert!(reason.starts_with("ffprobe could not read the source: "), "{reason}");
        assert!(reason.contains("Invalid data found"), "{reason}");
        let reason = unreadable(prober().probe_own_output(&path, 29).await);
        assert!(reason.starts_with("ffprobe could not read notes.mp4: "), "{reason}");
    }

    #[tokio::test]
    async fn a_playlist_is_not_read_through_the_input_guard() {
        let dir = tempfile::tempdir().unwrap();
        let (clip, _) = clip(dir.path(), "clip.mp4").await;
        let playlist = dir.path().join("source.m3u8");
        let text = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n",
            clip.display()
        );
        std::fs::write(&playlist, text).unwrap();
        unreadable(prober().probe_file(&playlist, 100).await);
    }

    #[tokio::test]
    async fn a_missing_ffprobe_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = clip(dir.path(), "clip.mp4").await;
        let p = FfprobeProber::new("/nonexistent/ffprobe", "ffmpeg", Limits::default());
        let reason = unavailable(p.probe_file(&path, size).await);
        assert!(reason.contains("could not start /nonexistent/ffprobe"), "{reason}");
        unavailable(p.probe_url("http://127.0.0.1:1/x", 1).await);
    }

    #[tokio::test]
    async fn an_object_behind_a_url_probes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = clip(dir.path(), "clip.mkv").await;
        let (url, server) = serve(std::fs::read(&path).unwrap()).await;
        let p = prober().probe_url(&url, size).await.unwrap();
        server.abort();
        assert_eq!(p.size, size);
        assert_eq!(p.video().and_then(|v| v.width), Some(160));
    }

    #[tokio::test]
    async fn a_url_that_does_not_answer_is_unreadable_without_its_signature() {
        let url = "http://127.0.0.1:1/bucket/key.mp4?X-Amz-Signature=secret";
        let reason = unreadable(prober().probe_url(url, 1).await);
        assert!(reason.contains("Connection refused"), "{reason}");
        assert!(!reason.contains("secret"), "{reason}");
    }

    #[tokio::test]
    async fn a_stream_without_a_field_order_is_measured_with_idet() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = clip(dir.path(), "clip.mp4").await;
        let probe = prober().probe_file(&path, size).await.unwrap();
        assert_eq!(probe.video().unwrap().field_order.as_deref(), Some("progressive"));
        let said = prober().interlacing(&path, &probe).await.unwrap().unwrap();
        assert_eq!((said.interlaced, said.detected_by.as_str()), (false, "field_order"));
        assert_eq!(said.idet, None);

        // fields woven into frames, top first; the stream's own word taken away
        let woven = dir.path().join("woven.mp4");
        let weave = ["-vf", "tinterlace=interleave_top", "-flags", "+ildct+ilme"];
        let source = "testsrc=size=320x240:rate=50:duration=2";
        lavfi_clip(&woven, source, &[&weave[..], H264].concat()).await;
        let size = std::fs::metadata(&woven).unwrap().len();
        let mut probe = prober().probe_file(&woven, size).await.unwrap();
        probe.streams.iter_mut().for_each(|s| s.field_order = None);
        let measured = prober().interlacing(&woven, &probe).await.unwrap().unwrap();
        assert_eq!((measured.interlaced, measured.detected_by.as_str()), (true, "idet"));
        assert_eq!(measured.top_field_first, Some(true));
        let counts = measured.idet.expect("idet's counts");
        assert!(counts.tff > counts.bff + counts.progressive, "{counts:?}");
    }

    #[tokio::test]
    async fn idet_on_what_does_not_decode_is_unreadable_and_without_ffmpeg_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = clip(dir.path(), "clip.mp4").await;
        let mut probe = prober().probe_file(&path, size).await.unwrap();
        probe.streams.iter_mut().for_each(|s| s.field_order = None);
        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        let reason = unreadable(prober().interlacing(&junk, &probe).await);
        assert!(
            reason.starts_with("FFmpeg could not decode the start of the source: "),
            "{reason}"
        );
        let p = FfprobeProber::new("ffprobe", "/nonexistent/ffmpeg", Limits::default());
        unavailable(p.interlacing(&path, &probe).await);
        probe.streams.retain(|s| s.kind != nommer_core::job::StreamKind::Video);
        assert_eq!(prober().interlacing(&path, &probe).await, Ok(None));
    }
}
