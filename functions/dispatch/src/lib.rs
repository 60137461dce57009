//! The dispatch function: takes new jobs off the jobs queue, routes them to a backend,
//! moves them to `queued` and hands them to that backend's queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use nommer_shared::messages::JobMessage;
use nommer_shared::queue::SqsQueue;
use nommer_shared::settings::DispatchSettings;
use nommer_shared::store::DynamoJobStore;
use nommer_shared::{JobState, Transition};

/// The only backend so far: Nommer's own FFmpeg fleet.
pub const FFMPEG_BACKEND: &str = "ffmpeg";

#[derive(Clone)]
pub struct Dispatch {
    pub settings: DispatchSettings,
    pub store: DynamoJobStore,
    pub queue: SqsQueue,
}

impl Dispatch {
    pub fn new(settings: DispatchSettings, config: &aws_config::SdkConfig) -> Self {
        Dispatch {
            store: DynamoJobStore::new(nommer_shared::aws::dynamodb_client(config), &settings.table),
            queue: SqsQueue::new(nommer_shared::aws::sqs_client(config)),
            settings,
        }
    }
}

/// Handles a batch from the jobs queue; failed messages are reported alone.
pub async fn function_handler(
    ctx: &Dispatch,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let id = message.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id);
        let _e = span.enter();
        let result = match JobMessage::from_body(message.body.as_deref().unwrap_or_default()) {
            Ok(m) => dispatch_job(ctx, &m.job_id).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "message failed; SQS will retry it, then park it in the dead-letter queue");
            response.add_failure(id);
        }
    }
    Ok(response)
}

/// Routes one job. Safe to repeat: a job already queued is sent again (the worker
/// ignores duplicates), a job further along is left alone.
#[tracing::instrument(skip(ctx))]
pub async fn dispatch_job(ctx: &Dispatch, job_id: &str) -> Result<(), lambda_runtime::Error> {
    let job = ctx.store.require(job_id).await?;
    let job = match job.state {
        JobState::Submitted => {
            let mut next = job.clone();
            next.apply(
                Transition::Dispatch,
                chrono::Utc::now(),
                Some(format!("routed to {FFMPEG_BACKEND}: the only backend")),
            )?;
            next.backend = Some(FFMPEG_BACKEND.to_string());
            let stored = ctx.store.replace(&job, next).await?;
            tracing::info!(job_id, state = %stored.state, backend = FFMPEG_BACKEND, "job dispatched");
            stored
        }
        JobState::Queued => job,
        other => {
            tracing::info!(job_id, state = %other, "job is past dispatch; nothing to do");
            return Ok(());
        }
    };
    ctx.queue
        .send(&ctx.settings.work_queue_url, &JobMessage::new(&job.id).to_body())
        .await?;
    Ok(())
}
