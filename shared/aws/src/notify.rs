//! Publishing job events and delivering webhooks.
//!
//! [`Notifier::on_change`] takes one change of a job item (old and new image, from the
//! table's stream), derives its events ([`nommer_core::events::from_change`]), publishes each
//! to SNS with message attributes (`type`, `state`, `backend`, `preset`) and queues one
//! webhook delivery per interested target. A marker item per event (`event#<id>`) makes a
//! redelivered stream record publish nothing twice.
//!
//! [`Notifier::deliver`] runs one delivery attempt from the webhooks queue: SSRF checks
//! on the URL and on every address its host resolves to (at delivery time, and the
//! connection is pinned to the checked address), a signed POST with a 10 s timeout and no
//! redirects, the attempt recorded on the job (`deliveries#<job id>`), and on failure the
//! next attempt queued after a growing delay (longer than SQS's 15-minute cap by hopping),
//! or the delivery parked in the dead-letter queue with its reason.

use crate::queue::SqsQueue;
use crate::table::{s, Item, PK};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use nommer_core::events::{self, Event, SigningSecret};
use nommer_core::job::Job;
pub use nommer_core::settings::NotifySettings;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who a delivery goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The job's own `notify_url`.
    Job { url: String },
    /// An endpoint of the config file, by name (its URL and secret are read at delivery).
    Endpoint { name: String },
}

/// A message on the webhooks queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: Event,
    pub target: Target,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Not before this time (SQS delays at most 15 minutes; longer waits hop).
    pub not_before: DateTime<Utc>,
}

/// What one attempt did, recorded on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: nommer_core::state::JobState,
    /// `notify_url` or the endpoint's name.
    pub target: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `retry` (another attempt is queued), `delivered`, or `dead_lettered`.
    pub outcome: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("SNS: {0}")]
    Sns(String),
    #[error("DynamoDB: {0}")]
    Table(String),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

#[derive(Clone)]
pub struct Notifier {
    pub settings: NotifySettings,
    sns: aws_sdk_sns::Client,
    ddb: aws_sdk_dynamodb::Client,
    queue: SqsQueue,
}

fn ddb_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> NotifyError {
    NotifyError::Table(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

/// The most a delivery's history keeps per job.
const MAX_RECORDS: usize = 200;

impl Notifier {
    pub fn new(settings: NotifySettings, config: &aws_config::SdkConfig) -> Notifier {
        Notifier {
            sns: aws_sdk_sns::Client::new(config),
            ddb: crate::sdk::dynamodb_client(config),
            queue: SqsQueue::new(crate::sdk::sqs_client(config)),
            settings,
        }
    }

    fn webhooks(&self) -> &events::Webhooks {
        &self.settings.config.webhooks
    }

    /// Handles one change of a job item. Safe to repeat.
    pub async fn on_change(&self, old: Option<&Job>, new: &Job) -> Result<usize, NotifyError> {
        let evs = events::from_change(old, new);
        for e in &evs {
            self.publish_once(e, new).await?;
        }
        Ok(evs.len())
    }

    async fn publish_once(&self, e: &Event, job: &Job) -> Result<(), NotifyError> {
        let event = Item::Event(&e.id);
        let pk = event.key();
        let expires = (Utc::now() + chrono::Duration::days(7)).timestamp();
        let created = self
            .ddb
            .put_item()
            .table_name(&self.settings.table)
            .item(PK, s(&pk))
            .item("kind", s(event.kind()))
            .item("published", AttributeValue::Bool(false))
            .item("queued", AttributeValue::Bool(false))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let (published, queued) = match created {
            Ok(_) => (false, false),
            Err(err)
                if err
                    .as_service_error()
                    .map(|x| x.is_conditional_check_failed_exception())
                    .unwrap_or(false) =>
            {
                let item = self
                    .ddb
                    .get_item()
                    .table_name(&self.settings.table)
                    .key(PK, s(&pk))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(ddb_err)?;
                let flag = |k: &str| {
                    item.item()
                        .and_then(|i| i.get(k))
                        .and_then(|v| v.as_bool().ok())
                        .copied()
                        .unwrap_or(false)
                };
                (flag("published"), flag("queued"))
            }
            Err(err) => return Err(ddb_err(err)),
        };
        if !published {
            self.publish(e).await?;
            self.mark(&pk, "published").await?;
        }
        if !queued {
            for target in self.targets(e, job) {
                let d = Delivery {
                    event: e.clone(),
                    target,
                    attempt: 1,
                    not_before: Utc::now(),
                };
                self.queue
                    .send(
                        &self.settings.webhooks_queue_url,
                        &serde_json::to_string(&d).expect("a delivery serialises"),
                    )
                    .await?;
            }
            self.mark(&pk, "queued").await?;
        }
        Ok(())
    }

    async fn mark(&self, pk: &str, flag: &str) -> Result<(), NotifyError> {
        self.ddb
            .update_item()
            .table_name(&self.settings.table)
            .key(PK, s(pk))
            .update_expression("SET #f = :t")
            .expression_attribute_names("#f", flag)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }

    /// Publishes to the topic with attributes subscribers can filter on.
    pub async fn publish(&self, e: &Event) -> Result<(), NotifyError> {
        use aws_sdk_sns::types::MessageAttributeValue;
        let attr = |t: &str, v: String| {
            MessageAttributeValue::builder()
                .data_type(t)
                .string_value(v)
                .build()
                .expect("attribute")
        };
        let mut req = self
            .sns
            .publish()
            .topic_arn(&self.settings.topic_arn)
            .message(serde_json::to_string(e).expect("an event serialises"))
            .message_attributes("type", attr("String", e.kind.clone()))
            .message_attributes("state", attr("String", e.job.state.as_str().to_string()))
            .message_attributes("event_id", attr("String", e.id.clone()));
        if let Some(b) = &e.job.backend {
            req = req.message_attributes("backend", attr("String", b.clone()));
        }
        if !e.job.presets.is_empty() {
            req = req.message_attributes(
                "preset",
                attr("String.Array", serde_json::to_string(&e.job.presets).unwrap()),
            );
        }
        req.send()
            .await
            .map_err(|err| NotifyError::Sns(aws_sdk_sns::error::DisplayErrorContext(&err).to_string()))?;
        tracing::info!(event_id = %e.id, job_id = %e.job.id, state = %e.job.state, kind = %e.kind, "event published");
        Ok(())
    }

    /// Who gets this event: the job's `notify_url` (state changes; progress if the config
    /// says so) and every config endpoint that wants it.
    pub fn targets(&self, e: &Event, job: &Job) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(url) = &job.notify_url {
            if e.kind == events::STATE_CHANGED || self.webhooks().job_progress {
                out.push(Target::Job { url: url.clone() });
            }
        }
        for ep in &self.webhooks().endpoints {
            if ep.wants(e) {
                out.push(Target::Endpoint { name: ep.name.clone() });
            }
        }
        out
    }

    fn secret_and_url(&self, t: &Target) -> Result<(String, SigningSecret, String), String> {
        match t {
            Target::Job { url } => {
                let secret = self
                    .settings
                    .webhook_secret
                    .clone()
                    .or_else(|| self.webhooks().secret.clone())
                    .ok_or("no signing secret for jobs' notify_url: set [webhooks] secret or NOMMER_WEBHOOK_SECRET")?;
                Ok((url.clone(), secret, "notify_url".into()))
            }
            Target::Endpoint { name } => {
                let ep = self
                    .webhooks()
                    .endpoints
                    .iter()
                    .find(|e| &e.name == name)
                    .ok_or_else(|| format!("endpoint `{name}` is no longer in the config file"))?;
                Ok((ep.url.clone(), ep.secret.clone(), name.clone()))
            }
        }
    }

    /// Checks a URL and resolves it ([`vet_url`] under this config's `[webhooks]`).
    pub async fn vet(&self, url: &str) -> Result<(String, std::net::SocketAddr), (String, bool)> {
        vet_url(url, self.webhooks()).await
    }

    /// Runs one delivery attempt. Errors only when the next step could not be queued
    /// (then SQS redelivers the message).
    pub async fn deliver(&self, d: Delivery) -> Result<AttemptRecord, NotifyError> {
        let now = Utc::now();
        if d.not_before > now + chrono::Duration::seconds(1) {
            // still waiting: hop another (at most 15-minute) delay
            let wait = (d.not_before - now).num_seconds().clamp(0, 900) as i32;
            self.queue
                .send_delayed(
                    &self.settings.webhooks_queue_url,
                    &serde_json::to_string(&d).unwrap(),
                    wait,
                )
                .await?;
            return Ok(self.record_of(&d, false, None, Some("waiting".into()), "waiting"));
        }
        let target_name = match &d.target {
            Target::Job { .. } => "notify_url".to_string(),
            Target::Endpoint { name } => name.clone(),
        };
        let result = match self.secret_and_url(&d.target) {
            Err(e) => Err((None, e, true)),
            Ok((url, secret, _)) => match self.vet(&url).await {
                Err((e, permanent)) => Err((None, e, permanent)),
                Ok((host, addr)) => self.post(&url, &host, addr, &secret, &d.event).await,
            },
        };
        let schedule = &self.webhooks().retry_seconds;
        let (ok, status, error, outcome) = match result {
            Ok(status) => (true, Some(status), None, "delivered"),
            Err((status, error, permanent)) => {
                if !permanent && (d.attempt as usize) < schedule.len() {
                    let delay = schedule[d.attempt as usize];
                    let next = Delivery {
                        attempt: d.attempt + 1,
                        not_before: now + chrono::Duration::seconds(delay as i64),
                        ..d.clone()
                    };
                    self.queue
                        .send_delayed(
                            &self.settings.webhooks_queue_url,
                            &serde_json::to_string(&next).unwrap(),
                            delay.min(900) as i32,
                        )
                        .await?;
                    (false, status, Some(error), "retry")
                } else {
                    let parked = serde_json::json!({
                        "delivery": d,
                        "reason": error,
                        "parked_at": now,
                    });
                    self.queue
                        .send(&self.settings.webhooks_dlq_url, &parked.to_string())
                        .await?;
                    (false, status, Some(error), "dead_lettered")
                }
            }
        };
        let mut rec = self.record_of(&d, ok, status, error, outcome);
        rec.target = target_name;
        if let Err(e) = self.record(&d.event.job.id, &rec).await {
            tracing::warn!(error = %e, "could not record the delivery attempt on the job");
        }
        tracing::info!(event_id = %d.event.id, target = %rec.target, attempt = d.attempt, ok, outcome, error = ?rec.error, "webhook attempt");
        Ok(rec)
    }

    fn record_of(
        &self,
        d: &Delivery,
        ok: bool,
        status: Option<u16>,
        error: Option<String>,
        outcome: &str,
    ) -> AttemptRecord {
        AttemptRecord {
            event_id: d.event.id.clone(),
            kind: d.event.kind.clone(),
            state: d.event.job.state,
            target: String::new(),
            attempt: d.attempt,
            at: Utc::now(),
            ok,
            status,
            error,
            outcome: outcome.into(),
        }
    }

    /// POSTs the event. `Err((status, reason, permanent))`.
    async fn post(
        &self,
        url: &str,
        host: &str,
        addr: std::net::SocketAddr,
        secret: &SigningSecret,
        e: &Event,
    ) -> Result<u16, (Option<u16>, String, bool)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, addr)
            .build()
            .map_err(|e| (None, e.to_string(), true))?;
        let body = serde_json::to_vec(e).expect("an event serialises");
        let ts = Utc::now().timestamp();
        let res = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("nommer/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &e.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", secret.sign(&e.id, ts, &body))
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) if r.status().is_redirection() => Err((
                Some(r.status().as_u16()),
                "the endpoint answered with a redirect, which is not followed".into(),
                false,
            )),
            Ok(r) => Err((Some(r.status().as_u16()), format!("HTTP {}", r.status()), false)),
            Err(err) if err.is_timeout() => Err((None, "no answer within 10 s".into(), false)),
            Err(err) => Err((None, err.without_url().to_string(), false)),
        }
    }

    /// Appends an attempt to the job's delivery record.
    pub async fn record(&self, job_id: &str, rec: &AttemptRecord) -> Result<(), NotifyError> {
        let v = AttributeValue::S(serde_json::to_string(rec).unwrap());
        self.ddb
            .update_item()
            .table_name(&self.settings.table)
            .key(PK, Item::Deliveries(job_id).pk())
            .update_expression("SET attempts = list_append(if_not_exists(attempts, :empty), :new), kind = :k")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":new", AttributeValue::L(vec![v]))
            .expression_attribute_values(":k", s("deliveries"))
            .send()
            .await
            .map_err(ddb_err)?;
        Ok(())
    }
}

/// Checks a webhook URL against the `[webhooks]` policy and resolves it, refusing
/// private, loopback and link-local addresses unless allowed. Returns the host and the
/// one address to connect to. The one check both the API (at submit and retry) and each
/// delivery run; delivery checks again because DNS can change.
/// `Err((reason, permanent))`: a refusal by policy is permanent, a failed lookup is not.
pub async fn vet_url(url: &str, policy: &events::Webhooks) -> Result<(String, std::net::SocketAddr), (String, bool)> {
    let (host, port) = events::check_url(url, policy).map_err(|e| (e, true))?;
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| (format!("cannot resolve {host}: {e}"), false))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| (format!("{host} resolves to no address"), false))?;
    if !policy.allow_private {
        if let Some(bad) = addrs.iter().find(|a| !events::is_public(a.ip())) {
            return Err((
                format!(
                    "{host} resolves to {}, a private, loopback or link-local address; refused (allow_private in [webhooks] allows it for local use)",
                    bad.ip()
                ),
                true,
            ));
        }
    }
    Ok((host, first))
}

/// A job's webhook attempts, oldest first (for the API's view of the job).
pub async fn deliveries(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    job_id: &str,
) -> Result<Vec<AttemptRecord>, NotifyError> {
    let out = ddb
        .get_item()
        .table_name(table)
        .key(PK, Item::Deliveries(job_id).pk())
        .send()
        .await
        .map_err(ddb_err)?;
    let list = out
        .item()
        .and_then(|i| i.get("attempts"))
        .and_then(|a| a.as_l().ok())
        .cloned()
        .unwrap_or_default();
    let mut recs: Vec<AttemptRecord> = list
        .iter()
        .filter_map(|v| v.as_s().ok())
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    if recs.len() > MAX_RECORDS {
        recs.drain(..recs.len() - MAX_RECORDS);
    }
    Ok(recs)
}
