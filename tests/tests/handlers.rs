//! The handlers and the job store, called in-process against the emulator.

use lambda_runtime::LambdaEvent;
use nommer_aws::objects::S3ObjectStore;
use nommer_aws::store::{Created, DynamoJobStore};
use nommer_core::error::JobErrorCode;
use nommer_core::ports::JobStore as _;
use nommer_core::settings::IngestSettings;
use nommer_core::{ids, JobState, StoreError, Transition};
use nommer_tests::spawn_stack;
use serde_json::json;

fn store(stack: &nommer_devstack::LocalStack) -> DynamoJobStore {
    DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_writer_gets_a_typed_error_not_an_overwrite() {
    let stack = spawn_stack("conflict", 0).await;
    let s = store(&stack);
    let j = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    assert!(matches!(s.create(&j).await.unwrap(), Created::New(_)));
    assert!(
        matches!(s.create(&j).await.unwrap(), Created::Existing(_)),
        "a second create finds the first"
    );

    // two writers read the same version
    let a = s.require(&j.id).await.unwrap();
    let b = a.clone();
    let won = s
        .transition(&a, Transition::Dispatch, Some("writer a".into()))
        .await
        .unwrap();
    assert_eq!((won.state, won.version), (JobState::Queued, 1));
    let lost = s
        .transition(&b, Transition::Cancel, Some("writer b".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            lost,
            StoreError::Conflict {
                expected_version: 0,
                expected_state: JobState::Submitted,
                ..
            }
        ),
        "{lost:?}"
    );
    let stored = s.require(&j.id).await.unwrap();
    assert_eq!(stored.state, JobState::Queued, "the loser changed nothing");
    assert_eq!(stored.history.last().unwrap().note.as_deref(), Some("writer a"));

    // an illegal transition never reaches the table
    let err = s.transition(&stored, Transition::Finish, None).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition(_)), "{err:?}");
    assert_eq!(s.require(&j.id).await.unwrap().version, 1);

    // a progress write on a stale copy is refused too
    let err = s.update(&b, |j| j.progress = 50).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));

    // listed by state through the index
    let queued = s
        .list_page(
            &[JobState::Queued],
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
            None,
            10,
            |_| true,
        )
        .await
        .unwrap()
        .0;
    assert_eq!(
        queued.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [j.id.as_str()]
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_s3_events_take_the_preset_from_metadata_and_refuse_unknown_ones() {
    let stack = spawn_stack("direct", 0).await;
    let ctx = ingest::Ingest::new(IngestSettings::from_source(&stack.env).unwrap(), &stack.config);
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let bucket = stack.names.inbox_bucket.clone();
    let s3 = o.client();
    for (key, preset) in [("elsewhere/meta.mp4", "mp4-480p"), ("elsewhere/bad.mp4", "mp4-8k")] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .metadata("preset", preset)
            .metadata("customer", "acme")
            .body(b"some bytes".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let head = |k: &'static str| {
        let o = o.clone();
        let b = bucket.clone();
        async move { o.head(&b, k).await.unwrap().unwrap().etag.unwrap() }
    };
    let (e1, e2) = (head("elsewhere/meta.mp4").await, head("elsewhere/bad.mp4").await);

    let out = ingest::function_handler(
        &ctx,
        LambdaEvent::new(
            nommer_tests::s3_notification(&bucket, "elsewhere/meta.mp4", "ObjectCreated:Put", 10, &e1),
            Default::default(),
        ),
    )
    .await
    .unwrap();
    assert!(out["outcomes"][0].as_str().unwrap().starts_with("Created"), "{out}");
    let j = store(&stack)
        .require(&ids::for_upload(&bucket, "elsewhere/meta.mp4", &e1))
        .await
        .unwrap();
    assert_eq!(j.outputs[0].preset, "mp4-480p");
    assert_eq!(j.user_metadata.get("customer").map(String::as_str), Some("acme"));
    assert_eq!(j.state, JobState::Submitted);

    ingest::function_handler(
        &ctx,
        LambdaEvent::new(
            nommer_tests::s3_notification(&bucket, "elsewhere/bad.mp4", "ObjectCreated:Put", 10, &e2),
            Default::default(),
        ),
    )
    .await
    .unwrap();
    let j = store(&stack)
        .require(&ids::for_upload(&bucket, "elsewhere/bad.mp4", &e2))
        .await
        .unwrap();
    assert_eq!(j.state, JobState::Failed);
    let err = j.error.unwrap();
    assert_eq!(err.code, JobErrorCode::UnknownPreset);
    assert!(
        err.message.contains("mp4-8k") && err.message.contains("mp4-720p"),
        "{}",
        err.message
    );

    // deletions are not uploads; other event sources are refused with a reason
    let out = ingest::function_handler(
        &ctx,
        LambdaEvent::new(
            nommer_tests::s3_notification(&bucket, "elsewhere/x.mp4", "ObjectRemoved:Delete", 0, ""),
            Default::default(),
        ),
    )
    .await
    .unwrap();
    assert!(out["outcomes"][0].as_str().unwrap().starts_with("Skipped"), "{out}");
    let err = ingest::function_handler(
        &ctx,
        LambdaEvent::new(json!({"detail-type": "Scheduled Event"}), Default::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("eventSource"), "{err}");
    // the good job goes on to dispatch (the stack's dispatch function queues it); the
    // failed one is left alone
    let s = store(&stack);
    let good = ids::for_upload(&bucket, "elsewhere/meta.mp4", &e1);
    nommer_tests::eventually(std::time::Duration::from_secs(20), "the good job queued", || async {
        (s.require(&good).await.unwrap().state == JobState::Queued).then_some(())
    })
    .await;
    let bad = s
        .require(&ids::for_upload(&bucket, "elsewhere/bad.mp4", &e2))
        .await
        .unwrap();
    assert_eq!((bad.state, bad.version), (JobState::Failed, 0));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_is_safe_to_repeat() {
    let stack = spawn_stack("redispatch", 0).await;
    let ctx = dispatch::Dispatch::new(
        nommer_core::settings::DispatchSettings::from_source(&stack.env).unwrap(),
        &stack.config,
    )
    .await
    .unwrap();
    let s = store(&stack);
    let j = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    s.create(&j).await.unwrap();
    dispatch::dispatch_job(&ctx, &j.id).await.unwrap();
    dispatch::dispatch_job(&ctx, &j.id).await.unwrap();
    let stored = s.require(&j.id).await.unwrap();
    assert_eq!(stored.version, 1, "dispatched once");
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    assert_eq!(
        q.depth(&stack.urls.work).await.unwrap().0,
        1,
        "a duplicate right after the dispatch is ignored"
    );
    // a job queued a while ago whose message comes again (a dispatch that crashed before
    // handing over) is handed out again; the worker drops duplicates
    let mut earlier = stored.clone();
    earlier.updated_at = earlier.updated_at - chrono::Duration::seconds(60);
    let stored = s.replace(&stored, earlier).await.unwrap();
    dispatch::dispatch_job(&ctx, &j.id).await.unwrap();
    assert_eq!(q.depth(&stack.urls.work).await.unwrap().0, 2);
    // a job that is already past dispatch is left alone
    let mut done = stored.clone();
    done.apply(Transition::Cancel, chrono::Utc::now(), None).unwrap();
    s.replace(&stored, done).await.unwrap();
    dispatch::dispatch_job(&ctx, &j.id).await.unwrap();
    assert_eq!(q.depth(&stack.urls.work).await.unwrap().0, 2);
    assert!(
        dispatch::dispatch_job(&ctx, &ids::random()).await.is_err(),
        "a missing job is an error (retried, then dead-lettered)"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_replaced_after_upload_is_not_encoded_in_its_place() {
    let stack = spawn_stack("replaced", 0).await;
    let o = S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let b = &stack.names.inbox_bucket;
    o.put_bytes(b, "sources/a.mp4", b"first".to_vec(), "video/mp4")
        .await
        .unwrap();
    let first = o.head(b, "sources/a.mp4").await.unwrap().unwrap().etag.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    assert_eq!(
        o.download_to_file(b, "sources/a.mp4", &path, Some(&first))
            .await
            .unwrap(),
        5
    );
    o.put_bytes(b, "sources/a.mp4", b"second!".to_vec(), "video/mp4")
        .await
        .unwrap();
    let err = o
        .download_to_file(b, "sources/a.mp4", &path, Some(&first))
        .await
        .unwrap_err();
    assert!(
        matches!(err, nommer_aws::objects::ObjectError::Replaced { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("replaced"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_overwritten_before_it_is_encoded_fails_and_the_new_one_is_encoded() {
    // no worker yet: both uploads wait in the queue
    let mut stack = spawn_stack("overwrite", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.mp4"), dir.path().join("two.mp4"));
    nommer_devstack::media::generate_clip(&one, 1, 320, 240, true).unwrap();
    nommer_devstack::media::generate_clip(&two, 3, 320, 240, true).unwrap();
    let key = "inbox/mp4-360p/same-name.mp4";
    let api = nommer::client::ApiClient::new(&stack.api_url);
    let queued = |id: String| {
        let api = &api;
        async move {
            nommer_tests::eventually(std::time::Duration::from_secs(30), "queued", || async {
                api.get_job(&id).await.unwrap().filter(|j| j.state == JobState::Queued)
            })
            .await
        }
    };
    let first = nommer_tests::upload(&stack, &one, key).await;
    queued(first.clone()).await;
    let second = nommer_tests::upload(&stack, &two, key).await;
    assert_ne!(first, second, "a new revision is a new job");
    queued(second.clone()).await;
    stack.spawn_worker().await.unwrap();
    let wait = |id: String| {
        let api = &api;
        async move {
            api.wait(&id, std::time::Duration::from_secs(120), |_| {})
                .await
                .unwrap()
        }
    };
    let a = wait(first).await;
    assert_eq!(a.state, JobState::Failed, "{a:#?}");
    let e = a.error.unwrap();
    assert_eq!(e.code, JobErrorCode::SourceNotFound, "{e:?}");
    assert!(e.message.contains("replaced"), "{}", e.message);
    assert!(a.manifest.is_empty());
    let b = wait(second).await;
    assert_eq!(b.state, JobState::Complete, "{b:#?}");
    // the output is the second upload (3 s), by ffprobe on the file itself
    let out = nommer_tests::download_output(&stack, &b.manifest[0].key, dir.path()).await;
    let p = nommer_devstack::media::probe(&out).unwrap();
    let secs: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((secs - 3.0).abs() < 0.3, "{secs}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_job_is_failed_with_the_reason() {
    let stack = spawn_stack("deadletter", 0).await;
    let s = store(&stack);
    let q = nommer_aws::queue::SqsQueue::new(nommer_aws::sdk::sqs_client(&stack.config));
    let mut j = nommer_tests::submitted_job(&stack.names.inbox_bucket);
    j.apply(nommer_core::Transition::Dispatch, chrono::Utc::now(), None)
        .unwrap();
    s.create(&j).await.unwrap();
    q.send(
        &stack.urls.work_dlq,
        &nommer_core::messages::JobMessage::new(&j.id).to_body(),
    )
    .await
    .unwrap();
    q.send(&stack.urls.work_dlq, "not a job message").await.unwrap();
    let failed = nommer_core::flows::deadletter::sweep(&q, &s, &stack.urls.work_dlq, 10)
        .await
        .unwrap();
    assert_eq!(failed, [j.id.clone()]);
    let stored = s.require(&j.id).await.unwrap();
    assert_eq!(stored.state, JobState::Failed);
    let e = stored.error.unwrap();
    assert_eq!(e.code, nommer_core::JobErrorCode::DeadLettered);
    assert!(
        e.message.contains("dead-letter queue") && e.message.contains("work-ffmpeg-dlq"),
        "{}",
        e.message
    );
    // the malformed one stays parked (hidden), the job's one is gone
    assert_eq!(q.depth(&stack.urls.work_dlq).await.unwrap(), (0, 1));
    stack.shutdown().await;
}
