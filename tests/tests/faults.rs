//! The fault proxy itself: each fault reaches the SDK as AWS would send it, the SDK's
//! bounds hold against it, and the emulator's conditional writes become atomic behind it.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use nommer_core::settings::CallLimits;
use nommer_devstack::faults::{Fault, FaultProxy};
use std::time::{Duration, Instant};

async fn table(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A DynamoDB client through a proxy with `plan`, with these limits.
async fn through(plan: &str, limits: CallLimits) -> (FaultProxy, aws_sdk_dynamodb::Client) {
    let proxy = FaultProxy::start(&nommer_tests::emulator_endpoint(), plan.parse().unwrap())
        .await
        .unwrap();
    let sdk = nommer_aws::sdk::sdk_config_with(&proxy.endpoint, "us-east-1", &limits).await;
    (proxy, aws_sdk_dynamodb::Client::new(&sdk))
}

async fn direct() -> aws_sdk_dynamodb::Client {
    let sdk = nommer_aws::sdk::sdk_config_for_endpoint(&nommer_tests::emulator_endpoint(), "us-east-1").await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

fn tries(n: u32) -> CallLimits {
    CallLimits {
        max_attempts: n,
        ..quick()
    }
}

/// The default bounds with a short backoff, so that retries take milliseconds.
fn quick() -> CallLimits {
    CallLimits {
        backoff: Duration::from_millis(20),
        ..CallLimits::default()
    }
}

fn conditional_put(
    c: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
    who: &str,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    c.put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("who", AttributeValue::S(who.into()))
        .condition_expression("attribute_not_exists(pk)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_faults_arrive_as_the_service_would_send_them_and_are_retried_within_bounds() {
    let name = nommer_tests::unique_stack("faults-errors");
    table(&direct().await, &name).await;
    for (kind, code) in [
        ("throttle", "ThroughputExceeded"),
        ("500", "InternalServerError"),
        ("503", "ServiceUnavailable"),
    ] {
        let (proxy, c) = through(&format!("dynamodb:GetItem=1;kinds={kind}"), tries(3)).await;
        let e = c
            .get_item()
            .table_name(&name)
            .key("pk", AttributeValue::S("a".into()))
            .send()
            .await
            .unwrap_err();
        let text = nommer_aws::sdk::error_text(&e);
        // DynamoDB's two throttling errors are both chosen; either names its throughput or
        // throttling
        let named = text.contains(code) || (kind == "throttle" && text.contains("ThrottlingException"));
        assert!(named, "{kind}: {text}");
        let counts = proxy.counts();
        assert_eq!(counts.calls(), 3, "{kind}: three attempts, then the SDK gives up");
        assert_eq!(counts.all_faults(), 3, "{kind}: {}", counts.report());
        // other actions pass untouched
        c.put_item()
            .table_name(&name)
            .item("pk", AttributeValue::S(kind.into()))
            .send()
            .await
            .unwrap();
    }
    // a tenth of calls faulted, with the default four attempts: every call gets through
    let (proxy, c) = through("seed=3;share=0.3;kinds=500,503,throttle,reset", quick()).await;
    for i in 0..40 {
        let pk = format!("k{i}");
        c.put_item()
            .table_name(&name)
            .item("pk", AttributeValue::S(pk.clone()))
            .send()
            .await
            .unwrap();
        let got = c
            .get_item()
            .table_name(&name)
            .key("pk", AttributeValue::S(pk.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(got.item().unwrap()["pk"], AttributeValue::S(pk));
    }
    let counts = proxy.counts();
    println!("30 % faults, 80 calls:\n{}", counts.report());
    assert!(counts.all_faults() >= 10, "{}", counts.report());
    assert!(counts.faults(Fault::Reset) > 0, "{}", counts.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_means_the_write_was_done_and_its_retry_meets_it() {
    let name = nommer_tests::unique_stack("faults-lost");
    let oracle = direct().await;
    table(&oracle, &name).await;
    let (proxy, c) = through("dynamodb:PutItem=1;kinds=lost", tries(1)).await;
    let e = conditional_put(&c, &name, "job-1", "first").send().await.unwrap_err();
    let text = nommer_aws::sdk::error_text(&e);
    assert!(
        e.as_service_error().is_none(),
        "no answer came, so no service error: {text}"
    );
    assert_eq!(proxy.counts().faults(Fault::Lost), 1);
    let item = oracle
        .get_item()
        .table_name(&name)
        .key("pk", AttributeValue::S("job-1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        item.item().and_then(|i| i.get("who")).cloned(),
        Some(AttributeValue::S("first".into())),
        "the emulator did the write whose answer was lost"
    );
    // the caller's retry runs into its own write
    let again = conditional_put(&oracle, &name, "job-1", "first")
        .send()
        .await
        .unwrap_err();
    assert!(
        again
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{}",
        nommer_aws::sdk::error_text(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_never_reaches_the_emulator() {
    let name = nommer_tests::unique_stack("faults-reset");
    let oracle = direct().await;
    table(&oracle, &name).await;
    let (proxy, c) = through("dynamodb:PutItem=1;kinds=reset", tries(2)).await;
    let e = c
        .put_item()
        .table_name(&name)
        .item("pk", AttributeValue::S("r".into()))
        .send()
        .await
        .unwrap_err();
    let text = nommer_aws::sdk::error_text(&e);
    assert!(!text.contains("ConditionalCheckFailed"), "{text}");
    assert_eq!(proxy.counts().faults(Fault::Reset), 2);
    let item = oracle
        .get_item()
        .table_name(&name)
        .key("pk", AttributeValue::S("r".into()))
        .send()
        .await
        .unwrap();
    assert!(item.item().is_none(), "a reset request is never forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_past_the_first_byte_timeout_ends_the_call_instead_of_hanging_it() {
    let name = nommer_tests::unique_stack("faults-delay");
    table(&direct().await, &name).await;
    let limits = CallLimits {
        first_byte: Duration::from_secs(1),
        attempt: Duration::from_secs(2),
        call: Duration::from_secs(5),
        max_attempts: 2,
        ..quick()
    };
    // held a minute: only the bounds end the call
    let (proxy, c) = through("dynamodb:GetItem=1;kinds=delay;delay_ms=60000", limits).await;
    let started = Instant::now();
    let e = c
        .get_item()
        .table_name(&name)
        .key("pk", AttributeValue::S("d".into()))
        .send()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the call took {took:?}: {}",
        nommer_aws::sdk::error_text(&e)
    );
    assert_eq!(proxy.counts().faults(Fault::Delay), 2, "two attempts, each timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conditional_writes_behind_the_proxy_let_exactly_one_win() {
    let name = nommer_tests::unique_stack("faults-atomic");
    table(&direct().await, &name).await;
    let (_proxy, c) = through("", tries(1)).await;
    for round in 0..5 {
        let pk = format!("race-{round}");
        let attempts: Vec<_> = (0..12)
            .map(|i| {
                let c = c.clone();
                let (name, pk) = (name.clone(), pk.clone());
                tokio::spawn(async move { conditional_put(&c, &name, &pk, &format!("w{i}")).send().await.is_ok() })
            })
            .collect();
        let mut won = 0;
        for a in attempts {
            won += a.await.unwrap() as usize;
        }
        assert_eq!(
            won, 1,
            "round {round}: {won} conditional writes of one new item succeeded"
        );
    }
}
