//! What a test or a benchmark reads from the emulator itself, past the fault proxy: the
//! user's and the oracle's view of the stack, never faulted.

use crate::emulator;
use crate::stack::LocalStack;
use std::time::Duration;

impl LocalStack {
    /// The SDK config for the emulator itself.
    pub async fn direct_config(&self) -> aws_config::SdkConfig {
        nommer_aws::sdk::sdk_config_for_endpoint(&self.emulator_endpoint, emulator::REGION).await
    }

    /// Waits up to `limit` for every queue of the stack to be empty (none visible, in
    /// flight or delayed); returns what is left on each that is not, with the bodies of
    /// dead letters (their reasons).
    pub async fn settle_queues(&self, limit: Duration) -> anyhow::Result<Vec<String>> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let sqs = nommer_aws::sdk::sqs_client(&self.direct_config().await);
        let u = &self.urls;
        let queues = [
            ("ingest", &u.ingest),
            ("jobs", &u.jobs),
            ("work", &u.work),
            ("chunks", &u.chunks),
            ("webhooks", &u.webhooks),
            ("ingest DLQ", &u.ingest_dlq),
            ("jobs DLQ", &u.jobs_dlq),
            ("work DLQ", &u.work_dlq),
            ("chunks DLQ", &u.chunks_dlq),
            ("webhooks DLQ", &u.webhooks_dlq),
        ];
        let started = std::time::Instant::now();
        loop {
            let mut left = Vec::new();
            for (name, url) in queues {
                let out = sqs
                    .get_queue_attributes()
                    .queue_url(url.as_str())
                    .attribute_names(A::ApproximateNumberOfMessages)
                    .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                    .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                    .send()
                    .await?;
                let n: u64 = out
                    .attributes()
                    .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
                    .unwrap_or(0);
                if n > 0 {
                    let mut what = format!("{name}: {n} messages");
                    if name.ends_with("DLQ") {
                        let got = sqs
                            .receive_message()
                            .queue_url(url.as_str())
                            .max_number_of_messages(10)
                            .send()
                            .await;
                        for m in got.ok().iter().flat_map(|o| o.messages()) {
                            what.push_str(&format!("\n  {}", m.body().unwrap_or_default()));
                        }
                    }
                    left.push(what);
                }
            }
            if left.is_empty() || started.elapsed() > limit {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
