//! A split job's tasks on DynamoDB (`task#<job id>#<task>`, the task as JSON in `doc`).
//! Every change is conditional on the version the writer read, like the job store's; a
//! write whose answer was lost and was retried into its own success is no conflict.

use crate::table::{s, Item, PK};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use nommer_core::error::StoreError;
use nommer_core::split::task::{SplitTask, TaskName};
use std::collections::HashMap;

/// Tasks are kept this long after they are written (the table's TTL).
const KEEP_DAYS: i64 = 30;

#[derive(Clone, Debug)]
pub struct DynamoTaskStore {
    client: Client,
    table: String,
}

fn key(job_id: &str, name: TaskName) -> AttributeValue {
    Item::Task {
        job_id,
        task: &name.to_string(),
    }
    .pk()
}

impl DynamoTaskStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTaskStore {
            client,
            table: table.into(),
        }
    }

    fn item(t: &SplitTask) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let doc = serde_json::to_string(t).map_err(|e| StoreError::Corrupt {
            id: format!("{}#{}", t.job_id, t.name),
            reason: e.to_string(),
        })?;
        let expires = (t.updated_at + chrono::Duration::days(KEEP_DAYS)).timestamp();
        Ok(HashMap::from([
            (PK.to_string(), key(&t.job_id, t.name)),
            ("kind".to_string(), s("task")),
            ("version".to_string(), AttributeValue::N(t.version.to_string())),
            ("expires_at".to_string(), AttributeValue::N(expires.to_string())),
            ("doc".to_string(), s(doc)),
        ]))
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<SplitTask, StoreError> {
        let id = item.get(PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let doc = item
            .get("doc")
            .and_then(|d| d.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt {
                id: id.clone(),
                reason: "no `doc` attribute".into(),
            })?;
        serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
            id,
            reason: e.to_string(),
        })
    }

    /// Creates each task that does not exist yet (a split run again finds its tasks as
    /// the first run left them).
    pub async fn create_missing(&self, tasks: &[SplitTask]) -> Result<(), StoreError> {
        for t in tasks {
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::item(t)?))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match res {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(crate::sdk::failed::<StoreError, _>(e)),
            }
        }
        Ok(())
    }

    /// Reads one task (strongly consistent).
    pub async fn get(&self, job_id: &str, name: TaskName) -> Result<Option<SplitTask>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, key(job_id, name))
            .consistent_read(true)
            .send()
            .await
            .map_err(crate::sdk::failed::<StoreError, _>)?;
        out.item().map(Self::from_item).transpose()
    }

    /// Reads these tasks of a job (strongly consistent), in the order named; a task
    /// missing from the table is left out.
    pub async fn all(&self, job_id: &str, names: &[TaskName]) -> Result<Vec<SplitTask>, StoreError> {
        let mut found: HashMap<TaskName, SplitTask> = HashMap::new();
        for batch in names.chunks(100) {
            let mut wanted: Vec<HashMap<String, AttributeValue>> = batch
                .iter()
                .map(|n| HashMap::from([(PK.to_string(), key(job_id, *n))]))
                .collect();
            // unprocessed keys are asked for again, a bounded number of times
            for _ in 0..8 {
                if wanted.is_empty() {
                    break;
                }
                let keys = KeysAndAttributes::builder()
                    .set_keys(Some(wanted.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Aws(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(crate::sdk::failed::<StoreError, _>)?;
                for item in out.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                    let t = Self::from_item(item)?;
                    found.insert(t.name, t);
                }
                wanted = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
            }
            if !wanted.is_empty() {
                return Err(StoreError::Aws(format!(
                    "{} tasks of job {job_id} stayed unread after retries",
                    wanted.len()
                )));
            }
        }
        Ok(names.iter().filter_map(|n| found.remove(n)).collect())
    }

    /// Writes `next` in place of `current`, on condition that the stored task is still
    /// at `current`'s version. Returns the task as stored (version bumped).
    pub async fn replace(&self, current: &SplitTask, mut next: SplitTask) -> Result<SplitTask, StoreError> {
        next.version = current.version + 1;
        let item = Self::item(&next)?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", AttributeValue::N(current.version.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(next),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    // a retried write that had landed finds its own item: no conflict
                    if c.item().and_then(|i| i.get("doc")) == item.get("doc") {
                        Ok(next)
                    } else {
                        Err(StoreError::TaskConflict {
                            id: format!("{}#{}", current.job_id, current.name),
                            expected_version: current.version,
                        })
                    }
                }
                _ => Err(crate::sdk::failed::<StoreError, _>(e)),
            },
        }
    }
}
