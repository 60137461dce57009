//! A split job's tasks, from the chunks queue: each message triaged against its job and
//! its task (`nommer_core::split::task::triage`), the task taken with a conditional
//! write, kept alive while it runs (its message hidden, its heartbeat fresh, its job
//! watched for a cancel), and settled: done (then the job's progress, and the stitch
//! once every chunk and the audio are in), back to pending for a retry, or failed with
//! the job. A chunk encodes its piece into every video output (`chunk.rs`); the audio
//! task encodes the whole audio once per output; the stitch is in `stitch.rs`.

use crate::slots::ActiveGuard;
use crate::{JobFailure, Worker};
use chrono::Utc;
use nommer_aws::queue::{Received, SqsQueue};
use nommer_aws::store::DynamoJobStore;
use nommer_aws::tasks::DynamoTaskStore;
use nommer_core::error::JobErrorCode;
use nommer_core::job::{Job, JobError};
use nommer_core::ports::JobStore as _;
use nommer_core::split::task::{self as t, SplitTask, TaskMessage, TaskName, TaskState, TaskStep};
use nommer_core::split::SplitPlan;
use nommer_core::state::JobState;
use nommer_core::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A split job's progress is written onto it at most this often (seconds).
const SUMMARY_SECS: i64 = 3;

/// A task this worker holds: every write to it goes through here.
#[derive(Clone)]
pub(crate) struct HeldTask {
    task: Arc<Mutex<SplitTask>>,
    store: DynamoTaskStore,
}

impl HeldTask {
    async fn write(&self, change: impl FnOnce(&SplitTask) -> SplitTask) -> Result<SplitTask, StoreError> {
        let mut guard = self.task.lock().await;
        let stored = self.store.replace(&guard, change(&guard)).await?;
        *guard = stored.clone();
        Ok(stored)
    }

    async fn beat(&self) -> Result<SplitTask, StoreError> {
        self.write(|t| SplitTask {
            heartbeat_at: Some(Utc::now()),
            ..t.clone()
        })
        .await
    }
}

/// Keeps a task's message hidden and its heartbeat fresh, and watches its job: when the
/// job ends other than by completing (a cancel, a failure), `stop` is set. A job
/// completes only by its stitch's delivery, which is this task's own doing.
struct TaskBeat {
    task: tokio::task::JoinHandle<()>,
    done: tokio::sync::watch::Sender<bool>,
}

impl TaskBeat {
    fn start(
        queue: SqsQueue,
        url: String,
        receipt: String,
        vt: Duration,
        held: HeldTask,
        jobs: DynamoJobStore,
        job_id: String,
        stop: tokio::sync::watch::Sender<bool>,
    ) -> TaskBeat {
        let (done, mut finished) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(vt / 3) => {}
                    _ = finished.wait_for(|v| *v) => return,
                }
                if let Err(e) = queue.set_visibility(&url, &receipt, vt).await {
                    tracing::warn!(error = %e, "could not extend the task's message");
                }
                if let Err(e) = held.beat().await {
                    tracing::warn!(error = %e, "could not record a heartbeat on the task");
                }
                if let Ok(Some(job)) = jobs.get(&job_id).await {
                    if job.state.is_terminal() && job.state != JobState::Complete {
                        tracing::info!(job_id, state = %job.state, "the job ended; stopping its task");
                        stop.send_replace(true);
                    }
                }
            }
        });
        TaskBeat { task, done }
    }

    /// Ends the beat between its writes (never in the middle of one, which would leave
    /// the held task's version behind the stored one) and waits for it.
    async fn finish(mut self) {
        self.done.send_replace(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for TaskBeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Worker {
    fn chunk_queue(&self) -> &str {
        self.settings.chunk_queue_url.as_deref().unwrap_or_default()
    }

    /// One message from the chunks queue.
    pub(crate) async fn handle_task_message(&self, msg: &Received) -> anyhow::Result<()> {
        let url = self.chunk_queue();
        let m = match TaskMessage::from_body(&msg.body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "malformed task message; leaving it for the dead-letter queue");
                return Ok(());
            }
        };
        let job = self.store.get(&m.job_id).await?;
        let (Some(job), Some(task)) = (job, self.tasks.get(&m.job_id, m.task).await?) else {
            tracing::warn!(job_id = %m.job_id, task = %m.task, "task message for a job or task that does not exist; deleted");
            self.queue.delete(url, &msg.receipt_handle).await?;
            return Ok(());
        };
        let Some(plan) = job.split.clone() else {
            tracing::warn!(job_id = %job.id, "task message for a job that is not split; deleted");
            self.queue.delete(url, &msg.receipt_handle).await?;
            return Ok(());
        };
        let step = t::triage(
            job.state,
            &task,
            &msg.message_id,
            Utc::now(),
            self.stale_after(),
            self.settings.max_attempts,
        );
        match step {
            TaskStep::Delete(why) => {
                tracing::info!(job_id = %job.id, task = %task.name, why, "task message deleted");
                if task.state == TaskState::Done && task.name != TaskName::Stitch {
                    // whoever held it may have died before sending the stitch
                    let tasks = self.tasks.all(&job.id, &t::task_names(&plan)).await?;
                    self.stitch_if_ready(&job.id, &tasks).await?;
                }
                self.queue.delete(url, &msg.receipt_handle).await?;
            }
            TaskStep::HideAgain => {
                self.queue
                    .set_visibility(url, &msg.receipt_handle, self.settings.visibility_timeout)
                    .await?
            }
            TaskStep::Exhausted => {
                let why = task
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("its worker was lost each time");
                let message = format!(
                    "{} gave up after {} attempts: {why}",
                    describe(&plan, task.name),
                    task.attempts
                );
                self.tasks
                    .replace(&task, task.ended(TaskState::Failed, None, Utc::now()))
                    .await?;
                self.fail_split_job(&job, JobError::new(JobErrorCode::AttemptsExhausted, message))
                    .await?;
                self.queue.delete(url, &msg.receipt_handle).await?;
            }
            TaskStep::Take => {
                let taken = task.taken(&self.settings.worker_id, &msg.message_id, Utc::now());
                match self.tasks.replace(&task, taken).await {
                    Ok(held) => self.run_task(job, plan, held, msg).await?,
                    // another worker took it first; this message is a duplicate
                    Err(StoreError::TaskConflict { .. }) => self.queue.delete(url, &msg.receipt_handle).await?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Runs a task this worker has taken, keeping it alive, then settles it.
    async fn run_task(&self, job: Job, plan: SplitPlan, task: SplitTask, msg: &Received) -> anyhow::Result<()> {
        let dir = tempfile::Builder::new()
            .prefix("nommer-task-")
            .tempdir_in(&self.settings.work_dir)?;
        self.current_tasks
            .lock()
            .unwrap()
            .insert(msg.receipt_handle.clone(), (job.id.clone(), task.name));
        let _active = ActiveGuard::new(self);
        let name = task.name;
        let held = HeldTask {
            task: Arc::new(Mutex::new(task)),
            store: self.tasks.clone(),
        };
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let beat = TaskBeat::start(
            self.queue.clone(),
            self.chunk_queue().to_string(),
            msg.receipt_handle.clone(),
            self.settings.visibility_timeout,
            held.clone(),
            self.store.clone(),
            job.id.clone(),
            stop_tx,
        );
        tracing::info!(job_id = %job.id, task = %name, "task taken");
        let work = async {
            match name {
                TaskName::Chunk(i) => self.chunk_task(&job, &plan, i, dir.path()).await,
                TaskName::Audio => self.audio_task(&job, &plan, dir.path()).await,
                TaskName::Stitch => self.stitch_task(&job, &plan, &msg.message_id, dir.path()).await,
            }
        };
        let result = tokio::select! {
            r = work => r,
            _ = stop.wait_for(|v| *v) => Err(JobFailure::Superseded("the job ended".into())),
        };
        beat.finish().await;
        self.current_tasks.lock().unwrap().remove(&msg.receipt_handle);
        let scrub = |m: String| m.replace(&dir.path().display().to_string(), "");
        let result = result.map_err(|f| match f {
            JobFailure::Permanent(code, message) => JobFailure::Permanent(code, scrub(message)),
            JobFailure::Retryable(reason) => JobFailure::Retryable(scrub(reason)),
            other => other,
        });
        self.settle_task(&job, &plan, &held, msg, result).await
    }

    async fn settle_task(
        &self,
        job: &Job,
        plan: &SplitPlan,
        held: &HeldTask,
        msg: &Received,
        result: Result<(), JobFailure>,
    ) -> anyhow::Result<()> {
        let url = self.chunk_queue();
        let name = held.task.lock().await.name;
        match result {
            Ok(()) => {
                held.write(|t| t.ended(TaskState::Done, None, Utc::now())).await?;
                tracing::info!(job_id = %job.id, task = %name, "task done");
                if name != TaskName::Stitch {
                    // read once, for the progress and the stitch both
                    let tasks = self.tasks.all(&job.id, &t::task_names(plan)).await?;
                    self.summarise(&job.id, &tasks).await;
                    self.stitch_if_ready(&job.id, &tasks).await?;
                }
                self.queue.delete(url, &msg.receipt_handle).await?;
            }
            Err(JobFailure::Permanent(code, message)) => {
                let message = format!("{}: {message}", describe(plan, name));
                tracing::warn!(job_id = %job.id, task = %name, code = code.as_str(), %message, "task failed");
                let error = JobError::new(code, message);
                held.write(|t| t.ended(TaskState::Failed, Some(error.clone()), Utc::now()))
                    .await?;
                self.fail_split_job(job, error).await?;
                self.queue.delete(url, &msg.receipt_handle).await?;
            }
            Err(JobFailure::Retryable(reason)) => {
                tracing::warn!(job_id = %job.id, task = %name, %reason, "task attempt failed; it goes back to the queue");
                let error = JobError::new(JobErrorCode::Internal, reason);
                let back = held.write(|t| t.released(Some(error), Utc::now())).await?;
                let delay = Duration::from_secs(5 * u64::from(back.attempts.max(1)));
                self.queue.set_visibility(url, &msg.receipt_handle, delay).await?;
            }
            Err(JobFailure::Superseded(reason)) => {
                let ended = self
                    .store
                    .get(&job.id)
                    .await?
                    .map(|j| j.state.is_terminal())
                    .unwrap_or(true);
                tracing::info!(job_id = %job.id, task = %name, %reason, ended, "task stopped");
                if ended {
                    // not run to its end, and never will be: back to pending, saying why
                    let why = JobError::new(JobErrorCode::Internal, format!("stopped: {reason}"));
                    if let Err(e) = held.write(|t| t.released(Some(why), Utc::now())).await {
                        tracing::warn!(job_id = %job.id, task = %name, error = %e, "could not record the stopped task");
                    }
                    self.queue.delete(url, &msg.receipt_handle).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends the stitch's message once every chunk and the audio are done, from the
    /// job's tasks as just read (any number of times: the stitch's own task lets one
    /// through).
    pub(crate) async fn stitch_if_ready(&self, job_id: &str, tasks: &[SplitTask]) -> Result<(), JobFailure> {
        let stitch = tasks.iter().find(|t| t.name == TaskName::Stitch);
        if t::ready_to_stitch(tasks) && stitch.is_some_and(|s| s.state == TaskState::Pending) {
            self.send_task(job_id, TaskName::Stitch).await?;
            tracing::info!(job_id, "every chunk is in: stitch sent");
        }
        Ok(())
    }

    /// Writes the job's progress from its tasks (best effort: another worker's write
    /// may come first, and the next task done writes it again; the stitch writes the
    /// rest).
    async fn summarise(&self, job_id: &str, tasks: &[SplitTask]) {
        let pct = t::progress(tasks);
        if let Ok(Some(job)) = self.store.get(job_id).await {
            // at most every few seconds, however many chunks end at once
            let recent = Utc::now() - job.updated_at < chrono::Duration::seconds(SUMMARY_SECS);
            if job.state == nommer_core::JobState::Encoding && pct > job.progress && !recent {
                let _ = self
                    .store
                    .update(&job, |j| {
                        j.progress = pct;
                        j.heartbeat_at = Some(Utc::now());
                    })
                    .await;
            }
        }
    }

    /// Fails a split job (whoever holds it), re-reading it if another write came first.
    async fn fail_split_job(&self, job: &Job, error: JobError) -> anyhow::Result<()> {
        let mut current = job.clone();
        for _ in 0..5 {
            if current.state.is_terminal() {
                return Ok(());
            }
            let mut next = current.clone();
            next.fail(error.clone(), Utc::now())?;
            match self.store.replace(&current, next).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => current = self.store.require(&job.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("job {} kept changing while being failed", job.id)
    }

    /// Gives the tasks in hand back at shutdown: each back to pending, and its message
    /// visible again at once.
    pub(crate) async fn release_tasks(&self) {
        let held: Vec<(String, (String, TaskName))> = self.current_tasks.lock().unwrap().drain().collect();
        for (receipt, (job_id, name)) in held {
            let released = match self.tasks.get(&job_id, name).await {
                Ok(Some(task))
                    if task.state == TaskState::Running && task.worker.as_deref() == Some(&self.settings.worker_id) =>
                {
                    let note = JobError::new(
                        JobErrorCode::Internal,
                        format!("worker {} shut down", self.settings.worker_id),
                    );
                    self.tasks
                        .replace(&task, task.released(Some(note), Utc::now()))
                        .await
                        .is_ok()
                }
                _ => false,
            };
            if released {
                let _ = self
                    .queue
                    .set_visibility(self.chunk_queue(), &receipt, Duration::ZERO)
                    .await;
                tracing::info!(job_id, task = %name, "task given back to the queue");
            }
        }
    }
}

/// A task as a user reads it: `chunk 3 (0:03:00–0:04:00)`, `the audio`, `the stitch`.
pub(crate) fn describe(plan: &SplitPlan, name: TaskName) -> String {
    let clock = |s: f64| {
        let s = s.max(0.0) as u64;
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    match name {
        TaskName::Chunk(i) => match plan.chunks.get(i as usize) {
            Some(span) => format!("chunk {i} ({}–{})", clock(span.start), clock(span.end)),
            None => format!("chunk {i}"),
        },
        TaskName::Audio => "the audio".into(),
        TaskName::Stitch => "the stitch".into(),
    }
}
