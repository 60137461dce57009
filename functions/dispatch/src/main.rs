use aws_lambda_events::event::sqs::SqsEvent;
use dispatch::{function_handler, Dispatch};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_core::settings::DispatchSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = DispatchSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let ctx = Dispatch::new(settings, &config).await?;
    run(service_fn(|event: LambdaEvent<SqsEvent>| function_handler(&ctx, event))).await
}
