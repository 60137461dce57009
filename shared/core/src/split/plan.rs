//! A split job's plan as recorded on the job (and shown by `GET /jobs/{id}`): its chunks'
//! spans and what its stitch needs to know of the source's timing.

use serde::{Deserialize, Serialize};

/// Part of the source, in media seconds (the source's start is 0): `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// A split job's plan, recorded on the job (and shown by `GET /jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub chunk_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_seconds: Option<f64>,
    /// Each chunk's part of the source, in order.
    pub chunks: Vec<Span>,
    /// Whether the audio is encoded, as a task of its own.
    pub audio: bool,
    /// The source's start time: media time 0, in the source's own timestamps.
    #[serde(default)]
    pub origin: f64,
    /// Where the source's audio starts, in media time.
    #[serde(default)]
    pub audio_offset: f64,
}

impl SplitPlan {
    /// Seconds of source the chunks cover.
    pub fn seconds(&self) -> f64 {
        self.chunks.iter().map(Span::seconds).sum()
    }
}
