use nommer_shared::settings::WorkerSettings;
use nommer_worker::Worker;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nommer_shared::telemetry::init();
    let settings = WorkerSettings::from_env()?;
    let config = nommer_shared::aws::sdk_config().await;
    let worker = Worker::new(settings, &config);
    worker.preflight().await?;
    worker.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
