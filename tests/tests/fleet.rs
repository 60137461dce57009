//! The EC2 fleet on the local stack: real RunInstances/TerminateInstances against the
//! emulator, each instance a worker process, scaled by the scaler with the backlog.

use nommer::client::ApiClient;
use nommer::media;
use nommer::stack::FleetOptions;
use nommer_shared::objects::S3ObjectStore;
use nommer_shared::{ids, JobState};
use std::time::{Duration, Instant};

async fn ec2_alive(stack: &nommer::LocalStack) -> usize {
    let ec2 = aws_sdk_ec2::Client::new(&stack.config);
    let out = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:nommer:stack")
                .values(&stack.names.stack)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.reservations().iter().map(|r| r.instances().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_grows_with_the_backlog_and_shrinks_to_zero() {
    let stack = nommer_tests::spawn_stack_with("fleet", 0, |o| {
        o.fleet = Some(FleetOptions {
            max_instances: 2,
            capacity: 2,
            idle_timeout_secs: 4,
            ..Default::default()
        });
    })
    .await;
    assert_eq!(ec2_alive(&stack).await, 0, "no workers before work");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    media::generate_clip(&src, 2, 320, 240, true).unwrap();
    let o = S3ObjectStore::new(nommer_shared::aws::s3_client(&stack.config));
    let mut ids_ = Vec::new();
    for k in 0..6 {
        let key = format!("inbox/mp4-360p/clip-{k}.mp4");
        // different bytes each: six jobs, not one
        let mut bytes = std::fs::read(&src).unwrap();
        bytes.extend(format!("pad{k}").as_bytes());
        o.put_bytes(&stack.names.inbox_bucket, &key, bytes, "video/mp4")
            .await
            .unwrap();
        let etag = o
            .head(&stack.names.inbox_bucket, &key)
            .await
            .unwrap()
            .unwrap()
            .etag
            .unwrap();
        ids_.push(ids::for_upload(&stack.names.inbox_bucket, &key, &etag));
    }
    let api = ApiClient::new(&stack.api_url);
    let started = Instant::now();
    let mut peak = 0;
    let mut seen_processes = std::collections::BTreeSet::new();
    loop {
        let alive = ec2_alive(&stack).await;
        peak = peak.max(alive);
        assert!(alive <= 2, "never above max: {alive} instances");
        seen_processes.extend(stack.fleet.lock().unwrap().keys().cloned());
        let mut done = 0;
        for id in &ids_ {
            if let Some(j) = api.get_job(id).await.unwrap() {
                assert_ne!(j.state, JobState::Failed, "{j:#?}");
                done += (j.state == JobState::Complete) as usize;
            }
        }
        if done == ids_.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "jobs not done: {done}/6\n{}",
            stack.worker_logs(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(peak >= 1, "the scaler launched workers");
    assert!(
        seen_processes.iter().all(|id| id.starts_with("i-")),
        "processes run as the emulator's instances: {seen_processes:?}"
    );
    // every job ran on one of those instances
    for id in &ids_ {
        let j = api.get_job(id).await.unwrap().unwrap();
        assert!(seen_processes.contains(j.worker.as_deref().unwrap()), "{:?}", j.worker);
    }
    // a worker runs up to its capacity (2) at once: some two jobs overlapped on one instance
    let mut spans = Vec::new();
    for id in &ids_ {
        let j = api.get_job(id).await.unwrap().unwrap();
        let start = j.history.iter().find(|h| h.state == JobState::Downloading).unwrap().at;
        let end = j.history.last().unwrap().at;
        spans.push((j.worker.clone().unwrap(), start, end));
    }
    let overlap = spans
        .iter()
        .enumerate()
        .any(|(a, x)| spans.iter().skip(a + 1).any(|y| x.0 == y.0 && x.1 < y.2 && y.1 < x.2));
    assert!(overlap, "no worker ran two jobs at once: {spans:#?}");
    // idle: drained, terminated, back to zero
    let back = Instant::now();
    while ec2_alive(&stack).await > 0 || !stack.fleet.lock().unwrap().is_empty() {
        assert!(
            back.elapsed() < Duration::from_secs(90),
            "the fleet did not shrink to zero"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.shutdown().await;
}
