//! The worker's loop: `capacity` job slots around [`Worker::try_execute_task`], the
//! registry heartbeat that also carries the scaler's request to drain, and giving the
//! jobs in hand back at shutdown.

use crate::Worker;
use chrono::Utc;
use nommer_aws::registry::{Beat, RegistryError};
use nommer_core::Transition;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Worker {
    /// Runs until `shutdown` resolves: `capacity` jobs at once, a heartbeat in the
    /// registry, no new work once the scaler asks it to drain. Jobs in progress at
    /// shutdown are given back to the queue at once (message visible again, job `queued`).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(
            worker_id = %self.settings.worker_id,
            capacity = self.settings.capacity,
            queue = %self.settings.work_queue_url,
            "worker polling"
        );
        let mut tasks = tokio::task::JoinSet::new();
        {
            let me = self.clone();
            tasks.spawn(async move { me.registry_loop().await });
        }
        for _ in 0..self.settings.capacity.max(1) {
            let me = self.clone();
            tasks.spawn(async move { me.slot_loop().await });
        }
        shutdown.await;
        tracing::info!("shutting down");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.release_current().await;
        self.release_tasks().await;
        let _ = self.beat().await;
    }

    /// One job slot: takes work while the worker is not draining.
    async fn slot_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.draining.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            match self.try_execute_task().await {
                Ok(_) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::error!(error = %e, "polling the work queue failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(20));
                }
            }
        }
    }

    async fn beat(&self) -> Result<bool, RegistryError> {
        let b = Beat {
            worker_id: self.settings.worker_id.clone(),
            capacity: self.settings.capacity,
            active_jobs: self.active.load(Ordering::SeqCst),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            idle_since: *self.idle_since.lock().unwrap(),
            capabilities: self.score_caps(),
        };
        self.registry.beat(&b).await
    }

    /// Heartbeats into the registry and picks up the draining flag.
    async fn registry_loop(self: Arc<Self>) {
        loop {
            match self.beat().await {
                Ok(draining) => {
                    if draining && !self.draining.swap(true, Ordering::SeqCst) {
                        tracing::info!("asked to drain: finishing the jobs in hand, taking no new ones");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not record the worker's heartbeat"),
            }
            tokio::time::sleep(self.settings.heartbeat_interval).await;
        }
    }

    /// Gives the job in hand back at shutdown: the job `queued`, and only then its message
    /// visible again at once. If the job cannot be requeued, the message stays hidden and
    /// comes back after the visibility timeout, when the next worker sees this one's
    /// heartbeat stale and takes the job over.
    async fn release_current(&self) {
        let held: Vec<(String, String)> = self.current.lock().unwrap().drain().collect();
        for (receipt, job_id) in held {
            self.release(receipt, job_id).await;
        }
    }

    async fn release(&self, receipt: String, job_id: String) {
        let released = match self.store.get(&job_id).await {
            Ok(Some(job)) if job.state.is_running() && job.worker.as_deref() == Some(&self.settings.worker_id) => {
                let note = format!("worker {} shut down", self.settings.worker_id);
                match self.store.transition(&job, Transition::Requeue, Some(note)).await {
                    Ok(_) => {
                        tracing::info!(job_id, "job given back to the queue");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(job_id, error = %e, "could not requeue the job; its message comes back after the visibility timeout");
                        false
                    }
                }
            }
            // not started yet, or no longer ours: the message can go back as it is
            Ok(Some(job)) => !job.state.is_running(),
            _ => false,
        };
        if released {
            if let Err(e) = self
                .queue
                .set_visibility(&self.settings.work_queue_url, &receipt, Duration::ZERO)
                .await
            {
                tracing::warn!(error = %e, "could not release the message; it comes back after its visibility timeout");
            }
        }
    }
}

/// Counts a job in hand for the registry; when the last one ends, the worker is idle.
pub(crate) struct ActiveGuard<'a>(&'a Worker);

impl<'a> ActiveGuard<'a> {
    pub(crate) fn new(w: &'a Worker) -> Self {
        w.active.fetch_add(1, Ordering::SeqCst);
        *w.idle_since.lock().unwrap() = None;
        ActiveGuard(w)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap() = Some(Utc::now());
        }
    }
}
