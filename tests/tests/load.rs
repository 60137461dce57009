//! Load on the API: 500 concurrent `POST /jobs`, a third of them repeating an
//! Idempotency-Key another request used, make exactly one job per key, and `GET /jobs`
//! pages list each of them once. (The API's latency under this load is a benchmark:
//! `nommer-api-load`.)

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const REQUESTS: usize = 500;

/// Both ends of 500 connections live in this process: the soft limit on open files (1024
/// on many machines) is raised to the hard one, as servers do.
fn raise_open_files_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_make_one_job_per_key_and_pages_list_each_once() {
    raise_open_files_limit();
    let stack = nommer_tests::spawn_stack("load", 0).await;
    let direct = nommer_tests::direct_config(&stack).await;
    let objects = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&direct));
    let inbox = stack.names.inbox_bucket.clone();
    objects
        .put_bytes(
            &inbox,
            "sources/load.mp4",
            b"not probed by the API".to_vec(),
            "video/mp4",
        )
        .await
        .unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    // two thirds of the requests with keys of their own, the last third repeating one of
    // those keys (with the same body, as a client's retry does)
    let unique = REQUESTS * 2 / 3;
    let request = |i: usize| {
        let k = if i < unique { i } else { (i * 7) % unique };
        let body = json!({
            "source": format!("s3://{inbox}/sources/load.mp4"),
            "preset": "mp4-360p",
            "user_metadata": {"load": run, "n": k.to_string()},
        });
        (format!("load-{run}-{k}"), body)
    };
    let http = reqwest::Client::new();
    let url = format!("{}/jobs", stack.api_url);
    let mut all = tokio::task::JoinSet::new();
    let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    for i in 0..REQUESTS {
        let (key, body) = request(i);
        let (http, url, start) = (http.clone(), url.clone(), start.clone());
        all.spawn(async move {
            start.wait().await;
            let r = http
                .post(&url)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                .expect("the API answers");
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            (key, status, answer)
        });
    }
    let mut ids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    while let Some(done) = all.join_next().await {
        let (key, status, answer) = done.unwrap();
        *statuses.entry(status).or_default() += 1;
        assert!(status == 201 || status == 200, "{key}: {status} {answer}");
        ids_of
            .entry(key)
            .or_default()
            .insert(answer["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids_of.len(), unique, "one key per unique request");
    for (key, ids) in &ids_of {
        assert_eq!(ids.len(), 1, "{key} answered with several jobs: {ids:?}");
    }
    assert_eq!(
        statuses.get(&201),
        Some(&unique),
        "one 201 per key, the repeats 200: {statuses:?}"
    );
    let made: BTreeSet<String> = ids_of.values().flatten().cloned().collect();
    // the table, read past the proxy, holds exactly those jobs of this run
    let in_table: BTreeSet<String> = nommer_tests::all_jobs(&stack)
        .await
        .into_iter()
        .filter(|j| j.user_metadata.get("load") == Some(&run))
        .map(|j| j.id)
        .collect();
    assert_eq!(in_table, made);
    // and GET /jobs, page by page, lists each once
    let mut listed: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{}/jobs?metadata.load={run}&limit=100", stack.api_url);
        if let Some(c) = &cursor {
            q.push_str(&format!(
                "&cursor={}",
                percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let page: Value = http.get(&q).send().await.unwrap().json().await.unwrap();
        listed.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let once: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(once.len(), listed.len(), "a job listed twice");
    assert_eq!(once, made, "every job listed");
    println!(
        "load: {REQUESTS} concurrent POST /jobs → {statuses:?}, {} jobs, listed in pages of 100",
        made.len()
    );
}
