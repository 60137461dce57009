//! Typed settings, read once at start from environment variables (the SAM template sets
//! the same names). A missing or malformed variable fails fast with its name.

use std::path::PathBuf;
use std::time::Duration;

mod call_limits;
pub use call_limits::*;

pub const TABLE: &str = "NOMMER_TABLE";
pub const INBOX_BUCKET: &str = "NOMMER_INBOX_BUCKET";
pub const OUTBOX_BUCKET: &str = "NOMMER_OUTBOX_BUCKET";
pub const JOBS_QUEUE_URL: &str = "NOMMER_JOBS_QUEUE_URL";
pub const WORK_QUEUE_URL: &str = "NOMMER_WORK_QUEUE_URL";
pub const CHUNK_QUEUE_URL: &str = "NOMMER_CHUNK_QUEUE_URL";
pub const DEFAULT_PRESET: &str = "NOMMER_DEFAULT_PRESET";
pub const SOURCE_BUCKETS: &str = "NOMMER_SOURCE_BUCKETS";
pub const MAX_ATTEMPTS: &str = "NOMMER_MAX_ATTEMPTS";
pub const WORKER_ID: &str = "NOMMER_WORKER_ID";
pub const WORK_DIR: &str = "NOMMER_WORK_DIR";
pub const VISIBILITY_TIMEOUT_SECS: &str = "NOMMER_VISIBILITY_TIMEOUT_SECS";
pub const POLL_WAIT_SECS: &str = "NOMMER_POLL_WAIT_SECS";
pub const ENCODE_TIMEOUT_SECS: &str = "NOMMER_ENCODE_TIMEOUT_SECS";
pub const FFMPEG: &str = "NOMMER_FFMPEG";
/// The FFmpeg that scores outputs for quality (one with libvmaf); the encoding one by default.
pub const SCORE_FFMPEG: &str = "NOMMER_SCORE_FFMPEG";
pub const FFPROBE: &str = "NOMMER_FFPROBE";
pub const MAX_DURATION_SECS: &str = "NOMMER_MAX_DURATION_SECS";
pub const MAX_PIXELS: &str = "NOMMER_MAX_PIXELS";
pub const MAX_STREAMS: &str = "NOMMER_MAX_STREAMS";
pub const MAX_SOURCE_BYTES: &str = "NOMMER_MAX_SOURCE_BYTES";
pub const SCRATCH_HEADROOM_BYTES: &str = "NOMMER_SCRATCH_HEADROOM_BYTES";
pub const FORMAT_WHITELIST: &str = "NOMMER_FORMAT_WHITELIST";
pub const CONFIG: &str = "NOMMER_CONFIG";
pub const CONFIG_TOML: &str = "NOMMER_CONFIG_TOML";
pub const WORKER_CAPACITY: &str = "NOMMER_WORKER_CAPACITY";
pub const HEARTBEAT_SECS: &str = "NOMMER_HEARTBEAT_SECS";
pub const INTERRUPTION_FILE: &str = "NOMMER_INTERRUPTION_FILE";
pub const IMDS: &str = "NOMMER_IMDS";
pub const STACK: &str = "NOMMER_STACK";
pub const LAUNCH_TEMPLATE_ID: &str = "NOMMER_LAUNCH_TEMPLATE_ID";
pub const LAUNCH_TEMPLATE_VERSION: &str = "NOMMER_LAUNCH_TEMPLATE_VERSION";
pub const MIN_INSTANCES: &str = "NOMMER_MIN_INSTANCES";
pub const MAX_INSTANCES: &str = "NOMMER_MAX_INSTANCES";
pub const LAUNCH_STEP: &str = "NOMMER_LAUNCH_STEP";
pub const IDLE_TIMEOUT_SECS: &str = "NOMMER_IDLE_TIMEOUT_SECS";
pub const BOOT_GRACE_SECS: &str = "NOMMER_BOOT_GRACE_SECS";
pub const HEARTBEAT_STALE_SECS: &str = "NOMMER_HEARTBEAT_STALE_SECS";
pub const SCALE_OUT_COOLDOWN_SECS: &str = "NOMMER_SCALE_OUT_COOLDOWN_SECS";
pub const SCALE_IN_COOLDOWN_SECS: &str = "NOMMER_SCALE_IN_COOLDOWN_SECS";
pub const SPOT: &str = "NOMMER_SPOT";
pub const SUBNET_IDS: &str = "NOMMER_SUBNET_IDS";
pub const DEAD_LETTER_QUEUE_URLS: &str = "NOMMER_DEAD_LETTER_QUEUE_URLS";
pub const CALLBACK_URL: &str = "NOMMER_ENCODINGCOM_CALLBACK_URL";
pub const EVENTS_TOPIC_ARN: &str = "NOMMER_EVENTS_TOPIC_ARN";
pub const WEBHOOKS_QUEUE_URL: &str = "NOMMER_WEBHOOKS_QUEUE_URL";
pub const WEBHOOKS_DLQ_URL: &str = "NOMMER_WEBHOOKS_DLQ_URL";
pub const WEBHOOK_SECRET: &str = "NOMMER_WEBHOOK_SECRET";
pub const API_KEY_HASHES: &str = "NOMMER_API_KEY_HASHES";
/// Replaces every Encoding.com backend's endpoint (the local stand-in).
pub const USERID_ENV: &str = "NOMMER_ENCODINGCOM_USERID";
pub const USERKEY_ENV: &str = "NOMMER_ENCODINGCOM_USERKEY";
pub const ENCODINGCOM_ENDPOINT: &str = "NOMMER_ENCODINGCOM_ENDPOINT";
/// The bucket Encoding.com delivers into (ACLs accepted, never honoured); Nommer copies
/// each finished task's files from it into the outbox.
pub const DELIVERY_BUCKET: &str = "NOMMER_DELIVERY_BUCKET";
/// The Secrets Manager secret holding the access key of the read-only IAM user that
/// presigns source URLs for Encoding.com (`{"access_key_id": …, "secret_access_key": …}`).
pub const ENCODINGCOM_SOURCE_SECRET: &str = "NOMMER_ENCODINGCOM_SOURCE_SECRET";

/// Encoding.com's API user id and key, from the environment when no secret is named.
/// The API key; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKey(String);

impl UserKey {
    pub fn new(s: impl Into<String>) -> Self {
        UserKey(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKey(***)")
    }
}
impl std::fmt::Display for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing { name: &'static str, hint: &'static str },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// The config file is unreadable or wrong (the message has its path and line).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Where settings come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;
impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

fn required(src: &dyn Source, name: &'static str, hint: &'static str) -> Result<String, SettingsError> {
    src.get(name).ok_or(SettingsError::Missing { name, hint })
}

pub(crate) fn number<T>(src: &dyn Source, name: &'static str, default: T, min: T) -> Result<T, SettingsError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    match src.get(name) {
        None => Ok(default),
        Some(v) => {
            let n: T = v.trim().parse().map_err(|e: T::Err| SettingsError::Invalid {
                name,
                value: v.clone(),
                reason: e.to_string(),
            })?;
            if n < min {
                return Err(SettingsError::Invalid {
                    name,
                    value: v,
                    reason: format!("must be at least {min}"),
                });
            }
            Ok(n)
        }
    }
}

/// A comma-separated list (empty items dropped).
fn list(src: &dyn Source, name: &str) -> Vec<String> {
    src.get(name)
        .map(|v| {
            v.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The config file named by `NOMMER_CONFIG`, or its text in `NOMMER_CONFIG_TOML` (how the
/// SAM template passes it to functions), or the defaults.
fn config(src: &dyn Source) -> Result<crate::config::Config, SettingsError> {
    match (src.get(CONFIG), src.get(CONFIG_TOML)) {
        (Some(path), _) => crate::config::Config::load(std::path::Path::new(&path)).map_err(SettingsError::Config),
        (None, Some(text)) => crate::config::Config::parse(&text, CONFIG_TOML).map_err(SettingsError::Config),
        (None, None) => Ok(crate::config::Config::default()),
    }
}

fn preset_name(src: &dyn Source, catalog: &crate::presets::Catalog) -> Result<String, SettingsError> {
    let p = src
        .get(DEFAULT_PRESET)
        .unwrap_or_else(|| crate::presets::DEFAULT.to_string());
    if catalog.find(&p).is_none() {
        return Err(SettingsError::Invalid {
            name: DEFAULT_PRESET,
            reason: catalog.unknown(&p),
            value: p,
        });
    }
    Ok(p)
}

/// The largest source a job may have unless `NOMMER_MAX_SOURCE_BYTES` says otherwise:
/// 50 GiB (a 4K camera original of about an hour).
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 50 * 1024 * 1024 * 1024;
/// Free space a worker keeps beyond the source and outputs of its size: 256 MiB.
pub const DEFAULT_SCRATCH_HEADROOM_BYTES: u64 = 256 * 1024 * 1024;

/// Why a source of `size` bytes is refused under the limit `max`
/// (`NOMMER_MAX_SOURCE_BYTES`), naming it as `what`; `None` when it is within.
pub fn over_source_limit(what: &str, size: u64, max: u64) -> Option<String> {
    (size > max)
        .then(|| format!("{what} is {size} bytes, over this deployment's limit of {max} bytes ({MAX_SOURCE_BYTES})"))
}

fn max_source_bytes(src: &dyn Source) -> Result<u64, SettingsError> {
    number(src, MAX_SOURCE_BYTES, DEFAULT_MAX_SOURCE_BYTES, 1)
}

const TABLE_HINT: &str = "the DynamoDB table of jobs (the template sets it)";
const JOBS_HINT: &str = "the URL of the SQS queue of new jobs";

/// The ingest function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    pub table: String,
    pub jobs_queue_url: String,
    pub default_preset: String,
    pub config: crate::config::Config,
    /// Uploads over this many bytes make a job failed at once (`source_too_large`).
    pub max_source_bytes: u64,
}

impl IngestSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let config = config(src)?;
        Ok(IngestSettings {
            table: required(src, TABLE, TABLE_HINT)?,
            jobs_queue_url: required(src, JOBS_QUEUE_URL, JOBS_HINT)?,
            default_preset: preset_name(src, &config.catalog)?,
            config,
            max_source_bytes: max_source_bytes(src)?,
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

/// The API function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub table: String,
    pub jobs_queue_url: String,
    pub default_preset: String,
    /// Buckets a job's source may come from (the inbox, plus `NOMMER_SOURCE_BUCKETS`).
    pub source_buckets: Vec<String>,
    pub config: crate::config::Config,
    /// SHA-256 (hex) of the API keys accepted in `x-api-key` (or `Authorization:
    /// Bearer`); empty: the API is open (the local stack's tests).
    pub api_key_hashes: Vec<String>,
    /// Sources over this many bytes are refused at submit (`NOMMER_MAX_SOURCE_BYTES`).
    pub max_source_bytes: u64,
}

impl ApiSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let inbox = required(src, INBOX_BUCKET, "the S3 bucket users upload into")?;
        let mut source_buckets = vec![inbox];
        source_buckets.extend(list(src, SOURCE_BUCKETS));
        let config = config(src)?;
        Ok(ApiSettings {
            table: required(src, TABLE, TABLE_HINT)?,
            jobs_queue_url: required(src, JOBS_QUEUE_URL, JOBS_HINT)?,
            default_preset: preset_name(src, &config.catalog)?,
            source_buckets,
            config,
            max_source_bytes: max_source_bytes(src)?,
            api_key_hashes: {
                let hashes = list(src, API_KEY_HASHES);
                if let Some(bad) = hashes
                    .iter()
                    .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(SettingsError::Invalid {
                        name: API_KEY_HASHES,
                        value: bad.clone(),
                        reason: "list the SHA-256 (64 hex digits) of each key: echo -n KEY | sha256sum".into(),
                    });
                }
                hashes.into_iter().map(|h| h.to_ascii_lowercase()).collect()
            },
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

/// What the functions that hand jobs to backends share (dispatch, the Encoding.com
/// callback and poller, the API's cancel).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub table: String,
    pub work_queue_url: String,
    pub outbox_bucket: String,
    /// Where Encoding.com POSTs its notifications (the callback route); required when
    /// the config file has an Encoding.com backend.
    pub callback_url: Option<String>,
    /// ffprobe, to probe sources for routing rules over a presigned URL.
    pub ffprobe: String,
    pub limits: crate::ffmpeg::Limits,
    pub config: crate::config::Config,
    /// Encoding.com credentials from the environment (backends without `secret`).
    pub encodingcom_env: Option<(String, UserKey)>,
    /// `NOMMER_ENCODINGCOM_ENDPOINT`, if set.
    pub encodingcom_endpoint: Option<String>,
    /// `NOMMER_DELIVERY_BUCKET`; required with an Encoding.com backend.
    pub delivery_bucket: Option<String>,
    /// `NOMMER_ENCODINGCOM_SOURCE_SECRET`; required with an Encoding.com backend.
    pub source_reader_secret: Option<String>,
}

impl BackendSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let config = config(src)?;
        let callback_url = src.get(CALLBACK_URL);
        let remote = config
            .routing
            .of_kind(crate::routing::BackendKind::EncodingCom)
            .next()
            .is_some();
        if remote && callback_url.is_none() {
            return Err(SettingsError::Missing {
                name: CALLBACK_URL,
                hint: "the config file has an Encoding.com backend: set the URL of the /callbacks/encodingcom route",
            });
        }
        let delivery_bucket = src.get(DELIVERY_BUCKET);
        if remote && delivery_bucket.is_none() {
            return Err(SettingsError::Missing {
                name: DELIVERY_BUCKET,
                hint: "the config file has an Encoding.com backend: set the bucket it delivers into (the template's DeliveryBucket)",
            });
        }
        let source_reader_secret = src.get(ENCODINGCOM_SOURCE_SECRET);
        if remote && source_reader_secret.is_none() {
            return Err(SettingsError::Missing {
                name: ENCODINGCOM_SOURCE_SECRET,
                hint: "the config file has an Encoding.com backend: set the Secrets Manager secret with the source reader's access key (the template's EncodingComSourceReaderSecret)",
            });
        }
        Ok(BackendSettings {
            table: required(src, TABLE, TABLE_HINT)?,
            work_queue_url: required(src, WORK_QUEUE_URL, "the URL of the FFmpeg fleet's SQS work queue")?,
            outbox_bucket: required(src, OUTBOX_BUCKET, "the S3 bucket outputs are written to")?,
            callback_url,
            ffprobe: src.get(FFPROBE).unwrap_or_else(|| "ffprobe".into()),
            limits: limits(src, &config)?,
            config,
            encodingcom_env: match (src.get(USERID_ENV), src.get(USERKEY_ENV)) {
                (Some(i), Some(k)) => Some((i, UserKey::new(k))),
                _ => None,
            },
            encodingcom_endpoint: src.get(ENCODINGCOM_ENDPOINT),
            delivery_bucket,
            source_reader_secret,
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

/// Settings of the notify functions.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    pub table: String,
    pub topic_arn: String,
    pub webhooks_queue_url: String,
    pub webhooks_dlq_url: String,
    pub config: crate::config::Config,
    /// Signs deliveries to jobs' `notify_url` (overrides the config file's).
    pub webhook_secret: Option<crate::events::SigningSecret>,
}

impl NotifySettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let webhook_secret = match src.get(WEBHOOK_SECRET) {
            None => None,
            Some(v) => Some(
                crate::events::SigningSecret::parse(&v).map_err(|reason| SettingsError::Invalid {
                    name: WEBHOOK_SECRET,
                    value: "***".into(),
                    reason,
                })?,
            ),
        };
        Ok(NotifySettings {
            table: required(src, TABLE, TABLE_HINT)?,
            topic_arn: required(src, EVENTS_TOPIC_ARN, "the ARN of the SNS topic of job events")?,
            webhooks_queue_url: required(
                src,
                WEBHOOKS_QUEUE_URL,
                "the URL of the SQS queue of webhook deliveries",
            )?,
            webhooks_dlq_url: required(
                src,
                WEBHOOKS_DLQ_URL,
                "the URL of the dead-letter queue where failed webhook deliveries are parked",
            )?,
            config: config(src)?,
            webhook_secret,
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

/// The dispatch function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchSettings {
    pub table: String,
    pub work_queue_url: String,
    pub backends: BackendSettings,
}

impl DispatchSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let backends = BackendSettings::from_source(src)?;
        Ok(DispatchSettings {
            table: backends.table.clone(),
            work_queue_url: backends.work_queue_url.clone(),
            backends,
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

/// The worker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub table: String,
    pub work_queue_url: String,
    /// The queue of split jobs' tasks; without it, no job is split.
    pub chunk_queue_url: Option<String>,
    pub outbox_bucket: String,
    pub worker_id: String,
    pub work_dir: PathBuf,
    /// How long a received message stays hidden; the worker extends it at a third of this.
    pub visibility_timeout: Duration,
    pub poll_wait: Duration,
    pub max_attempts: u32,
    pub encode_timeout: Duration,
    pub ffmpeg: String,
    pub ffprobe: String,
    /// The FFmpeg that scores quality (`NOMMER_SCORE_FFMPEG`, else `ffmpeg`).
    pub score_ffmpeg: String,
    /// What a source may be (duration, pixels, streams, demuxers).
    pub limits: crate::ffmpeg::Limits,
    pub config: crate::config::Config,
    /// Jobs at once.
    pub capacity: u32,
    /// How often the worker heartbeats into the registry.
    pub heartbeat_interval: Duration,
    /// Local stand-in for a Spot interruption notice: when this file appears, the worker
    /// gives its jobs back and stops.
    pub interruption_file: Option<PathBuf>,
    /// On EC2: watch instance metadata (IMDSv2) for a Spot interruption notice.
    pub imds: bool,
    /// Sources over this many bytes fail before download (`source_too_large`).
    pub max_source_bytes: u64,
    /// Free space kept on the scratch disk beyond the source and outputs of its size.
    pub scratch_headroom_bytes: u64,
}

impl WorkerSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let worker_id = src.get(WORKER_ID).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "worker".into());
            format!("{}-{}", host.trim(), std::process::id())
        });
        let config = config(src)?;
        Ok(WorkerSettings {
            table: required(src, TABLE, TABLE_HINT)?,
            work_queue_url: required(src, WORK_QUEUE_URL, "the URL of the FFmpeg fleet's SQS work queue")?,
            chunk_queue_url: src.get(CHUNK_QUEUE_URL).filter(|u| !u.trim().is_empty()),
            outbox_bucket: required(src, OUTBOX_BUCKET, "the S3 bucket outputs are written to")?,
            worker_id,
            work_dir: src.get(WORK_DIR).map(PathBuf::from).unwrap_or_else(std::env::temp_dir),
            visibility_timeout: Duration::from_secs(number(src, VISIBILITY_TIMEOUT_SECS, 120, 6)?),
            poll_wait: Duration::from_secs(number(src, POLL_WAIT_SECS, 20, 0)?),
            max_attempts: number(src, MAX_ATTEMPTS, 3, 1)?,
            encode_timeout: Duration::from_secs(number(src, ENCODE_TIMEOUT_SECS, 6 * 3600, 1)?),
            ffmpeg: src.get(FFMPEG).unwrap_or_else(|| "ffmpeg".into()),
            ffprobe: src.get(FFPROBE).unwrap_or_else(|| "ffprobe".into()),
            score_ffmpeg: src
                .get(SCORE_FFMPEG)
                .or_else(|| src.get(FFMPEG))
                .unwrap_or_else(|| "ffmpeg".into()),
            limits: limits(src, &config)?,
            config,
            capacity: number(src, WORKER_CAPACITY, 1, 1)?,
            heartbeat_interval: Duration::from_secs(number(src, HEARTBEAT_SECS, 20, 1)?),
            interruption_file: src.get(INTERRUPTION_FILE).map(PathBuf::from),
            imds: src
                .get(IMDS)
                .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
                .unwrap_or(false),
            max_source_bytes: max_source_bytes(src)?,
            scratch_headroom_bytes: number(src, SCRATCH_HEADROOM_BYTES, DEFAULT_SCRATCH_HEADROOM_BYTES, 0)?,
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

fn limits(src: &dyn Source, config: &crate::config::Config) -> Result<crate::ffmpeg::Limits, SettingsError> {
    let d = config.limits.clone();
    let format_whitelist = match src.get(FORMAT_WHITELIST) {
        None => d.format_whitelist.clone(),
        Some(v) => {
            let bad = [
                "hls", "dash", "concat", "ffconcat", "sdp", "rtp", "rtsp", "image2", "tee", "lavfi",
            ];
            if let Some(b) = v.split(',').map(str::trim).find(|f| bad.contains(f)) {
                return Err(SettingsError::Invalid {
                    name: FORMAT_WHITELIST,
                    value: v.clone(),
                    reason: format!("`{b}` can make FFmpeg open other files or URLs and may not be allowed"),
                });
            }
            v
        }
    };
    Ok(crate::ffmpeg::Limits {
        max_duration_seconds: number(src, MAX_DURATION_SECS, d.max_duration_seconds, 1.0)?,
        max_pixels: number(src, MAX_PIXELS, d.max_pixels, 64 * 64)?,
        max_streams: number(src, MAX_STREAMS, d.max_streams, 1)?,
        format_whitelist,
        ..d
    })
}

/// The scaler function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerSettings {
    pub table: String,
    pub work_queue_url: String,
    /// Split jobs' tasks: backlog too.
    pub chunk_queue_url: Option<String>,
    /// Tags `nommer:stack=<stack>` mark this deployment's workers.
    pub stack: String,
    pub launch_template_id: String,
    pub launch_template_version: String,
    pub scaling: crate::scaling::ScalingSettings,
    /// Launch on Spot, falling back to on-demand when Spot has no capacity.
    pub spot: bool,
    /// Launches are spread over these (empty: the launch template's default).
    pub subnet_ids: Vec<String>,
    /// Dead-letter queues of job messages to sweep each round (jobs and work DLQs).
    pub dead_letter_queue_urls: Vec<String>,
}

impl ScalerSettings {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let secs = |name: &'static str, default: i64| -> Result<chrono::Duration, SettingsError> {
            Ok(chrono::Duration::seconds(number(src, name, default, 0)?))
        };
        let max: u32 = number(src, MAX_INSTANCES, 10, 0)?;
        let min: u32 = number(src, MIN_INSTANCES, 0, 0)?;
        if min > max {
            return Err(SettingsError::Invalid {
                name: MIN_INSTANCES,
                value: min.to_string(),
                reason: format!("is above {MAX_INSTANCES} ({max})"),
            });
        }
        Ok(ScalerSettings {
            table: required(src, TABLE, TABLE_HINT)?,
            work_queue_url: required(src, WORK_QUEUE_URL, "the URL of the FFmpeg fleet's SQS work queue")?,
            chunk_queue_url: src.get(CHUNK_QUEUE_URL).filter(|u| !u.trim().is_empty()),
            stack: required(src, STACK, "the stack name that tags this deployment's workers")?,
            launch_template_id: required(src, LAUNCH_TEMPLATE_ID, "the EC2 launch template workers start from")?,
            launch_template_version: src.get(LAUNCH_TEMPLATE_VERSION).unwrap_or_else(|| "$Latest".into()),
            scaling: crate::scaling::ScalingSettings {
                min_instances: min,
                max_instances: max,
                jobs_per_instance: number(src, WORKER_CAPACITY, 2, 1)?,
                launch_step: number(src, LAUNCH_STEP, 4, 1)?,
                scale_out_cooldown: secs(SCALE_OUT_COOLDOWN_SECS, 60)?,
                scale_in_cooldown: secs(SCALE_IN_COOLDOWN_SECS, 120)?,
                idle_timeout: secs(IDLE_TIMEOUT_SECS, 600)?,
                boot_grace: secs(BOOT_GRACE_SECS, 600)?,
                heartbeat_stale: secs(HEARTBEAT_STALE_SECS, 180)?,
            },
            spot: src
                .get(SPOT)
                .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
                .unwrap_or(false),
            dead_letter_queue_urls: list(src, DEAD_LETTER_QUEUE_URLS),
            subnet_ids: list(src, SUBNET_IDS),
        })
    }
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn missing_variable_is_named() {
        let err = DispatchSettings::from_source(&env(&[(TABLE, "t")])).unwrap_err();
        assert_eq!(
            err,
            SettingsError::Missing {
                name: WORK_QUEUE_URL,
                hint: "the URL of the FFmpeg fleet's SQS work queue"
            }
        );
        assert!(err.to_string().contains("NOMMER_WORK_QUEUE_URL"));
    }

    #[test]
    fn bad_numbers_and_presets_are_refused() {
        let base = [(TABLE, "t"), (WORK_QUEUE_URL, "q"), (OUTBOX_BUCKET, "o")];
        let mut e = env(&base);
        e.insert(VISIBILITY_TIMEOUT_SECS.into(), "soon".into());
        let err = WorkerSettings::from_source(&e).unwrap_err().to_string();
        assert!(err.contains("NOMMER_VISIBILITY_TIMEOUT_SECS"), "{err}");
        e.insert(VISIBILITY_TIMEOUT_SECS.into(), "2".into());
        assert!(WorkerSettings::from_source(&e)
            .unwrap_err()
            .to_string()
            .contains("at least 6"));
        let err = IngestSettings::from_source(&env(&[(TABLE, "t"), (JOBS_QUEUE_URL, "q"), (DEFAULT_PRESET, "nope")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a preset") && err.contains("mp4-720p"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let w =
            WorkerSettings::from_source(&env(&[(TABLE, "t"), (WORK_QUEUE_URL, "q"), (OUTBOX_BUCKET, "o")])).unwrap();
        assert_eq!(w.max_attempts, 3);
        assert_eq!(w.visibility_timeout, Duration::from_secs(120));
        assert_eq!(w.limits, crate::ffmpeg::Limits::default());
        assert_eq!(w.max_source_bytes, 50 * 1024 * 1024 * 1024);
        assert_eq!(w.scratch_headroom_bytes, 256 * 1024 * 1024);
        let mut big = env(&[(TABLE, "t"), (WORK_QUEUE_URL, "q"), (OUTBOX_BUCKET, "o")]);
        big.insert(MAX_SOURCE_BYTES.into(), "10GB".into());
        assert!(WorkerSettings::from_source(&big)
            .unwrap_err()
            .to_string()
            .contains("NOMMER_MAX_SOURCE_BYTES"));
        big.insert(MAX_SOURCE_BYTES.into(), "1000".into());
        assert_eq!(WorkerSettings::from_source(&big).unwrap().max_source_bytes, 1000);
        let mut e = env(&[
            (TABLE, "t"),
            (WORK_QUEUE_URL, "q"),
            (OUTBOX_BUCKET, "o"),
            (FORMAT_WHITELIST, "mov, hls"),
        ]);
        assert!(WorkerSettings::from_source(&e)
            .unwrap_err()
            .to_string()
            .contains("`hls`"));
        e.insert(FORMAT_WHITELIST.into(), "mov,matroska".into());
        e.insert(MAX_STREAMS.into(), "4".into());
        let w = WorkerSettings::from_source(&e).unwrap();
        assert_eq!(
            (w.limits.format_whitelist.as_str(), w.limits.max_streams),
            ("mov,matroska", 4)
        );
        let a = ApiSettings::from_source(&env(&[
            (TABLE, "t"),
            (JOBS_QUEUE_URL, "q"),
            (INBOX_BUCKET, "in"),
            (SOURCE_BUCKETS, "a, b,"),
        ]))
        .unwrap();
        assert_eq!(a.source_buckets, ["in", "a", "b"]);
        assert_eq!(a.default_preset, "mp4-720p");
    }
}
