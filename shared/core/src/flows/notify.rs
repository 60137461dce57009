//! The fan-out of job events and their webhook deliveries. Each change of a job (old
//! and new image, from the table's change feed) makes its events
//! ([`crate::events::from_change`]); each is published to the topic once and queued once
//! per interested target, even when the change is delivered again. Each delivery attempt
//! checks the URL (at delivery time: DNS can change), POSTs the signed event, records
//! the attempt on the job and queues the next attempt after a growing delay, or parks
//! the delivery in the dead-letter queue with its reason.

use crate::deliveries::{AttemptRecord, Delivery, Outcome, PostFailure, Target};
use crate::events::{self, Event, SigningSecret};
use crate::job::Job;
use crate::ports::{EventLedger, EventPublisher, NotifyError, Step, WebhookClient, WorkQueue};
use crate::settings::NotifySettings;
use chrono::Utc;
use std::sync::Arc;

/// The adapters notifications run on.
#[derive(Clone)]
pub struct Notifications {
    pub settings: NotifySettings,
    pub publisher: Arc<dyn EventPublisher>,
    pub ledger: Arc<dyn EventLedger>,
    pub queue: Arc<dyn WorkQueue>,
    pub http: Arc<dyn WebhookClient>,
}

/// The longest SQS delays a message (15 minutes); longer waits hop.
const MAX_DELAY_SECONDS: i64 = 900;

impl Notifications {
    fn webhooks(&self) -> &events::Webhooks {
        &self.settings.config.webhooks
    }

    /// Handles one change of a job item. Safe to repeat. Returns how many events it made.
    pub async fn on_change(&self, old: Option<&Job>, new: &Job) -> Result<usize, NotifyError> {
        let evs = events::from_change(old, new);
        for e in &evs {
            self.fan_out(e, new).await?;
        }
        Ok(evs.len())
    }

    async fn fan_out(&self, e: &Event, job: &Job) -> Result<(), NotifyError> {
        let done = self.ledger.claim(&e.id).await?;
        if !done.published {
            self.publisher.publish(e).await?;
            self.ledger.mark(&e.id, Step::Published).await?;
        }
        if !done.queued {
            for target in self.targets(e, job) {
                let d = Delivery {
                    event: e.clone(),
                    target,
                    attempt: 1,
                    not_before: Utc::now(),
                };
                let body = serde_json::to_string(&d).expect("a delivery serialises");
                self.queue.send(&self.settings.webhooks_queue_url, &body).await?;
            }
            self.ledger.mark(&e.id, Step::Queued).await?;
        }
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

    fn secret_and_url(&self, t: &Target) -> Result<(String, SigningSecret), String> {
        match t {
            Target::Job { url } => {
                let secret = self
                    .settings
                    .webhook_secret
                    .clone()
                    .or_else(|| self.webhooks().secret.clone())
                    .ok_or("no signing secret for jobs' notify_url: set [webhooks] secret or NOMMER_WEBHOOK_SECRET")?;
                Ok((url.clone(), secret))
            }
            Target::Endpoint { name } => {
                let ep = self
                    .webhooks()
                    .endpoints
                    .iter()
                    .find(|e| &e.name == name)
                    .ok_or_else(|| format!("endpoint `{name}` is no longer in the config file"))?;
                Ok((ep.url.clone(), ep.secret.clone()))
            }
        }
    }

    /// Checks a URL and resolves it under this config's `[webhooks]`.
    pub async fn vet(&self, url: &str) -> Result<(String, std::net::SocketAddr), (String, bool)> {
        self.http.vet(url, self.webhooks()).await
    }

    /// Runs one delivery attempt. Errors only when the next step could not be queued
    /// (then the queue redelivers the message).
    pub async fn deliver(&self, d: Delivery) -> Result<AttemptRecord, NotifyError> {
        let now = Utc::now();
        if d.not_before > now + chrono::Duration::seconds(1) {
            // still waiting: hop another (at most 15-minute) delay
            let wait = (d.not_before - now).num_seconds().clamp(0, MAX_DELAY_SECONDS) as i32;
            let body = serde_json::to_string(&d).expect("a delivery serialises");
            self.queue
                .send_delayed(&self.settings.webhooks_queue_url, &body, wait)
                .await?;
            let mut rec = record_of(&d, None, Outcome::Waiting);
            rec.error = Some("waiting".into());
            return Ok(rec);
        }
        let result = self.attempt(&d).await;
        let (status, outcome) = match &result {
            Ok(status) => (Some(*status), Outcome::Delivered),
            Err(f) => (f.status, self.after_failure(&d, f).await?),
        };
        let mut rec = record_of(&d, status, outcome);
        rec.ok = result.is_ok();
        rec.error = result.err().map(|f| f.reason);
        if let Err(e) = self.ledger.record(&d.event.job.id, &rec).await {
            tracing::warn!(error = %e, "could not record the delivery attempt on the job");
        }
        tracing::info!(event_id = %d.event.id, target = %rec.target, attempt = d.attempt, ok = rec.ok, outcome = ?outcome, error = ?rec.error, "webhook attempt");
        Ok(rec)
    }

    /// The checked, signed POST of one attempt.
    async fn attempt(&self, d: &Delivery) -> Result<u16, PostFailure> {
        let (url, secret) = self.secret_and_url(&d.target).map_err(PostFailure::permanent)?;
        let (host, addr) = self.vet(&url).await.map_err(|(reason, permanent)| PostFailure {
            status: None,
            reason,
            permanent,
        })?;
        let body = serde_json::to_vec(&d.event).expect("an event serialises");
        let ts = Utc::now().timestamp();
        let headers = [
            ("content-type", "application/json".to_string()),
            ("user-agent", concat!("nommer/", env!("CARGO_PKG_VERSION")).to_string()),
            ("webhook-id", d.event.id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", secret.sign(&d.event.id, ts, &body)),
        ];
        self.http.post(&url, &host, addr, &headers, body).await
    }

    /// Queues the next attempt after the schedule's delay, or parks the delivery with
    /// its reason when the failure is permanent or the schedule is used up.
    async fn after_failure(&self, d: &Delivery, f: &PostFailure) -> Result<Outcome, NotifyError> {
        let schedule = &self.webhooks().retry_seconds;
        let now = Utc::now();
        if !f.permanent && (d.attempt as usize) < schedule.len() {
            let delay = schedule[d.attempt as usize] as i64;
            let next = Delivery {
                attempt: d.attempt + 1,
                not_before: now + chrono::Duration::seconds(delay),
                ..d.clone()
            };
            let body = serde_json::to_string(&next).expect("a delivery serialises");
            let wait = delay.min(MAX_DELAY_SECONDS) as i32;
            self.queue
                .send_delayed(&self.settings.webhooks_queue_url, &body, wait)
                .await?;
            return Ok(Outcome::Retry);
        }
        let parked = serde_json::json!({ "delivery": d, "reason": f.reason, "parked_at": now });
        self.queue
            .send(&self.settings.webhooks_dlq_url, &parked.to_string())
            .await?;
        Ok(Outcome::DeadLettered)
    }
}

fn record_of(d: &Delivery, status: Option<u16>, outcome: Outcome) -> AttemptRecord {
    AttemptRecord {
        event_id: d.event.id.clone(),
        kind: d.event.kind.clone(),
        state: d.event.job.state,
        target: d.target.name(),
        attempt: d.attempt,
        at: Utc::now(),
        ok: false,
        status,
        error: None,
        outcome,
    }
}
