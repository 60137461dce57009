//! One attempt at a job this worker holds, in named steps: the outputs' presets, the
//! source in (`source.rs`), its watermarks, the encode (`encode.rs`), the check of
//! every output (`outputs.rs`), the upload, and the job finished.

use crate::held::Held;
use crate::source::Prepared;
use crate::split::Split;
use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use nommer_core::job::{Job, OutputSpec};
use nommer_core::presets::Preset;
use nommer_core::Transition;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the encode measured besides its files: each scored rendition, and what each
/// per-title ladder and CRF search found; written on the job with its manifest.
#[derive(Default)]
pub(crate) struct Found {
    pub scores: Vec<nommer_core::quality::Quality>,
    pub per_title: Vec<nommer_core::per_title::Record>,
    pub target_vmaf: Vec<nommer_core::target_vmaf::Record>,
}

impl Worker {
    pub(crate) async fn attempt(&self, held: &Held, dir: &Path) -> Result<(), JobFailure> {
        let job = held.transition(Transition::StartDownload, None).await?;
        let outputs = self.presets_of(&job)?;
        self.able_to_score(&outputs).await?;
        let (input, size) = self.fetch_source(&job, dir).await?;
        let probe = self.inspect_source(&input, size, &outputs).await?;
        held.update(|j| j.probe = Some(probe.clone())).await?;
        let marks = self.fetch_watermarks(&outputs, dir).await?;
        let mut prepared = Prepared {
            outputs,
            input,
            probe,
            marks,
            stem: job.source.output_stem(),
        };

        match self.split_shape(&job, &prepared) {
            Ok(shape) => match self.split(held, &job, &prepared, shape, dir).await? {
                Split::Handed => return Ok(()),
                Split::Whole(why) => tracing::info!(job_id = %job.id, %why, "encoded whole"),
            },
            Err(why) => tracing::debug!(job_id = %job.id, %why, "not split"),
        }

        held.transition(Transition::StartEncode, None).await?;
        let mut per_title = self.shape_ladders(&mut prepared, dir).await?;
        let mut target_vmaf = self.search_crfs(&mut prepared, dir).await?;
        let encoded = self.encode_all(held, &prepared, dir).await?;
        let scores = self.score_all(&prepared, &encoded, dir).await;
        crate::per_title::measured(&mut per_title, &scores);
        crate::target::measured(&mut target_vmaf, &scores);
        let found = Found {
            scores,
            per_title,
            target_vmaf,
        };
        self.deliver(held, &job, &prepared, &encoded, found).await
    }

    /// The end of every job the fleet makes: each output checked before anything is
    /// uploaded, then the upload, the manifest with each file's SHA-256, and `complete`.
    pub(crate) async fn deliver(
        &self,
        held: &Held,
        job: &Job,
        prepared: &Prepared,
        encoded: &[crate::encode::Encoded],
        found: Found,
    ) -> Result<(), JobFailure> {
        let scores = found.scores;
        let (mut manifest, uploads) = self.check_outputs(job, prepared, encoded).await?;
        let mains: Vec<(String, String)> = encoded
            .iter()
            .map(|e| (prepared.outputs[e.index].0.name.clone(), e.plan.main.clone()))
            .collect();
        crate::quality::attach(&mut manifest, &scores, &mains);
        if held.snapshot().await.state != nommer_core::JobState::Uploading {
            held.transition(Transition::StartUpload, None).await?;
        }
        let sums = self.upload(held, &uploads).await?;
        for entry in &mut manifest {
            entry.sha256 = sums.get(&entry.key).cloned();
        }
        held.update(|j| {
            j.manifest = manifest.clone();
            j.quality = scores.clone();
            j.per_title = found.per_title.clone();
            j.target_vmaf = found.target_vmaf.clone();
        })
        .await?;
        held.transition(Transition::Finish, None).await?;
        Ok(())
    }

    /// Each output of the job with its preset from the catalog.
    pub(crate) fn presets_of(&self, job: &Job) -> Result<Vec<(OutputSpec, Preset)>, JobFailure> {
        let catalog = &self.settings.config.catalog;
        job.outputs
            .iter()
            .map(|o| {
                catalog
                    .find(&o.preset)
                    .map(|p| (o.clone(), p.clone()))
                    .ok_or_else(|| JobFailure::Permanent(JobErrorCode::UnknownPreset, catalog.unknown(&o.preset)))
            })
            .collect()
    }

    /// Uploads the checked files (path, key) to the outbox, the job's progress in steps
    /// of a tenth; returns each key's SHA-256 (hex), each checked against S3's.
    async fn upload(&self, held: &Held, uploads: &[(PathBuf, String)]) -> Result<BTreeMap<String, String>, JobFailure> {
        let total = uploads.len().max(1);
        let mut last = 0u8;
        let mut sums = BTreeMap::new();
        for (k, (path, key)) in uploads.iter().enumerate() {
            let up = self
                .objects
                .upload_file(
                    &self.settings.outbox_bucket,
                    key,
                    path,
                    nommer_core::content_type::of(key),
                )
                .await?;
            sums.insert(key.clone(), up.sha256);
            let pct = (((k + 1) * 100) / total).min(99) as u8;
            if pct >= last.saturating_add(10) {
                last = pct;
                held.update(|j| j.progress = pct).await?;
            }
        }
        Ok(sums)
    }
}
