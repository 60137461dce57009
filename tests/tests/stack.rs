//! The SAM template, translated as CloudFormation would translate it, deployed as a stack
//! on the emulator's CloudFormation (moto): it reaches CREATE_COMPLETE, its resources are
//! wired to one another as the system needs (read back from each service, not from the
//! template), and deleting it keeps exactly the retained resources, under names that a
//! stack made again does not collide with.
//!
//! What moto does not do, and so is not shown here: it skips the resource types it does
//! not implement (`NOT_IN_MOTO`; every other resource must exist), it ignores a bucket's
//! `NotificationConfiguration` (so the inbox's S3 -> SQS notification is read from the
//! template, and checked to name the queue the ingest function is found reading), it
//! ignores a function's `LoggingConfig`, and it enforces no IAM. Two quirks are worked
//! around: it resolves an SSM-typed parameter's *default* before the value passed (so the
//! AMI parameter's default is dropped and one of moto's own SSM AMI parameters passed),
//! and it does not cut generated names to fit, so the stack name here is short (the
//! longest stack names are checked against AWS's limits in template.rs).
//!
//! CloudFormation, SQS, S3, DynamoDB and EC2 are read with the AWS SDK; Lambda's event
//! source mappings and function configurations and EventBridge's rules with their plain
//! JSON APIs (the same requests, unsigned: moto checks no signature), to keep two more
//! SDK crates out of this shared, loaded build machine's compile.

mod sam;

use aws_sdk_cloudformation::types::{Capability, Parameter};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const NOT_IN_MOTO: &[&str] = &[
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::SQS::QueuePolicy",
];

/// An SSM parameter moto knows without being told (its copy of AWS's public ones).
const MOTO_AMI_PARAMETER: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64";

struct Aws {
    cfn: aws_sdk_cloudformation::Client,
    endpoint: String,
    http: reqwest::Client,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    ddb: aws_sdk_dynamodb::Client,
}

async fn aws() -> Aws {
    let sdk = nommer_aws::sdk::sdk_config_for_endpoint(&nommer_tests::emulator_endpoint(), "us-east-1").await;
    Aws {
        cfn: aws_sdk_cloudformation::Client::new(&sdk),
        endpoint: nommer_tests::emulator_endpoint(),
        http: reqwest::Client::new(),
        ec2: aws_sdk_ec2::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3: nommer_aws::sdk::s3_client(&sdk),
        ddb: nommer_aws::sdk::dynamodb_client(&sdk),
    }
}

impl Aws {
    /// A request to one of the emulator's JSON APIs; the credential scope names the
    /// service (how moto's single server tells them apart).
    async fn json(&self, service: &str, method: http::Method, path: &str, target: Option<&str>, body: Value) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            );
        if let Some(t) = target {
            req = req
                .header("x-amz-target", t)
                .header("content-type", "application/x-amz-json-1.1")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{service} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{service} {path} {target:?}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{service} {path}: {e}: {text}"))
    }
}

/// The translated template as the emulator can take it.
fn deployable() -> Value {
    let mut doc = sam::translated().clone();
    doc["Parameters"]["WorkerAmiId"]
        .as_object_mut()
        .unwrap()
        .remove("Default");
    for (_, r) in doc["Resources"].as_object_mut().unwrap() {
        if r["Type"] == "AWS::Lambda::Function" {
            // `sam package` would upload the built code; moto needs only some code
            r["Properties"]["Code"] = serde_json::json!({"ZipFile": "not run here"});
        }
    }
    doc
}

async fn create(aws: &Aws, stack: &str, doc: &Value) -> BTreeMap<String, String> {
    let vpc = aws.ec2.describe_vpcs().send().await.unwrap();
    let vpc = vpc.vpcs()[0].vpc_id().unwrap().to_string();
    let subnets = aws.ec2.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap().to_string();
    let params = [
        ("VpcId", vpc.as_str()),
        ("SubnetIds", subnet.as_str()),
        ("WorkerBinaryS3Uri", "s3://artifacts/nommer-worker"),
        ("WorkerAmiId", MOTO_AMI_PARAMETER),
        (
            "ApiKeyHashes",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
    ];
    let mut req = aws
        .cfn
        .create_stack()
        .stack_name(stack)
        .template_body(doc.to_string())
        .capabilities(Capability::CapabilityIam);
    for (k, v) in params {
        req = req.parameters(Parameter::builder().parameter_key(k).parameter_value(v).build());
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {stack}: {}", nommer_aws::sdk::error_text(&e)));
    let (status, reason) = nommer_tests::eventually(Duration::from_secs(60), "the stack to be created", || async {
        let out = aws.cfn.describe_stacks().stack_name(stack).send().await.ok()?;
        let s = out.stacks().first()?;
        let status = s.stack_status()?.as_str().to_string();
        (!status.ends_with("_IN_PROGRESS")).then(|| (status, s.stack_status_reason().unwrap_or("").to_string()))
    })
    .await;
    assert_eq!(status, "CREATE_COMPLETE", "stack {stack}: {reason}");
    physical_ids(aws, stack).await
}

/// Logical id -> physical id of every resource the stack made.
async fn physical_ids(aws: &Aws, stack: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = aws
            .cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for r in page.stack_resource_summaries() {
            let id = r.logical_resource_id().unwrap_or_default();
            if !id.is_empty() {
                out.insert(id.to_string(), r.physical_resource_id().unwrap_or_default().to_string());
            }
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            return out;
        }
    }
}

async fn queue_attr(aws: &Aws, url: &str, name: &str) -> Option<String> {
    let attr = aws_sdk_sqs::types::QueueAttributeName::from(name);
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(attr.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes {url}: {}", nommer_aws::sdk::error_text(&e)));
    out.attributes().and_then(|a| a.get(&attr)).cloned()
}

fn s3_bucket_name_ok(n: &str) -> bool {
    (3..=63).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_deploys_as_a_stack_wired_as_the_system_needs_and_deletes_keeping_its_data() {
    let aws = aws().await;
    let doc = deployable();
    // upper case and longer than the 43 characters the old names allowed
    let stack = format!("Nommer-Stack-Test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ids = create(&aws, &stack, &doc).await;

    // every resource of a type moto implements was made
    for (id, r) in doc["Resources"].as_object().unwrap() {
        let kind = r["Type"].as_str().unwrap();
        // (a resource with a Condition is made only with the parameters that enable it)
        if !NOT_IN_MOTO.contains(&kind) && r.get("Condition").is_none() {
            assert!(ids.contains_key(id), "{id} ({kind}) was not created: {ids:#?}");
        }
    }
    let id = |logical: &str| {
        ids.get(logical)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {logical} in the stack"))
    };
    for bucket in ["InboxBucket", "OutboxBucket"] {
        assert!(
            s3_bucket_name_ok(id(bucket)),
            "{bucket} is named {:?}, which S3 refuses",
            id(bucket)
        );
    }

    // queues: each redrives to its own dead-letter queue after 5 receives
    let arn_of = |logical: &'static str| {
        let aws = &aws;
        let url = id(logical).to_string();
        async move { queue_attr(aws, &url, "QueueArn").await.unwrap() }
    };
    for (queue, dlq) in [
        ("IngestQueue", "IngestDeadLetterQueue"),
        ("JobsQueue", "JobsDeadLetterQueue"),
        ("WorkQueue", "WorkDeadLetterQueue"),
        ("WebhooksQueue", "WebhooksDeadLetterQueue"),
    ] {
        let policy = queue_attr(&aws, id(queue), "RedrivePolicy")
            .await
            .unwrap_or_else(|| panic!("{queue} has no redrive policy"));
        let policy: Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(
            policy["deadLetterTargetArn"],
            arn_of(dlq).await,
            "{queue}'s dead letters"
        );
        assert_eq!(
            policy["maxReceiveCount"].to_string().trim_matches('"'),
            "5",
            "{queue}: {policy}"
        );
    }

    // the table: its stream with both images, and the by-state index
    let table = aws
        .ddb
        .describe_table()
        .table_name(id("JobsTable"))
        .send()
        .await
        .unwrap();
    let table = table.table().unwrap();
    let stream = table.stream_specification().expect("the table has a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        Some("NEW_AND_OLD_IMAGES")
    );
    let stream_arn = table.latest_stream_arn().unwrap().to_string();
    let gsi = table
        .global_secondary_indexes()
        .iter()
        .find(|g| g.index_name() == Some("by-state"))
        .expect("the by-state index");
    let keys: Vec<(String, String)> = gsi
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().as_str().to_string()))
        .collect();
    assert_eq!(
        keys,
        [("state".into(), "HASH".into()), ("created_at".into(), "RANGE".into())]
    );

    // event source mappings: which function reads what, in what batches, with which filter
    let function_arn = |logical: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{}", id(logical));
    struct Expect {
        function: &'static str,
        batch: i32,
        window: Option<i64>,
        filter: Option<&'static str>,
    }
    let expected = [
        (
            "IngestQueue",
            Expect {
                function: "IngestFunction",
                batch: 10,
                window: Some(1),
                filter: None,
            },
        ),
        (
            "JobsQueue",
            Expect {
                function: "DispatchFunction",
                batch: 1,
                window: None,
                filter: None,
            },
        ),
        (
            "WebhooksQueue",
            Expect {
                function: "WebhookDeliverFunction",
                batch: 4,
                window: None,
                filter: None,
            },
        ),
        (
            "stream",
            Expect {
                function: "NotifyFunction",
                batch: 100,
                window: Some(1),
                filter: Some(r#"{"dynamodb": {"NewImage": {"kind": {"S": ["job"]}}}}"#),
            },
        ),
    ];
    let mappings = aws
        .json(
            "lambda",
            http::Method::GET,
            "/2015-03-31/event-source-mappings/",
            None,
            Value::Null,
        )
        .await;
    let ours: Vec<&Value> = mappings["EventSourceMappings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| ids.values().any(|p| m["UUID"] == p.as_str()))
        .collect();
    assert_eq!(
        ours.len(),
        expected.len(),
        "the stack's event source mappings: {ours:#?}"
    );
    for (source, want) in expected {
        let source_arn = if source == "stream" {
            stream_arn.clone()
        } else {
            arn_of(source).await
        };
        let m = ours
            .iter()
            .find(|m| m["EventSourceArn"] == source_arn.as_str())
            .unwrap_or_else(|| panic!("nothing reads {source} ({source_arn}): {ours:#?}"));
        assert_eq!(
            m["FunctionArn"],
            function_arn(want.function).as_str(),
            "{source}'s reader"
        );
        assert_eq!(m["BatchSize"], want.batch, "{source}: batch size");
        assert_eq!(
            m["MaximumBatchingWindowInSeconds"].as_i64(),
            want.window,
            "{source}: batching window"
        );
        assert_eq!(
            m["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "{source}"
        );
        let filters: Vec<&str> = m["FilterCriteria"]["Filters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["Pattern"].as_str())
            .collect();
        assert_eq!(filters, want.filter.into_iter().collect::<Vec<_>>(), "{source}: filter");
        if source == "stream" {
            assert_eq!(m["StartingPosition"], "TRIM_HORIZON");
            assert_eq!(m["MaximumRetryAttempts"], 100);
            assert_eq!(m["BisectBatchOnFunctionError"], true);
            let failures = arn_of("NotifyStreamFailureQueue").await;
            assert_eq!(m["DestinationConfig"]["OnFailure"]["Destination"], failures.as_str());
        }
    }

    // the inbox's notification (moto does not apply it: read from the template) goes to
    // the queue the ingest function reads, for inbox/ keys only
    let notification =
        &doc["Resources"]["InboxBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"];
    assert_eq!(notification.as_array().map(Vec::len), Some(1), "{notification}");
    assert_eq!(sam::referenced(&notification[0]["Queue"]), Some("IngestQueue"));
    assert_eq!(notification[0]["Event"], "s3:ObjectCreated:*");
    assert_eq!(notification[0]["Filter"]["S3Key"]["Rules"][0]["Value"], "inbox/");

    // schedules: the scaler every minute, the Encoding.com poller every two
    for (function, every) in [
        ("ScalerFunction", "rate(1 minute)"),
        ("EncodingComPollerFunction", "rate(2 minutes)"),
    ] {
        let rules = aws
            .json(
                "events",
                http::Method::POST,
                "/",
                Some("AWSEvents.ListRules"),
                serde_json::json!({"NamePrefix": stack}),
            )
            .await;
        let mut found = false;
        for rule in rules["Rules"].as_array().unwrap() {
            let targets = aws
                .json(
                    "events",
                    http::Method::POST,
                    "/",
                    Some("AWSEvents.ListTargetsByRule"),
                    serde_json::json!({"Rule": rule["Name"]}),
                )
                .await;
            if targets["Targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["Arn"] == function_arn(function).as_str())
            {
                assert_eq!(rule["ScheduleExpression"], every, "{function}'s schedule");
                assert_eq!(rule["State"], "ENABLED");
                found = true;
            }
        }
        assert!(found, "no rule invokes {function}");
    }

    // the workers' launch template: IMDSv2 only
    let lt = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id("WorkerLaunchTemplate"))
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let data = lt.launch_template_versions()[0].launch_template_data().unwrap();
    let md = data.metadata_options().expect("metadata options");
    assert_eq!(md.http_tokens().map(|t| t.as_str()), Some("required"), "IMDSv2 only");
    assert_eq!(md.http_endpoint().map(|t| t.as_str()), Some("enabled"));

    // the functions are given the stack's names, and each runs as its own role
    let mut roles = std::collections::BTreeSet::new();
    for (logical, r) in doc["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let f = aws
            .json(
                "lambda",
                http::Method::GET,
                &format!("/2015-03-31/functions/{}/configuration", id(logical.as_str())),
                None,
                Value::Null,
            )
            .await;
        let vars = &f["Environment"]["Variables"];
        for (var, resource) in [
            ("NOMMER_TABLE", "JobsTable"),
            ("NOMMER_INBOX_BUCKET", "InboxBucket"),
            ("NOMMER_OUTBOX_BUCKET", "OutboxBucket"),
            ("NOMMER_JOBS_QUEUE_URL", "JobsQueue"),
            ("NOMMER_WORK_QUEUE_URL", "WorkQueue"),
            ("NOMMER_EVENTS_TOPIC_ARN", "EventsTopic"),
        ] {
            assert_eq!(vars[var], id(resource), "{logical}: {var}");
        }
        let role = f["Role"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        assert!(
            ids.values().any(|p| *p == role),
            "{logical} runs as {role}, not a role of the stack"
        );
        assert!(roles.insert(role.clone()), "{logical} shares its role {role}");
    }
    assert_eq!(roles.len(), 8);

    // delete: the table and the buckets stay, the rest goes
    aws.cfn.delete_stack().stack_name(&stack).send().await.unwrap();
    nommer_tests::eventually(Duration::from_secs(60), "the stack to be deleted", || async {
        match aws.cfn.describe_stacks().stack_name(&stack).send().await {
            Err(_) => Some(()),
            Ok(out) => out
                .stacks()
                .first()
                .is_none_or(|s| s.stack_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE"))
                .then_some(()),
        }
    })
    .await;
    for bucket in ["InboxBucket", "OutboxBucket"] {
        aws.s3
            .head_bucket()
            .bucket(id(bucket))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{bucket} was deleted with the stack: {}",
                    nommer_aws::sdk::error_text(&e)
                )
            });
    }
    aws.ddb
        .describe_table()
        .table_name(id("JobsTable"))
        .send()
        .await
        .expect("the jobs table was deleted with the stack");
    assert!(
        aws.sqs
            .get_queue_attributes()
            .queue_url(id("JobsQueue"))
            .send()
            .await
            .is_err(),
        "the jobs queue outlived the stack"
    );

    // the same stack made again: nothing it retained stands in its way
    let again = create(&aws, &stack, &doc).await;
    for retained in ["InboxBucket", "OutboxBucket", "JobsTable"] {
        assert_ne!(
            again[retained], ids[retained],
            "{retained} has the same name in both stacks"
        );
    }

    // tidy the shared emulator: the second stack, and what both retained
    aws.cfn.delete_stack().stack_name(&stack).send().await.unwrap();
    for names in [&ids, &again] {
        for bucket in ["InboxBucket", "OutboxBucket"] {
            let _ = aws.s3.delete_bucket().bucket(&names[bucket]).send().await;
        }
        let _ = aws.ddb.delete_table().table_name(&names["JobsTable"]).send().await;
    }
}
