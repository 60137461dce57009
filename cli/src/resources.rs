//! The stack's AWS resources, named as `infra/template.yaml` names them, and created on
//! the emulator for the local stack.

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
    S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use nommer_shared::queue::SqsQueue;
use nommer_shared::store::STATE_INDEX;
use std::collections::HashMap;

/// Only uploads under this prefix of the inbox bucket start jobs by themselves; other
/// keys (e.g. sources for API jobs) do not.
pub const INBOX_PREFIX: &str = ingest::INBOX_PREFIX;

/// How many receives before a message is parked in its queue's dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

/// The names of one stack's resources (`<stack>-…`, buckets with the account id, as in
/// the template).
#[derive(Debug, Clone)]
pub struct StackNames {
    pub stack: String,
    pub inbox_bucket: String,
    pub outbox_bucket: String,
    pub table: String,
    pub ingest_queue: String,
    pub jobs_queue: String,
    pub work_queue: String,
    pub webhooks_queue: String,
    pub topic: String,
}

impl StackNames {
    pub fn new(stack: &str, account: &str) -> Self {
        StackNames {
            stack: stack.to_string(),
            inbox_bucket: format!("{stack}-inbox-{account}"),
            outbox_bucket: format!("{stack}-outbox-{account}"),
            table: format!("{stack}-jobs"),
            ingest_queue: format!("{stack}-ingest"),
            jobs_queue: format!("{stack}-jobs"),
            work_queue: format!("{stack}-work-ffmpeg"),
            webhooks_queue: format!("{stack}-webhooks"),
            topic: format!("{stack}-events"),
        }
    }
}

/// Queue URLs of a created stack.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub ingest: String,
    pub jobs: String,
    pub work: String,
    pub ingest_dlq: String,
    pub jobs_dlq: String,
    pub work_dlq: String,
    pub webhooks: String,
    pub webhooks_dlq: String,
    /// The SNS topic of job events.
    pub topic_arn: String,
}

async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: u32,
) -> anyhow::Result<(String, String)> {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .with_context(|| format!("creating queue {name}-dlq"))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let dlq_arn = SqsQueue::new(sqs.clone()).arn(&dlq_url).await?;
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES }).to_string();
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?;
    Ok((q.queue_url().unwrap_or_default().to_string(), dlq_url))
}

/// Creates the buckets, queues (each with a DLQ), table and the inbox's S3→SQS
/// notification.
pub async fn create(config: &SdkConfig, names: &StackNames) -> anyhow::Result<QueueUrls> {
    let s3 = nommer_shared::aws::s3_client(config);
    let sqs = nommer_shared::aws::sqs_client(config);
    let ddb = nommer_shared::aws::dynamodb_client(config);

    for b in [&names.inbox_bucket, &names.outbox_bucket] {
        s3.create_bucket()
            .bucket(b)
            .send()
            .await
            .with_context(|| format!("creating bucket {b}"))?;
    }
    let (ingest, ingest_dlq) = queue_with_dlq(&sqs, &names.ingest_queue, 30).await?;
    let (jobs, jobs_dlq) = queue_with_dlq(&sqs, &names.jobs_queue, 30).await?;
    let (work, work_dlq) = queue_with_dlq(&sqs, &names.work_queue, 120).await?;
    let (webhooks, webhooks_dlq) = queue_with_dlq(&sqs, &names.webhooks_queue, 60).await?;
    let topic_arn = aws_sdk_sns::Client::new(config)
        .create_topic()
        .name(&names.topic)
        .send()
        .await
        .with_context(|| format!("creating topic {}", names.topic))?
        .topic_arn()
        .unwrap_or_default()
        .to_string();

    let ingest_arn = SqsQueue::new(sqs.clone()).arn(&ingest).await?;
    s3.put_bucket_notification_configuration()
        .bucket(&names.inbox_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .id("nommer-ingest")
                        .queue_arn(ingest_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .filter(
                            NotificationConfigurationFilter::builder()
                                .key(
                                    S3KeyFilter::builder()
                                        .filter_rules(
                                            FilterRule::builder()
                                                .name(FilterRuleName::Prefix)
                                                .value(INBOX_PREFIX)
                                                .build(),
                                        )
                                        .build(),
                                )
                                .build(),
                        )
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .context("configuring the inbox's S3→SQS notification")?;

    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build();
    ddb.create_table()
        .table_name(&names.table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("state")?)
        .attribute_definitions(attr("created_at")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(STATE_INDEX)
                .key_schema(key("state", KeyType::Hash)?)
                .key_schema(key("created_at", KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating table {}", names.table))?;

    Ok(QueueUrls {
        ingest,
        jobs,
        work,
        ingest_dlq,
        jobs_dlq,
        work_dlq,
        webhooks,
        webhooks_dlq,
        topic_arn,
    })
}

/// The environment each component reads, as the template sets it.
pub fn function_env(names: &StackNames, urls: &QueueUrls) -> HashMap<String, String> {
    use nommer_shared::settings as s;
    HashMap::from([
        (s::TABLE.to_string(), names.table.clone()),
        (s::INBOX_BUCKET.to_string(), names.inbox_bucket.clone()),
        (s::OUTBOX_BUCKET.to_string(), names.outbox_bucket.clone()),
        (s::JOBS_QUEUE_URL.to_string(), urls.jobs.clone()),
        (s::WORK_QUEUE_URL.to_string(), urls.work.clone()),
        (s::EVENTS_TOPIC_ARN.to_string(), urls.topic_arn.clone()),
        (s::WEBHOOKS_QUEUE_URL.to_string(), urls.webhooks.clone()),
        (s::WEBHOOKS_DLQ_URL.to_string(), urls.webhooks_dlq.clone()),
    ])
}
