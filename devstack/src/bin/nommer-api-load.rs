//! Benchmark (run by hand, not a test): the API's latency under load on the local stack.
//! `--requests` concurrent `POST /jobs` (a third repeating another request's
//! Idempotency-Key, as retrying clients do), then the same number of `GET /jobs/{id}`;
//! prints p50, p90, p99 and the slowest of each, and the requests per second.
//!
//!     cargo run --bin nommer-api-load -- --requests 500
//!     cargo run --bin nommer-api-load -- --requests 500 --faults 'seed=1;share=0.1'

use clap::Parser;
use nommer_devstack::{LocalStack, StackOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// A fault plan for the proxy in front of the emulator (`NOMMER_FAULTS`' syntax).
    #[arg(long)]
    faults: Option<String>,
}

/// Sends every request at once; returns each one's latency, sorted, and the wall time.
async fn burst<F, Fut>(n: usize, call: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut all = tokio::task::JoinSet::new();
    let began = Instant::now();
    for i in 0..n {
        let (req, start) = (call(i), start.clone());
        all.spawn(async move {
            start.wait().await;
            let t = Instant::now();
            let status = req.await;
            (status, t.elapsed())
        });
    }
    let mut took = Vec::new();
    while let Some(r) = all.join_next().await {
        let (status, t) = r.expect("a request task");
        assert!(status < 500 && status != 0, "a request failed with {status}");
        took.push(t);
    }
    took.sort();
    (took, began.elapsed())
}

fn report(what: &str, took: &[Duration], wall: Duration) {
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "{what}: {} requests in {:.2} s ({:.0}/s); p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms",
        took.len(),
        wall.as_secs_f64(),
        took.len() as f64 / wall.as_secs_f64(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.90).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        took.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = std::env::temp_dir().join("nommer-api-load");
    let mut opts = StackOptions::new(&format!("load{}", std::process::id()), &logs);
    opts.workers = 0;
    if let Some(f) = &args.faults {
        opts.faults = Some(f.parse()?);
    }
    let stack = LocalStack::start(opts).await?;
    let inbox = stack.names.inbox_bucket.clone();
    let s3 = nommer_aws::sdk::s3_client(&stack.config);
    s3.put_object()
        .bucket(&inbox)
        .key("sources/load.mp4")
        .body(b"not probed by the API".to_vec().into())
        .send()
        .await?;
    let http = reqwest::Client::new();
    let unique = args.requests * 2 / 3;
    let url = format!("{}/jobs", stack.api_url);
    let (took, wall) = burst(args.requests, |i| {
        let k = if i < unique { i } else { (i * 7) % unique };
        let req = http
            .post(&url)
            .header("Idempotency-Key", format!("bench-{k}"))
            .json(&json!({"source": format!("s3://{inbox}/sources/load.mp4"), "preset": "mp4-360p", "user_metadata": {"n": k.to_string()}}));
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    })
    .await;
    report("POST /jobs", &took, wall);
    let (took, wall) = burst(args.requests, |i| {
        let id = nommer_core::ids::for_idempotency_key(&format!("bench-{}", i % unique));
        let req = http.get(format!("{}/jobs/{id}", stack.api_url));
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    })
    .await;
    report("GET /jobs/{id}", &took, wall);
    let counts = stack.faults.counts();
    if counts.all_faults() > 0 {
        print!("faults injected:\n{}", counts.report());
    }
    stack.shutdown().await;
    Ok(())
}
