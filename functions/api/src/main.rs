use api::{router, ApiState};
use lambda_http::{run, Error};
use nommer_aws::backends::Backends;
use nommer_core::settings::{ApiSettings, BackendSettings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = ApiSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await;
    let backends = Backends::new(BackendSettings::from_env()?, &config).await?;
    run(router(Arc::new(ApiState::new(settings, backends, &config)))).await
}
