//! SQS adapter.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use std::time::Duration;

pub use nommer_core::ports::QueueError;

/// A message as received, with what the consumers look at.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out (1 the first time).
    pub receive_count: u32,
    pub raw: Message,
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        SqsQueue { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn send(&self, queue_url: &str, body: &str) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    /// The queue's ARN (for redrive policies and subscriptions).
    pub async fn arn(&self, queue_url: &str) -> Result<String, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| QueueError(format!("{queue_url} has no QueueArn attribute")))
    }

    /// Sends a message that stays invisible for `delay_seconds` (at most 900, SQS's cap).
    pub async fn send_delayed(&self, queue_url: &str, body: &str, delay_seconds: i32) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds.clamp(0, 900))
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    /// Long-polls for up to `max` messages.
    pub async fn receive(
        &self,
        queue_url: &str,
        max: i32,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Received>, QueueError> {
        let mut req = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All");
        if let Some(v) = visibility {
            req = req.visibility_timeout(v.as_secs() as i32);
        }
        let out = req.send().await.map_err(crate::sdk::failed::<QueueError, _>)?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                raw: m.clone(),
            })
            .collect())
    }

    pub async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        Ok(())
    }

    /// Hides the message for `timeout` from now (0 makes it visible again at once).
    pub async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        Ok(())
    }

    /// Visible and in-flight message counts.
    pub async fn depth(&self, queue_url: &str) -> Result<(u64, u64), QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(crate::sdk::failed::<QueueError, _>)?;
        let get = |k: A| {
            out.attributes()
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

#[async_trait::async_trait]
impl nommer_core::ports::WorkQueue for SqsQueue {
    async fn send(&self, queue_url: &str, body: &str) -> Result<String, QueueError> {
        SqsQueue::send(self, queue_url, body).await
    }
    async fn send_delayed(&self, queue_url: &str, body: &str, delay_seconds: i32) -> Result<String, QueueError> {
        SqsQueue::send_delayed(self, queue_url, body, delay_seconds).await
    }
}

#[async_trait::async_trait]
impl nommer_core::ports::DeadLetterQueue for SqsQueue {
    async fn take(
        &self,
        queue_url: &str,
        max: i32,
        hide: Duration,
    ) -> Result<Vec<nommer_core::ports::Taken>, QueueError> {
        let got = self.receive(queue_url, max, Duration::ZERO, Some(hide)).await?;
        Ok(got
            .into_iter()
            .map(|m| nommer_core::ports::Taken {
                message_id: m.message_id,
                receipt_handle: m.receipt_handle,
                body: m.body,
                receive_count: m.receive_count,
            })
            .collect())
    }
    async fn keep(&self, queue_url: &str, receipt_handle: &str, hide: Duration) -> Result<(), QueueError> {
        self.set_visibility(queue_url, receipt_handle, hide).await
    }
    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), QueueError> {
        SqsQueue::delete(self, queue_url, receipt_handle).await
    }
}
