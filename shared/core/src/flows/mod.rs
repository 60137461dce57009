//! The flows: what happens to a job between the entry points, written against the ports
//! ([`crate::ports`]) so they run the same on AWS, on the local stack and on the fakes
//! of their tests. Every change is a conditional write; a flow that lost a race re-reads
//! and tries again, so callbacks, the poller and a repeated message can run at once.
//!
//! - [`submit`]: creating a job and queueing it for dispatch;
//! - [`dispatch`]: sniffing and probing the source, routing, handing over to a backend;
//! - [`remote`]: a task at a remote encoder: adding it, its status from callbacks and
//!   polling, the fallback when a backend fails the job, cancelling;
//! - [`collect`]: taking what a remote encoder delivered into the outbox, checked;
//! - [`deadletter`] and [`stall`]: the scheduled sweeps that fail a job whose message
//!   was dead-lettered, or whose work stopped moving.

pub mod collect;
pub mod deadletter;
pub mod dispatch;
pub mod ingest;
pub mod notify;
pub mod remote;
pub mod stall;
pub mod submit;

use crate::error::StoreError;
use crate::ports::{
    Handoff, JobStore, ObjectError, ObjectStore, Prober, QueueError, RemoteEncoder, RemoteError, WorkQueue,
};
use crate::routing::BackendKind;
use crate::settings::BackendSettings;
use crate::state::JobState;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// What handing the source over needs is not set or not readable.
    #[error(transparent)]
    Handoff(#[from] crate::ports::HandoffError),
    #[error("{0}")]
    Config(String),
    #[error("job {0} kept changing; try again")]
    Busy(String),
    #[error("the job is already {0}")]
    Finished(JobState),
}

impl From<crate::state::InvalidTransition> for BackendError {
    fn from(e: crate::state::InvalidTransition) -> Self {
        BackendError::Store(StoreError::from(e))
    }
}

/// The remote encoders, by backend name.
#[derive(Clone, Debug, Default)]
pub struct Remotes(BTreeMap<String, Arc<dyn RemoteEncoder>>);

impl Remotes {
    pub fn new(encoders: BTreeMap<String, Arc<dyn RemoteEncoder>>) -> Remotes {
        Remotes(encoders)
    }

    pub fn get(&self, backend: &str) -> Result<&dyn RemoteEncoder, BackendError> {
        self.0
            .get(backend)
            .map(|r| r.as_ref())
            .ok_or_else(|| {
                BackendError::Config(format!(
                    "no Encoding.com client for backend `{backend}`: it is not an Encoding.com backend of the config file this function started with; add it under [backends] (kind = \"encodingcom\") and redeploy"
                ))
            })
    }
}

/// The adapters the backend flows run on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn JobStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub prober: Arc<dyn Prober>,
    pub handoff: Arc<dyn Handoff>,
    /// The fleet's heartbeats: whether it can score VMAF now.
    pub fleet: Arc<dyn crate::ports::Fleet>,
    pub remotes: Remotes,
}

/// Handing jobs to backends and following them there.
#[derive(Clone)]
pub struct Backends {
    pub settings: BackendSettings,
    pub ports: Ports,
}

/// How many times a flow re-reads a job after losing a race before it gives up (busy).
pub(crate) const RACE_ROUNDS: usize = 5;

impl Backends {
    pub fn new(settings: BackendSettings, ports: Ports) -> Backends {
        Backends { settings, ports }
    }

    fn kind_of(&self, backend: &str) -> Option<BackendKind> {
        self.settings.config.routing.backend(backend).map(|b| b.kind)
    }

    /// The bucket a remote encoder delivers into (settings refuse an Encoding.com backend
    /// without one).
    fn delivery_bucket(&self) -> Result<String, BackendError> {
        self.settings.delivery_bucket.clone().ok_or_else(|| {
            BackendError::Config(format!(
                "{} is not set: set it to the bucket Encoding.com delivers into (the template's DeliveryBucket)",
                crate::settings::DELIVERY_BUCKET
            ))
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod deadletter_tests;
#[cfg(test)]
mod ingest_tests;
#[cfg(test)]
mod notify_tests;
#[cfg(test)]
mod stall_tests;
