//! The worker registry: each worker's heartbeat in the jobs table (`pk = worker#<id>`,
//! listed through the `by-state` index under `state = worker`). Workers write their own
//! fields; the scaler writes only `draining`, so neither overwrites the other.

use crate::store::STATE_INDEX;
use crate::table::{s, worker_id_of, Item, PK};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use nommer_core::scaling::Heartbeat;
use std::collections::{BTreeMap, HashMap};

const KIND: &str = "worker";

#[derive(Debug, thiserror::Error)]
#[error("worker registry: {0}")]
pub struct RegistryError(pub String);

impl From<crate::sdk::SdkFailure> for RegistryError {
    fn from(f: crate::sdk::SdkFailure) -> Self {
        RegistryError(f.0)
    }
}

/// What a worker reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub worker_id: String,
    pub capacity: u32,
    pub active_jobs: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub idle_since: Option<DateTime<Utc>>,
    /// What its scoring FFmpeg can score with.
    pub capabilities: nommer_core::quality::Capabilities,
}

#[derive(Clone, Debug)]
pub struct DynamoWorkerRegistry {
    client: Client,
    table: String,
}

fn key(id: &str) -> AttributeValue {
    Item::Worker(id).pk()
}

impl DynamoWorkerRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoWorkerRegistry {
            client,
            table: table.into(),
        }
    }

    /// Records a heartbeat; returns whether the scaler has asked this worker to drain.
    pub async fn beat(&self, b: &Beat) -> Result<bool, RegistryError> {
        let now = Utc::now();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, key(&b.worker_id))
            .update_expression(
                "SET #kind = :kind, #state = :kind, #created = :created, #cap = :cap, #active = :active, \
                 #version = :version, #seen = :now, #expires = :expires, #idle = :idle, #caps = :caps",
            )
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#created", "created_at")
            .expression_attribute_names("#cap", "capacity")
            .expression_attribute_names("#active", "active_jobs")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#seen", "last_seen")
            .expression_attribute_names("#expires", "expires_at")
            .expression_attribute_names("#idle", "idle_since")
            .expression_attribute_names("#caps", "capabilities")
            .expression_attribute_values(":kind", s(KIND))
            .expression_attribute_values(":created", s(format!("{}#{}", b.started_at.to_rfc3339(), b.worker_id)))
            .expression_attribute_values(":cap", AttributeValue::N(b.capacity.to_string()))
            .expression_attribute_values(":active", AttributeValue::N(b.active_jobs.to_string()))
            .expression_attribute_values(":version", s(&b.version))
            .expression_attribute_values(
                ":caps",
                AttributeValue::M(
                    [
                        ("libvmaf", b.capabilities.libvmaf),
                        ("psnr", b.capabilities.psnr),
                        ("ssim", b.capabilities.ssim),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), AttributeValue::Bool(v)))
                    .collect(),
                ),
            )
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":expires", AttributeValue::N((now.timestamp() + 86_400).to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        req = req.expression_attribute_values(
            ":idle",
            match b.idle_since {
                Some(t) => s(t.to_rfc3339()),
                None => AttributeValue::Null(true),
            },
        );
        let out = req.send().await.map_err(crate::sdk::failed::<RegistryError, _>)?;
        Ok(out
            .attributes()
            .and_then(|a| a.get("draining"))
            .and_then(|d| d.as_bool().ok())
            .copied()
            .unwrap_or(false))
    }

    /// Asks a worker to stop taking work.
    pub async fn set_draining(&self, worker_id: &str) -> Result<(), RegistryError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, key(worker_id))
            .update_expression("SET #d = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#d", "draining")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(crate::sdk::failed::<RegistryError, _>)?;
        Ok(())
    }

    /// Forgets a worker (after its instance is terminated).
    pub async fn remove(&self, worker_id: &str) -> Result<(), RegistryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, key(worker_id))
            .send()
            .await
            .map_err(crate::sdk::failed::<RegistryError, _>)?;
        Ok(())
    }

    /// Every worker's last heartbeat, by worker id.
    pub async fn list(&self) -> Result<BTreeMap<String, Heartbeat>, RegistryError> {
        let mut out = BTreeMap::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(STATE_INDEX)
                .key_condition_expression("#state = :kind")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":kind", s(KIND))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(crate::sdk::failed::<RegistryError, _>)?;
            for item in page.items() {
                let str_of = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let num = |k: &str| {
                    item.get(k)
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                let time = |k: &str| {
                    str_of(k)
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc))
                };
                let Some(id) = str_of(PK).and_then(|p| worker_id_of(&p).map(str::to_string)) else {
                    continue;
                };
                let Some(last_seen) = time("last_seen") else { continue };
                out.insert(
                    id,
                    Heartbeat {
                        active_jobs: num("active_jobs"),
                        capacity: num("capacity"),
                        draining: item
                            .get("draining")
                            .and_then(|d| d.as_bool().ok())
                            .copied()
                            .unwrap_or(false),
                        last_seen,
                        idle_since: time("idle_since"),
                        capabilities: capabilities(item.get("capabilities")),
                    },
                );
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A heartbeat's `capabilities` map (none before workers published them).
fn capabilities(v: Option<&AttributeValue>) -> nommer_core::quality::Capabilities {
    let m = v.and_then(|v| v.as_m().ok());
    let flag = |k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(|b| b.as_bool().ok())
            .copied()
            .unwrap_or(false)
    };
    nommer_core::quality::Capabilities {
        libvmaf: flag("libvmaf"),
        psnr: flag("psnr"),
        ssim: flag("ssim"),
    }
}

#[async_trait::async_trait]
impl nommer_core::ports::Fleet for DynamoWorkerRegistry {
    async fn heartbeats(&self) -> Result<BTreeMap<String, Heartbeat>, String> {
        self.list().await.map_err(|e| e.to_string())
    }
}
