//! Secrets Manager adapter: named secrets as JSON documents.

use async_trait::async_trait;
use nommer_core::ports::SecretError;

#[derive(Clone, Debug)]
pub struct SecretsManagerSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSecrets {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        SecretsManagerSecrets {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

#[async_trait]
impl nommer_core::ports::Secrets for SecretsManagerSecrets {
    async fn json(&self, name: &str) -> Result<serde_json::Value, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| SecretError::Unreadable {
                name: name.into(),
                reason: crate::sdk::error_text(&e),
            })?;
        serde_json::from_str(out.secret_string().unwrap_or_default())
            .map_err(|_| SecretError::NotJson { name: name.into() })
    }
}
