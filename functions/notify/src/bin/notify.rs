use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nommer_shared::notify::{Notifier, NotifySettings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    nommer_shared::telemetry::init();
    let settings = NotifySettings::from_env()?;
    let config = nommer_shared::aws::sdk_config().await;
    let ctx = Notifier::new(settings, &config);
    run(service_fn(|event: LambdaEvent<Event>| {
        notify::stream_handler(&ctx, event)
    }))
    .await
}
