use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_aws::notify::NotifySettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_aws::telemetry::init();
    let settings = NotifySettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let ctx = nommer_aws::notify::notifications(settings, &config);
    run(service_fn(|event: LambdaEvent<Event>| {
        notify::stream_handler(&ctx, event)
    }))
    .await
}
