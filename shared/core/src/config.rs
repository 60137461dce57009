//! The config file (TOML, path in `NOMMER_CONFIG`): extra presets and how outputs are
//! named. Read once at start and checked whole; a bad file is refused with the line and
//! the problem.
//!
//! ```toml
//! [outputs]
//! key_template = "{job_id}/{output_name}/"
//! quality = true   # score every video output (VMAF, PSNR, SSIM) unless it says not to
//!
//! [limits]
//! max_duration_seconds = 21600
//! max_pixels = 35389440
//! max_streams = 16
//!
//! [presets.mp4-540p]
//! description = "MP4, H.264 up to 540p"
//! kind = "file"
//! container = "mp4"
//! video = { codec = "h264", max_height = 540, crf = 23, max_bitrate_kbps = 3000 }
//! audio = { codec = "aac", bitrate_kbps = 128 }
//! ```

use crate::presets::{Catalog, Preset, PresetKind};
use crate::routing::{
    Backend, BackendKind, Choice, EncodingComBackend, Match, PriceTable, Routing, RoutingError, Rule,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The default output folder: `<job id>/<output name>/`.
pub const DEFAULT_KEY_TEMPLATE: &str = "{job_id}/{output_name}/";
/// The placeholders a key template may use.
pub const TEMPLATE_FIELDS: [&str; 5] = ["job_id", "output_name", "preset", "source_stem", "date"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub catalog: Catalog,
    pub key_template: String,
    /// Whether outputs are scored for quality when they do not say (`[outputs] quality`).
    pub quality: bool,
    /// What a source may be; `NOMMER_MAX_*` variables override these.
    pub limits: crate::ffmpeg::Limits,
    /// The backends, their prices and the rules that choose between them.
    pub routing: crate::routing::Routing,
    /// Where job events are POSTed, and how.
    pub webhooks: crate::events::Webhooks,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            catalog: Catalog::builtin(),
            key_template: DEFAULT_KEY_TEMPLATE.into(),
            quality: false,
            limits: crate::ffmpeg::Limits::default(),
            routing: crate::routing::Routing::default(),
            webhooks: crate::events::Webhooks::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    outputs: Option<RawOutputs>,
    #[serde(default)]
    presets: BTreeMap<String, RawPreset>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    routing: Option<RawRouting>,
    #[serde(default)]
    webhooks: Option<RawWebhooks>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    job_progress: bool,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    allow_private: bool,
    #[serde(default)]
    retry_seconds: Option<Vec<u64>>,
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    url: String,
    secret: String,
    #[serde(default)]
    states: Vec<crate::state::JobState>,
    #[serde(default = "yes")]
    progress: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: BackendKind,
    #[serde(default)]
    prices: PriceTable,
    #[serde(default)]
    fallback: Option<String>,
    /// Encoding.com only.
    #[serde(default)]
    endpoint: Option<String>,
    /// Encoding.com only: the Secrets Manager secret with `userid` and `userkey`.
    #[serde(default)]
    secret: Option<String>,
    /// Encoding.com only.
    #[serde(default)]
    poll_seconds: Option<u64>,
    /// FFmpeg only: sources longer than this are split across workers (0: never).
    #[serde(default)]
    split_after_seconds: Option<f64>,
    /// FFmpeg only: the target length of a split job's chunks.
    #[serde(default)]
    chunk_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    default: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    backend: String,
    #[serde(default, rename = "match")]
    when: Match,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_duration_seconds: Option<f64>,
    max_pixels: Option<u64>,
    max_streams: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputs {
    key_template: Option<String>,
    quality: Option<bool>,
}

#[derive(Deserialize)]
struct RawPreset {
    #[serde(default)]
    description: String,
    #[serde(flatten)]
    kind: PresetKind,
}

/// The keys each kind of preset may have (serde cannot refuse unknown keys through a
/// flattened enum, so they are checked here).
fn known_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" => &["description", "kind", "container", "video", "audio"],
        "ladder" => &[
            "description",
            "kind",
            "format",
            "codec",
            "rungs",
            "audio",
            "segment_seconds",
            "per_title",
        ],
        "thumbnails" => &["description", "kind", "mode", "count", "width", "columns"],
        _ => &[],
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(1)
}

/// Checks a key template: known placeholders only, and a result that is a safe S3 prefix.
pub fn check_key_template(t: &str) -> Result<(), String> {
    if !t.contains("{job_id}") {
        return Err("must contain {job_id} so jobs never overwrite each other".into());
    }
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let end = rest[i..].find('}').ok_or("has an unclosed {")? + i;
        let field = &rest[i + 1..end];
        if !TEMPLATE_FIELDS.contains(&field) {
            return Err(format!(
                "uses {{{field}}}; known: {}",
                TEMPLATE_FIELDS.map(|f| format!("{{{f}}}")).join(" ")
            ));
        }
        rest = &rest[end + 1..];
    }
    if t.starts_with('/') || t.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err("must be a relative key prefix without . or .. segments".into());
    }
    Ok(())
}

pub use crate::job::render_key_template;

/// A config file that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// Not TOML, or not the shape of a config file (the parser's message has the line).
    #[error("{origin}: {problem}")]
    Syntax { origin: String, problem: String },
    #[error("{origin}: line {line}: {problem}")]
    Invalid {
        origin: String,
        line: usize,
        problem: String,
    },
}

/// The file being parsed, to place an error on the line that holds `needle`.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn at(&self, needle: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: line_of(self.text, needle),
            problem: problem.into(),
        }
    }

    fn syntax(&self, e: toml::de::Error) -> ConfigError {
        ConfigError::Syntax {
            origin: self.origin.to_string(),
            problem: e.to_string(),
        }
    }
}

impl Config {
    /// Parses a config file's text; errors say where and what.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let src = Source { text, origin };
        let raw: RawConfig = toml::from_str(text).map_err(|e| src.syntax(e))?;
        // unknown keys inside presets
        let table: toml::Table = toml::from_str(text).map_err(|e| src.syntax(e))?;
        if let Some(presets) = table.get("presets").and_then(|p| p.as_table()) {
            for (name, body) in presets {
                let Some(body) = body.as_table() else { continue };
                let kind = body.get("kind").and_then(|k| k.as_str()).unwrap_or("");
                for key in body.keys() {
                    if !known_keys(kind).contains(&key.as_str()) {
                        return Err(src.at(
                            &format!("{key} ="),
                            format!(
                                "preset `{name}`: unknown key `{key}` for kind `{kind}`; known: {}",
                                known_keys(kind).join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        let mut extra: Vec<Preset> = Vec::new();
        for (name, p) in raw.presets {
            extra.push(Preset {
                name: name.clone(),
                description: p.description,
                kind: p.kind,
            });
        }
        let catalog = Catalog::with(extra).map_err(|e| src.at(&format!("[presets.{}]", e.preset), e.to_string()))?;
        let quality = raw.outputs.as_ref().and_then(|o| o.quality).unwrap_or(false);
        let key_template = raw
            .outputs
            .and_then(|o| o.key_template)
            .unwrap_or_else(|| DEFAULT_KEY_TEMPLATE.into());
        check_key_template(&key_template).map_err(|e| src.at("key_template", format!("outputs.key_template {e}")))?;
        let mut limits = crate::ffmpeg::Limits::default();
        if let Some(l) = raw.limits {
            let bad = |what: &str| src.at(what, format!("limits.{what} is out of range"));
            if let Some(d) = l.max_duration_seconds {
                if !(d.is_finite() && d >= 1.0) {
                    return Err(bad("max_duration_seconds"));
                }
                limits.max_duration_seconds = d;
            }
            if let Some(p) = l.max_pixels {
                if p < 64 * 64 {
                    return Err(bad("max_pixels"));
                }
                limits.max_pixels = p;
            }
            if let Some(n) = l.max_streams {
                if n == 0 {
                    return Err(bad("max_streams"));
                }
                limits.max_streams = n;
            }
        }
        let routing = parse_routing(raw.backends, raw.routing, &src)?;
        crate::routing::check_rule_presets(&routing, &catalog).map_err(|e| routing_error(&src, e))?;
        let webhooks = parse_webhooks(raw.webhooks, &src)?;
        Ok(Config {
            catalog,
            key_template,
            quality,
            limits,
            routing,
            webhooks,
        })
    }

    /// The backend named `name`, or an error fit for a log.
    pub fn backend(&self, name: &str) -> Result<&Backend, String> {
        self.routing
            .backend(name)
            .ok_or_else(|| format!("backend `{name}` is not in the config file"))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, &path.display().to_string())
    }
}

fn parse_webhooks(raw: Option<RawWebhooks>, src: &Source) -> Result<crate::events::Webhooks, ConfigError> {
    use crate::events::{Endpoint, SigningSecret, Webhooks};
    let Some(raw) = raw else {
        return Ok(Webhooks::default());
    };
    let bad = |needle: &str, what: String| src.at(needle, format!("webhooks: {what}"));
    let secret = match raw.secret {
        Some(s) => Some(SigningSecret::parse(&s).map_err(|e| bad("secret", e))?),
        None => None,
    };
    let retry_seconds = raw
        .retry_seconds
        .unwrap_or_else(|| crate::events::DEFAULT_RETRY_SECONDS.to_vec());
    if retry_seconds.is_empty() || retry_seconds.len() > 20 || retry_seconds.iter().any(|s| *s > 2 * 86_400) {
        return Err(bad(
            "retry_seconds",
            "retry_seconds lists 1-20 delays of at most 2 days".into(),
        ));
    }
    let mut w = Webhooks {
        secret,
        job_progress: raw.job_progress,
        endpoints: Vec::new(),
        allow_http: raw.allow_http,
        allow_private: raw.allow_private,
        retry_seconds,
    };
    for e in raw.endpoints {
        let at = format!("\"{}\"", e.name);
        crate::events::check_url(&e.url, &w).map_err(|m| bad(&at, format!("endpoint `{}`: {m}", e.name)))?;
        let secret = SigningSecret::parse(&e.secret).map_err(|m| bad(&at, format!("endpoint `{}`: {m}", e.name)))?;
        w.endpoints.push(Endpoint {
            name: e.name,
            url: e.url,
            secret,
            states: e.states,
            progress: e.progress,
        });
    }
    Ok(w)
}

fn parse_routing(
    backends: BTreeMap<String, RawBackend>,
    routing: Option<RawRouting>,
    src: &Source,
) -> Result<Routing, ConfigError> {
    if backends.is_empty() {
        if routing.is_some() {
            return Err(src.at("[routing", "[routing] needs at least one [backends.<name>] table"));
        }
        return Ok(Routing::default());
    }
    let mut out = Vec::new();
    for (name, b) in backends {
        let at = format!("[backends.{name}]");
        out.push(parse_backend(name, b).map_err(|what| src.at(&at, what))?);
    }
    let raw = routing.unwrap_or(RawRouting {
        default: None,
        rules: Vec::new(),
    });
    let default = match raw.default {
        Some(d) => d,
        None if out.len() == 1 => out[0].name.clone(),
        None => {
            return Err(src.at(
                "[routing",
                "[routing] default is required when there are several backends",
            ))
        }
    };
    let mut rules = Vec::new();
    for r in raw.rules {
        let choice = if r.backend == "cheapest" {
            Choice::Cheapest
        } else {
            Choice::Backend(r.backend)
        };
        rules.push(Rule {
            name: r.name,
            when: r.when,
            choice,
        });
    }
    let routing = Routing {
        backends: out,
        rules,
        default,
    };
    routing.check().map_err(|e| routing_error(src, e))?;
    Ok(routing)
}

/// A routing error placed on the line of the default, backend or rule it names.
fn routing_error(src: &Source, e: RoutingError) -> ConfigError {
    let needle = match &e {
        RoutingError::UnknownDefault { .. } => "default".to_string(),
        RoutingError::Rule { rule, .. } => format!("\"{rule}\""),
        RoutingError::Backend { backend, .. } => format!("[backends.{backend}]"),
    };
    src.at(&needle, e.to_string())
}

/// One `[backends.<name>]` table; errors name the backend (the caller adds the line).
fn parse_backend(name: String, b: RawBackend) -> Result<Backend, String> {
    let bad = |what: String| format!("backends.{name}: {what}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(bad("use a name of a-z 0-9 -".into()));
    }
    let (encodingcom, split) = match b.kind {
        BackendKind::Ffmpeg => {
            if b.endpoint.is_some() || b.secret.is_some() || b.poll_seconds.is_some() {
                return Err(bad(
                    "endpoint, secret and poll_seconds are for kind = \"encodingcom\" only".into(),
                ));
            }
            (None, Some(split_settings(&b).map_err(bad)?))
        }
        BackendKind::EncodingCom => {
            if b.split_after_seconds.is_some() || b.chunk_seconds.is_some() {
                return Err(bad(
                    "split_after_seconds and chunk_seconds are for kind = \"ffmpeg\" only (Encoding.com jobs are never split)"
                        .into(),
                ));
            }
            let endpoint = b
                .endpoint
                .unwrap_or_else(|| crate::routing::ENCODINGCOM_ENDPOINT.to_string());
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(bad(format!("endpoint `{endpoint}` is not an http(s) URL")));
            }
            let poll_seconds = b.poll_seconds.unwrap_or(60);
            if poll_seconds == 0 {
                return Err(bad("poll_seconds must be at least 1".into()));
            }
            let remote = EncodingComBackend {
                endpoint,
                credentials: match b.secret {
                    Some(s) if !s.trim().is_empty() => crate::routing::Credentials::SecretsManager(s),
                    _ => crate::routing::Credentials::Env,
                },
                poll_seconds,
            };
            (Some(remote), None)
        }
    };
    Ok(Backend {
        name,
        kind: b.kind,
        prices: b.prices,
        fallback: b.fallback,
        encodingcom,
        split,
    })
}

/// An FFmpeg backend's split settings, the defaults where the file is silent.
fn split_settings(b: &RawBackend) -> Result<crate::split::SplitSettings, String> {
    let d = crate::split::SplitSettings::default();
    let after = b.split_after_seconds.unwrap_or(d.after_seconds);
    let chunk = b.chunk_seconds.unwrap_or(d.chunk_seconds);
    if !after.is_finite() || after < 0.0 {
        return Err(format!("split_after_seconds = {after}: use 0 (never split) or more"));
    }
    if !chunk.is_finite() || chunk < 2.0 {
        return Err(format!("chunk_seconds = {chunk}: use 2 or more"));
    }
    Ok(crate::split::SplitSettings {
        after_seconds: after,
        chunk_seconds: chunk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[outputs]
key_template = "{date}/{job_id}/{output_name}"

[limits]
max_duration_seconds = 600
max_streams = 4

[presets.mp4-540p]
description = "MP4, H.264 up to 540p"
kind = "file"
container = "mp4"
video = { codec = "h264", max_height = 540, crf = 23, max_bitrate_kbps = 3000 }
audio = { codec = "aac", bitrate_kbps = 128 }

[presets.mp4-540p-auto]
kind = "file"
container = "mp4"
video = { codec = "h264", max_height = 540, crf = 24, max_bitrate_kbps = 3000, target_vmaf = 92, vmaf_tolerance = 0.5, crf_range = [18, 34] }
audio = { codec = "aac", bitrate_kbps = 128 }

[presets.hls-small]
kind = "ladder"
format = "hls"
codec = "h264"
rungs = [{ height = 360, video_kbps = 800 }, { height = 240, video_kbps = 400 }]
audio = { codec = "aac", bitrate_kbps = 96 }
segment_seconds = 6

[presets.hls-small-auto]
kind = "ladder"
format = "hls"
codec = "h264"
rungs = [{ height = 360, video_kbps = 800 }, { height = 240, video_kbps = 400 }]
audio = { codec = "aac", bitrate_kbps = 96 }
segment_seconds = 6
per_title = { samples = 4, goals = [
  { height = 360, target_vmaf = 84, min_kbps = 250, max_kbps = 1200 },
  { height = 240, target_vmaf = 76, min_kbps = 150, max_kbps = 600 } ] }

[presets.contact-sheet]
kind = "thumbnails"
mode = "sprite"
count = 24
width = 120
columns = 6
"#;

    #[test]
    fn a_good_file_extends_the_catalog() {
        let c = Config::parse(GOOD, "nommer.toml").unwrap();
        assert!(c.catalog.find("mp4-540p").is_some());
        assert!(c.catalog.find("hls-small").is_some());
        match &c.catalog.find("hls-small-auto").unwrap().kind {
            PresetKind::Ladder {
                per_title: Some(pt), ..
            } => {
                assert_eq!((pt.samples, pt.sample_seconds, pt.goals.len()), (4, 2.0, 2));
            }
            other => panic!("{other:?}"),
        }
        match &c.catalog.find("mp4-540p-auto").unwrap().kind {
            PresetKind::File { video: Some(v), .. } => {
                let s = v.crf_search().unwrap();
                assert_eq!(
                    (s.target_vmaf, s.tolerance, s.crf_min, s.crf_max, s.start),
                    (92.0, 0.5, 18, 34, 24)
                );
            }
            other => panic!("{other:?}"),
        }
        let bad = GOOD.replace("crf_range = [18, 34]", "crf_range = [34, 18]");
        let e = Config::parse(&bad, "nommer.toml").unwrap_err().to_string();
        assert!(e.contains("mp4-540p-auto") && e.contains("crf_range"), "{e}");
        let bad = GOOD.replace("target_vmaf = 92, ", "");
        let e = Config::parse(&bad, "nommer.toml").unwrap_err().to_string();
        assert!(e.contains("go with target_vmaf"), "{e}");
        // a goal for a rung the ladder does not have is refused, naming the preset
        let bad = GOOD.replace("height = 240, target_vmaf", "height = 480, target_vmaf");
        let e = Config::parse(&bad, "nommer.toml").unwrap_err().to_string();
        assert!(e.contains("hls-small-auto") && e.contains("240p needs one goal"), "{e}");
        assert!(c.catalog.find("mp4-720p").is_some(), "built-ins stay");
        assert_eq!(c.key_template, "{date}/{job_id}/{output_name}");
        assert_eq!((c.limits.max_duration_seconds, c.limits.max_streams), (600.0, 4));
        assert_eq!(c.limits.max_pixels, crate::ffmpeg::Limits::default().max_pixels);
        assert_eq!(
            render_key_template(&c.key_template, "j1", "web", "mp4-540p", "clip", "2026-11-25"),
            "2026-11-25/j1/web/"
        );
    }

    #[test]
    fn split_settings_are_the_fleets_with_defaults_and_never_encodingcoms() {
        let c = Config::parse(
            "[backends.fleet]\nkind = \"ffmpeg\"\nsplit_after_seconds = 120\n\n[routing]\ndefault = \"fleet\"\n",
            "c.toml",
        )
        .unwrap();
        let split = c.routing.backend("fleet").unwrap().split.unwrap();
        assert_eq!((split.after_seconds, split.chunk_seconds), (120.0, 60.0));
        assert_eq!(
            Config::default().routing.backends[0].split,
            Some(crate::split::SplitSettings::default())
        );
        let e = Config::parse("[backends.e]\nkind = \"encodingcom\"\nchunk_seconds = 30\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("never split"), "{e}");
        let e = Config::parse("[backends.f]\nkind = \"ffmpeg\"\nchunk_seconds = 1\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chunk_seconds = 1"), "{e}");
    }

    #[test]
    fn bad_files_name_the_line_and_the_problem() {
        let e = Config::parse("[presets.x]\nkind = \"file\"\ncontainer = \"avi\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("line") && e.contains("avi"), "{e}");
        let e = Config::parse("[presets.x]\nkind = \"file\"\ncontainer = \"mp4\"\nvideo = { codec = \"h264\", max_height = 540, crf = 23, max_bitrate_kbps = 3000 }\ncrf_max = 3\n", "c.toml")
            .unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("unknown key `crf_max`"), "{e}");
        let e = Config::parse("\n\n[presets.y]\nkind = \"file\"\ncontainer = \"mp3\"\nvideo = { codec = \"h264\", max_height = 540, crf = 23, max_bitrate_kbps = 3000 }\n", "c.toml")
            .unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("cannot go in a Mp3 file"), "{e}");
        let e = Config::parse("[outputs]\nkey_template = \"{output_name}/\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("{job_id}"), "{e}");
        let e = Config::parse("[outputs]\nkey_template = \"{job_id}/{user}/\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("{user}"), "{e}");
        let e = Config::parse("[limits]\nmax_streams = 0\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("max_streams"), "{e}");
        let e = Config::parse("[outptus]\n", "c.toml").unwrap_err().to_string();
        assert!(e.contains("outptus"), "{e}");
        // the line is a field, not only a part of the message
        let e = Config::parse("\n[backends.own]\nkind = \"ffmpeg\"\nfallback = \"own\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e,
            ConfigError::Invalid {
                origin: "c.toml".into(),
                line: 2,
                problem: "backends.own.fallback names itself".into()
            }
        );
    }
}
