//! Nommer's domain: what a job is, the one state machine it follows, the presets and the
//! FFmpeg runs they turn into, routing and what each backend can make, scaling, events
//! and settings. Pure code: no AWS SDK, no runtime, no HTTP client.

pub mod advanced;
pub mod capability;
pub mod config;
pub mod content_type;
pub mod decision;
pub mod deliveries;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod ffmpeg;
pub mod flows;
pub mod ids;
pub mod job;
pub mod liveness;
pub mod messages;
pub mod per_title;
pub mod ports;
pub mod presets;
pub mod quality;
pub mod routing;
pub mod scaling;
pub mod settings;
pub mod split;
pub mod state;
pub mod target_vmaf;
pub mod task;
pub mod text;

pub use error::{JobErrorCode, StoreError};
pub use job::{Job, JobError, OutputFile, OutputSpec, S3Uri};
pub use state::{InvalidTransition, JobState, Transition};
