use lambda_http::{run, Error};
use nommer_core::flows::Backends;
use nommer_core::settings::BackendSettings;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = BackendSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let secrets = nommer_aws::secrets::SecretsManagerSecrets::new(&config);
    let remotes = nommer_encodingcom::remotes(&settings, &secrets).await?;
    let prober = nommer_media::FfprobeProber::for_backends(&settings);
    let backends = Backends::new(settings.clone(), nommer_aws::ports(&config, &settings, remotes, prober));
    run(encodingcom::router(Arc::new(backends))).await
}
