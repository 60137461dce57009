//! Helpers for the end-to-end tests (the `spawn_app` pattern): one emulator per test
//! binary, and for each test its own uniquely named stack on it.

pub mod freeze;
pub mod receiver;
pub mod runtime_api;

use nommer_devstack::{LocalStack, StackOptions};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The emulator this test binary shares: started once, on a thread that lives as long
/// as the process (the emulator dies with it).
pub fn emulator_endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let log = std::env::temp_dir().join(format!("nommer-tests-emulator-{}.log", std::process::id()));
                match rt.block_on(nommer_devstack::emulator::Emulator::start(Some(&log))) {
                    Ok(emu) => {
                        tx.send(Ok(emu.endpoint.clone())).unwrap();
                        // keep the emulator (and this thread) alive for the whole run
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => tx.send(Err(format!("{e:#}"))).unwrap(),
                }
            });
            rx.recv()
                .unwrap()
                .unwrap_or_else(|e| panic!("the local AWS emulator did not start: {e}"))
        })
        .clone()
}

/// A unique stack name for a test (lowercase, bucket-name safe).
pub fn unique_stack(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect::<String>()
        .to_lowercase();
    format!("t{}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8], short)
}

pub fn log_dir(stack: &str) -> PathBuf {
    std::env::temp_dir().join("nommer-tests").join(stack)
}

/// A stack of the system for one test, with `workers` worker processes.
pub async fn spawn_stack(test: &str, workers: usize) -> LocalStack {
    spawn_stack_with(test, workers, |_| {}).await
}

/// As [`spawn_stack`], with the options adjusted first (worker settings, config file).
pub async fn spawn_stack_with(test: &str, workers: usize, adjust: impl FnOnce(&mut StackOptions)) -> LocalStack {
    let stack = unique_stack(test);
    let mut opts = StackOptions::new(&stack, &log_dir(&stack));
    opts.endpoint = Some(emulator_endpoint());
    opts.workers = workers;
    opts.worker_env
        .insert(nommer_core::settings::VISIBILITY_TIMEOUT_SECS.into(), "30".into());
    adjust(&mut opts);
    LocalStack::start(opts).await.expect("local stack starts")
}

/// Waits until `check` returns `Some`, polling, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every job item in a stack's table.
pub async fn all_jobs(stack: &LocalStack) -> Vec<nommer_core::Job> {
    let ddb = nommer_aws::sdk::dynamodb_client(&direct_config(stack).await);
    let mut jobs = Vec::new();
    let mut from = None;
    loop {
        let out = ddb
            .scan()
            .table_name(&stack.names.table)
            .set_exclusive_start_key(from)
            .send()
            .await
            .expect("scan");
        jobs.extend(
            out.items()
                .iter()
                .filter(|i| i.get("kind").and_then(|k| k.as_s().ok()).is_some_and(|k| k == "job"))
                .map(|i| serde_json::from_str(i["doc"].as_s().unwrap()).unwrap()),
        );
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => from = Some(k.clone()),
            _ => return jobs,
        }
    }
}

/// The SDK config for the emulator itself, past the fault proxy: a test's own checks
/// are never faulted.
pub async fn direct_config(stack: &LocalStack) -> aws_config::SdkConfig {
    stack.direct_config().await
}

/// SHA-256 in lowercase hex, computed by the test, independently of Nommer's own.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every version of every object in `bucket`: its key and when it was written.
pub async fn object_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, aws_sdk_s3::primitives::DateTime)> {
    let mut all = Vec::new();
    let (mut key, mut version) = (None, None);
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key)
            .set_version_id_marker(version)
            .send()
            .await
            .expect("listing versions");
        for v in out.versions() {
            all.push((v.key().unwrap_or_default().to_string(), *v.last_modified().unwrap()));
        }
        if out.is_truncated() != Some(true) {
            return all;
        }
        key = out.next_key_marker().map(str::to_string);
        version = out.next_version_id_marker().map(str::to_string);
    }
}

/// Waits up to `limit` for every queue of the stack to be empty (none visible, in
/// flight or delayed); returns what is left on each that is not, with the bodies of
/// dead letters (their reasons).
pub async fn settle_queues(stack: &LocalStack, limit: Duration) -> Vec<String> {
    stack
        .settle_queues(limit)
        .await
        .expect("reading the queues' attributes")
}

/// A job in `submitted` for a source in `bucket` (written straight to the store by tests
/// that drive one handler alone).
pub fn submitted_job(bucket: &str) -> nommer_core::Job {
    use nommer_core::job::{Job, Origin, OutputSpec, S3Uri};
    Job::new(
        nommer_core::ids::random(),
        Origin::Api,
        S3Uri::new(bucket, "a.mp4"),
        vec![OutputSpec::new("mp4-720p", "mp4-720p")],
        chrono::Utc::now(),
    )
}

/// An S3 event notification as S3 sends it (event name e.g. `ObjectCreated:Put`).
pub fn s3_notification(bucket: &str, key: &str, event: &str, size: u64, etag: &str) -> serde_json::Value {
    serde_json::json!({ "Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T08:00:00.000Z", "eventName": event,
        "userIdentity": { "principalId": "AWS:AIDAEXAMPLE" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S" },
        "s3": { "s3SchemaVersion": "1.0", "configurationId": "nommer-ingest",
            "bucket": { "name": bucket, "ownerIdentity": { "principalId": "A3NL1KOZZKExample" }, "arn": format!("arn:aws:s3:::{bucket}") },
            "object": { "key": key, "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5" } }
    }]})
}

/// Downloads an output from the stack's outbox into `dir`; returns the local path.
pub async fn download_output(stack: &LocalStack, key: &str, dir: &std::path::Path) -> PathBuf {
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let p = dir.join(key.replace('/', "_"));
    o.download_to_file(&stack.names.outbox_bucket, key, &p, None)
        .await
        .expect("download the output");
    p
}

/// Asserts that `job` is complete; when it is not, shows its error and the workers' logs.
pub fn assert_complete(stack: &LocalStack, job: &nommer_core::Job) {
    assert_eq!(
        job.state,
        nommer_core::JobState::Complete,
        "{:#?}\n{}",
        job.error,
        stack.worker_logs(30)
    );
}

/// The (first) file of output `name` in `job`'s manifest, downloaded into `dir`.
pub async fn output_file(stack: &LocalStack, job: &nommer_core::Job, name: &str, dir: &std::path::Path) -> PathBuf {
    let f = job
        .manifest
        .iter()
        .find(|f| f.output == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest"));
    download_output(stack, &f.key, dir).await
}

/// Uploads `path` into the inbox under `key` and returns the id of the job the upload
/// makes.
pub async fn upload(stack: &LocalStack, path: &std::path::Path, key: &str) -> String {
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    o.upload_file(&stack.names.inbox_bucket, key, path, "video/mp4")
        .await
        .unwrap();
    let info = o.head(&stack.names.inbox_bucket, key).await.unwrap().unwrap();
    nommer_core::ids::for_upload(&stack.names.inbox_bucket, key, info.etag.as_deref().unwrap())
}

/// Runs FFmpeg on lavfi `inputs` (then `extra` arguments) into `path`; panics with its
/// stderr when it fails.
pub fn lavfi(path: &std::path::Path, inputs: &[&str], extra: &[&str]) {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    for i in inputs {
        cmd.args(["-f", "lavfi", "-i", i]);
    }
    cmd.args(extra).arg(path);
    let out = cmd.output().expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Uploads `src` as `sources/<name>`, submits a job with `outputs` through the API and
/// waits for it to end; panics with the workers' logs when it does not.
pub async fn run_job(
    stack: &LocalStack,
    src: &std::path::Path,
    name: &str,
    outputs: serde_json::Value,
) -> nommer_core::Job {
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config));
    let key = format!("sources/{name}");
    o.upload_file(&stack.names.inbox_bucket, &key, src, "application/octet-stream")
        .await
        .unwrap();
    let api = nommer::client::ApiClient::new(&stack.api_url);
    let body = serde_json::json!({ "source": format!("s3://{}/{key}", stack.names.inbox_bucket), "outputs": outputs });
    let (status, job) = api.create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    match api
        .wait(job["id"].as_str().unwrap(), Duration::from_secs(300), |_| {})
        .await
    {
        Ok(j) => j,
        Err(e) => panic!("{e:#}\n{}", stack.worker_logs(30)),
    }
}

/// The FFmpeg with libvmaf (scripts/setup.sh exports it as NOMMER_SCORE_FFMPEG; installed
/// here by scripts/second-ffmpeg when it did not). Debian's FFmpeg has no libvmaf.
pub fn vmaf_ffmpeg() -> String {
    if let Ok(f) = std::env::var(nommer_core::settings::SCORE_FFMPEG) {
        return f;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/second-ffmpeg"))
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bare libvmaf run of the test's own (no filter of the worker's): the pooled VMAF of
/// `distorted` against `reference`, both as decoded; `options` are libvmaf's
/// (`n_subsample=3`), or empty.
pub fn bare_vmaf(distorted: &std::path::Path, reference: &std::path::Path, options: &str) -> f64 {
    let vmaf = if options.is_empty() {
        "libvmaf".to_string()
    } else {
        format!("libvmaf={options}")
    };
    let out = std::process::Command::new(vmaf_ffmpeg())
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(distorted)
        .arg("-i")
        .arg(reference)
        .args([
            "-lavfi",
            &format!("[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];[d][r]{vmaf}"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    log.lines()
        .find_map(|l| l.split("VMAF score:").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VMAF score in {log}"))
}
