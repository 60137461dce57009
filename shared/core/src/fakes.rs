//! In-memory fakes of the ports, for the flows' tests (and, with the `fakes` feature, for
//! other crates' tests). They keep the promises the real adapters keep: the job store's
//! writes are conditional on state and version, a create never overwrites.

use crate::error::StoreError;
use crate::job::{Job, Probe, S3Uri};
use crate::ports::*;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Jobs and media links in memory.
#[derive(Default)]
pub struct MemJobStore {
    pub jobs: Mutex<BTreeMap<String, Job>>,
    pub media: Mutex<BTreeMap<(String, String), String>>,
    /// Changes applied to the stored job just before the next `replace` checks it (a
    /// writer elsewhere winning a race), by job id.
    pub meddlers: Mutex<Vec<(String, Box<dyn FnOnce(&mut Job) + Send>)>>,
}

impl MemJobStore {
    pub fn job(&self, id: &str) -> Job {
        self.jobs.lock().unwrap().get(id).cloned().expect("a stored job")
    }

    /// Makes another writer change job `id` (and bump its version) right before the
    /// next conditional write on it.
    pub fn meddle(&self, id: &str, change: impl FnOnce(&mut Job) + Send + 'static) {
        self.meddlers.lock().unwrap().push((id.to_string(), Box::new(change)));
    }
}

#[async_trait]
impl JobStore for MemJobStore {
    async fn create(&self, job: &Job) -> Result<Created, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        match jobs.get(&job.id) {
            Some(existing) => Ok(Created::Existing(existing.clone())),
            None => {
                jobs.insert(job.id.clone(), job.clone());
                Ok(Created::New(job.clone()))
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs.lock().unwrap().get(id).cloned())
    }

    async fn replace(&self, current: &Job, mut next: Job) -> Result<Job, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let mut meddlers = self.meddlers.lock().unwrap();
        if let Some(i) = meddlers.iter().position(|(id, _)| *id == current.id) {
            let (_, change) = meddlers.remove(i);
            if let Some(stored) = jobs.get_mut(&current.id) {
                change(stored);
                stored.version += 1;
            }
        }
        let stored = jobs
            .get(&current.id)
            .ok_or_else(|| StoreError::NotFound(current.id.clone()))?;
        if stored.state != current.state || stored.version != current.version {
            return Err(StoreError::Conflict {
                id: current.id.clone(),
                expected_state: current.state,
                expected_version: current.version,
            });
        }
        next.version = current.version + 1;
        jobs.insert(next.id.clone(), next.clone());
        Ok(next)
    }

    async fn list_page(
        &self,
        q: JobQuery<'_>,
        keep: &(dyn for<'j> Fn(&'j Job) -> bool + Send + Sync),
    ) -> Result<(Vec<Job>, Option<String>), StoreError> {
        let mut page: Vec<Job> = self
            .jobs
            .lock()
            .unwrap()
            .values()
            .filter(|j| q.states.contains(&j.state) && j.created_at >= q.from && j.created_at <= q.to)
            .filter(|j| keep(j))
            .cloned()
            .collect();
        page.sort_by_key(|j| std::cmp::Reverse(j.created_at));
        page.truncate(q.limit);
        Ok((page, None))
    }

    async fn oldest(&self, state: crate::state::JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut jobs: Vec<Job> = self
            .jobs
            .lock()
            .unwrap()
            .values()
            .filter(|j| j.state == state)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.created_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn put_media_link(&self, backend: &str, media_id: &str, job_id: &str) -> Result<(), StoreError> {
        let key = (backend.to_string(), media_id.to_string());
        self.media.lock().unwrap().insert(key, job_id.to_string());
        Ok(())
    }

    async fn job_for_media(&self, backend: &str, media_id: &str) -> Result<Option<String>, StoreError> {
        let key = (backend.to_string(), media_id.to_string());
        Ok(self.media.lock().unwrap().get(&key).cloned())
    }
}

/// Objects in memory, with user metadata; a presigned URL is `mem://bucket/key`.
#[derive(Default)]
pub struct MemObjects {
    pub objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    pub metadata: Mutex<BTreeMap<(String, String), std::collections::HashMap<String, String>>>,
    /// How many server-side copies were made.
    pub copies: Mutex<usize>,
}

impl MemObjects {
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let k = (bucket.to_string(), key.to_string());
        self.objects.lock().unwrap().insert(k, body.to_vec());
    }

    pub fn set_metadata(&self, bucket: &str, key: &str, pairs: &[(&str, &str)]) {
        let m = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.metadata
            .lock()
            .unwrap()
            .insert((bucket.to_string(), key.to_string()), m);
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    fn body(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectError> {
        let k = (bucket.to_string(), key.to_string());
        self.objects
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })
    }
}

#[async_trait]
impl ObjectStore for MemObjects {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        let Ok(body) = self.body(bucket, key) else {
            return Ok(None);
        };
        let k = (bucket.to_string(), key.to_string());
        Ok(Some(ObjectInfo {
            size: body.len() as u64,
            etag: Some(format!("etag-{}", body.len())),
            metadata: self.metadata.lock().unwrap().get(&k).cloned().unwrap_or_default(),
            ..ObjectInfo::default()
        }))
    }

    async fn head_bytes(&self, bucket: &str, key: &str, n: u64) -> Result<(Vec<u8>, u64), ObjectError> {
        let body = self.body(bucket, key)?;
        let size = body.len() as u64;
        Ok((body.into_iter().take(n as usize).collect(), size))
    }

    async fn presign_get(&self, bucket: &str, key: &str, _lifetime: Duration) -> Result<String, ObjectError> {
        self.body(bucket, key)?;
        Ok(format!("mem://{bucket}/{key}"))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.len() as u64))
            .collect())
    }

    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<Option<String>, ObjectError> {
        use sha2::Digest;
        let body = self.body(from_bucket, from_key)?;
        self.put(to_bucket, to_key, &body);
        *self.copies.lock().unwrap() += 1;
        Ok(Some(hex::encode(sha2::Sha256::digest(&body))))
    }
}

/// Every message sent, as (queue URL, body), and the delays asked for.
#[derive(Default)]
pub struct MemQueue {
    pub sent: Mutex<Vec<(String, String)>>,
    pub delays: Mutex<Vec<i32>>,
}

impl MemQueue {
    pub fn bodies(&self, queue_url: &str) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(u, _)| u == queue_url)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

#[async_trait]
impl WorkQueue for MemQueue {
    async fn send(&self, queue_url: &str, body: &str) -> Result<String, QueueError> {
        let mut sent = self.sent.lock().unwrap();
        sent.push((queue_url.to_string(), body.to_string()));
        Ok(format!("m{}", sent.len()))
    }

    async fn send_delayed(&self, queue_url: &str, body: &str, delay_seconds: i32) -> Result<String, QueueError> {
        self.delays.lock().unwrap().push(delay_seconds);
        self.send(queue_url, body).await
    }
}

/// Probes by URL, as set; any other URL cannot be probed here.
#[derive(Default)]
pub struct FakeProber {
    pub probes: Mutex<BTreeMap<String, Result<Probe, ProbeFailure>>>,
}

impl FakeProber {
    pub fn set(&self, url: &str, result: Result<Probe, ProbeFailure>) {
        self.probes.lock().unwrap().insert(url.to_string(), result);
    }
}

#[async_trait]
impl Prober for FakeProber {
    async fn probe_url(&self, url: &str, _size: u64) -> Result<Probe, ProbeFailure> {
        let probes = self.probes.lock().unwrap();
        probes
            .get(url)
            .cloned()
            .unwrap_or_else(|| Err(ProbeFailure::Unavailable(format!("no probe for {url}"))))
    }
}

/// A remote encoder that records its tasks and answers as it is told.
#[derive(Debug, Default)]
pub struct FakeRemote {
    /// (source URL, callback URL, output names with their destinations) of each add.
    pub added: Mutex<Vec<(String, String, Vec<(String, S3Uri)>)>>,
    /// What the next adds answer, in order (default: a new media id).
    pub add_answers: Mutex<Vec<Result<String, RemoteError>>>,
    pub statuses: Mutex<BTreeMap<String, RemoteStatus>>,
    pub cancelled: Mutex<Vec<String>>,
}

impl FakeRemote {
    pub fn answer_next_add(&self, answer: Result<String, RemoteError>) {
        self.add_answers.lock().unwrap().push(answer);
    }

    pub fn set_status(&self, status: RemoteStatus) {
        self.statuses.lock().unwrap().insert(status.media_id.clone(), status);
    }
}

#[async_trait]
impl RemoteEncoder for FakeRemote {
    async fn add(&self, r: &RemoteRequest<'_>) -> Result<String, RemoteError> {
        let outputs = r
            .outputs
            .iter()
            .map(|o| (o.name.to_string(), o.destination.clone()))
            .collect();
        let mut added = self.added.lock().unwrap();
        added.push((r.source_url.clone(), r.callback_url.clone(), outputs));
        let mut answers = self.add_answers.lock().unwrap();
        if answers.is_empty() {
            Ok(format!("media-{}", added.len()))
        } else {
            answers.remove(0)
        }
    }

    async fn status(&self, media_id: &str) -> Result<RemoteStatus, RemoteError> {
        let statuses = self.statuses.lock().unwrap();
        statuses
            .get(media_id)
            .cloned()
            .ok_or_else(|| RemoteError::Refused(format!("no media {media_id}")))
    }

    async fn cancel(&self, media_id: &str) -> Result<(), RemoteError> {
        self.cancelled.lock().unwrap().push(media_id.to_string());
        Ok(())
    }
}

/// A handoff with a fixed owner; source URLs are `reader://bucket/key`.
pub struct FakeHandoff;

pub const FAKE_OWNER: &str = "owner-canonical-id";

#[async_trait]
impl Handoff for FakeHandoff {
    async fn source_url(&self, source: &S3Uri) -> Result<String, HandoffError> {
        Ok(format!("reader://{}/{}", source.bucket, source.key))
    }

    async fn delivery_owner(&self) -> Result<String, HandoffError> {
        Ok(FAKE_OWNER.to_string())
    }
}

/// Events "published": every one, in order.
#[derive(Default)]
pub struct MemPublisher {
    pub published: Mutex<Vec<crate::events::Event>>,
}

#[async_trait]
impl EventPublisher for MemPublisher {
    async fn publish(&self, event: &crate::events::Event) -> Result<(), NotifyError> {
        self.published.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// The event markers and delivery records in memory.
#[derive(Default)]
pub struct MemLedger {
    pub done: Mutex<BTreeMap<String, Done>>,
    pub records: Mutex<Vec<(String, crate::deliveries::AttemptRecord)>>,
}

#[async_trait]
impl EventLedger for MemLedger {
    async fn claim(&self, event_id: &str) -> Result<Done, NotifyError> {
        Ok(*self.done.lock().unwrap().entry(event_id.to_string()).or_default())
    }

    async fn mark(&self, event_id: &str, step: Step) -> Result<(), NotifyError> {
        let mut done = self.done.lock().unwrap();
        let d = done.entry(event_id.to_string()).or_default();
        match step {
            Step::Published => d.published = true,
            Step::Queued => d.queued = true,
        }
        Ok(())
    }

    async fn record(&self, job_id: &str, attempt: &crate::deliveries::AttemptRecord) -> Result<(), NotifyError> {
        self.records.lock().unwrap().push((job_id.to_string(), attempt.clone()));
        Ok(())
    }
}

/// Webhook endpoints that answer as told (by URL; unknown URLs answer 200), every
/// POST kept with its headers.
#[derive(Default)]
pub struct FakeWebhooks {
    pub answers: Mutex<BTreeMap<String, Result<u16, crate::deliveries::PostFailure>>>,
    pub refused: Mutex<BTreeMap<String, (String, bool)>>,
    pub posts: Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>,
}

#[async_trait]
impl WebhookClient for FakeWebhooks {
    async fn vet(
        &self,
        url: &str,
        policy: &crate::events::Webhooks,
    ) -> Result<(String, std::net::SocketAddr), (String, bool)> {
        if let Some(r) = self.refused.lock().unwrap().get(url) {
            return Err(r.clone());
        }
        let (host, port) = crate::events::check_url(url, policy).map_err(|e| (e, true))?;
        Ok((host, std::net::SocketAddr::from(([203, 0, 113, 7], port))))
    }

    async fn post(
        &self,
        url: &str,
        _host: &str,
        _addr: std::net::SocketAddr,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, crate::deliveries::PostFailure> {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        self.posts.lock().unwrap().push((url.to_string(), headers, body));
        self.answers.lock().unwrap().get(url).cloned().unwrap_or(Ok(200))
    }
}

/// A dead-letter queue in memory: `take` hands out what is neither kept nor deleted.
#[derive(Default)]
pub struct MemDeadLetters {
    pub parked: Mutex<Vec<Taken>>,
    pub kept: Mutex<Vec<String>>,
}

impl MemDeadLetters {
    pub fn park(&self, body: &str, receive_count: u32) {
        let mut parked = self.parked.lock().unwrap();
        let n = parked.len() + 1;
        parked.push(Taken {
            message_id: format!("m{n}"),
            receipt_handle: format!("r{n}"),
            body: body.to_string(),
            receive_count,
        });
    }
}

#[async_trait]
impl DeadLetterQueue for MemDeadLetters {
    async fn take(&self, _queue_url: &str, max: i32, _hide: Duration) -> Result<Vec<Taken>, QueueError> {
        let kept = self.kept.lock().unwrap().clone();
        let parked = self.parked.lock().unwrap();
        let free = parked.iter().filter(|m| !kept.contains(&m.receipt_handle));
        Ok(free.take(max.max(0) as usize).cloned().collect())
    }

    async fn keep(&self, _queue_url: &str, receipt_handle: &str, _hide: Duration) -> Result<(), QueueError> {
        self.kept.lock().unwrap().push(receipt_handle.to_string());
        Ok(())
    }

    async fn delete(&self, _queue_url: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.parked
            .lock()
            .unwrap()
            .retain(|m| m.receipt_handle != receipt_handle);
        Ok(())
    }
}

/// A fleet whose heartbeats a test sets.
#[derive(Default)]
pub struct FakeFleet {
    pub beats: Mutex<BTreeMap<String, crate::scaling::Heartbeat>>,
}

#[async_trait]
impl Fleet for FakeFleet {
    async fn heartbeats(&self) -> Result<BTreeMap<String, crate::scaling::Heartbeat>, String> {
        Ok(self.beats.lock().unwrap().clone())
    }
}
