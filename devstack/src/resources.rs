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
use nommer_aws::queue::SqsQueue;
use nommer_aws::store::STATE_INDEX;
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
    /// Where Encoding.com delivers (copied from into the outbox).
    pub delivery_bucket: String,
    /// The read-only IAM user that presigns sources for Encoding.com, and its key's secret.
    pub source_reader: String,
    pub source_reader_secret: String,
    pub table: String,
    pub ingest_queue: String,
    pub jobs_queue: String,
    pub work_queue: String,
    /// Split jobs' tasks (chunks, audio, stitch).
    pub chunk_queue: String,
    pub webhooks_queue: String,
    pub topic: String,
}

impl StackNames {
    pub fn new(stack: &str, account: &str) -> Self {
        StackNames {
            stack: stack.to_string(),
            inbox_bucket: format!("{stack}-inbox-{account}"),
            outbox_bucket: format!("{stack}-outbox-{account}"),
            delivery_bucket: format!("{stack}-delivery-{account}"),
            source_reader: format!("{stack}-encodingcom-source-reader"),
            source_reader_secret: format!("{stack}/encodingcom-source-reader"),
            table: format!("{stack}-jobs"),
            ingest_queue: format!("{stack}-ingest"),
            jobs_queue: format!("{stack}-jobs"),
            work_queue: format!("{stack}-work-ffmpeg"),
            chunk_queue: format!("{stack}-work-chunks"),
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
    pub chunks: String,
    pub chunks_dlq: String,
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
    let s3 = nommer_aws::sdk::s3_client(config);
    let sqs = nommer_aws::sdk::sqs_client(config);
    let ddb = nommer_aws::sdk::dynamodb_client(config);

    for b in [&names.inbox_bucket, &names.outbox_bucket, &names.delivery_bucket] {
        s3.create_bucket()
            .bucket(b)
            .send()
            .await
            .with_context(|| format!("creating bucket {b}"))?;
    }
    bucket_settings(&s3, names).await?;
    let (ingest, ingest_dlq) = queue_with_dlq(&sqs, &names.ingest_queue, 30).await?;
    let (jobs, jobs_dlq) = queue_with_dlq(&sqs, &names.jobs_queue, 30).await?;
    let (work, work_dlq) = queue_with_dlq(&sqs, &names.work_queue, 120).await?;
    let (chunks, chunks_dlq) = queue_with_dlq(&sqs, &names.chunk_queue, 120).await?;
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
    inbox_notification(&s3, names, ingest_arn).await?;
    table(&ddb, names).await?;

    Ok(QueueUrls {
        ingest,
        jobs,
        work,
        ingest_dlq,
        jobs_dlq,
        work_dlq,
        chunks,
        chunks_dlq,
        webhooks,
        webhooks_dlq,
        topic_arn,
    })
}

/// The inbox's S3→SQS notification: every object created under the inbox prefix goes
/// to the ingest queue.
async fn inbox_notification(s3: &aws_sdk_s3::Client, names: &StackNames, ingest_arn: String) -> anyhow::Result<()> {
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
    Ok(())
}

/// The table: one key (`pk`), the state index, the stream with both images.
async fn table(ddb: &aws_sdk_dynamodb::Client, names: &StackNames) -> anyhow::Result<()> {
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
    Ok(())
}

/// Block Public Access, Object Ownership, the delivery bucket's policy and lifecycle, as
/// the template sets them (moto stores them; the Encoding.com stand-in checks them).
async fn bucket_settings(s3: &aws_sdk_s3::Client, names: &StackNames) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
        ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
    };
    let pab = |block_public_acls: bool, ignore_public_acls: bool| {
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(block_public_acls)
            .ignore_public_acls(ignore_public_acls)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build()
    };
    let ownership = |o: ObjectOwnership| {
        OwnershipControls::builder()
            .rules(OwnershipControlsRule::builder().object_ownership(o).build().unwrap())
            .build()
            .unwrap()
    };
    // Encoding.com writes into the delivery bucket with a canned ACL (authenticated-read by
    // default): accepted (BlockPublicAcls off), never honoured (IgnorePublicAcls on)
    let buckets = [
        (&names.inbox_bucket, true, ObjectOwnership::BucketOwnerEnforced),
        (&names.outbox_bucket, true, ObjectOwnership::BucketOwnerEnforced),
        (&names.delivery_bucket, false, ObjectOwnership::BucketOwnerPreferred),
    ];
    for (b, block_acls, owner) in buckets {
        s3.put_public_access_block()
            .bucket(b)
            .public_access_block_configuration(pab(block_acls, true))
            .send()
            .await
            .with_context(|| format!("setting {b}'s public access block"))?;
        s3.put_bucket_ownership_controls()
            .bucket(b)
            .ownership_controls(ownership(owner))
            .send()
            .await
            .with_context(|| format!("setting {b}'s object ownership"))?;
    }
    let d = &names.delivery_bucket;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EncodingComDelivers",
            "Effect": "Allow",
            "Principal": {"CanonicalUser": crate::standin::CANONICAL_USER_ID},
            "Action": ["s3:PutObject", "s3:PutObjectAcl"],
            "Resource": format!("arn:aws:s3:::{d}/*"),
        }]
    });
    s3.put_bucket_policy()
        .bucket(d)
        .policy(policy.to_string())
        .send()
        .await
        .with_context(|| format!("setting {d}'s policy"))?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(d)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("deliveries-expire")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .expiration(LifecycleExpiration::builder().days(DELIVERY_DAYS).build())
                        .build()?,
                )
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("setting {d}'s lifecycle"))?;
    Ok(())
}

/// Days a delivered object is kept (it is copied into the outbox within minutes).
pub const DELIVERY_DAYS: i32 = 3;

/// The read-only IAM user whose own access key presigns source URLs for Encoding.com
/// (up to 7 days, unlike a function's session credentials), its key kept in Secrets
/// Manager, as the template makes them (only for a stack with an Encoding.com backend,
/// as in the template). The user and key are made in the emulator's IAM
/// with boto3 from the emulator's venv (the workspace has no IAM crate: adding one would
/// rebuild every AWS SDK crate for one call the functions never make).
pub async fn source_reader(config: &SdkConfig, names: &StackNames) -> anyhow::Result<()> {
    let user = &names.source_reader;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{}/*", names.inbox_bucket),
        }]
    });
    let script = r#"
import boto3, json, sys
iam = boto3.client("iam")
user, policy = sys.argv[1], sys.argv[2]
iam.create_user(UserName=user)
iam.put_user_policy(UserName=user, PolicyName="read-sources", PolicyDocument=policy)
k = iam.create_access_key(UserName=user)["AccessKey"]
print(json.dumps({"access_key_id": k["AccessKeyId"], "secret_access_key": k["SecretAccessKey"]}))
"#;
    let endpoint = config
        .endpoint_url()
        .context("the local stack needs the emulator's endpoint")?;
    let out = tokio::process::Command::new(crate::emulator::venv_python()?)
        .arg("-c")
        .arg(script)
        .arg(user)
        .arg(policy.to_string())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", crate::emulator::REGION)
        .output()
        .await
        .context("running the emulator venv's Python to make the source reader")?;
    anyhow::ensure!(
        out.status.success(),
        "creating IAM user {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).context("the access key is not UTF-8")?;
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(&names.source_reader_secret)
        .secret_string(key.trim())
        .send()
        .await
        .with_context(|| format!("storing {user}'s key in secret {}", names.source_reader_secret))?;
    Ok(())
}

/// The environment each component reads, as the template sets it.
pub fn function_env(names: &StackNames, urls: &QueueUrls) -> HashMap<String, String> {
    use nommer_core::settings as s;
    HashMap::from([
        (s::TABLE.to_string(), names.table.clone()),
        (s::INBOX_BUCKET.to_string(), names.inbox_bucket.clone()),
        (s::OUTBOX_BUCKET.to_string(), names.outbox_bucket.clone()),
        (s::DELIVERY_BUCKET.to_string(), names.delivery_bucket.clone()),
        (
            s::ENCODINGCOM_SOURCE_SECRET.to_string(),
            names.source_reader_secret.clone(),
        ),
        (s::JOBS_QUEUE_URL.to_string(), urls.jobs.clone()),
        (s::WORK_QUEUE_URL.to_string(), urls.work.clone()),
        (s::CHUNK_QUEUE_URL.to_string(), urls.chunks.clone()),
        (s::EVENTS_TOPIC_ARN.to_string(), urls.topic_arn.clone()),
        (s::WEBHOOKS_QUEUE_URL.to_string(), urls.webhooks.clone()),
        (s::WEBHOOKS_DLQ_URL.to_string(), urls.webhooks_dlq.clone()),
    ])
}
