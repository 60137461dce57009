use ingest::{function_handler, Ingest};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_core::settings::IngestSettings;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = IngestSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let ctx = Ingest::new(settings, &config);
    run(service_fn(|event: LambdaEvent<Value>| function_handler(&ctx, event))).await
}
