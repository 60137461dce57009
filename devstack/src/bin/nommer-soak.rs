//! Benchmark (run by hand, not a test): the soak. Jobs arrive steadily for `--minutes`
//! with faults on (uploads and API calls, mixed presets, some routed to the Encoding.com
//! stand-in, some corrupt) on a fleet the scaler runs. Every `--sample-secs` each
//! process's resident memory, open file descriptors and threads are read from /proc:
//! this process (the functions in-process, the API, the fault proxy, the stand-in, the
//! scaler and a webhook receiver), each worker, and the emulator, named apart: it is not
//! Nommer, and it keeps every object, message and item it is sent. At the end, each
//! one's trend over the arrivals (flat or growing), then every job must have ended right
//! and every queue be empty. Exits 1 when a Nommer process grew or a job ended wrong.
//!
//!     cargo run --bin nommer-soak -- --minutes 30
//!     cargo run --bin nommer-soak -- --minutes 6 --every-secs 4 --faults 'seed=2;share=0.2'

use axum::http::HeaderMap;
use clap::Parser;
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::ports::JobStore;
use nommer_core::{ids, Job, JobState};
use nommer_devstack::procs::{self, Sample, Tolerance};
use nommer_devstack::stack::FleetOptions;
use nommer_devstack::{media, LocalStack, StackOptions};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// How long jobs arrive.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// One job every this many seconds.
    #[arg(long, default_value_t = 6.0)]
    every_secs: f64,
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// The fault plan for the proxy in front of the emulator (`NOMMER_FAULTS`' syntax).
    #[arg(long, default_value = "seed=1;share=0.1;delay_ms=2500")]
    faults: String,
    /// How long the jobs still running when arrivals stop may take to end.
    #[arg(long, default_value_t = 10)]
    settle_minutes: u64,
}

const PRESETS: [&str; 4] = ["mp4-360p", "poster", "audio-aac", "hls"];
const EMULATOR: &str = "emulator (moto, not Nommer)";
const SELF: &str = "nommer (this process: functions, API, proxy, stand-in, scaler)";

/// The webhook receiver: deliveries and distinct `webhook-id`s.
#[derive(Default)]
struct Hooks {
    deliveries: Mutex<(u64, HashSet<String>)>,
}

async fn start_receiver() -> anyhow::Result<(String, Arc<Hooks>)> {
    let hooks = Arc::new(Hooks::default());
    let h = hooks.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let h = h.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let mut d = h.deliveries.lock().unwrap();
                d.0 += 1;
                d.1.insert(id.to_string());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, hooks))
}

fn config(dir: &std::path::Path, receiver: &str) -> anyhow::Result<std::path::PathBuf> {
    let text = format!(
        r#"
[backends.fleet]
kind = "ffmpeg"

[backends.encodingcom]
kind = "encodingcom"
fallback = "fleet"
poll_seconds = 1

[routing]
default = "fleet"

[[routing.rules]]
name = "partner jobs"
backend = "encodingcom"
match = {{ metadata = {{ partner = "yes" }} }}

[webhooks]
allow_http = true
allow_private = true
retry_seconds = [0, 1, 2, 4, 8, 16]

[[webhooks.endpoints]]
name = "soak"
url = "{receiver}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
progress = false
"#
    );
    let p = dir.join("nommer.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

struct Submitted {
    id: String,
    how: &'static str,
    /// `Some(code)` for a job that must fail with it.
    fails_with: Option<JobErrorCode>,
    at: Instant,
}

/// What submitting needs: the user's view (the emulator itself) and the API.
struct Client {
    objects: S3ObjectStore,
    api: ApiClient,
    inbox: String,
    clip: Vec<u8>,
}

impl Client {
    async fn upload(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        self.objects.put_bytes(&self.inbox, key, bytes, "video/mp4").await?;
        let head = self.objects.head(&self.inbox, key).await?;
        let etag = head
            .and_then(|h| h.etag)
            .ok_or_else(|| anyhow::anyhow!("{key} has no ETag"))?;
        Ok(ids::for_upload(&self.inbox, key, &etag))
    }

    /// `POST /jobs` until it answers something other than a 5xx, as a client with an
    /// Idempotency-Key does.
    async fn create(&self, body: serde_json::Value, key: &str) -> anyhow::Result<String> {
        for _ in 0..30 {
            match self.api.create_job(&body, Some(key)).await {
                Ok((201 | 200, answer)) => {
                    return answer["id"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow::anyhow!("no id in {answer}"))
                }
                Ok((s, answer)) if s < 500 => anyhow::bail!("POST /jobs answered {s}: {answer}"),
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        anyhow::bail!("POST /jobs kept failing")
    }

    /// The `i`th arrival: most by upload or API with a rotating preset; every tenth routed
    /// to the Encoding.com stand-in; every twentieth corrupt.
    async fn submit(&self, i: usize) -> anyhow::Result<Submitted> {
        let preset = PRESETS[i % PRESETS.len()];
        let mut bytes = self.clip.clone();
        bytes.extend(format!("soak-{i}").as_bytes());
        let (id, how, fails_with) = match i % 20 {
            0..=7 => (
                self.upload(&format!("inbox/{preset}/clip-{i}.mp4"), bytes).await?,
                "upload",
                None,
            ),
            8 => {
                let junk: Vec<u8> = (0..50_000u32)
                    .map(|n| (n.wrapping_mul(2654435761) >> 13) as u8 ^ i as u8)
                    .collect();
                let id = self.upload(&format!("inbox/mp4-360p/corrupt-{i}.mp4"), junk).await?;
                (id, "corrupt upload", Some(JobErrorCode::InvalidMedia))
            }
            k => {
                let key = format!("sources/clip-{i}.mp4");
                self.objects.put_bytes(&self.inbox, &key, bytes, "video/mp4").await?;
                let partner = k % 10 == 9;
                let mut body = json!({
                    "source": format!("s3://{}/{key}", self.inbox),
                    "outputs": [{"preset": if partner { "mp4-360p" } else { preset }}],
                });
                if partner {
                    body["user_metadata"] = json!({"partner": "yes"});
                }
                let id = self.create(body, &format!("soak-{i}")).await?;
                (id, if partner { "API, Encoding.com" } else { "API" }, None)
            }
        };
        Ok(Submitted {
            id,
            how,
            fails_with,
            at: Instant::now(),
        })
    }
}

/// Each process's samples, by its name, with the minute each was taken.
type Series = BTreeMap<String, Vec<(f64, Sample)>>;

/// Samples every process of the stack; returns a line saying what it saw.
fn take_samples(stack: &LocalStack, series: &mut Series, minute: f64) -> String {
    let mut procs: Vec<(String, u32)> = vec![(SELF.into(), std::process::id())];
    procs.extend(
        stack
            .fleet
            .lock()
            .unwrap()
            .values()
            .filter_map(|w| w.pid().map(|p| (format!("worker {}", w.id), p))),
    );
    procs.extend(stack.emulator_pid().map(|p| (EMULATOR.to_string(), p)));
    let mut line = String::new();
    let mut ffmpeg = 0;
    for (name, pid) in procs {
        let Some(s) = procs::sample(pid) else { continue };
        ffmpeg += procs::children(pid)
            .into_iter()
            .filter(|c| procs::name(*c).as_deref() == Some("ffmpeg"))
            .count();
        let short = name.split(" (").next().unwrap_or(&name).to_string();
        line.push_str(&format!(
            " | {short} {:.1} MiB {} fds {} thr",
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads
        ));
        series.entry(name).or_default().push((minute, s));
    }
    format!("{line} | ffmpeg running: {ffmpeg}")
}

/// Prints each process's trend; returns the Nommer processes that grew.
fn report_trends(series: &Series) -> Vec<String> {
    let mut grew = Vec::new();
    println!("\ntrends over the arrivals (the first third is warm-up; judged by least squares on the rest):");
    for (name, points) in series {
        println!("{name}:");
        let measures: [(&str, fn(&Sample) -> f64, Tolerance); 3] = [
            (
                "RSS MiB",
                |s| s.rss_kib as f64 / 1024.0,
                Tolerance {
                    absolute: 4.0,
                    share: 0.05,
                },
            ),
            (
                "open fds",
                |s| s.fds as f64,
                Tolerance {
                    absolute: 8.0,
                    share: 0.1,
                },
            ),
            (
                "threads",
                |s| s.threads as f64,
                Tolerance {
                    absolute: 4.0,
                    share: 0.1,
                },
            ),
        ];
        for (what, value, tolerance) in measures {
            let xy: Vec<(f64, f64)> = points.iter().map(|(t, s)| (*t, value(s))).collect();
            let Some(t) = procs::trend(&xy, tolerance) else {
                println!("  {what:<9} too few samples to judge ({})", xy.len());
                continue;
            };
            let verdict = match (name.as_str(), t.growing) {
                (EMULATOR, _) => "not judged (the emulator keeps all it is sent)",
                (_, true) => "GROWING",
                (_, false) => "flat",
            };
            println!(
                "  {what:<9} first {:>8.1}  min {:>8.1}  max {:>8.1}  last {:>8.1}  slope {:>+7.2}/min ({:>+7.1} over {:.0} min)  {verdict}",
                t.first, t.min, t.max, t.last, t.per_minute, t.growth, t.minutes
            );
            if t.growing && name != EMULATOR {
                grew.push(format!("{name}: {what} {:+.1} over {:.0} min", t.growth, t.minutes));
            }
        }
    }
    grew
}

/// Waits for every job to be terminal, reading the emulator's table; returns them.
async fn wait_terminal(store: &dyn JobStore, submitted: &[Submitted], limit: Duration) -> BTreeMap<String, Job> {
    let started = Instant::now();
    let mut done = BTreeMap::new();
    while done.len() < submitted.len() && started.elapsed() < limit {
        for s in submitted {
            if done.contains_key(&s.id) {
                continue;
            }
            if let Ok(Some(j)) = store.get(&s.id).await {
                if j.state.is_terminal() {
                    done.insert(s.id.clone(), j);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    done
}

/// What ended wrong; prints the figures of what ended right.
fn check_jobs(submitted: &[Submitted], finals: &BTreeMap<String, Job>) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut took: Vec<f64> = Vec::new();
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for s in submitted {
        let Some(j) = finals.get(&s.id) else {
            wrong.push(format!("{} ({}) never ended", s.id, s.how));
            continue;
        };
        *states.entry(j.state.as_str()).or_default() += 1;
        let right = match (&s.fails_with, j.state) {
            (None, JobState::Complete) => !j.manifest.is_empty(),
            (Some(code), JobState::Failed) => j.error.as_ref().map(|e| &e.code) == Some(code),
            _ => false,
        };
        if !right {
            wrong.push(format!("{} ({}) ended {:?}: {:?}", s.id, s.how, j.state, j.error));
        }
        if let (Some(first), Some(last)) = (j.history.first(), j.history.last()) {
            if j.state == JobState::Complete {
                took.push((last.at - first.at).num_milliseconds() as f64 / 1000.0);
            }
        }
    }
    took.sort_by(f64::total_cmp);
    if !took.is_empty() {
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        println!(
            "jobs: {} submitted, ended {states:?}; complete in p50 {:.1} s, p90 {:.1} s, slowest {:.1} s",
            submitted.len(),
            at(0.5),
            at(0.9),
            took[took.len() - 1]
        );
    }
    wrong
}

async fn start(args: &Args, dir: &std::path::Path, receiver: &str) -> anyhow::Result<LocalStack> {
    let stack = format!("soak{}", std::process::id());
    // the logs outlive the run, to read what a process did
    let mut opts = StackOptions::new(&stack, &std::env::temp_dir().join("nommer-soak").join(&stack));
    opts.workers = 0;
    opts.config_path = Some(config(dir, receiver)?);
    opts.faults = Some(args.faults.parse()?);
    opts.call_limits = Some(nommer_core::settings::CallLimits {
        first_byte: Duration::from_secs(4),
        ..Default::default()
    });
    opts.fleet = Some(FleetOptions {
        min_instances: 2,
        max_instances: 3,
        capacity: 2,
        idle_timeout_secs: 600,
        tick: Duration::from_secs(2),
    });
    opts.worker_env
        .insert(nommer_core::settings::MAX_ATTEMPTS.into(), "12".into());
    LocalStack::start(opts).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (receiver, hooks) = start_receiver().await?;
    let stack = start(&args, dir.path(), &receiver).await?;
    let direct = stack.direct_config().await;
    let clip_path = dir.path().join("clip.mp4");
    media::generate_clip(&clip_path, 2, 320, 240, true)?;
    let client = Client {
        objects: S3ObjectStore::new(nommer_aws::sdk::s3_client(&direct)),
        api: ApiClient::new(&stack.api_url),
        inbox: stack.names.inbox_bucket.clone(),
        clip: std::fs::read(&clip_path)?,
    };
    let store = nommer_aws::store::DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&direct), &stack.names.table);
    println!(
        "soak: one job every {} s for {} min, faults `{}`; logs in {}",
        args.every_secs,
        args.minutes,
        args.faults,
        stack.log_dir.display()
    );

    let began = Instant::now();
    let arrivals = Duration::from_secs_f64(args.minutes * 60.0);
    let mut arrive = tokio::time::interval(Duration::from_secs_f64(args.every_secs));
    arrive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval(Duration::from_secs(args.sample_secs));
    let (mut submitted, mut series) = (Vec::new(), Series::new());
    while began.elapsed() < arrivals {
        tokio::select! {
            _ = arrive.tick() => submitted.push(client.submit(submitted.len()).await?),
            _ = sample.tick() => {
                let minute = began.elapsed().as_secs_f64() / 60.0;
                let seen = take_samples(&stack, &mut series, minute);
                let mut ended = 0;
                for s in &submitted {
                    ended += matches!(store.get(&s.id).await, Ok(Some(j)) if j.state.is_terminal()) as usize;
                }
                println!("[{minute:5.1} min] jobs {} submitted, {ended} ended{seen}", submitted.len());
            }
        }
    }
    let last_arrival = submitted.last().map(|s: &Submitted| s.at).unwrap_or(began);
    let finals = wait_terminal(&store, &submitted, Duration::from_secs(args.settle_minutes * 60)).await;
    println!(
        "all ended {:.0} s after the last arrival",
        last_arrival.elapsed().as_secs_f64()
    );

    let grew = report_trends(&series);
    println!();
    let wrong = check_jobs(&submitted, &finals);
    let left = stack.settle_queues(Duration::from_secs(120)).await?;
    let (deliveries, ids) = {
        let d = hooks.deliveries.lock().unwrap();
        (d.0, d.1.len())
    };
    println!("webhooks: {deliveries} deliveries, {ids} distinct events");
    print!("faults injected:\n{}", stack.faults.counts().report());
    stack.shutdown().await;
    let problems: Vec<String> = grew
        .into_iter()
        .chain(wrong)
        .chain(left.into_iter().map(|l| format!("left on a queue: {l}")))
        .collect();
    if problems.is_empty() {
        println!("\nsoak: every Nommer process flat, every job ended right, every queue empty");
        return Ok(());
    }
    eprintln!("\nsoak found {} problem(s):", problems.len());
    for p in &problems {
        eprintln!("  {p}");
    }
    std::process::exit(1)
}
