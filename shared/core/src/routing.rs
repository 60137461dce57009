//! Routing: which backend encodes a job. The config file lists the backends (the own
//! FFmpeg fleet, Encoding.com), each with a price table, and rules tried in order; the
//! first rule that matches picks a backend, or `cheapest` among the backends able to make
//! every requested output. No match → the default. [`route`] is pure: the dispatcher
//! gathers the [`Facts`] (from the probe, or from the request) and writes the
//! [`Decision`] on the job.

pub use crate::capability::BackendKind;
pub use crate::decision::{Decision, Facts, Measured};
use crate::job::OutputSpec;
use crate::presets::{Catalog, Preset, PresetKind, ThumbnailMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the backend a deployment gets when its config file names none.
pub const DEFAULT_BACKEND: &str = "ffmpeg";

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Ffmpeg => "ffmpeg",
            BackendKind::EncodingCom => "encodingcom",
        }
    }
}

/// What a backend charges, in US dollars per minute of each output, by the output's
/// resolution class; thumbnails are priced per image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Audio-only outputs.
    #[serde(default)]
    pub audio: f64,
    /// Video below 720 lines.
    #[serde(default)]
    pub sd: f64,
    /// Video of 720 to 1080 lines.
    #[serde(default)]
    pub hd: f64,
    /// Video above 1080 lines.
    #[serde(default)]
    pub uhd: f64,
    /// Each still image.
    #[serde(default)]
    pub image: f64,
}

/// The fleet's prices when the config file gives none: a c7g.xlarge on demand
/// ($0.145/h) running two jobs, at roughly real time for HD with x264 `veryfast`, scaled by
/// pixels for the other classes. An estimate to compare backends with, not a bill.
pub const FLEET_PRICES: PriceTable = PriceTable {
    audio: 0.0001,
    sd: 0.0006,
    hd: 0.0012,
    uhd: 0.0048,
    image: 0.00001,
};

/// Resolution classes of the price table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceClass {
    Audio,
    Sd,
    Hd,
    Uhd,
}

impl PriceClass {
    pub fn of_height(h: u32) -> PriceClass {
        match h {
            0..=719 => PriceClass::Sd,
            720..=1080 => PriceClass::Hd,
            _ => PriceClass::Uhd,
        }
    }
}

impl PriceTable {
    pub fn per_minute(&self, c: PriceClass) -> f64 {
        match c {
            PriceClass::Audio => self.audio,
            PriceClass::Sd => self.sd,
            PriceClass::Hd => self.hd,
            PriceClass::Uhd => self.uhd,
        }
    }
}

/// Where Encoding.com credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// `NOMMER_ENCODINGCOM_USERID` / `NOMMER_ENCODINGCOM_USERKEY` (the local stack).
    Env,
    /// An AWS Secrets Manager secret (name or ARN) holding `{"userid": …, "userkey": …}`.
    SecretsManager(String),
}

/// Settings of an Encoding.com backend.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodingComBackend {
    /// The API endpoint (`https://manage.encoding.com/`).
    pub endpoint: String,
    pub credentials: Credentials,
    /// How long a job may go without news before the poller asks `GetStatus`.
    pub poll_seconds: u64,
}

pub const ENCODINGCOM_ENDPOINT: &str = "https://manage.encoding.com/";

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub kind: BackendKind,
    pub prices: PriceTable,
    /// Used when this backend fails a job permanently.
    pub fallback: Option<String>,
    /// Set for `kind = "encodingcom"`.
    pub encodingcom: Option<EncodingComBackend>,
    /// When the fleet splits a long job across workers (`kind = "ffmpeg"` only:
    /// Encoding.com jobs are never split).
    pub split: Option<crate::split::SplitSettings>,
}

impl Backend {
    /// Whether this backend can make `preset` with `options`, and if not, why.
    pub fn can_make(&self, preset: &Preset, options: &crate::job::OutputOptions) -> Result<(), String> {
        crate::capability::can_make(self.kind, preset, options)
    }
}

/// What a rule chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Backend(String),
    /// The cheapest backend able to make every output.
    Cheapest,
}

/// The conditions of a rule; every condition given must hold.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Every requested output's preset is one of these.
    #[serde(default)]
    pub presets: Vec<String>,
    /// The source key's extension (case-insensitive, without the dot) is one of these.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// The probed container (ffprobe's format name, e.g. `mov`, `matroska`, `avi`) is one
    /// of these.
    #[serde(default)]
    pub containers: Vec<String>,
    #[serde(default)]
    pub min_size_bytes: Option<u64>,
    #[serde(default)]
    pub max_size_bytes: Option<u64>,
    #[serde(default)]
    pub min_duration_seconds: Option<f64>,
    #[serde(default)]
    pub max_duration_seconds: Option<f64>,
    #[serde(default)]
    pub min_height: Option<u32>,
    #[serde(default)]
    pub max_height: Option<u32>,
    /// The source key starts with this.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// The job's user metadata has each of these keys with this value.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub when: Match,
    pub choice: Choice,
}

/// The routing part of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub backends: Vec<Backend>,
    pub rules: Vec<Rule>,
    pub default: String,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            backends: vec![Backend {
                name: DEFAULT_BACKEND.into(),
                kind: BackendKind::Ffmpeg,
                prices: FLEET_PRICES,
                fallback: None,
                encodingcom: None,
                split: Some(crate::split::SplitSettings::default()),
            }],
            rules: Vec::new(),
            default: DEFAULT_BACKEND.into(),
        }
    }
}

impl Routing {
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Backends of one kind.
    pub fn of_kind(&self, kind: BackendKind) -> impl Iterator<Item = &Backend> {
        self.backends.iter().filter(move |b| b.kind == kind)
    }

    /// Checks names and references; errors name the problem (the caller adds the line).
    pub fn check(&self) -> Result<(), RoutingError> {
        let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
        let known = || names.join(", ");
        if self.backend(&self.default).is_none() {
            return Err(RoutingError::UnknownDefault {
                default: self.default.clone(),
                known: known(),
            });
        }
        for b in &self.backends {
            let backend = |problem: String| RoutingError::Backend {
                backend: b.name.clone(),
                problem,
            };
            for (what, v) in [
                ("audio", b.prices.audio),
                ("sd", b.prices.sd),
                ("hd", b.prices.hd),
                ("uhd", b.prices.uhd),
                ("image", b.prices.image),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(backend(format!("prices.{what} must be a price of 0 or more")));
                }
            }
            if let Some(f) = &b.fallback {
                if f == &b.name {
                    return Err(backend("fallback names itself".into()));
                }
                // a chain of fallbacks must end: a cycle would bounce a failing job forever
                let mut seen = vec![b.name.as_str()];
                let mut next = Some(f.as_str());
                while let Some(n) = next {
                    if seen.contains(&n) {
                        return Err(backend(format!("fallback makes a cycle: {} → {n}", seen.join(" → "))));
                    }
                    seen.push(n);
                    next = self.backend(n).and_then(|x| x.fallback.as_deref());
                }
                if self.backend(f).is_none() {
                    return Err(backend(format!("fallback `{f}` is not a backend; known: {}", known())));
                }
            }
        }
        for r in &self.rules {
            let rule = |problem: String| RoutingError::Rule {
                rule: r.name.clone(),
                problem,
            };
            if let Choice::Backend(b) = &r.choice {
                if self.backend(b).is_none() {
                    return Err(rule(format!(
                        "backend `{b}` is not a backend; known: {} (or `cheapest`)",
                        known()
                    )));
                }
            }
            let m = &r.when;
            if let (Some(a), Some(b)) = (m.min_size_bytes, m.max_size_bytes) {
                if a > b {
                    return Err(rule("min_size_bytes is above max_size_bytes".into()));
                }
            }
            if let (Some(a), Some(b)) = (m.min_duration_seconds, m.max_duration_seconds) {
                if a > b {
                    return Err(rule("min_duration_seconds is above max_duration_seconds".into()));
                }
            }
            if let (Some(a), Some(b)) = (m.min_height, m.max_height) {
                if a > b {
                    return Err(rule("min_height is above max_height".into()));
                }
            }
        }
        Ok(())
    }
}

/// Checks the presets a rule names against the catalog.
pub fn check_rule_presets(routing: &Routing, catalog: &Catalog) -> Result<(), RoutingError> {
    for r in &routing.rules {
        for p in &r.when.presets {
            if catalog.find(p).is_none() {
                return Err(RoutingError::Rule {
                    rule: r.name.clone(),
                    problem: catalog.unknown(p),
                });
            }
        }
    }
    Ok(())
}

/// What is wrong with the routing part of a config file, and where: the config parser
/// finds the line from the backend or rule named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    #[error("routing.default `{default}` is not a backend; known: {known}")]
    UnknownDefault { default: String, known: String },
    #[error("backends.{backend}.{problem}")]
    Backend { backend: String, problem: String },
    #[error("rule `{rule}`: {problem}")]
    Rule { rule: String, problem: String },
}

impl Match {
    /// `Ok(())` when the rule holds for `facts` and `presets`, else the first condition
    /// that does not (with "unknown" when a fact it needs is missing).
    pub fn test(&self, facts: &Facts, presets: &[&str]) -> Result<(), String> {
        if !self.presets.is_empty() && !presets.iter().all(|p| self.presets.iter().any(|x| x == p)) {
            return Err(format!("presets {presets:?} are not all in {:?}", self.presets));
        }
        if !self.extensions.is_empty()
            && !self
                .extensions
                .iter()
                .any(|e| e.trim_start_matches('.').eq_ignore_ascii_case(&facts.extension))
        {
            return Err(format!(
                "extension `{}` is not in {:?}",
                facts.extension, self.extensions
            ));
        }
        if !self.containers.is_empty() {
            let Some(c) = &facts.container else {
                return Err("the container is unknown (source not probed)".into());
            };
            if !c.split(',').any(|part| self.containers.iter().any(|x| x == part)) {
                return Err(format!("container `{c}` is not in {:?}", self.containers));
            }
        }
        if self.min_size_bytes.is_some() || self.max_size_bytes.is_some() {
            let Some(s) = facts.size else {
                return Err("the size is unknown".into());
            };
            if self.min_size_bytes.is_some_and(|m| s < m) || self.max_size_bytes.is_some_and(|m| s > m) {
                return Err(format!("size {s} B is out of range"));
            }
        }
        if self.min_duration_seconds.is_some() || self.max_duration_seconds.is_some() {
            let Some(d) = facts.duration_seconds else {
                return Err("the duration is unknown (not probed, not in the request)".into());
            };
            if self.min_duration_seconds.is_some_and(|m| d < m) || self.max_duration_seconds.is_some_and(|m| d > m) {
                return Err(format!("duration {d:.1} s is out of range"));
            }
        }
        if self.min_height.is_some() || self.max_height.is_some() {
            let Some(h) = facts.height else {
                return Err("the height is unknown (not probed, not in the request)".into());
            };
            if self.min_height.is_some_and(|m| h < m) || self.max_height.is_some_and(|m| h > m) {
                return Err(format!("height {h} is out of range"));
            }
        }
        if let Some(p) = &self.key_prefix {
            if !facts.key.starts_with(p.as_str()) {
                return Err(format!("key does not start with `{p}`"));
            }
        }
        for (k, v) in &self.metadata {
            if facts.metadata.get(k) != Some(v) {
                return Err(format!("metadata `{k}` is not `{v}`"));
            }
        }
        Ok(())
    }
}

/// What each output costs to make on a backend: minutes by price class and images.
fn estimate(backend: &Backend, outputs: &[(&OutputSpec, &Preset)], facts: &Facts) -> f64 {
    let source_minutes = facts.duration_seconds.unwrap_or(60.0) / 60.0;
    let src_h = facts.height;
    let mut usd = 0.0;
    for (o, p) in outputs {
        let minutes = match &o.options.trim {
            Some(t) => {
                let end = t
                    .end_seconds
                    .unwrap_or(f64::MAX)
                    .min(facts.duration_seconds.unwrap_or(60.0));
                ((end - t.start_seconds).max(0.0)) / 60.0
            }
            None => source_minutes,
        };
        let class = |max_h: u32| PriceClass::of_height(src_h.map(|h| h.min(max_h)).unwrap_or(max_h));
        // the trial encodes of outputs made by VMAF: the samples' minutes, once a trial
        let sampled = |(n, secs): (u32, f64)| (f64::from(n) * secs / 60.0).min(minutes);
        match &p.kind {
            PresetKind::File { video: Some(v), .. } => {
                let trials = match v.target_vmaf {
                    Some(_) => f64::from(crate::target_vmaf::EXPECTED_TRIALS) * sampled(crate::target_vmaf::SAMPLES),
                    None => 0.0,
                };
                usd += backend.prices.per_minute(class(v.max_height)) * (minutes + trials)
            }
            PresetKind::File { video: None, .. } => usd += backend.prices.per_minute(PriceClass::Audio) * minutes,
            PresetKind::Ladder { rungs, per_title, .. } => {
                // the rungs the source can fill, as the ladder builder picks them
                let kept = match src_h {
                    Some(h) => crate::presets::ladder_for(rungs, h),
                    None => rungs.clone(),
                };
                let trials = per_title
                    .as_ref()
                    .map(|pt| f64::from(pt.rates_per_rung) * sampled((pt.samples, pt.sample_seconds)))
                    .unwrap_or(0.0);
                for r in kept {
                    usd += backend.prices.per_minute(class(r.height)) * (minutes + trials);
                }
                usd += backend.prices.per_minute(PriceClass::Audio) * minutes;
            }
            PresetKind::Thumbnails(t) => {
                let n = match t.mode {
                    ThumbnailMode::Poster => 1,
                    _ => o.options.count.unwrap_or(t.count),
                };
                usd += backend.prices.image * f64::from(n);
            }
        }
    }
    // to a millionth of a dollar: a short clip's estimate stays above 0, and
    // `cheapest` can still tell backends apart
    (usd * 1_000_000.0).round() / 1_000_000.0
}

/// Each backend able to make the outputs with its estimate, and each unable one with why
/// (what it cannot make, or a fleet whose live workers cannot score VMAF).
#[allow(clippy::type_complexity)]
fn able(
    routing: &Routing,
    resolved: &[(&OutputSpec, &Preset)],
    facts: &Facts,
) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut estimates = BTreeMap::new();
    let mut unable = BTreeMap::new();
    for b in &routing.backends {
        let blind = b.kind == BackendKind::Ffmpeg && facts.fleet_libvmaf == Some(false);
        match resolved.iter().try_for_each(|(o, p)| {
            b.can_make(p, &o.options)
                .and_then(|()| match blind && crate::capability::needs_vmaf(p, &o.options) {
                    true => Err(crate::capability::FLEET_WITHOUT_VMAF.to_string()),
                    false => Ok(()),
                })
                .map_err(|e| format!("output `{}`: {e}", o.name))
        }) {
            Ok(()) => {
                estimates.insert(b.name.clone(), estimate(b, resolved, facts));
            }
            Err(e) => {
                unable.insert(b.name.clone(), e);
            }
        }
    }
    (estimates, unable)
}

/// Routes a job: the first matching rule's backend (or the cheapest able one), else the
/// default. A rule whose backend cannot make the outputs is passed over, and the
/// decision says so. Unknown presets must have been refused before.
pub fn route(routing: &Routing, catalog: &Catalog, outputs: &[OutputSpec], facts: &Facts) -> Decision {
    let resolved: Vec<(&OutputSpec, &Preset)> = outputs
        .iter()
        .filter_map(|o| catalog.find(&o.preset).map(|p| (o, p)))
        .collect();
    let presets: Vec<&str> = outputs.iter().map(|o| o.preset.as_str()).collect();
    let (estimates, unable) = able(routing, &resolved, facts);
    let per = if facts.duration_seconds.is_some() {
        ""
    } else {
        " per minute of source (duration unknown)"
    };
    let cheapest = || {
        routing
            .backends
            .iter()
            .filter_map(|b| estimates.get(&b.name).map(|c| (b.name.clone(), *c)))
            .fold(None::<(String, f64)>, |best, (n, c)| match best {
                Some((_, bc)) if bc <= c => best,
                _ => Some((n, c)),
            })
    };
    let mut passed_over = Vec::new();
    let mut chosen: Option<(String, Option<String>, String)> = None;
    for r in &routing.rules {
        match r.when.test(facts, &presets) {
            Err(_) => continue,
            Ok(()) => match &r.choice {
                Choice::Cheapest => {
                    if let Some((n, c)) = cheapest() {
                        chosen = Some((
                            n.clone(),
                            Some(r.name.clone()),
                            format!(
                                "rule `{}` matched: {n} is the cheapest able backend at ${c:.4}{per}",
                                r.name
                            ),
                        ));
                        break;
                    }
                }
                Choice::Backend(b) => {
                    if let Some(why) = unable.get(b) {
                        passed_over.push(format!("rule `{}` chose {b}, which cannot make it ({why})", r.name));
                        continue;
                    }
                    chosen = Some((b.clone(), Some(r.name.clone()), format!("rule `{}` matched", r.name)));
                    break;
                }
            },
        }
    }
    let (backend, rule, mut reason) = chosen.unwrap_or_else(|| {
        if let Some(why) = unable.get(&routing.default) {
            let (n, _) = cheapest().unwrap_or((routing.default.clone(), 0.0));
            let reason = format!(
                "no rule matched; the default {} cannot make it ({why}), so the cheapest able backend, {n}",
                routing.default
            );
            (n, None, reason)
        } else {
            (
                routing.default.clone(),
                None,
                format!("no rule matched: the default, {}", routing.default),
            )
        }
    });
    if !passed_over.is_empty() {
        reason.push_str(&format!(" (passed over: {})", passed_over.join("; ")));
    }
    let estimated_cost_usd = facts.duration_seconds.and_then(|_| estimates.get(&backend).copied());
    Decision {
        backend,
        rule,
        reason,
        estimated_cost_usd,
        estimates,
        unable,
        facts: facts.clone(),
        fallback_from: None,
    }
}

#[cfg(test)]
mod tests;
