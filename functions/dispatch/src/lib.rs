//! The dispatch function: takes new jobs off the jobs queue, routes each by the config
//! file's rules (after probing the source), writes the decision and its estimated cost on
//! the job, moves it to `queued` and hands it to its backend: the FFmpeg fleet's queue or
//! an Encoding.com task.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use nommer_core::flows::Backends;
use nommer_core::messages::JobMessage;
use nommer_core::settings::DispatchSettings;

#[derive(Clone)]
pub struct Dispatch {
    pub settings: DispatchSettings,
    pub backends: Backends,
}

impl Dispatch {
    /// Reads the Encoding.com credentials the config file names, if any.
    pub async fn new(settings: DispatchSettings, config: &aws_config::SdkConfig) -> Result<Self, String> {
        let b = &settings.backends;
        let secrets = nommer_aws::secrets::SecretsManagerSecrets::new(config);
        let remotes = nommer_encodingcom::remotes(b, &secrets).await?;
        let prober = nommer_media::FfprobeProber::for_backends(b);
        let ports = nommer_aws::ports(config, b, remotes, prober);
        Ok(Dispatch {
            backends: Backends::new(b.clone(), ports),
            settings,
        })
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
        let result: Result<(), lambda_runtime::Error> =
            match JobMessage::from_body(message.body.as_deref().unwrap_or_default()) {
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

/// Routes one job. Safe to repeat: a job already queued is handed over again (the
/// worker ignores duplicates; an Encoding.com task is added once), a job further along
/// is left alone.
#[tracing::instrument(skip(ctx))]
pub async fn dispatch_job(ctx: &Dispatch, job_id: &str) -> Result<(), lambda_runtime::Error> {
    ctx.backends.dispatch(job_id).await?;
    Ok(())
}
