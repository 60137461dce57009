//! The job store on DynamoDB. Every change is a conditional write on the state and
//! version the writer read: a writer that lost a race gets [`StoreError::Conflict`],
//! never a silent overwrite.
//!
//! Item layout (one table, string partition key `pk`):
//! - a job: `pk` = job id, `kind` = `job`, `state`, `version` (N), `created_at`,
//!   `updated_at`, and `doc`, the job as JSON. The `by-state` index (hash `state`, range
//!   `created_at`) lists jobs by state and time.

use crate::table::{s, Item, PK};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use nommer_core::error::StoreError;
use nommer_core::job::Job;
use nommer_core::state::{JobState, Transition};
use std::collections::HashMap;

pub const STATE_INDEX: &str = "by-state";

pub use nommer_core::ports::Created;

#[derive(Clone, Debug)]
pub struct DynamoJobStore {
    client: Client,
    table: String,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn item(job: &Job) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let doc = serde_json::to_string(job).map_err(|e| StoreError::Corrupt {
            id: job.id.clone(),
            reason: e.to_string(),
        })?;
        Ok(HashMap::from([
            (PK.to_string(), Item::Job(&job.id).pk()),
            ("kind".to_string(), s("job")),
            ("state".to_string(), s(job.state.as_str())),
            ("version".to_string(), AttributeValue::N(job.version.to_string())),
            (
                "created_at".to_string(),
                s(format!("{}#{}", job.created_at.to_rfc3339(), job.id)),
            ),
            ("updated_at".to_string(), s(job.updated_at.to_rfc3339())),
            ("doc".to_string(), s(doc)),
        ]))
    }

    fn from_item(id: &str, item: &HashMap<String, AttributeValue>) -> Result<Job, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.to_string(),
            reason,
        };
        let doc = item
            .get("doc")
            .and_then(|d| d.as_s().ok())
            .ok_or_else(|| corrupt("no `doc` attribute".into()))?;
        serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))
    }

    /// Creates the job unless one with its id exists; then returns that one.
    #[tracing::instrument(skip_all, fields(job_id = %job.id))]
    pub async fn create(&self, job: &Job) -> Result<Created, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(job)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(Created::New(job.clone())),
            Err(e)
                if e.as_service_error()
                    .map(|s| s.is_conditional_check_failed_exception())
                    .unwrap_or(false) =>
            {
                let existing = self
                    .get(&job.id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(job.id.clone()))?;
                Ok(Created::Existing(existing))
            }
            Err(e) => Err(crate::sdk::failed::<StoreError, _>(e)),
        }
    }

    /// Reads a job (strongly consistent).
    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, Item::Job(id).pk())
            .consistent_read(true)
            .send()
            .await
            .map_err(crate::sdk::failed::<StoreError, _>)?;
        out.item().map(|item| Self::from_item(id, item)).transpose()
    }

    /// Writes `new` in place of `old`, on condition that the stored job is still at
    /// `old`'s state and version. Returns the job as stored (version bumped).
    pub async fn replace(&self, old: &Job, mut new: Job) -> Result<Job, StoreError> {
        new.version = old.version + 1;
        let item = Self::item(&new)?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("#state = :state AND #version = :version")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":state", s(old.state.as_str()))
            .expression_attribute_values(":version", AttributeValue::N(old.version.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(new),
            Err(e) => match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    // The SDK may have retried a write that had in fact landed: then the
                    // stored item is exactly ours, and this is no conflict.
                    let ours = match se {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().and_then(|i| i.get("doc")) == item.get("doc")
                        }
                        _ => false,
                    };
                    if ours {
                        Ok(new)
                    } else {
                        Err(StoreError::Conflict {
                            id: old.id.clone(),
                            expected_state: old.state,
                            expected_version: old.version,
                        })
                    }
                }
                _ => Err(crate::sdk::failed::<StoreError, _>(e)),
            },
        }
    }

    /// Applies a transition to `job` (as read) and stores it conditionally.
    pub async fn transition(&self, job: &Job, t: Transition, note: Option<String>) -> Result<Job, StoreError> {
        let mut next = job.clone();
        next.apply(t, Utc::now(), note)?;
        let stored = self.replace(job, next).await?;
        tracing::info!(job_id = %stored.id, state = %stored.state, from = %job.state, "job state changed");
        Ok(stored)
    }

    /// Changes a job without changing its state (progress, heartbeat, probe), with the
    /// same conditional write.
    pub async fn update(&self, job: &Job, change: impl FnOnce(&mut Job)) -> Result<Job, StoreError> {
        let mut next = job.clone();
        change(&mut next);
        next.state = job.state;
        next.updated_at = Utc::now();
        self.replace(job, next).await
    }

    /// Records which job a remote backend's task belongs to (`media#<backend>#<id>`), for
    /// callbacks that carry only the task's id. Kept 90 days.
    pub async fn put_media_link(&self, backend: &str, media_id: &str, job_id: &str) -> Result<(), StoreError> {
        let expires = (Utc::now() + chrono::Duration::days(90)).timestamp();
        let link = Item::MediaLink { backend, media_id };
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, link.pk())
            .item("kind", s(link.kind()))
            .item("job_id", s(job_id))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(crate::sdk::failed::<StoreError, _>)?;
        Ok(())
    }

    /// The job a remote task belongs to.
    pub async fn job_for_media(&self, backend: &str, media_id: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, Item::MediaLink { backend, media_id }.pk())
            .consistent_read(true)
            .send()
            .await
            .map_err(crate::sdk::failed::<StoreError, _>)?;
        Ok(out
            .item()
            .and_then(|i| i.get("job_id"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    /// One page of jobs, newest first: jobs in any of `states` (give them in lifecycle
    /// order: a job that moves on while the states are read one after the other is then
    /// seen twice, and kept once, rather than missed) created in `[from, to]`,
    /// strictly before `before` (the `created_at` key of the previous page's last job),
    /// that `keep` accepts. Returns the page and the cursor for the next one.
    pub async fn list_page(
        &self,
        states: &[JobState],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        before: Option<&str>,
        limit: usize,
        keep: impl Fn(&Job) -> bool,
    ) -> Result<(Vec<Job>, Option<String>), StoreError> {
        let key_of = |j: &Job| format!("{}#{}", j.created_at.to_rfc3339(), j.id);
        let mut upper = match before {
            Some(b) => b.to_string(),
            None => format!("{}~#", to.to_rfc3339()),
        };
        let lower = from.to_rfc3339();
        let mut page: Vec<Job> = Vec::new();
        // a filter may drop jobs: read on, a bounded number of rounds
        for _ in 0..10 {
            let mut batch: Vec<Job> = Vec::new();
            let mut cut_short = false;
            for st in states {
                // BETWEEN includes the bound, which may be the previous page's last job:
                // one more than needed keeps limit+1 below it
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(STATE_INDEX)
                    .key_condition_expression("#state = :state AND created_at BETWEEN :from AND :to")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":state", s(st.as_str()))
                    .expression_attribute_values(":from", s(&lower))
                    .expression_attribute_values(":to", s(&upper))
                    .scan_index_forward(false)
                    .limit(limit as i32 + 2)
                    .send()
                    .await
                    .map_err(crate::sdk::failed::<StoreError, _>)?;
                let n = out.items().len();
                for item in out.items() {
                    let id = item.get(PK).and_then(|p| p.as_s().ok()).cloned().unwrap_or_default();
                    batch.push(Self::from_item(&id, item)?);
                }
                // a page cut at 1 MB (or full) may hide more
                if out.last_evaluated_key().is_some() && n < limit + 2 {
                    cut_short = true;
                }
            }
            batch.retain(|j| key_of(j) < upper);
            // a job read in two states (it moved on between the queries): its later version
            batch.sort_by_key(|j| (std::cmp::Reverse(key_of(j)), std::cmp::Reverse(j.version)));
            batch.dedup_by(|a, b| a.id == b.id);
            // each state gave its newest limit+1 below the bound: the merged newest limit+1
            // are the newest overall
            batch.truncate(limit + 1);
            let exhausted = batch.len() <= limit && !cut_short;
            for j in &batch {
                if page.len() == limit {
                    // more remain: the next page starts below this page's last job
                    let cursor = page.last().map(key_of);
                    return Ok((page, cursor));
                }
                if keep(j) {
                    page.push(j.clone());
                }
            }
            if exhausted {
                return Ok((page, None));
            }
            match batch.last() {
                Some(last) => upper = key_of(last),
                None => break,
            }
        }
        // rounds used up: go on from where this page stopped looking
        Ok((page, Some(upper)))
    }

    /// The `limit` oldest jobs in `state` by creation, oldest first: one query of the
    /// state index read forwards.
    pub async fn oldest(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATE_INDEX)
            .key_condition_expression("#state = :state")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .scan_index_forward(true)
            .limit(limit.max(1) as i32)
            .send()
            .await
            .map_err(crate::sdk::failed::<StoreError, _>)?;
        out.items()
            .iter()
            .map(|item| {
                let id = item.get(PK).and_then(|p| p.as_s().ok()).cloned().unwrap_or_default();
                Self::from_item(&id, item)
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl nommer_core::ports::JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> Result<Created, StoreError> {
        DynamoJobStore::create(self, job).await
    }
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        DynamoJobStore::get(self, id).await
    }
    async fn replace(&self, current: &Job, next: Job) -> Result<Job, StoreError> {
        DynamoJobStore::replace(self, current, next).await
    }
    async fn list_page(
        &self,
        q: nommer_core::ports::JobQuery<'_>,
        keep: &(dyn for<'j> Fn(&'j Job) -> bool + Send + Sync),
    ) -> Result<(Vec<Job>, Option<String>), StoreError> {
        DynamoJobStore::list_page(self, q.states, q.from, q.to, q.before, q.limit, keep).await
    }
    async fn oldest(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        DynamoJobStore::oldest(self, state, limit).await
    }
    async fn put_media_link(&self, backend: &str, media_id: &str, job_id: &str) -> Result<(), StoreError> {
        DynamoJobStore::put_media_link(self, backend, media_id, job_id).await
    }
    async fn job_for_media(&self, backend: &str, media_id: &str) -> Result<Option<String>, StoreError> {
        DynamoJobStore::job_for_media(self, backend, media_id).await
    }
}
