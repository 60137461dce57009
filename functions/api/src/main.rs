use api::{router, ApiState};
use lambda_http::{run, Error};
use nommer_shared::settings::ApiSettings;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_shared::telemetry::init();
    let settings = ApiSettings::from_env()?;
    let config = nommer_shared::aws::sdk_config().await;
    run(router(Arc::new(ApiState::new(settings, &config)))).await
}
