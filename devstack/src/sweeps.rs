//! The scheduled sweeps of the local stack without a fleet: on AWS the scaler's round
//! runs the stall sweep every minute (and in the local stack's fleet mode, the scaler's
//! tick does); with fixed workers there is no scaler, so this schedule runs it.

use nommer_aws::store::DynamoJobStore;
use nommer_core::liveness::LivenessSettings;
use nommer_core::settings::{self as s, Source};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the sweep runs: a sixth of the stall time, so a stalled job fails within a
/// sixth of it past the limit, between 1 s and the Lambda schedule's minute.
pub fn every(l: &LivenessSettings) -> Duration {
    (l.stall_after / 6).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Starts the stall sweep on its schedule, with the settings in `env`.
pub fn stall(config: &aws_config::SdkConfig, env: &dyn Source) -> anyhow::Result<JoinHandle<()>> {
    let liveness = LivenessSettings::from_source(env)?;
    let table = env
        .get(s::TABLE)
        .ok_or_else(|| anyhow::anyhow!("{} is not set", s::TABLE))?;
    let store = DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(config), table);
    let tick = every(&liveness);
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            if let Err(e) = nommer_core::flows::stall::sweep(&store, &liveness, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "stall sweep failed");
            }
        }
    }))
}
