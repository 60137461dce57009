//! Nommer's shared library: the job domain (model, state machine, presets), typed
//! settings, the one SDK config factory, and the AWS adapters every function and the
//! worker use.

pub mod advanced;
pub mod aws;
pub mod backends;
pub mod check;
pub mod config;
pub mod content_type;
pub mod deadletter;
pub mod encodingcom;
pub mod error;
pub mod events;
pub mod ffmpeg;
pub mod ids;
pub mod job;
pub mod messages;
pub mod notify;
pub mod objects;
pub mod plan;
pub mod presets;
pub mod queue;
pub mod registry;
pub mod routing;
pub mod scaling;
pub mod settings;
pub mod state;
pub mod store;
pub mod submit;
pub mod telemetry;

pub use error::{JobErrorCode, StoreError};
pub use job::{Job, JobError, OutputFile, OutputSpec, S3Uri};
pub use state::{InvalidTransition, JobState, Transition};
