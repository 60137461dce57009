//! The adapters that run FFmpeg and ffprobe as processes. What they are asked to do (argv)
//! and how their output reads are pure code in `nommer_core::ffmpeg`; this crate starts
//! them, bounds them and says what their exit means:
//! - [`runner`]: any FFmpeg-family program in its own process group, with a time limit,
//!   `-progress` fed to a callback, and stderr kept (bounded) for the reason of a failure;
//! - [`FfprobeProber`]: ffprobe on a local file or a URL (with the input guard), and
//!   FFmpeg's `idet` when a stream does not say whether it is interlaced;
//! - [`FfmpegEncoder`]: one FFmpeg encode pass, its failure sorted by cause.

pub mod encoder;
pub mod prober;
pub mod runner;

pub use encoder::{EncodeFailure, FfmpegEncoder};
pub use prober::{FfprobeProber, ProbeFailure};
pub use runner::{Finished, RunError};
