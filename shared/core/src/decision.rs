//! Why a job went where it went: the facts routing saw and the decision it made, written
//! on the job. Stands alone: it knows no job, no preset and no backend client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the facts' duration and height came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measured {
    /// ffprobe read the source.
    Probe,
    /// The API request's `source_info`.
    Request,
    #[default]
    Unknown,
}

/// What is known about a job when it is routed. Probe fields are `None` when the source
/// was not probed and the request gave no hint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Facts {
    pub key: String,
    pub extension: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Where duration and height came from.
    pub measured_by: Measured,
    /// Whether the fleet can score VMAF now, from its heartbeats (`None`: not asked, or
    /// no worker live); looked up only for outputs that need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_libvmaf: Option<bool>,
    #[serde(skip)]
    pub metadata: BTreeMap<String, String>,
}

impl Facts {
    /// The facts a key alone gives (the rest filled in by the caller).
    pub fn for_key(key: &str) -> Facts {
        let ext = key
            .rsplit('/')
            .next()
            .and_then(|f| f.rsplit_once('.'))
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        Facts {
            key: key.to_string(),
            extension: ext,
            ..Facts::default()
        }
    }
}

/// Why a job went where it went; written on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub backend: String,
    /// The rule that matched; `None` when the default was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// One sentence a person can read.
    pub reason: String,
    /// The chosen backend's estimate, US dollars (`None` without a duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// Every able backend's estimate (per minute of source when the duration is unknown).
    pub estimates: BTreeMap<String, f64>,
    /// Backends that cannot make the outputs, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unable: BTreeMap<String, String>,
    pub facts: Facts,
    /// The backend this job fell back from, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
}
