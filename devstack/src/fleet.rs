//! The EC2 fleet on the local stack: the options, and each instance the scaler launches
//! in the emulator mirrored as a worker process (started when it appears, stopped when
//! it is terminated).

use crate::workers::{sigterm, spawn_worker_process, SpawnInfo, WorkerProcess};
use anyhow::Context;
use aws_config::SdkConfig;
use std::sync::Arc;
use std::time::Duration;

/// The EC2 fleet on the local stack: the scaler runs on a short tick, and each instance
/// it launches in the emulator becomes a worker process with that instance id.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub min_instances: u32,
    pub max_instances: u32,
    /// Jobs per worker.
    pub capacity: u32,
    pub idle_timeout_secs: u32,
    /// How often the scaler ticks (a minute on AWS).
    pub tick: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            min_instances: 0,
            max_instances: 3,
            capacity: 1,
            idle_timeout_secs: 20,
            tick: Duration::from_secs(2),
        }
    }
}

/// Worker processes by instance id.
pub type FleetProcesses = Arc<std::sync::Mutex<std::collections::BTreeMap<String, WorkerProcess>>>;

pub async fn create_launch_template(config: &SdkConfig, stack: &str) -> anyhow::Result<String> {
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    let ec2 = aws_sdk_ec2::Client::new(config);
    let images = ec2
        .describe_images()
        .send()
        .await
        .context("listing the emulator's images")?;
    let ami = images
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .context("the emulator has no images")?
        .to_string();
    let out = ec2
        .create_launch_template()
        .launch_template_name(format!("{stack}-worker"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(ami)
                .instance_type("t3.micro".into())
                .build(),
        )
        .send()
        .await
        .context("creating the worker launch template")?;
    Ok(out
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap_or_default()
        .to_string())
}

/// Mirrors the emulator's instances as local worker processes.
pub(crate) async fn follow_instances(config: SdkConfig, stack: String, info: SpawnInfo, fleet: FleetProcesses) {
    use aws_sdk_ec2::types::{Filter, InstanceStateName};
    let ec2 = aws_sdk_ec2::Client::new(&config);
    loop {
        let res = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", scaler::STACK_TAG))
                    .values(&stack)
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(out) => {
                let mut alive = std::collections::BTreeSet::new();
                for r in out.reservations() {
                    for i in r.instances() {
                        let up = matches!(
                            i.state().and_then(|s| s.name()),
                            Some(InstanceStateName::Pending | InstanceStateName::Running)
                        );
                        if let (true, Some(id)) = (up, i.instance_id()) {
                            alive.insert(id.to_string());
                        }
                    }
                }
                let mut map = fleet.lock().unwrap();
                for id in &alive {
                    if !map.contains_key(id) {
                        match spawn_worker_process(&info, id) {
                            Ok(w) => {
                                tracing::info!(instance = %id, "instance launched: worker process started");
                                map.insert(id.clone(), w);
                            }
                            Err(e) => tracing::error!(instance = %id, error = %e, "could not start a worker process"),
                        }
                    }
                }
                let gone: Vec<String> = map.keys().filter(|id| !alive.contains(*id)).cloned().collect();
                for id in gone {
                    if let Some(mut w) = map.remove(&id) {
                        tracing::info!(instance = %id, "instance terminated: worker process stopped");
                        sigterm(&w.child);
                        tokio::spawn(async move {
                            if tokio::time::timeout(Duration::from_secs(10), w.child.wait())
                                .await
                                .is_err()
                            {
                                let _ = w.child.kill().await;
                            }
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_ec2::error::DisplayErrorContext(&e), "fleet: describing instances failed")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
