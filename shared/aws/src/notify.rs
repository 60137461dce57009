//! The adapters of notifications ([`nommer_core::flows::notify`]): events published to
//! SNS with message attributes (`type`, `state`, `backend`, `preset`, `event_id`), the
//! ledger in the jobs table (a marker per event, `event#<id>`, so a redelivered stream
//! record publishes nothing twice; each job's attempts under `deliveries#<job id>`), and
//! HTTP for webhooks: SSRF checks on the URL and on every address its host resolves to,
//! the connection pinned to the checked address, a 10 s timeout and no redirects.

use crate::queue::SqsQueue;
use crate::table::{s, Item, PK};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
pub use nommer_core::deliveries::{AttemptRecord, Delivery, Outcome, PostFailure, Target};
use nommer_core::events::{self, Event};
use nommer_core::flows::notify::Notifications;
pub use nommer_core::ports::NotifyError;
use nommer_core::ports::{Done, EventLedger, EventPublisher, Step, WebhookClient};
pub use nommer_core::settings::NotifySettings;
use std::sync::Arc;
use std::time::Duration;

/// The most a delivery's history keeps per job.
const MAX_RECORDS: usize = 200;

/// How long an event's marker is kept.
const EVENT_MARKER_DAYS: i64 = 7;

fn table_err(e: impl std::error::Error) -> NotifyError {
    NotifyError::Table(crate::sdk::error_text(&e))
}

/// Notifications on AWS: SNS, the jobs table, SQS and HTTP.
pub fn notifications(settings: NotifySettings, sdk: &aws_config::SdkConfig) -> Notifications {
    let ddb = crate::sdk::dynamodb_client(sdk);
    Notifications {
        publisher: Arc::new(SnsPublisher {
            sns: aws_sdk_sns::Client::new(sdk),
            topic_arn: settings.topic_arn.clone(),
        }),
        ledger: Arc::new(DynamoEventLedger {
            ddb,
            table: settings.table.clone(),
        }),
        queue: Arc::new(SqsQueue::new(crate::sdk::sqs_client(sdk))),
        http: Arc::new(HttpWebhooks),
        settings,
    }
}

/// The events topic on SNS.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
}

#[async_trait]
impl EventPublisher for SnsPublisher {
    async fn publish(&self, e: &Event) -> Result<(), NotifyError> {
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
            .topic_arn(&self.topic_arn)
            .message(serde_json::to_string(e).expect("an event serialises"))
            .message_attributes("type", attr("String", e.kind.clone()))
            .message_attributes("state", attr("String", e.job.state.as_str().to_string()))
            .message_attributes("event_id", attr("String", e.id.clone()));
        if let Some(b) = &e.job.backend {
            req = req.message_attributes("backend", attr("String", b.clone()));
        }
        if !e.job.presets.is_empty() {
            let presets = serde_json::to_string(&e.job.presets).expect("presets serialise");
            req = req.message_attributes("preset", attr("String.Array", presets));
        }
        req.send()
            .await
            .map_err(|err| NotifyError::Sns(crate::sdk::error_text(&err)))?;
        tracing::info!(event_id = %e.id, job_id = %e.job.id, state = %e.job.state, kind = %e.kind, "event published");
        Ok(())
    }
}

/// Event markers and delivery records in the jobs table.
#[derive(Clone, Debug)]
pub struct DynamoEventLedger {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
}

#[async_trait]
impl EventLedger for DynamoEventLedger {
    async fn claim(&self, event_id: &str) -> Result<Done, NotifyError> {
        let event = Item::Event(event_id);
        let expires = (Utc::now() + chrono::Duration::days(EVENT_MARKER_DAYS)).timestamp();
        let created = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item(PK, event.pk())
            .item("kind", s(event.kind()))
            .item("published", AttributeValue::Bool(false))
            .item("queued", AttributeValue::Bool(false))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match created {
            Ok(_) => Ok(Done::default()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                let item = self
                    .ddb
                    .get_item()
                    .table_name(&self.table)
                    .key(PK, event.pk())
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(table_err)?;
                let flag = |k: &str| {
                    item.item()
                        .and_then(|i| i.get(k))
                        .and_then(|v| v.as_bool().ok())
                        .copied()
                        .unwrap_or(false)
                };
                Ok(Done {
                    published: flag("published"),
                    queued: flag("queued"),
                })
            }
            Err(err) => Err(table_err(err)),
        }
    }

    async fn mark(&self, event_id: &str, step: Step) -> Result<(), NotifyError> {
        let flag = match step {
            Step::Published => "published",
            Step::Queued => "queued",
        };
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key(PK, Item::Event(event_id).pk())
            .update_expression("SET #f = :t")
            .expression_attribute_names("#f", flag)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(table_err)?;
        Ok(())
    }

    async fn record(&self, job_id: &str, rec: &AttemptRecord) -> Result<(), NotifyError> {
        let deliveries = Item::Deliveries(job_id);
        let v = AttributeValue::S(serde_json::to_string(rec).expect("a record serialises"));
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key(PK, deliveries.pk())
            .update_expression("SET attempts = list_append(if_not_exists(attempts, :empty), :new), kind = :k")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":new", AttributeValue::L(vec![v]))
            .expression_attribute_values(":k", s(deliveries.kind()))
            .send()
            .await
            .map_err(table_err)?;
        Ok(())
    }
}

/// Webhooks over HTTPS (HTTP where the policy allows it), with reqwest.
#[derive(Clone, Copy, Debug)]
pub struct HttpWebhooks;

#[async_trait]
impl WebhookClient for HttpWebhooks {
    async fn vet(
        &self,
        url: &str,
        policy: &events::Webhooks,
    ) -> Result<(String, std::net::SocketAddr), (String, bool)> {
        vet_url(url, policy).await
    }

    async fn post(
        &self,
        url: &str,
        host: &str,
        addr: std::net::SocketAddr,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, PostFailure> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, addr)
            .build()
            .map_err(|e| PostFailure::permanent(e.to_string()))?;
        let mut req = client.post(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.body(body).send().await {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) if r.status().is_redirection() => Err(PostFailure::transient(
                Some(r.status().as_u16()),
                "the endpoint answered with a redirect, which is not followed",
            )),
            Ok(r) => Err(PostFailure::transient(
                Some(r.status().as_u16()),
                format!("HTTP {}", r.status()),
            )),
            Err(err) if err.is_timeout() => Err(PostFailure::transient(None, "no answer within 10 s")),
            Err(err) => Err(PostFailure::transient(None, err.without_url().to_string())),
        }
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
        .map_err(table_err)?;
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
