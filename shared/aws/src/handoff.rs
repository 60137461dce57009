//! What handing a source to Encoding.com needs from S3: a presigned URL signed with the
//! read-only source reader's own long-lived access key (so it lives up to 7 days,
//! whatever the function's session credentials do), and the delivery bucket owner's
//! canonical id (granted full control of every object Encoding.com writes). Both are
//! looked up once, when the first task is added, so functions that add none never read
//! the secret.

use crate::objects::S3ObjectStore;
use crate::secrets::SecretsManagerSecrets;
use async_trait::async_trait;
use nommer_core::job::S3Uri;
use nommer_core::ports::{secret_field, HandoffError, Secrets};
use nommer_core::settings::{BackendSettings, DELIVERY_BUCKET, ENCODINGCOM_SOURCE_SECRET};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a source URL for Encoding.com lives: SigV4's maximum, 7 days, so a task that
/// waits hours in Encoding.com's queue can still fetch it.
pub const SOURCE_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone)]
pub struct S3Handoff {
    sdk: aws_config::SdkConfig,
    reader_secret: Option<String>,
    delivery_bucket: Option<String>,
    cell: Arc<OnceCell<Delivery>>,
}

#[derive(Clone)]
struct Delivery {
    reader: S3ObjectStore,
    owner_canonical_id: String,
}

impl S3Handoff {
    pub fn new(sdk: &aws_config::SdkConfig, settings: &BackendSettings) -> Self {
        S3Handoff {
            sdk: sdk.clone(),
            reader_secret: settings.source_reader_secret.clone(),
            delivery_bucket: settings.delivery_bucket.clone(),
            cell: Default::default(),
        }
    }

    async fn delivery(&self) -> Result<&Delivery, HandoffError> {
        self.cell.get_or_try_init(|| self.look_up()).await
    }

    async fn look_up(&self) -> Result<Delivery, HandoffError> {
        let name = self.reader_secret.as_deref().ok_or_else(|| {
            HandoffError::Unset(format!(
                "set {ENCODINGCOM_SOURCE_SECRET} to the secret with the source reader's access key"
            ))
        })?;
        let bucket = self.delivery_bucket.as_deref().ok_or_else(|| {
            HandoffError::Unset(format!(
                "set {DELIVERY_BUCKET} to the bucket Encoding.com delivers into"
            ))
        })?;
        let v = SecretsManagerSecrets::new(&self.sdk).json(name).await?;
        let id = secret_field(&v, name, "access_key_id")?;
        let key = secret_field(&v, name, "secret_access_key")?;
        let creds = aws_sdk_s3::config::Credentials::new(&id, key, None, None, "nommer-source-reader");
        let reader = S3ObjectStore::new(crate::sdk::s3_client_with(&self.sdk, creds));
        let acl = crate::sdk::s3_client(&self.sdk)
            .get_bucket_acl()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| {
                let why = crate::sdk::error_text(&e);
                HandoffError::Storage(format!("reading the owner of delivery bucket `{bucket}`: {why}"))
            })?;
        let owner = acl
            .owner()
            .and_then(|o| o.id())
            .ok_or_else(|| HandoffError::Storage(format!("delivery bucket `{bucket}` has no owner id")))?;
        Ok(Delivery {
            reader,
            owner_canonical_id: owner.to_string(),
        })
    }
}

#[async_trait]
impl nommer_core::ports::Handoff for S3Handoff {
    async fn source_url(&self, source: &S3Uri) -> Result<String, HandoffError> {
        let d = self.delivery().await?;
        d.reader
            .presign_get(&source.bucket, &source.key, SOURCE_URL_LIFETIME)
            .await
            .map_err(|e| HandoffError::Storage(e.to_string()))
    }

    async fn delivery_owner(&self) -> Result<String, HandoffError> {
        Ok(self.delivery().await?.owner_canonical_id.clone())
    }
}
