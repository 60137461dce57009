//! The source in: its size from the GET's answer (checked against the limit and the
//! disk before a byte is written), streamed to the scratch disk, refused if it is a
//! playlist or script in disguise, probed within the limits, checked to have what each
//! output needs; and each output's watermark image, checked to be a picture.

use crate::disk::is_disk_full;
use crate::{JobFailure, Worker};
use nommer_aws::objects::ObjectError;
use nommer_core::error::JobErrorCode;
use nommer_core::ffmpeg;
use nommer_core::job::{Job, OutputSpec, Probe};
use nommer_core::presets::Preset;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What an attempt has in hand once the source is in and probed.
pub(crate) struct Prepared {
    /// Each output asked for, with its preset.
    pub outputs: Vec<(OutputSpec, Preset)>,
    /// The source on the scratch disk.
    pub input: PathBuf,
    pub probe: Probe,
    /// Each output's watermark image on the scratch disk, if it has one.
    pub marks: Vec<Option<PathBuf>>,
    /// The source's file name without its extension, for the outputs' names.
    pub stem: String,
}

impl Worker {
    /// Downloads the source (only the revision the job was made for) into `dir`, once
    /// the GET's Content-Length shows it fits; returns its path and size.
    pub(crate) async fn fetch_source(&self, job: &Job, dir: &Path) -> Result<(PathBuf, u64), JobFailure> {
        let download = self
            .objects
            .open_download(&job.source.bucket, &job.source.key, job.source_etag.as_deref())
            .await
            .map_err(|e| match e {
                ObjectError::NotFound { .. } => {
                    JobFailure::Permanent(JobErrorCode::SourceNotFound, format!("{} does not exist", job.source))
                }
                other => other.into(),
            })?;
        self.check_room(download.size, dir)?;
        let ext = Path::new(job.source.file_name())
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()));
        let input = dir.join(match ext {
            Some(e) => format!("source.{e}"),
            None => "source".into(),
        });
        let started = Instant::now();
        let size = download.to_file(&input).await.map_err(|e| match e {
            ObjectError::Io(io) if is_disk_full(&io) => self.disk_full("downloading the source"),
            other => other.into(),
        })?;
        tracing::info!(job_id = %job.id, bytes = size, secs = started.elapsed().as_secs_f64(), "source downloaded");
        Ok((input, size))
    }

    /// Refuses playlists and scripts before FFmpeg sees them, then probes within the
    /// limits; decides interlacing when an output needs the video.
    pub(crate) async fn inspect_source(
        &self,
        input: &Path,
        size: u64,
        outputs: &[(OutputSpec, Preset)],
    ) -> Result<Probe, JobFailure> {
        refuse_disguised(input).await?;
        let mut probe = self.prober.probe_file(input, size).await?;
        ffmpeg::check_limits(&probe, &self.settings.limits)
            .map_err(|e| JobFailure::Permanent(JobErrorCode::RefusedSource, e))?;
        check_streams(&probe, outputs)?;
        if outputs.iter().any(|(_, p)| p.needs_video()) {
            probe.interlacing = self.prober.interlacing(input, &probe).await?;
        }
        Ok(probe)
    }

    /// Each output's watermark image, downloaded into `dir` and checked.
    pub(crate) async fn fetch_watermarks(
        &self,
        outputs: &[(OutputSpec, Preset)],
        dir: &Path,
    ) -> Result<Vec<Option<PathBuf>>, JobFailure> {
        let mut marks = Vec::new();
        for (i, (o, _)) in outputs.iter().enumerate() {
            marks.push(match &o.options.watermark {
                None => None,
                Some(w) => Some(
                    self.fetch_watermark(&w.image, &dir.join(format!("watermark-{i}")))
                        .await?,
                ),
            });
        }
        Ok(marks)
    }

    /// Downloads a watermark image and checks it is a single PNG or JPEG picture.
    async fn fetch_watermark(&self, image: &nommer_core::S3Uri, dest: &Path) -> Result<PathBuf, JobFailure> {
        let size = self
            .objects
            .download_to_file(&image.bucket, &image.key, dest, None)
            .await
            .map_err(|e| match e {
                ObjectError::NotFound { .. } => JobFailure::Permanent(
                    JobErrorCode::SourceNotFound,
                    format!("watermark image {image} does not exist"),
                ),
                other => other.into(),
            })?;
        let head = read_head(dest)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        let is_png = head.starts_with(b"\x89PNG\r\n\x1a\n");
        let is_jpeg = head.starts_with(&[0xff, 0xd8, 0xff]);
        if !(is_png || is_jpeg) || size > 20 * 1024 * 1024 {
            return Err(JobFailure::Permanent(
                JobErrorCode::RefusedSource,
                format!("watermark image {image} is not a PNG or JPEG of at most 20 MB"),
            ));
        }
        let named = dest.with_extension(if is_png { "png" } else { "jpg" });
        tokio::fs::rename(dest, &named)
            .await
            .map_err(|e| JobFailure::Retryable(e.to_string()))?;
        Ok(named)
    }
}

/// Refuses a source whose first bytes show a playlist or script, or an AVI that embeds
/// files, before any FFmpeg process opens it.
async fn refuse_disguised(input: &Path) -> Result<(), JobFailure> {
    let head = read_head(input)
        .await
        .map_err(|e| JobFailure::Retryable(e.to_string()))?;
    ffmpeg::sniff(&head).map_err(|e| JobFailure::Permanent(JobErrorCode::RefusedSource, e))?;
    if !ffmpeg::is_avi(&head) {
        return Ok(());
    }
    let path = input.to_path_buf();
    let embeds = tokio::task::spawn_blocking(move || std::fs::File::open(path).and_then(ffmpeg::avi_embeds_files))
        .await
        .map_err(|e| JobFailure::Retryable(e.to_string()))?
        .map_err(|e| JobFailure::Retryable(e.to_string()))?;
    if embeds {
        return Err(JobFailure::Permanent(
            JobErrorCode::RefusedSource,
            "the source is an AVI with an embedded subtitle file (GAB2), a known way to smuggle a playlist past a media check; refused".into(),
        ));
    }
    Ok(())
}

/// Every output finds the streams it needs in the source.
fn check_streams(probe: &Probe, outputs: &[(OutputSpec, Preset)]) -> Result<(), JobFailure> {
    for (o, p) in outputs {
        if p.needs_video() && !probe.has(nommer_core::job::StreamKind::Video) {
            let cover = probe.streams.iter().any(|s| s.attached_pic);
            return Err(JobFailure::Permanent(
                JobErrorCode::MissingStream,
                format!(
                    "output {} ({}) needs video but the source has no video stream{}; use an audio preset",
                    o.name,
                    p.name,
                    if cover {
                        " (its only picture is attached cover art, which is not video)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if p.needs_audio() && !probe.has(nommer_core::job::StreamKind::Audio) {
            return Err(JobFailure::Permanent(
                JobErrorCode::MissingStream,
                format!(
                    "output {} ({}) is audio only but the source has no audio stream",
                    o.name, p.name
                ),
            ));
        }
    }
    Ok(())
}

/// The first 4 KiB of a file.
async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    Ok(head)
}
