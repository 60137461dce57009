//! The one SDK config factory. Production and the local stack differ only by
//! `AWS_ENDPOINT_URL`, which the SDK reads itself; S3 then uses path-style addressing.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use nommer_core::settings::{CallLimits, SettingsError};

/// Loads the SDK config from the environment (region, credentials, `AWS_ENDPOINT_URL`),
/// with the call limits of `NOMMER_AWS_*` (a malformed one fails fast, by name).
pub async fn sdk_config() -> Result<SdkConfig, SettingsError> {
    let limits = CallLimits::from_env()?;
    Ok(bounded(aws_config::defaults(BehaviorVersion::latest()), &limits)
        .load()
        .await)
}

/// The SDK config for a given endpoint with static credentials: what the local stack and
/// its tests use against the emulator, with the default call limits.
pub async fn sdk_config_for_endpoint(endpoint: &str, region: &str) -> SdkConfig {
    sdk_config_with(endpoint, region, &CallLimits::default()).await
}

/// [`sdk_config_for_endpoint`] with these call limits.
pub async fn sdk_config_with(endpoint: &str, region: &str, limits: &CallLimits) -> SdkConfig {
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "nommer-local");
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(creds);
    bounded(loader, limits).load().await
}

/// Every call with its timeouts and a bounded number of attempts.
fn bounded(loader: ConfigLoader, limits: &CallLimits) -> ConfigLoader {
    loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .read_timeout(limits.first_byte)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.call)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(limits.max_attempts)
                .with_initial_backoff(limits.backoff),
        )
}

pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_settings(config).build())
}

/// An S3 client that signs with `credentials` instead of the config's own (the source
/// reader's long-lived key, for presigned URLs that outlive a session).
pub fn s3_client_with(config: &SdkConfig, credentials: aws_sdk_s3::config::Credentials) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_settings(config).credentials_provider(credentials).build())
}

/// The one place an S3 client's settings are made: path-style addressing when an
/// endpoint is set (the emulator has no per-bucket host names).
fn s3_settings(config: &SdkConfig) -> aws_sdk_s3::config::Builder {
    let b = aws_sdk_s3::config::Builder::from(config);
    if config.endpoint_url().is_some() {
        b.force_path_style(true)
    } else {
        b
    }
}

pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An SDK error as one line with its whole context (the service's code and message, the
/// connector's cause): the one way every adapter reports them.
pub fn error_text<E: std::error::Error>(e: &E) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

/// An SDK call that failed, as its one line of text; each adapter's error type takes it.
#[derive(Debug)]
pub struct SdkFailure(pub String);

/// `map_err(sdk::failed)`: an SDK error as the adapter's own error type.
pub fn failed<E: From<SdkFailure>, X: std::error::Error>(e: X) -> E {
    E::from(SdkFailure(error_text(&e)))
}

impl From<SdkFailure> for nommer_core::StoreError {
    fn from(f: SdkFailure) -> Self {
        nommer_core::StoreError::Aws(f.0)
    }
}

impl From<SdkFailure> for nommer_core::ports::ObjectError {
    fn from(f: SdkFailure) -> Self {
        nommer_core::ports::ObjectError::Aws(f.0)
    }
}

impl From<SdkFailure> for nommer_core::ports::QueueError {
    fn from(f: SdkFailure) -> Self {
        nommer_core::ports::QueueError(f.0)
    }
}
