//! Taking what a remote encoder delivered into the outbox: every output's files are
//! copied server-side under the output's prefix and checked as the fleet's are.

use super::remote::delivery_prefix;
use super::{BackendError, Backends};
use crate::job::{Job, OutputFile, OutputSpec};
use crate::ports::ProbeFailure;
use crate::presets::PresetKind;

/// Archives a delivery must not come as (Nommer asks for `pack_files: no`).
const ARCHIVES: [&str; 4] = [".tar", ".tar.gz", ".tgz", ".zip"];
/// Outputs probed after the copy, by extension.
const MEDIA: [&str; 4] = ["mp4", "webm", "m4a", "mp3"];

impl Backends {
    /// Copies every output's files from the delivery bucket into the outbox and returns
    /// the manifest of the copies, or why the delivery is not usable: an output with no
    /// files, or a tar (Nommer asks for `pack_files: no`, so a tar means the request was
    /// not honoured: it is refused with that reason rather than unpacked, so nothing
    /// unchecked reaches the outbox). Repeating it copies the same objects again, so a
    /// lost race is harmless.
    pub(super) async fn collect_outputs(&self, job: &Job) -> Result<Result<Vec<OutputFile>, String>, BackendError> {
        let mut manifest = Vec::new();
        for o in &job.outputs {
            let files = match self.copy_delivered(job, o).await? {
                Ok(files) => files,
                Err(why) => return Ok(Err(why)),
            };
            for (key, size, sha256) in files {
                match self.checked_entry(job, o, key, size).await {
                    Ok(entry) => manifest.push(OutputFile { sha256, ..entry }),
                    Err(why) => return Ok(Err(why)),
                }
            }
        }
        Ok(Ok(manifest))
    }

    /// Copies one output's delivered files into the outbox; returns those its manifest
    /// lists (a ladder's playlists, not its thousands of segments, as the fleet's does).
    async fn copy_delivered(
        &self,
        job: &Job,
        o: &OutputSpec,
    ) -> Result<Result<Vec<(String, u64, Option<String>)>, String>, BackendError> {
        let bucket = self.delivery_bucket()?;
        let prefix = job.output_prefix(o, &self.settings.config.key_template);
        let from = delivery_prefix(job, o);
        let delivered = self.ports.objects.list(&bucket, &from).await?;
        if delivered.is_empty() {
            return Ok(Err(format!(
                "Encoding.com reported Finished but output {} has no files under s3://{bucket}/{from}",
                o.name
            )));
        }
        if let Some((tar, _)) = delivered.iter().find(|(k, _)| ARCHIVES.iter().any(|x| k.ends_with(x))) {
            return Ok(Err(format!(
                "Encoding.com delivered output {} packed as one archive ({tar}) although `pack_files: no` was asked; its playlists cannot be checked, so it is not accepted",
                o.name
            )));
        }
        let mut files = Vec::new();
        for (key, size) in delivered {
            let to = format!("{prefix}{}", &key[from.len()..]);
            let outbox = &self.settings.outbox_bucket;
            // the copy's SHA-256 as S3 computed it writing the copy (Encoding.com's
            // upload carried none of ours)
            let sha256 = self.ports.objects.copy_object(&bucket, &key, outbox, &to).await?;
            files.push((to, size, sha256));
        }
        let ladder = self
            .settings
            .config
            .catalog
            .find(&o.preset)
            .is_some_and(|p| matches!(p.kind, PresetKind::Ladder { .. }));
        if ladder {
            files.retain(|(k, _, _)| k.ends_with(".m3u8") || k.ends_with(".mpd"));
        }
        if files.is_empty() {
            return Ok(Err(format!(
                "Encoding.com reported Finished but output {} has no playlist under s3://{bucket}/{from}",
                o.name
            )));
        }
        Ok(Ok(files))
    }

    /// The manifest entry of one copied file; media files are checked as the fleet's
    /// are: readable, and as long as asked.
    async fn checked_entry(&self, job: &Job, o: &OutputSpec, key: String, size: u64) -> Result<OutputFile, String> {
        let outbox = &self.settings.outbox_bucket;
        let mut entry = OutputFile {
            output: o.name.clone(),
            bucket: outbox.clone(),
            key: key.clone(),
            size,
            duration_seconds: None,
            width: None,
            height: None,
            bit_rate: None,
            sha256: None,
        };
        let ext = key.rsplit('.').next().unwrap_or("");
        if !MEDIA.contains(&ext) {
            return Ok(entry);
        }
        let p = match self.probe_object(outbox, &key, size).await {
            Ok(p) => p,
            Err(ProbeFailure::Unreadable(r)) => {
                return Err(format!(
                    "output {} from Encoding.com is not readable media: {r}",
                    o.name
                ))
            }
            Err(ProbeFailure::Unavailable(r)) => {
                tracing::warn!(job_id = %job.id, key, reason = %r, "output not checked: cannot probe here");
                return Ok(entry);
            }
        };
        let v = p.streams.iter().find(|s| s.kind == crate::job::StreamKind::Video);
        entry.duration_seconds = p.duration_seconds;
        entry.width = v.and_then(|s| s.width);
        entry.height = v.and_then(|s| s.height);
        entry.bit_rate = p.bit_rate;
        let expected = match &o.options.trim {
            Some(t) => t.end_seconds.map(|e| e - t.start_seconds),
            None => job.probe.as_ref().and_then(|p| p.duration_seconds),
        };
        if let (Some(want), Some(got)) = (expected, p.duration_seconds) {
            if (want - got).abs() > (want * 0.05).max(0.5) {
                return Err(format!(
                    "output {} from Encoding.com lasts {got:.1} s, expected {want:.1} s",
                    o.name
                ));
            }
        }
        Ok(entry)
    }
}
