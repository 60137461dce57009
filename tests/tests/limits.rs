//! Sources too big for the deployment or for a worker's disk: refused from their size
//! (a HEAD) before a byte is downloaded, with a permanent code; a disk that fills up
//! during the encode fails the job once instead of downloading the source on every
//! attempt.

use nommer::client::ApiClient;
use nommer_core::error::JobErrorCode;
use nommer_core::ports::JobStore as _;
use nommer_core::settings as s;
use nommer_core::{Job, JobState};
use nommer_devstack::media;
use nommer_tests::{spawn_stack_with, upload};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted when dropped. Needs root
/// (the suite runs as root); anything else fails the test rather than skipping it.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "nommer-test-scratch"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs for the worker's scratch dir needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn wait_terminal(stack: &nommer_devstack::LocalStack, id: &str) -> Job {
    ApiClient::new(&stack.api_url)
        .wait(id, Duration::from_secs(120), |_| {})
        .await
        .unwrap()
}

/// The log lines of the stack's first worker that mention `job_id`.
fn worker_lines(stack: &nommer_devstack::LocalStack, job_id: &str) -> Vec<String> {
    let log = std::fs::read_to_string(&stack.workers()[0].log).unwrap();
    log.lines().filter(|l| l.contains(job_id)).map(str::to_string).collect()
}

fn failed_with(job: &Job, code: JobErrorCode, says: &str) {
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let e = job.error.as_ref().unwrap();
    assert_eq!(e.code, code, "{e:?}");
    assert!(e.message.contains(says), "{} should say {says:?}", e.message);
    assert_eq!(job.attempts, 1, "one attempt, never retried: {:#?}", job.history);
    assert_eq!(
        job.history.iter().filter(|h| h.state == JobState::Queued).count(),
        1,
        "never put back in the queue: {:#?}",
        job.history
    );
}

fn clip(dir: &Path) -> (PathBuf, u64) {
    let p = dir.join("clip.mp4");
    media::generate_clip(&p, 2, 320, 240, true).unwrap();
    let size = std::fs::metadata(&p).unwrap().len();
    (p, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_the_byte_limit_fails_before_download() {
    let dir = tempfile::tempdir().unwrap();
    let (src, size) = clip(dir.path());
    let limit = size / 2;
    let stack = spawn_stack_with("limit-bytes", 1, |o| {
        o.worker_env.insert(s::MAX_SOURCE_BYTES.into(), limit.to_string());
    })
    .await;
    let id = upload(&stack, &src, "inbox/mp4-360p/big.mp4").await;
    let job = wait_terminal(&stack, &id).await;
    failed_with(
        &job,
        JobErrorCode::SourceTooLarge,
        &format!("over this deployment's limit of {limit} bytes"),
    );
    assert!(job.error.as_ref().unwrap().message.contains("NOMMER_MAX_SOURCE_BYTES"));
    let lines = worker_lines(&stack, &id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("job failed") && l.contains("source_too_large")),
        "the worker says why: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("source downloaded")),
        "nothing was downloaded: {lines:#?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_the_scratch_disk_cannot_hold_fails_before_download() {
    let dir = tempfile::tempdir().unwrap();
    let (src, size) = clip(dir.path());
    // room for the source itself, not for the source and outputs of its size
    let disk = Tmpfs::mount(size + 64 * 1024);
    let stack = spawn_stack_with("limit-disk", 1, |o| {
        o.worker_env
            .insert(s::WORK_DIR.into(), disk.path().display().to_string());
        o.worker_env.insert(s::SCRATCH_HEADROOM_BYTES.into(), "0".into());
    })
    .await;
    let id = upload(&stack, &src, "inbox/mp4-360p/wide.mp4").await;
    let job = wait_terminal(&stack, &id).await;
    failed_with(&job, JobErrorCode::SourceTooLarge, "scratch disk");
    let message = &job.error.as_ref().unwrap().message;
    assert!(message.contains(&format!("the source is {size} bytes")), "{message}");
    assert!(message.contains("larger disk"), "says what to do: {message}");
    let lines = worker_lines(&stack, &id);
    assert!(
        !lines.iter().any(|l| l.contains("source downloaded")),
        "nothing was downloaded: {lines:#?}"
    );
    stack.shutdown().await;
    // the worker wrote nothing that stayed on the disk either
    let left: Vec<_> = std::fs::read_dir(disk.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_the_encode_fails_the_job_once() {
    let dir = tempfile::tempdir().unwrap();
    // a source squeezed to almost nothing (CRF 51) re-encoded at the preset's CRF 25
    // comes out several times its size: it fits the disk twice over, its output does not
    let src = dir.path().join("blurry.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=25:duration=3")
        .args(["-c:v", "libx264", "-crf", "51", "-pix_fmt", "yuv420p", "-an"])
        .arg(&src)
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&src).unwrap().len();
    let disk = Tmpfs::mount(2 * size + 4096);
    let stack = spawn_stack_with("limit-enospc", 1, |o| {
        o.worker_env
            .insert(s::WORK_DIR.into(), disk.path().display().to_string());
        o.worker_env.insert(s::SCRATCH_HEADROOM_BYTES.into(), "0".into());
    })
    .await;
    let id = upload(&stack, &src, "inbox/mp4-360p/blurry.mp4").await;
    let job = wait_terminal(&stack, &id).await;
    failed_with(&job, JobErrorCode::DiskFull, "No space left on device");
    let lines = worker_lines(&stack, &id);
    assert_eq!(
        lines.iter().filter(|l| l.contains("source downloaded")).count(),
        1,
        "downloaded once: {lines:#?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_byte_limit_makes_a_failed_job_at_ingest() {
    use nommer_core::settings::IngestSettings;
    let stack = nommer_tests::spawn_stack("limit-ingest", 0).await;
    let mut env = stack.env.clone();
    env.insert(s::MAX_SOURCE_BYTES.into(), "1000".into());
    let ctx = ingest::Ingest::new(IngestSettings::from_source(&env).unwrap(), &stack.config);
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let bucket = stack.names.inbox_bucket.clone();
    let mut etags = Vec::new();
    for (key, n) in [("elsewhere/small.mp4", 1000usize), ("elsewhere/large.mp4", 1001)] {
        o.put_bytes(&bucket, key, vec![0u8; n], "video/mp4").await.unwrap();
        etags.push(o.head(&bucket, key).await.unwrap().unwrap().etag.unwrap());
    }
    let store =
        nommer_aws::store::DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&stack.config), &stack.names.table);
    let mut jobs = Vec::new();
    for ((key, n), etag) in [("elsewhere/small.mp4", 1000u64), ("elsewhere/large.mp4", 1001)]
        .into_iter()
        .zip(&etags)
    {
        ingest::function_handler(
            &ctx,
            lambda_runtime::LambdaEvent::new(
                nommer_tests::s3_notification(&bucket, key, "ObjectCreated:Put", n, etag),
                Default::default(),
            ),
        )
        .await
        .unwrap();
        jobs.push(
            store
                .require(&nommer_core::ids::for_upload(&bucket, key, etag))
                .await
                .unwrap(),
        );
    }
    assert_eq!(jobs[0].state, JobState::Submitted, "at the limit is allowed");
    assert_eq!(jobs[1].state, JobState::Failed, "{:#?}", jobs[1]);
    let e = jobs[1].error.as_ref().unwrap();
    assert_eq!(e.code, JobErrorCode::SourceTooLarge);
    assert!(
        e.message.contains("1001 bytes") && e.message.contains("limit of 1000 bytes"),
        "{}",
        e.message
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_over_the_byte_limit_is_refused_with_a_422() {
    use nommer_core::settings::ApiSettings;
    let stack = nommer_tests::spawn_stack("limit-api", 0).await;
    // the API function with a 1000-byte limit, served on its own port
    let mut env = stack.env.clone();
    env.insert(s::MAX_SOURCE_BYTES.into(), "1000".into());
    let state = std::sync::Arc::new(api::ApiState::new(
        ApiSettings::from_source(&env).unwrap(),
        (*stack.backends).clone(),
        &stack.config,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let bucket = stack.names.inbox_bucket.clone();
    let client = ApiClient::new(&url);
    for (key, n, want) in [("sources/small.mp4", 1000usize, 201), ("sources/large.mp4", 1001, 422)] {
        o.put_bytes(&bucket, key, vec![0u8; n], "video/mp4").await.unwrap();
        let (status, body) = client
            .create_job(&serde_json::json!({ "source": format!("s3://{bucket}/{key}") }), None)
            .await
            .unwrap();
        assert_eq!(status, want, "{key}: {body}");
        if want == 422 {
            assert_eq!(
                body["type"].as_str().map(|t| t.ends_with("source-too-large")),
                Some(true),
                "{body}"
            );
            assert_eq!(body["field"], "source", "{body}");
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.contains("1001 bytes") && detail.contains("limit of 1000 bytes"),
                "{detail}"
            );
        }
    }
    let jobs = nommer_tests::all_jobs(&stack).await;
    assert_eq!(jobs.len(), 1, "the refused request made no job: {jobs:#?}");
    server.abort();
    stack.shutdown().await;
}
