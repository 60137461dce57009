//! The EC2 fleet on the local stack: real RunInstances/TerminateInstances against the
//! emulator, each instance a worker process, scaled by the scaler with the backlog.

use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::{ids, JobState};
use nommer_devstack::media;
use nommer_devstack::stack::FleetOptions;
use nommer_tests::freeze::Frozen;
use std::time::{Duration, Instant};

async fn ec2_alive(stack: &nommer_devstack::LocalStack) -> usize {
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
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
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
    // every encode is held as it starts, so the backlog stays until the fleet has grown
    // to its full size: 2 instances x 2 slots = 4 encodes at once
    let mut frozen = Frozen::default();
    let started = Instant::now();
    let mut seen_processes = std::collections::BTreeSet::new();
    loop {
        let alive = ec2_alive(&stack).await;
        assert!(alive <= 2, "never above max: {alive} instances");
        let pids: Vec<u32> = {
            let fleet = stack.fleet.lock().unwrap();
            seen_processes.extend(fleet.keys().cloned());
            fleet.values().filter_map(|w| w.pid()).collect()
        };
        if frozen.catch(&pids) >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the fleet did not grow to run 4 encodes at once ({alive} instances)\n{}",
            stack.worker_logs(20)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // four jobs encoding at once, two on each of two instances
    let mut running: std::collections::BTreeMap<String, usize> = Default::default();
    for id in &ids_ {
        let j = api.get_job(id).await.unwrap().unwrap();
        if j.state == JobState::Encoding {
            *running.entry(j.worker.clone().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(
        running.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "the backlog grew the fleet to 2 instances, each running its capacity: {running:?}"
    );
    assert_eq!(ec2_alive(&stack).await, 2, "two instances running");
    frozen.release();
    loop {
        let alive = ec2_alive(&stack).await;
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
    assert!(
        seen_processes.iter().all(|id| id.starts_with("i-")),
        "processes run as the emulator's instances: {seen_processes:?}"
    );
    for w in running.keys() {
        assert!(seen_processes.contains(w), "{w} is one of the emulator's instances");
    }
    // every job ran on one of those instances
    for id in &ids_ {
        let j = api.get_job(id).await.unwrap().unwrap();
        assert!(seen_processes.contains(j.worker.as_deref().unwrap()), "{:?}", j.worker);
    }
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
