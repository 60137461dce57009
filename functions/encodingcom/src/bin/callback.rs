use lambda_http::{run, Error};
use nommer_aws::backends::Backends;
use nommer_core::settings::BackendSettings;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = BackendSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await;
    let backends = Backends::new(settings, &config).await?;
    run(encodingcom::router(Arc::new(backends))).await
}
