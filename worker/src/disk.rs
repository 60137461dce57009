//! The scratch disk: room for a source before it is downloaded, and what a full disk
//! means for the job (permanent for this disk, unless this worker's other jobs are what
//! fills it).

use crate::{JobFailure, Worker};
use nommer_core::error::JobErrorCode;
use std::path::Path;

impl Worker {
    /// Refuses a source over the byte limit, or one the scratch disk cannot hold with
    /// outputs of its size and the headroom, before anything is downloaded. Only a disk
    /// full of this worker's other jobs makes it a retry (another worker, or later).
    pub(crate) fn check_room(&self, size: u64, dir: &Path) -> Result<(), JobFailure> {
        if let Some(why) = nommer_core::settings::over_source_limit("the source", size, self.settings.max_source_bytes)
        {
            return Err(JobFailure::Permanent(
                JobErrorCode::SourceTooLarge,
                format!("{why}; it was not downloaded"),
            ));
        }
        let free = free_bytes(dir)
            .map_err(|e| JobFailure::Retryable(format!("cannot read the scratch disk's free space: {e}")))?;
        let need = size
            .saturating_mul(2)
            .saturating_add(self.settings.scratch_headroom_bytes);
        tracing::info!(
            source_bytes = size,
            free_bytes = free,
            need_bytes = need,
            "scratch space checked"
        );
        if need <= free {
            return Ok(());
        }
        let reason = format!(
            "the source is {size} bytes; this worker's scratch disk ({}) has {free} bytes free and needs {need} (the source, outputs up to its size, and {} bytes of headroom: NOMMER_SCRATCH_HEADROOM_BYTES); it was not downloaded. Give workers a larger disk (NOMMER_WORK_DIR, or the launch template's volume)",
            self.settings.work_dir.display(),
            self.settings.scratch_headroom_bytes
        );
        if self.others_active() {
            Err(JobFailure::Retryable(format!(
                "{reason}; other jobs on this worker hold space now"
            )))
        } else {
            Err(JobFailure::Permanent(JobErrorCode::SourceTooLarge, reason))
        }
    }

    /// Whether jobs besides the caller's are running on this worker.
    fn others_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst) > 1
    }

    /// "No space left on device": permanent for this disk, unless this worker's other
    /// jobs are what fills it.
    pub(crate) fn disk_full(&self, during: &str) -> JobFailure {
        let reason = format!(
            "the worker's scratch disk ({}) filled up while {during} (No space left on device); the job needs a worker with a larger disk (NOMMER_WORK_DIR, or the launch template's volume)",
            self.settings.work_dir.display()
        );
        if self.others_active() {
            JobFailure::Retryable(format!("{reason}; other jobs on this worker hold space now"))
        } else {
            JobFailure::Permanent(JobErrorCode::DiskFull, reason)
        }
    }
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether an I/O error is "No space left on device" (or a quota).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(libc::ENOSPC)
}
