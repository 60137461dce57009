//! Nommer's AWS adapters: the job store and the worker registry on DynamoDB, objects on
//! S3, queues on SQS, events on SNS, secrets in Secrets Manager, and the one SDK config
//! factory (`AWS_ENDPOINT_URL` reaches an emulator; there is no other branch).

pub mod checksum;
pub mod handoff;
pub mod notify;
pub mod objects;
pub mod queue;
pub mod registry;
pub mod sdk;
pub mod secrets;
pub mod store;
pub mod table;
pub mod tasks;
pub mod telemetry;

use nommer_core::flows::{Ports, Remotes};
use nommer_core::ports::Prober;
use nommer_core::settings::BackendSettings;
use std::sync::Arc;

/// The backend flows' ports on AWS, with the remote encoders and the prober given.
pub fn ports(
    sdk: &aws_config::SdkConfig,
    settings: &BackendSettings,
    remotes: Remotes,
    prober: Arc<dyn Prober>,
) -> Ports {
    Ports {
        store: Arc::new(store::DynamoJobStore::new(sdk::dynamodb_client(sdk), &settings.table)),
        objects: Arc::new(objects::S3ObjectStore::new(sdk::s3_client(sdk))),
        queue: Arc::new(queue::SqsQueue::new(sdk::sqs_client(sdk))),
        prober,
        handoff: Arc::new(handoff::S3Handoff::new(sdk, settings)),
        fleet: Arc::new(registry::DynamoWorkerRegistry::new(
            sdk::dynamodb_client(sdk),
            &settings.table,
        )),
        remotes,
    }
}
