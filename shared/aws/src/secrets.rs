//! Secrets Manager adapter: named secrets as JSON documents.

use async_trait::async_trait;

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
    async fn json(&self, name: &str) -> Result<serde_json::Value, String> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| format!("reading secret `{name}`: {}", crate::sdk::error_text(&e)))?;
        serde_json::from_str(out.secret_string().unwrap_or_default())
            .map_err(|_| format!("secret `{name}` is not JSON"))
    }
}

/// A string field of a secret, or what is missing.
pub fn field(secret: &serde_json::Value, name: &str, key: &str) -> Result<String, String> {
    secret
        .get(key)
        .and_then(|x| x.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("secret `{name}` has no `{key}` string"))
}
