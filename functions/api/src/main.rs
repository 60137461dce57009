use api::{router, ApiState};
use lambda_http::{run, Error};
use nommer_core::flows::Backends;
use nommer_core::liveness::LivenessSettings;
use nommer_core::settings::{ApiSettings, BackendSettings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = ApiSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let backend_settings = BackendSettings::from_env()?;
    let secrets = nommer_aws::secrets::SecretsManagerSecrets::new(&config);
    let remotes = nommer_encodingcom::remotes(&backend_settings, &secrets).await?;
    let prober = nommer_media::FfprobeProber::for_backends(&backend_settings);
    let backends = Backends::new(
        backend_settings.clone(),
        nommer_aws::ports(&config, &backend_settings, remotes, prober),
    );
    let state = ApiState::new(settings, backends, &config).with_liveness(LivenessSettings::from_env()?);
    run(router(Arc::new(state))).await
}
