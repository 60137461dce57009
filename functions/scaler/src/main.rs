use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_core::liveness::LivenessSettings;
use nommer_core::settings::ScalerSettings;
use scaler::{function_handler, Scaler};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = ScalerSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let ctx = Scaler::new(settings, &config).with_liveness(LivenessSettings::from_env()?);
    run(service_fn(|event: LambdaEvent<Value>| function_handler(&ctx, event))).await
}
