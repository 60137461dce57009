//! `nommer events`: prints job events as they arrive, through a temporary SQS queue
//! subscribed to the events topic (raw delivery, an optional state filter), removed
//! again on Ctrl-C.

use anyhow::Context;
use aws_config::SdkConfig;
use nommer_core::events::Event;
use std::future::Future;

/// One line for a terminal.
pub fn line(e: &Event) -> String {
    let from = e.job.previous_state.map(|s| s.as_str()).unwrap_or("-");
    let mut s = format!(
        "{} {} {:<11} → {:<11} {:>3}%  {}",
        e.time.format("%H:%M:%S%.3f"),
        e.job.id,
        from,
        e.job.state.as_str(),
        e.job.progress,
        e.kind
    );
    if let Some(b) = &e.job.backend {
        s.push_str(&format!("  backend={b}"));
    }
    if let Some(err) = &e.job.error {
        s.push_str(&format!("  error={}: {}", err.code.as_str(), err.message));
    }
    s
}

/// The queue's ARN. `nommer_aws::queue::SqsQueue::arn` does the same, but the user's CLI
/// stays off nommer-aws (shared/DESIGN.md: core, reqwest, and SQS/SNS for `events` only):
/// it would link the DynamoDB, S3 and Secrets Manager SDKs and the Encoding.com client
/// into the CLI for these few lines.
async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueArn)
        .send()
        .await
        .context("reading the watch queue's ARN")?;
    let arn = attrs.attributes().and_then(|a| a.get(&QueueArn));
    arn.cloned().context("the watch queue has no ARN")
}

/// Subscribes a fresh queue to `topic_arn` and calls `on_event` for each event until
/// `stop` resolves; then unsubscribes and deletes the queue.
pub async fn watch(
    config: &SdkConfig,
    topic_arn: &str,
    states: &[String],
    mut on_event: impl FnMut(Event),
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let sns = aws_sdk_sns::Client::new(config);
    let name = format!("nommer-watch-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .context("creating the watch queue")?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = queue_arn(&sqs, &url).await?;
    // the topic may send to this queue, and only this topic
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
        .send()
        .await?;
    let mut sub = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&arn)
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true);
    if !states.is_empty() {
        sub = sub.attributes("FilterPolicy", serde_json::json!({ "state": states }).to_string());
    }
    let sub_arn = sub
        .send()
        .await
        .with_context(|| format!("subscribing to {topic_arn}"))?
        .subscription_arn()
        .unwrap_or_default()
        .to_string();
    let result = async {
        tokio::pin!(stop);
        loop {
            let recv = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(2)
                .send();
            let r = tokio::select! {
                _ = &mut stop => return Ok::<(), anyhow::Error>(()),
                r = recv => r?,
            };
            for m in r.messages() {
                match serde_json::from_str::<Event>(m.body().unwrap_or_default()) {
                    Ok(e) => on_event(e),
                    Err(e) => eprintln!("nommer: a message that is not an event: {e}"),
                }
                if let Some(h) = m.receipt_handle() {
                    let _ = sqs.delete_message().queue_url(&url).receipt_handle(h).send().await;
                }
            }
        }
    }
    .await;
    let _ = sns.unsubscribe().subscription_arn(&sub_arn).send().await;
    let _ = sqs.delete_queue().queue_url(&url).send().await;
    result
}
