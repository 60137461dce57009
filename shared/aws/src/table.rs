//! The one table: every kind of item Nommer keeps in it, the partition key (`pk`) each
//! is found under, and its `kind` attribute. No other module spells a key prefix.
//!
//! | item | `pk` | written by |
//! | --- | --- | --- |
//! | a job | the job id | the job store |
//! | a remote task's job | `media#<backend>#<media id>` | the job store |
//! | a worker's heartbeat | `worker#<instance id>` | the worker registry |
//! | an event published once | `event#<event id>` | the notifier |
//! | a job's webhook attempts | `deliveries#<job id>` | the notifier |
//! | the scaler's cool-down state | `scaler#state` | the scaler |
//! | a split job's task (a chunk, its audio, its stitch) | `task#<job id>#<task>` | the task store |

use aws_sdk_dynamodb::types::AttributeValue;

/// The partition key's attribute name.
pub const PK: &str = "pk";

/// An item of the table, by what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Job(&'a str),
    MediaLink { backend: &'a str, media_id: &'a str },
    Worker(&'a str),
    Event(&'a str),
    Deliveries(&'a str),
    ScalerState,
    Task { job_id: &'a str, task: &'a str },
}

impl Item<'_> {
    /// The item's partition key.
    pub fn key(&self) -> String {
        match self {
            Item::Job(id) => id.to_string(),
            Item::MediaLink { backend, media_id } => format!("media#{backend}#{media_id}"),
            Item::Worker(id) => format!("{WORKER_PREFIX}{id}"),
            Item::Event(id) => format!("event#{id}"),
            Item::Deliveries(job_id) => format!("deliveries#{job_id}"),
            Item::ScalerState => "scaler#state".into(),
            Item::Task { job_id, task } => format!("task#{job_id}#{task}"),
        }
    }

    /// The partition key as an attribute value.
    pub fn pk(&self) -> AttributeValue {
        AttributeValue::S(self.key())
    }

    /// Its `kind` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Job(_) => "job",
            Item::MediaLink { .. } => "media_link",
            Item::Worker(_) => "worker",
            Item::Event(_) => "event",
            Item::Deliveries(_) => "deliveries",
            Item::ScalerState => "scaler",
            Item::Task { .. } => "task",
        }
    }
}

const WORKER_PREFIX: &str = "worker#";

/// The worker id in a heartbeat item's key.
pub fn worker_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(WORKER_PREFIX)
}

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_kinds_never_meet() {
        let keys = [
            Item::Job("j1").key(),
            Item::MediaLink {
                backend: "encodingcom",
                media_id: "1",
            }
            .key(),
            Item::Worker("i-1").key(),
            Item::Event("e1").key(),
            Item::Deliveries("j1").key(),
            Item::ScalerState.key(),
            Item::Task {
                job_id: "j1",
                task: "audio",
            }
            .key(),
        ];
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        assert_eq!(worker_id_of(&Item::Worker("i-1").key()), Some("i-1"));
        assert_eq!(worker_id_of("j1"), None);
    }
}
