//! Encoding.com as a [`RemoteEncoder`] of the flows, and the clients for every
//! Encoding.com backend of the config file, their credentials resolved.

use crate::client::{Client, Error, MediaStatus};
use crate::formats::format_for;
use async_trait::async_trait;
use nommer_core::flows::Remotes;
use nommer_core::ports::{secret_field, RemoteEncoder, RemoteError, RemoteRequest, RemoteStatus, Secrets};
use nommer_core::routing::{BackendKind, Credentials};
use nommer_core::settings::{BackendSettings, UserKey, USERID_ENV, USERKEY_ENV};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct EncodingComEncoder {
    pub client: Client,
}

impl From<Error> for RemoteError {
    fn from(e: Error) -> Self {
        if e.is_retryable() {
            RemoteError::Retryable(e.to_string())
        } else {
            RemoteError::Refused(e.to_string())
        }
    }
}

impl From<MediaStatus> for RemoteStatus {
    fn from(m: MediaStatus) -> Self {
        RemoteStatus {
            media_id: m.media_id,
            status: m.status,
            progress: m.progress,
            errors: m.errors,
        }
    }
}

#[async_trait]
impl RemoteEncoder for EncodingComEncoder {
    async fn add(&self, r: &RemoteRequest<'_>) -> Result<String, RemoteError> {
        let owner = Some(r.owner_canonical_id.as_str());
        let mut formats = Vec::new();
        for o in &r.outputs {
            let f = format_for(o.preset, o.options, r.source_size, &o.destination, &o.stem, owner)
                .map_err(|e| RemoteError::Refused(format!("output {}: {e}", o.name)))?;
            formats.push(f);
        }
        Ok(self.client.add_media(&r.source_url, &r.callback_url, formats).await?)
    }

    async fn status(&self, media_id: &str) -> Result<RemoteStatus, RemoteError> {
        Ok(self.client.get_status(media_id).await?.into())
    }

    async fn cancel(&self, media_id: &str) -> Result<(), RemoteError> {
        Ok(self.client.cancel_media(media_id).await?)
    }
}

/// A client for every Encoding.com backend of the config file, its credentials from
/// Secrets Manager or the environment. Fails with what to set when they are missing.
pub async fn remotes(settings: &BackendSettings, secrets: &dyn Secrets) -> Result<Remotes, String> {
    let mut encoders: BTreeMap<String, Arc<dyn RemoteEncoder>> = BTreeMap::new();
    for b in settings.config.routing.of_kind(BackendKind::EncodingCom) {
        let e = b.encodingcom.as_ref().expect("encodingcom settings");
        let (userid, userkey) = match &e.credentials {
            Credentials::Env => match &settings.encodingcom_env {
                Some((i, k)) => (i.clone(), k.expose().to_string()),
                None => {
                    return Err(format!(
                        "backend `{}`: set {USERID_ENV} and {USERKEY_ENV}, or `secret` in the config file to a Secrets Manager secret with userid and userkey",
                        b.name
                    ))
                }
            },
            Credentials::SecretsManager(name) => {
                let v = secrets.json(name).await.map_err(|e| format!("backend `{}`: {e}", b.name))?;
                let field = |k: &str| secret_field(&v, name, k).map_err(|e| format!("backend `{}`: {e}", b.name));
                (field("userid")?, field("userkey")?)
            }
        };
        let endpoint = settings.encodingcom_endpoint.as_deref().unwrap_or(&e.endpoint);
        let client = Client::new(endpoint, &userid, UserKey::new(userkey));
        encoders.insert(b.name.clone(), Arc::new(EncodingComEncoder { client }));
    }
    Ok(Remotes::new(encoders))
}
