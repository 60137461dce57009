//! Taking what a remote encoder delivered into the outbox: every output's files are
//! copied server-side under the output's prefix and checked as the fleet's are.

use super::{BackendError, Backends};
use crate::error::StoreError;
use crate::job::{Job, OutputFile, OutputSpec};
use crate::ports::ProbeFailure;
use crate::presets::PresetKind;
use crate::state::{JobState, Transition};
use chrono::{DateTime, Utc};

/// How long a collection holds a job in `uploading` before another caller may take it
/// over: above the longest a function runs (Lambda's 15 minutes), so a collector that
/// is alive is never overtaken, and one that died is.
pub const COLLECT_LEASE_SECS: i64 = 16 * 60;

/// Where a remote encoder delivers one output: `<job id>/<output name>/` in the delivery
/// bucket.
pub fn delivery_prefix(job: &Job, output: &OutputSpec) -> String {
    format!("{}/{}/", job.id, output.name)
}

/// What [`Backends::finish_remote`] did.
pub(super) enum Collected {
    /// The job as stored after the collection: complete, or failed over to its fallback.
    Done(Job),
    /// Another caller is collecting this job (its claim is fresh).
    Elsewhere,
    /// The job changed under the claim; read it again and decide again.
    Raced,
}

/// Archives a delivery must not come as (Nommer asks for `pack_files: no`).
const ARCHIVES: [&str; 4] = [".tar", ".tar.gz", ".tgz", ".zip"];
/// Outputs probed after the copy, by extension.
const MEDIA: [&str; 4] = ["mp4", "webm", "m4a", "mp3"];

impl Backends {
    /// Takes a finished remote task's outputs into the outbox, once: the job is first
    /// claimed by a conditional write (it moves to `uploading`, its task records since
    /// when it is being collected; `next` is the job with the task's latest status), so
    /// of the callback and the poller that both hear "Finished", one collects and the
    /// other leaves it. Nothing is copied before the claim holds, and nothing after the
    /// job completed. A collector that fails lets go of its claim; a claim older than
    /// [`COLLECT_LEASE_SECS`] is taken over (its collector died).
    pub(super) async fn finish_remote(
        &self,
        current: &Job,
        mut next: Job,
        media_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Collected, BackendError> {
        let held_since = current.remote.as_ref().and_then(|t| t.collecting_since);
        if let Some(since) = held_since {
            if (now - since).num_seconds() < COLLECT_LEASE_SECS {
                return Ok(Collected::Elsewhere);
            }
            tracing::warn!(job_id = %current.id, %since, "a collection's claim expired; taking it over");
        }
        if let Some(t) = next.remote.as_mut() {
            t.collecting_since = Some(now);
        }
        let claim = if current.state == JobState::Uploading {
            self.ports.store.update(current, next).await
        } else {
            next.advance_to(JobState::Uploading, now, "Encoding.com")?;
            self.ports.store.replace(current, next).await
        };
        let claimed = match claim {
            Ok(j) => j,
            Err(StoreError::Conflict { .. }) => return Ok(Collected::Raced),
            Err(e) => return Err(e.into()),
        };
        let manifest = match self.collect_outputs(&claimed).await {
            Ok(Ok(m)) => m,
            Ok(Err(missing)) => {
                let backend = claimed.backend.clone().unwrap_or_default();
                self.backend_failed(claimed.clone(), &backend, missing).await?;
                return Ok(Collected::Done(self.ports.store.require(&claimed.id).await?));
            }
            Err(e) => {
                // a copy or a probe failed (S3 down, say): the next caller collects again
                let mut free = claimed.clone();
                if let Some(t) = free.remote.as_mut() {
                    t.collecting_since = None;
                }
                if let Err(release) = self.ports.store.update(&claimed, free).await {
                    tracing::warn!(job_id = %claimed.id, error = %release, "could not let go of the collection's claim; it expires");
                }
                return Err(e);
            }
        };
        let mut done = claimed.clone();
        done.manifest = manifest;
        if let Some(t) = done.remote.as_mut() {
            t.collecting_since = None;
        }
        // completed when the copies are done, not when they were claimed: no output is
        // newer than its job's completion
        done.apply(
            Transition::Finish,
            Utc::now(),
            Some(format!("Encoding.com task {media_id} finished")),
        )?;
        match self.ports.store.replace(&claimed, done).await {
            Ok(j) => {
                tracing::info!(job_id = %j.id, media_id, "job state changed (remote) state=complete");
                Ok(Collected::Done(j))
            }
            // cancelled meanwhile: the cancel stands
            Err(StoreError::Conflict { .. }) => Ok(Collected::Done(self.ports.store.require(&claimed.id).await?)),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies every output's files from the delivery bucket into the outbox and returns
    /// the manifest of the copies, or why the delivery is not usable: an output with no
    /// files, or a tar (Nommer asks for `pack_files: no`, so a tar means the request was
    /// not honoured: it is refused with that reason rather than unpacked, so nothing
    /// unchecked reaches the outbox). Only the holder of the job's `uploading` claim
    /// calls it ([`Self::finish_remote`]).
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
            quality: Vec::new(),
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
