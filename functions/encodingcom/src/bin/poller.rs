use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_shared::backends::Backends;
use nommer_shared::settings::BackendSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_shared::telemetry::init();
    let settings = BackendSettings::from_env()?;
    let config = nommer_shared::aws::sdk_config().await;
    let ctx = Backends::new(settings, &config).await?;
    run(service_fn(|_: LambdaEvent<EventBridgeEvent>| async {
        encodingcom::poll(&ctx).await.map(|n| serde_json::json!({ "jobs": n }))
    }))
    .await
}
