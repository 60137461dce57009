//! Chaos end to end: a tenth of every AWS call faulted (each kind the proxy has), jobs
//! submitted every way at once (uploads and API calls, mixed presets, some routed to the
//! Encoding.com stand-in, some cancelled, some corrupt), and a random worker SIGKILLed
//! every 20 s while the scaler replaces it. Then nothing may be lost, made twice,
//! written twice or left in flight.
//!
//! Its size: `NOMMER_CHAOS_JOBS` (default 50), `NOMMER_CHAOS_SHARE` (0.1),
//! `NOMMER_CHAOS_SEED` (1, replays a run's faults), `NOMMER_CHAOS_KILL_SECS` (20). By
//! hand, at ten times the size: `NOMMER_CHAOS_JOBS=500 cargo test --test chaos -- --nocapture`.

use aws_sdk_s3::primitives::DateTime as S3Time;
use nommer::client::ApiClient;
use nommer_aws::objects::S3ObjectStore;
use nommer_core::error::JobErrorCode;
use nommer_core::{ids, Job, JobState};
use nommer_devstack::faults::FaultPlan;
use nommer_devstack::media;
use nommer_devstack::stack::FleetOptions;
use nommer_tests::receiver::Receiver;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a job should end as.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Complete,
    Failed(JobErrorCode),
    /// Cancelled, when the cancel was accepted; complete, when it came too late.
    CancelledOrComplete,
}

#[derive(Debug)]
struct Submitted {
    id: String,
    how: &'static str,
    expect: Expect,
}

const PRESETS: [&str; 4] = ["mp4-360p", "poster", "audio-aac", "hls"];

fn config(dir: &std::path::Path, receiver: &str, secret: &str) -> std::path::PathBuf {
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
retry_seconds = [0, 1, 1, 2, 2, 4, 4, 8]

[[webhooks.endpoints]]
name = "all"
url = "{receiver}"
secret = "{secret}"
progress = false
"#
    );
    let p = dir.join("nommer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A small deterministic generator (the test's own choices, apart from the proxy's).
struct Dice(u64);

impl Dice {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Calls the API until it answers something other than a 5xx (what a client does with
/// an Idempotency-Key); returns the status and body.
async fn call(
    api: &ApiClient,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    for _ in 0..30 {
        let answer = match (method, key) {
            ("POST", Some(k)) if path == "/jobs" => api.create_job(body.as_ref().unwrap(), Some(k)).await,
            _ => api.request(method, path, body.clone()).await,
        };
        match answer {
            Ok((s, b)) if s < 500 => return (s, b),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    panic!("{method} {path} kept failing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_and_killed_workers_every_job_ends_right_and_nothing_is_lost_or_doubled() {
    // the in-process functions' warnings and errors, to see what the faults did
    nommer_aws::telemetry::init_with_default("warn");
    let jobs: usize = setting("NOMMER_CHAOS_JOBS", 50);
    let share: f64 = setting("NOMMER_CHAOS_SHARE", 0.1);
    let seed: u64 = setting("NOMMER_CHAOS_SEED", 1);
    let kill_every = Duration::from_secs(setting("NOMMER_CHAOS_KILL_SECS", 20));
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = Receiver::start(dir.path(), secret, 0);
    let cfg = config(dir.path(), &receiver.url, secret);
    let plan: FaultPlan = format!("seed={seed};share={share};delay_ms=2500").parse().unwrap();
    let stack = nommer_tests::spawn_stack_with("chaos", 0, |o| {
        o.config_path = Some(cfg.clone());
        o.faults = Some(plan.clone());
        o.call_limits = Some(nommer_core::settings::CallLimits {
            first_byte: Duration::from_secs(4),
            ..Default::default()
        });
        o.fleet = Some(FleetOptions {
            min_instances: 1,
            max_instances: 3,
            capacity: 2,
            idle_timeout_secs: 120,
            tick: Duration::from_secs(1),
        });
        for (k, v) in [
            (nommer_core::settings::VISIBILITY_TIMEOUT_SECS, "8"),
            (nommer_core::settings::MAX_ATTEMPTS, "12"),
        ] {
            o.worker_env.insert(k.into(), v.into());
        }
    })
    .await;
    let started = Instant::now();
    // the test's own calls go to the emulator itself: it is the user, and the oracle
    let direct = nommer_tests::direct_config(&stack).await;
    let s3 = nommer_aws::sdk::s3_client(&direct);
    s3.put_bucket_versioning()
        .bucket(&stack.names.outbox_bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let objects = S3ObjectStore::new(s3.clone());
    let clip = dir.path().join("clip.mp4");
    media::generate_clip(&clip, 2, 320, 240, true).unwrap();
    let clip = std::fs::read(&clip).unwrap();
    let inbox = stack.names.inbox_bucket.clone();
    let api = ApiClient::new(&stack.api_url);
    let mut dice = Dice(seed);

    // a worker SIGKILLed every `kill_every`, at random among those alive
    let killer = {
        let fleet = stack.fleet.clone();
        let mut dice = Dice(seed ^ 0x5eed);
        tokio::spawn(async move {
            let mut kills = 0usize;
            loop {
                tokio::time::sleep(kill_every).await;
                let pids: Vec<u32> = fleet.lock().unwrap().values().filter_map(|w| w.pid()).collect();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[dice.next(pids.len())];
                // SAFETY: a signal to a worker process this test's stack started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                kills += 1;
                eprintln!("chaos: SIGKILLed worker process {pid} ({kills} so far)");
            }
        })
    };

    let mut submitted: Vec<Submitted> = Vec::new();
    let mut cancels = Vec::new();
    for i in 0..jobs {
        let preset = PRESETS[dice.next(PRESETS.len())];
        // different bytes each: one job per source
        let mut bytes = clip.clone();
        bytes.extend(format!("chaos-{seed}-{i}").as_bytes());
        match i % 10 {
            0..=3 => {
                let key = format!("inbox/{preset}/clip-{i}.mp4");
                objects.put_bytes(&inbox, &key, bytes, "video/mp4").await.unwrap();
                let etag = objects.head(&inbox, &key).await.unwrap().unwrap().etag.unwrap();
                submitted.push(Submitted {
                    id: ids::for_upload(&inbox, &key, &etag),
                    how: "upload",
                    expect: Expect::Complete,
                });
            }
            8 => {
                let key = format!("inbox/mp4-360p/corrupt-{i}.mp4");
                let junk: Vec<u8> = (0..50_000u32)
                    .map(|n| (n.wrapping_mul(2654435761) >> 13) as u8)
                    .collect();
                objects.put_bytes(&inbox, &key, junk, "video/mp4").await.unwrap();
                let etag = objects.head(&inbox, &key).await.unwrap().unwrap().etag.unwrap();
                submitted.push(Submitted {
                    id: ids::for_upload(&inbox, &key, &etag),
                    how: "corrupt upload",
                    expect: Expect::Failed(JobErrorCode::InvalidMedia),
                });
            }
            k => {
                let key = format!("sources/clip-{i}.mp4");
                objects.put_bytes(&inbox, &key, bytes, "video/mp4").await.unwrap();
                let partner = k == 7;
                let mut body = json!({
                    "source": format!("s3://{inbox}/{key}"),
                    "outputs": [{"preset": if partner { "mp4-360p" } else { preset }}],
                });
                if partner {
                    body["user_metadata"] = json!({"partner": "yes"});
                }
                let (status, answer) =
                    call(&api, "POST", "/jobs", Some(body), Some(&format!("chaos-{seed}-{i}"))).await;
                assert!(status == 201 || status == 200, "POST /jobs {status}: {answer}");
                let id = answer["id"].as_str().unwrap().to_string();
                if k == 9 {
                    cancels.push(id.clone());
                }
                submitted.push(Submitted {
                    id,
                    how: if partner {
                        "API, Encoding.com"
                    } else if k == 9 {
                        "API, cancelled"
                    } else {
                        "API"
                    },
                    expect: if k == 9 {
                        Expect::CancelledOrComplete
                    } else {
                        Expect::Complete
                    },
                });
            }
        }
    }
    for id in &cancels {
        let (status, answer) = call(&api, "POST", &format!("/jobs/{id}/cancel"), None, None).await;
        assert!(status == 200 || status == 409, "cancel {id}: {status} {answer}");
    }

    // every job terminal, read from the emulator itself
    let store = nommer_aws::store::DynamoJobStore::new(nommer_aws::sdk::dynamodb_client(&direct), &stack.names.table);
    let limit = Duration::from_secs(120 + 6 * jobs as u64);
    let mut last_report = Instant::now();
    let finals: BTreeMap<String, Job> = loop {
        let mut done = BTreeMap::new();
        for s in &submitted {
            if let Some(j) = nommer_core::ports::JobStore::get(&store, &s.id).await.unwrap() {
                if j.state.is_terminal() {
                    done.insert(s.id.clone(), j);
                }
            }
        }
        if done.len() == submitted.len() {
            break done;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "chaos: {} of {} jobs terminal after {:?}",
                done.len(),
                submitted.len(),
                started.elapsed()
            );
            last_report = Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?}, {} of {} jobs are terminal; the others: {:?}\n{}",
            done.len(),
            submitted.len(),
            submitted
                .iter()
                .filter(|s| !done.contains_key(&s.id))
                .map(|s| (&s.id, s.how))
                .collect::<Vec<_>>(),
            stack.worker_logs(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    killer.abort();
    let all_terminal = started.elapsed();

    // 1. each in the state it should be
    for s in &submitted {
        let j = &finals[&s.id];
        match (&s.expect, j.state) {
            (Expect::Complete, JobState::Complete)
            | (Expect::CancelledOrComplete, JobState::Complete | JobState::Cancelled) => {}
            (Expect::Failed(code), JobState::Failed) if j.error.as_ref().map(|e| &e.code) == Some(code) => {}
            _ => panic!(
                "{} ({}) should be {:?}, is {:?}: {:?}",
                s.id, s.how, s.expect, j.state, j.error
            ),
        }
        if j.state == JobState::Complete {
            assert!(!j.manifest.is_empty(), "{} complete with no outputs", s.id);
        }
    }

    // 2. no job lost or made twice: the table holds exactly the jobs submitted
    let in_table = nommer_tests::all_jobs(&stack).await;
    let expected: BTreeSet<&str> = submitted.iter().map(|s| s.id.as_str()).collect();
    let got: BTreeSet<&str> = in_table.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, expected, "the table's jobs are the ones submitted, each once");

    // 3. no output key written by two jobs, and none changed after its job completed
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for j in finals.values() {
        for f in &j.manifest {
            if let Some(other) = owner.insert(f.key.clone(), j.id.clone()) {
                panic!("{} is an output of {other} and of {}", f.key, j.id);
            }
        }
    }
    let versions = nommer_tests::object_versions(&s3, &stack.names.outbox_bucket).await;
    for (key, modified) in &versions {
        let job_id = key.split('/').next().unwrap();
        let job = finals.get(job_id).unwrap_or_else(|| panic!("{key} belongs to no job"));
        if let Some(done) = job.history.iter().find(|h| h.state == JobState::Complete) {
            // S3 keeps whole seconds
            let done = S3Time::from_secs(done.at.timestamp() + 1);
            assert!(
                modified <= &done,
                "{key} was written at {modified:?}, after its job completed at {done:?}"
            );
        }
    }
    for (key, j) in &owner {
        assert!(
            versions.iter().any(|(k, _)| k == key),
            "{key} of {j} is in its manifest but not in the outbox"
        );
    }

    // 4. every event reached the receiver at least once, and its webhook-id makes it one:
    // each job's history says which transitions it made (one event each)
    let expected: Vec<(String, usize, &'static str)> = finals
        .values()
        .flat_map(|j| {
            let states: Vec<&'static str> = j.history.iter().map(|h| h.state.as_str()).collect();
            (0..states.len())
                .filter(move |i| *i == 0 || states[i - 1] != states[*i])
                .map(move |i| (j.id.clone(), i, j.history[i].state.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    let settle = Instant::now();
    let mut last_missing = usize::MAX;
    let (missing, ids_of) = loop {
        // each (job, state, time) the receiver verified, with the webhook-ids it came under
        let mut ids_of: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
        for d in receiver.received().into_iter().filter(|d| d["verified"] == true) {
            let e = &d["event"];
            if e["type"] != "job.state_changed" {
                continue;
            }
            let k = (
                e["job"]["id"].as_str().unwrap_or_default().to_string(),
                e["job"]["state"].as_str().unwrap_or_default().to_string(),
                e["time"].as_str().unwrap_or_default().to_string(),
            );
            ids_of
                .entry(k)
                .or_default()
                .insert(d["id"].as_str().unwrap_or_default().to_string());
        }
        let missing: Vec<&(String, usize, &str)> = expected
            .iter()
            .filter(|(job, i, state)| {
                let at = finals[job].history[*i].at;
                !ids_of.keys().any(|(j, s, t)| {
                    j == job && s == state && chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| t == at)
                })
            })
            .collect();
        // still arriving: an item's events wait for its earlier ones (a faulted call is
        // retried with backoff), and a delivery whose ReceiveMessage answer was lost
        // waits out the webhooks queue's visibility timeout (60 s) before it is
        // received again
        if missing.len() != last_missing {
            eprintln!(
                "chaos: {} events not delivered yet after {:?}",
                missing.len(),
                settle.elapsed()
            );
            last_missing = missing.len();
        }
        if missing.is_empty() || settle.elapsed() > Duration::from_secs(300) {
            break (missing, ids_of);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if let Some((job, _, _)) = missing.first() {
        let theirs: Vec<String> = receiver
            .received()
            .into_iter()
            .filter(|d| d["event"]["job"]["id"] == job.as_str())
            .map(|d| {
                format!(
                    "{} {} {} verified={} answered={}",
                    d["id"], d["event"]["job"]["state"], d["event"]["time"], d["verified"], d["answered"]
                )
            })
            .collect();
        let history: Vec<String> = finals[job]
            .history
            .iter()
            .map(|h| format!("{} {}", h.state.as_str(), h.at.to_rfc3339()))
            .collect();
        // what the notifier recorded of each missing event (its marker, by the id events.rs
        // documents: the job id and the history position)
        let ddb = nommer_aws::sdk::dynamodb_client(&direct);
        let mut markers = Vec::new();
        for (job, i, state) in &missing {
            let id = format!(
                "evt_{}",
                &nommer_tests::sha256_hex(format!("{job}#h{i}").as_bytes())[..32]
            );
            let item = ddb
                .get_item()
                .table_name(&stack.names.table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("event#{id}")))
                .send()
                .await
                .unwrap();
            markers.push(format!("{job} h{i} {state} {id}: {:?}", item.item()));
        }
        panic!(
            "{} of {} events never reached the receiver: {missing:?}\n{job}'s history: {history:#?}\nits deliveries: {theirs:#?}\nqueues: {:?}\nmarkers: {markers:#?}",
            missing.len(),
            expected.len(),
            nommer_tests::settle_queues(&stack, Duration::from_secs(1)).await,
        );
    }
    for (event, ids) in &ids_of {
        assert_eq!(ids.len(), 1, "{event:?} came under several webhook-ids: {ids:?}");
    }
    let attempts = receiver.received().len();
    let in_flight = nommer_tests::settle_queues(&stack, Duration::from_secs(120)).await;

    // 5. and 6. dead-letter queues empty, nothing left in flight
    assert!(in_flight.is_empty(), "left on queues: {in_flight:?}");
    let counts = stack.faults.counts();
    // written to stderr itself, not through the test harness's capture: the figures are
    // in every run's output, passing or not
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "chaos: {} jobs ({} uploads, {} API calls) terminal in {all_terminal:?}; {} events, {} deliveries ({} unique)\n\
         fault proxy, seed {seed}, {:.0} % of AWS calls:\n{}",
        submitted.len(),
        submitted.iter().filter(|s| s.how.contains("upload")).count(),
        submitted.iter().filter(|s| s.how.starts_with("API")).count(),
        expected.len(),
        attempts,
        ids_of.len(),
        share * 100.0,
        counts.report()
    );
    for f in nommer_devstack::faults::Fault::ALL {
        assert!(counts.faults(f) > 0, "no {f} fault was injected: {}", counts.report());
    }
}
