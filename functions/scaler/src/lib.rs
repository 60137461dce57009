//! The scaler function, run every minute by an EventBridge schedule: gathers the work
//! queue's backlog, this stack's EC2 instances and the workers' heartbeats, asks
//! [`nommer_core::scaling::decide`] what to do, and does it: `RunInstances` from the
//! launch template (Spot with on-demand fallback), the draining flag, `TerminateInstances`.
//! Each round first runs the sweeps: jobs whose messages were dead-lettered, and running
//! jobs that stalled ([`nommer_core::flows::stall`]), with the queue's age in the log.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{
    Filter, InstanceMarketOptionsRequest, InstanceStateName, LaunchTemplateSpecification, MarketType, ResourceType,
    Tag, TagSpecification,
};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use nommer_aws::queue::SqsQueue;
use nommer_aws::registry::DynamoWorkerRegistry;
use nommer_aws::table::{Item, PK};
use nommer_core::flows::stall::Swept;
use nommer_core::liveness::LivenessSettings;
use nommer_core::scaling::{self, Decision, FleetView, Instance, Reason};
use nommer_core::settings::ScalerSettings;
use serde_json::{json, Value};

pub const STACK_TAG: &str = "nommer:stack";
pub const ROLE_TAG: &str = "nommer:role";
pub const ROLE_WORKER: &str = "worker";

#[derive(Clone)]
pub struct Scaler {
    pub settings: ScalerSettings,
    pub store: nommer_aws::store::DynamoJobStore,
    pub ec2: aws_sdk_ec2::Client,
    pub queue: SqsQueue,
    pub registry: DynamoWorkerRegistry,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// When the stall sweep fails a running job, and when the queue's age warns.
    pub liveness: LivenessSettings,
}

impl Scaler {
    pub fn new(settings: ScalerSettings, config: &aws_config::SdkConfig) -> Self {
        let dynamodb = nommer_aws::sdk::dynamodb_client(config);
        Scaler {
            ec2: aws_sdk_ec2::Client::new(config),
            queue: SqsQueue::new(nommer_aws::sdk::sqs_client(config)),
            registry: DynamoWorkerRegistry::new(dynamodb.clone(), &settings.table),
            store: nommer_aws::store::DynamoJobStore::new(dynamodb.clone(), &settings.table),
            dynamodb,
            settings,
            liveness: LivenessSettings::default(),
        }
    }

    /// The stall sweep's settings (read apart from [`ScalerSettings`]: the API reads them too).
    pub fn with_liveness(mut self, liveness: LivenessSettings) -> Self {
        self.liveness = liveness;
        self
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub decision: Decision,
    pub launched: Vec<String>,
    pub backlog: (u64, u64),
    pub instances: usize,
    /// What the stall sweep did (None: it could not run this round).
    pub swept: Option<Swept>,
}

pub async fn function_handler(ctx: &Scaler, _event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let t = tick(ctx).await?;
    Ok(json!({
        "backlog": { "visible": t.backlog.0, "in_flight": t.backlog.1 },
        "instances": t.instances,
        "desired": t.decision.desired,
        "launched": t.launched,
        "drained": t.decision.drain,
        "terminated": t.decision.terminate.iter().map(|(id, r)| json!({ "instance": id, "reason": format!("{r:?}") })).collect::<Vec<_>>(),
        "stalled": t.swept.as_ref().map(|s| s.failed.clone()).unwrap_or_default(),
        "oldest_queued_secs": t.swept.as_ref().and_then(|s| s.queue_age.as_ref()).map(|q| q.waited.as_secs()),
    }))
}

fn ec2_err<E: std::error::Error + 'static, R: std::fmt::Debug>(e: aws_sdk_ec2::error::SdkError<E, R>) -> anyhow::Error {
    anyhow::anyhow!("EC2: {}", nommer_aws::sdk::error_text(&e))
}

/// This stack's worker instances that are pending or running.
pub async fn list_instances(ctx: &Scaler) -> anyhow::Result<Vec<Instance>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ctx
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{STACK_TAG}"))
                    .values(&ctx.settings.stack)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name(format!("tag:{ROLE_TAG}"))
                    .values(ROLE_WORKER)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .set_next_token(token.take())
            .send()
            .await
            .map_err(ec2_err)?;
        for r in page.reservations() {
            for i in r.instances() {
                let alive = matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Pending | InstanceStateName::Running)
                );
                if let (true, Some(id)) = (alive, i.instance_id()) {
                    let launched_at = i
                        .launch_time()
                        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                        .unwrap_or_else(Utc::now);
                    out.push(Instance {
                        id: id.to_string(),
                        launched_at,
                    });
                }
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

async fn load_state(ctx: &Scaler) -> anyhow::Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let out = ctx
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.table)
        .key(PK, Item::ScalerState.pk())
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DynamoDB: {}", nommer_aws::sdk::error_text(&e)))?;
    let time = |k: &str| {
        out.item()
            .and_then(|i| i.get(k))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Ok((time("last_launch"), time("last_retire")))
}

async fn save_state(
    ctx: &Scaler,
    last_launch: Option<DateTime<Utc>>,
    last_retire: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let mut item = std::collections::HashMap::from([
        (PK.to_string(), Item::ScalerState.pk()),
        ("kind".to_string(), AttributeValue::S(Item::ScalerState.kind().into())),
    ]);
    if let Some(t) = last_launch {
        item.insert("last_launch".into(), AttributeValue::S(t.to_rfc3339()));
    }
    if let Some(t) = last_retire {
        item.insert("last_retire".into(), AttributeValue::S(t.to_rfc3339()));
    }
    ctx.dynamodb
        .put_item()
        .table_name(&ctx.settings.table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DynamoDB: {}", nommer_aws::sdk::error_text(&e)))?;
    Ok(())
}

/// The tags that mark this stack's workers (the scaler lists and terminates by them).
fn worker_tags(ctx: &Scaler) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key(STACK_TAG).value(&ctx.settings.stack).build())
        .tags(Tag::builder().key(ROLE_TAG).value(ROLE_WORKER).build())
        .tags(
            Tag::builder()
                .key("Name")
                .value(format!("{}-worker", ctx.settings.stack))
                .build(),
        )
        .build()
}

/// Launches `n` workers, one call each (so a subnet without capacity only fails its own),
/// on Spot first when configured, else or then on demand.
async fn launch(ctx: &Scaler, n: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for k in 0..n {
        let subnet = (!ctx.settings.subnet_ids.is_empty()).then(|| {
            ctx.settings.subnet_ids[(Utc::now().timestamp() as usize + k as usize) % ctx.settings.subnet_ids.len()]
                .clone()
        });
        let markets: &[bool] = if ctx.settings.spot { &[true, false] } else { &[false] };
        for &spot in markets {
            let mut req = ctx
                .ec2
                .run_instances()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(&ctx.settings.launch_template_id)
                        .version(&ctx.settings.launch_template_version)
                        .build(),
                )
                .min_count(1)
                .max_count(1)
                .tag_specifications(worker_tags(ctx))
                .set_subnet_id(subnet.clone());
            if spot {
                req = req.instance_market_options(
                    InstanceMarketOptionsRequest::builder()
                        .market_type(MarketType::Spot)
                        .build(),
                );
            }
            match req.send().await {
                Ok(out) => {
                    for i in out.instances() {
                        if let Some(id) = i.instance_id() {
                            tracing::info!(instance = id, spot, "launched a worker");
                            ids.push(id.to_string());
                        }
                    }
                    break;
                }
                Err(e) => {
                    let msg = nommer_aws::sdk::error_text(&e).to_string();
                    if spot {
                        tracing::warn!(error = %msg, "no Spot capacity; launching on demand");
                    } else {
                        tracing::error!(error = %msg, "could not launch a worker; the next tick tries again");
                    }
                }
            }
        }
    }
    ids
}

/// One scaling round, after the sweeps (dead-letter queues, stalled jobs): a sweep that
/// fails is logged and tried again next round, never in the way of scaling.
pub async fn tick(ctx: &Scaler) -> anyhow::Result<Tick> {
    for dlq in &ctx.settings.dead_letter_queue_urls {
        if let Err(e) = nommer_core::flows::deadletter::sweep(&ctx.queue, &ctx.store, dlq, 10).await {
            tracing::warn!(queue = %dlq, error = %e, "dead-letter sweep failed");
        }
    }
    let swept = match nommer_core::flows::stall::sweep(&ctx.store, &ctx.liveness, Utc::now()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "stall sweep failed");
            None
        }
    };
    let now = Utc::now();
    // whole jobs and split jobs' tasks are work alike
    let mut backlog = ctx.queue.depth(&ctx.settings.work_queue_url).await?;
    if let Some(chunks) = &ctx.settings.chunk_queue_url {
        let (visible, in_flight) = ctx.queue.depth(chunks).await?;
        backlog = (backlog.0 + visible, backlog.1 + in_flight);
    }
    let instances = list_instances(ctx).await?;
    let heartbeats = ctx.registry.list().await?;
    let (last_launch, last_retire) = load_state(ctx).await?;
    // registry entries whose instance is gone (terminated elsewhere) are forgotten
    for id in heartbeats.keys().filter(|id| !instances.iter().any(|i| &i.id == *id)) {
        if now - heartbeats[id].last_seen > ctx.settings.scaling.heartbeat_stale {
            let _ = ctx.registry.remove(id).await;
        }
    }
    let view = FleetView {
        now,
        visible: backlog.0,
        in_flight: backlog.1,
        instances: instances.clone(),
        heartbeats,
        last_launch,
        last_retire,
    };
    let decision = scaling::decide(&view, &ctx.settings.scaling);
    tracing::info!(
        visible = backlog.0,
        in_flight = backlog.1,
        instances = instances.len(),
        desired = decision.desired,
        launch = decision.launch,
        drain = ?decision.drain,
        terminate = ?decision.terminate,
        "scaling decision"
    );
    let mut retired = false;
    if !decision.terminate.is_empty() {
        let ids: Vec<String> = decision.terminate.iter().map(|(id, _)| id.clone()).collect();
        ctx.ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(ec2_err)?;
        for (id, reason) in &decision.terminate {
            tracing::info!(instance = %id, ?reason, "terminated a worker");
            retired |= *reason == Reason::Retired;
            let _ = ctx.registry.remove(id).await;
        }
    }
    for id in &decision.drain {
        ctx.registry.set_draining(id).await?;
        tracing::info!(instance = %id, "asked a worker to drain");
    }
    let launched = if decision.launch > 0 {
        launch(ctx, decision.launch).await
    } else {
        vec![]
    };
    let new_launch = if launched.is_empty() { last_launch } else { Some(now) };
    let new_retire = if retired || !decision.drain.is_empty() {
        Some(now)
    } else {
        last_retire
    };
    if new_launch != last_launch || new_retire != last_retire {
        save_state(ctx, new_launch, new_retire).await?;
    }
    Ok(Tick {
        decision,
        launched,
        backlog,
        instances: instances.len(),
        swept,
    })
}
