//! The job in hand: every write this worker makes to it goes through [`Held`], and a
//! [`Heartbeat`] keeps its message hidden and its heartbeat fresh while it runs.

use chrono::Utc;
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::DynamoJobStore;
use nommer_core::job::Job;
use nommer_core::{StoreError, Transition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The job as this worker last stored it; every write goes through here so progress,
/// heartbeats and transitions never race each other.
#[derive(Clone)]
pub(crate) struct Held {
    job: Arc<Mutex<Job>>,
    store: DynamoJobStore,
    worker_id: String,
    message_id: String,
    /// Set when the job turns out to be finished by someone else (a cancel): whatever
    /// runs for it stops.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Held {
    pub(crate) fn new(job: Job, store: DynamoJobStore, worker_id: String, message_id: String) -> Held {
        Held {
            job: Arc::new(Mutex::new(job)),
            store,
            worker_id,
            message_id,
            stop: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// After a lost conditional write: if the job is now terminal (cancelled, or failed
    /// by another hand), everything working on it is told to stop.
    async fn on_conflict(&self, e: &StoreError) {
        if let StoreError::Conflict { id, .. } = e {
            if let Ok(Some(now)) = self.store.get(id).await {
                if now.state.is_terminal() {
                    tracing::info!(job_id = %id, state = %now.state, "the job was finished elsewhere (cancelled?); stopping its work");
                    self.stop.send_replace(true);
                }
            }
        }
    }

    /// Resolves once the job must stop.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub(crate) async fn transition(&self, t: Transition, note: Option<String>) -> Result<Job, StoreError> {
        let mut guard = self.job.lock().await;
        let mut next = guard.clone();
        next.apply(t, Utc::now(), note)?;
        next.heartbeat_at = Some(Utc::now());
        next.worker = Some(self.worker_id.clone());
        next.message_id = Some(self.message_id.clone());
        let stored = match self.store.replace(&guard, next).await {
            Ok(s) => s,
            Err(e) => {
                self.on_conflict(&e).await;
                return Err(e);
            }
        };
        tracing::info!(job_id = %stored.id, state = %stored.state, "job state changed");
        *guard = stored.clone();
        Ok(stored)
    }

    pub(crate) async fn update(&self, change: impl FnOnce(&mut Job)) -> Result<Job, StoreError> {
        let mut guard = self.job.lock().await;
        let stored = match self
            .store
            .update(&guard, |j| {
                change(j);
                j.heartbeat_at = Some(Utc::now());
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.on_conflict(&e).await;
                return Err(e);
            }
        };
        *guard = stored.clone();
        Ok(stored)
    }

    pub(crate) async fn snapshot(&self) -> Job {
        self.job.lock().await.clone()
    }
}

/// Keeps the message hidden and the job's heartbeat fresh while a job runs; stopped
/// between writes (never halfway through one), or aborted if dropped.
pub(crate) struct Heartbeat {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    pub(crate) fn start(queue: SqsQueue, url: String, receipt: String, vt: Duration, held: Held) -> Heartbeat {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tokio::time::sleep(vt / 3) => {}
                }
                if let Err(e) = queue.set_visibility(&url, &receipt, vt).await {
                    tracing::warn!(error = %e, "could not extend the message's visibility");
                }
                if let Err(e) = held.update(|_| {}).await {
                    tracing::warn!(error = %e, "could not record a heartbeat on the job");
                }
            }
        });
        Heartbeat {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
