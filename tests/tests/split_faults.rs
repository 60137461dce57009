//! Split jobs under trouble, on the local stack's workers: a worker killed holding a
//! chunk, a cancel while chunks run, a chunk whose piece is gone, and short jobs arriving
//! behind a long job's chunks.

use nommer::client::ApiClient;
use nommer_aws::tasks::DynamoTaskStore;
use nommer_core::split::task::{task_names, SplitTask, TaskName, TaskState};
use nommer_core::{Job, JobState};
use nommer_devstack::LocalStack;
use std::path::Path;
use std::time::Duration;

/// Moving picture and sound, keyframes every 48 frames.
fn source(path: &Path, size: &str, seconds: u32) {
    nommer_tests::lavfi(
        path,
        &[
            &format!("testsrc2=size={size}:rate=30000/1001"),
            "sine=frequency=440:sample_rate=48000",
        ],
        &[
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "48",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
}

/// Split sources over 10 s into 4 s chunks.
const CONFIG: &str = r#"
[backends.fleet]
kind = "ffmpeg"
split_after_seconds = 10
chunk_seconds = 4

[routing]
default = "fleet"
"#;

async fn stack(test: &str, workers: usize, dir: &Path) -> LocalStack {
    let cfg = dir.join("nommer.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    nommer_tests::spawn_stack_with(test, workers, |o| {
        o.config_path = Some(cfg.clone());
        // a lost worker's chunk comes back quickly
        o.worker_env
            .insert(nommer_core::settings::VISIBILITY_TIMEOUT_SECS.into(), "8".into());
    })
    .await
}

async fn submit(stack: &LocalStack, src: &Path, name: &str, preset: &str) -> String {
    let objects = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    let key = format!("sources/{name}");
    objects
        .upload_file(&stack.names.inbox_bucket, &key, src, "video/mp4")
        .await
        .unwrap();
    let body = serde_json::json!({
        "source": format!("s3://{}/{key}", stack.names.inbox_bucket),
        "outputs": [{"preset": preset}],
    });
    let (status, job) = ApiClient::new(&stack.api_url).create_job(&body, None).await.unwrap();
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

async fn job(stack: &LocalStack, id: &str) -> Job {
    ApiClient::new(&stack.api_url).get_job(id).await.unwrap().unwrap()
}

async fn tasks_of(stack: &LocalStack, job: &Job) -> Vec<SplitTask> {
    let store = DynamoTaskStore::new(
        nommer_aws::sdk::dynamodb_client(&stack.direct_config().await),
        &stack.names.table,
    );
    store
        .all(&job.id, &task_names(job.split.as_ref().unwrap()))
        .await
        .unwrap()
}

/// Waits for the job to be split and one of its chunks to be running; returns both.
async fn a_running_chunk(stack: &LocalStack, id: &str) -> (Job, SplitTask) {
    nommer_tests::eventually(Duration::from_secs(120), "a chunk of the split job running", || async {
        let j = job(stack, id).await;
        if j.state != JobState::Encoding || j.split.is_none() {
            return None;
        }
        let running = tasks_of(stack, &j)
            .await
            .into_iter()
            .find(|t| matches!(t.name, TaskName::Chunk(_)) && t.state == TaskState::Running)?;
        Some((j, running))
    })
    .await
}

async fn wait_end(stack: &LocalStack, id: &str) -> Job {
    match ApiClient::new(&stack.api_url)
        .wait(id, Duration::from_secs(300), |_| {})
        .await
    {
        Ok(j) => j,
        Err(e) => panic!("{e:#}\n{}", stack.worker_logs(40)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_holding_a_chunk_costs_only_that_chunks_retry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    source(&src, "480x270", 20);
    let mut stack = stack("splitkill", 2, dir.path()).await;
    let id = submit(&stack, &src, "kill.mp4", "mp4-360p").await;
    let (_, held) = a_running_chunk(&stack, &id).await;
    let holder = held.worker.clone().unwrap();
    let index = stack
        .workers()
        .iter()
        .position(|w| w.id == holder)
        .expect("the holder is one of ours");
    stack.kill_worker(index).await.unwrap();
    stack.spawn_worker().await.unwrap();
    let done = wait_end(&stack, &id).await;
    nommer_tests::assert_complete(&stack, &done);
    let tasks = tasks_of(&stack, &done).await;
    for t in &tasks {
        let expected = if t.name == held.name { 2 } else { 1 };
        assert_eq!(
            t.attempts, expected,
            "{} ({} held by the killed worker): {tasks:?}",
            t.name, held.name
        );
    }
    // the output is whole: every frame of the source, once
    let out = nommer_tests::output_file(&stack, &done, "mp4-360p", dir.path()).await;
    let frames = |p: &Path| {
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(frames(&out), frames(&src));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_every_chunk_in_flight_and_drops_the_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    // long enough, and a ladder of four rungs, for chunks to be left queued at the cancel
    source(&src, "1280x720", 40);
    let stack = stack("splitcancel", 2, dir.path()).await;
    let id = submit(&stack, &src, "cancel.mp4", "hls").await;
    a_running_chunk(&stack, &id).await;
    let (status, answer) = ApiClient::new(&stack.api_url)
        .request("POST", &format!("/jobs/{id}/cancel"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let cancelled = job(&stack, &id).await;
    assert_eq!(cancelled.state, JobState::Cancelled);
    // every task stops running within a heartbeat of the cancel, and none starts after
    nommer_tests::eventually(
        Duration::from_secs(30),
        "no task of the cancelled job running",
        || async {
            let tasks = tasks_of(&stack, &cancelled).await;
            tasks.iter().all(|t| t.state != TaskState::Running).then_some(())
        },
    )
    .await;
    let left = nommer_tests::settle_queues(&stack, Duration::from_secs(60)).await;
    assert!(left.is_empty(), "queues not empty: {left:?}");
    let tasks = tasks_of(&stack, &cancelled).await;
    let stitch = tasks.iter().find(|t| t.name == TaskName::Stitch).unwrap();
    assert_eq!(stitch.state, TaskState::Pending, "the stitch never ran: {tasks:?}");
    assert!(
        tasks
            .iter()
            .any(|t| t.state == TaskState::Pending && matches!(t.name, TaskName::Chunk(_))),
        "chunks still queued at the cancel were dropped, not run: {tasks:?}"
    );
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    let outputs = o.list(&stack.names.outbox_bucket, &format!("{id}/")).await.unwrap();
    assert!(outputs.is_empty(), "a cancelled job has no outputs: {outputs:?}");
    assert_eq!(job(&stack, &id).await.state, JobState::Cancelled, "and stays cancelled");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_whose_piece_is_gone_fails_the_job_naming_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    source(&src, "480x270", 20);
    let stack = stack("splitgone", 1, dir.path()).await;
    let id = submit(&stack, &src, "gone.mp4", "mp4-360p").await;
    // the one worker held still as soon as the job is split, so the pieces of the chunks
    // it has not taken can be removed under it
    let pid = stack.workers()[0].pid().unwrap();
    nommer_tests::eventually(Duration::from_secs(120), "the job split", || async {
        let j = job(&stack, &id).await;
        (j.state == JobState::Encoding && j.split.is_some()).then_some(())
    })
    .await;
    nommer_tests::freeze::signal(pid, libc::SIGSTOP);
    let j = job(&stack, &id).await;
    let o = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.direct_config().await));
    let pending: Vec<u32> = tasks_of(&stack, &j)
        .await
        .iter()
        .filter_map(|t| match (t.name, t.state) {
            (TaskName::Chunk(i), TaskState::Pending) => Some(i),
            _ => None,
        })
        .collect();
    assert!(!pending.is_empty());
    for i in &pending {
        let key = nommer_core::split::scratch_key(&id, &format!("pieces/{}.mkv", TaskName::Chunk(*i)));
        o.delete_object(&stack.names.outbox_bucket, &key).await.unwrap();
    }
    nommer_tests::freeze::signal(pid, libc::SIGCONT);
    let failed = wait_end(&stack, &id).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let e = failed.error.unwrap();
    assert!(
        pending.iter().any(|i| e.message.starts_with(&format!("chunk {i} ("))),
        "the error names a chunk whose piece was removed ({pending:?}): {e:?}"
    );
    assert!(e.message.contains("missing"), "{e:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_jobs_behind_a_long_jobs_chunks_are_not_starved() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    source(&src, "480x270", 20);
    let short = dir.path().join("short.mp4");
    nommer_tests::lavfi(
        &short,
        &["testsrc2=size=320x240:rate=25"],
        &["-t", "2", "-c:v", "libx264"],
    );
    // one worker, one job at a time: the long job's chunks and the short job share it
    let stack = stack("splitfair", 1, dir.path()).await;
    let long = submit(&stack, &src, "long.mp4", "hls").await;
    // the short job arrives while the worker is splitting the long one
    nommer_tests::eventually(Duration::from_secs(120), "the long job downloading", || async {
        (job(&stack, &long).await.state == JobState::Downloading).then_some(())
    })
    .await;
    let quick = submit(&stack, &short, "short.mp4", "mp4-360p").await;
    let q = wait_end(&stack, &quick).await;
    nommer_tests::assert_complete(&stack, &q);
    let l = wait_end(&stack, &long).await;
    nommer_tests::assert_complete(&stack, &l);
    let finished = |j: &Job| j.history.iter().find(|h| h.state == JobState::Complete).unwrap().at;
    let tasks = tasks_of(&stack, &l).await;
    let last_chunk = tasks
        .iter()
        .filter(|t| matches!(t.name, TaskName::Chunk(_)))
        .map(|t| t.updated_at)
        .max()
        .unwrap();
    assert!(
        finished(&q) < last_chunk,
        "the short job ({}) waited for every chunk of the long one (last at {last_chunk})",
        finished(&q)
    );
    stack.shutdown().await;
}
