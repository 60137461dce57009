use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_aws::backends::Backends;
use nommer_core::settings::BackendSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = BackendSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await;
    let ctx = Backends::new(settings, &config).await?;
    run(service_fn(|_: LambdaEvent<EventBridgeEvent>| async {
        encodingcom::poll(&ctx).await.map(|n| serde_json::json!({ "jobs": n }))
    }))
    .await
}
