use lambda_http::{run, Error};
use nommer_shared::backends::Backends;
use nommer_shared::settings::BackendSettings;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_shared::telemetry::init();
    let settings = BackendSettings::from_env()?;
    let config = nommer_shared::aws::sdk_config().await;
    let backends = Backends::new(settings, &config).await?;
    run(encodingcom::router(Arc::new(backends))).await
}
