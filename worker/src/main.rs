use nommer_core::settings::WorkerSettings;
use nommer_worker::Worker;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nommer_aws::telemetry::init();
    let settings = WorkerSettings::from_env()?;
    let config = nommer_aws::sdk::sdk_config().await?;
    let interruption = settings.interruption_file.clone();
    let imds = settings.imds;
    let worker = Arc::new(Worker::new(settings, &config));
    worker.preflight().await?;
    worker.run(shutdown_signal(interruption, imds)).await;
    Ok(())
}

/// SIGTERM, Ctrl-C, a Spot interruption notice from instance metadata (on EC2), or the
/// local stand-in file.
async fn shutdown_signal(interruption_file: Option<std::path::PathBuf>, imds: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let notice = async {
        loop {
            if let Some(f) = &interruption_file {
                if f.exists() {
                    tracing::warn!(file = %f.display(), "interruption notice");
                    return;
                }
            }
            if imds && nommer_worker::imds::spot_interruption().await {
                tracing::warn!("Spot interruption notice from instance metadata");
                return;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = notice => {}
    }
}
