//! Nommer's AWS adapters: the job store and the worker registry on DynamoDB, objects on
//! S3, queues on SQS, events on SNS, and the one SDK config factory (`AWS_ENDPOINT_URL`
//! reaches an emulator; there is no other branch).

pub mod backends;
pub mod deadletter;
pub mod notify;
pub mod objects;
pub mod queue;
pub mod registry;
pub mod sdk;
pub mod store;
pub mod submit;
pub mod telemetry;
