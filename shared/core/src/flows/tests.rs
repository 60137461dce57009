//! The backend flows on the fakes: milliseconds each, no emulator.

use super::*;
use crate::fakes::*;
use crate::job::{Job, Origin, OutputSpec, Probe, ProbeStream, S3Uri};
use crate::ports::{RemoteError, RemoteStatus};
use crate::settings::*;
use crate::JobErrorCode;
use chrono::Utc;
use std::collections::HashMap;

const ECOM: &str = "[backends.ffmpeg]\nkind = \"ffmpeg\"\n\n[backends.encodingcom]\nkind = \"encodingcom\"\nfallback = \"ffmpeg\"\npoll_seconds = 30\n\n[routing]\ndefault = \"ffmpeg\"\n\n[[routing.rules]]\nname = \"remote\"\nbackend = \"encodingcom\"\nmatch = { key_prefix = \"inbox/remote/\" }\n";
const ECOM_NO_FALLBACK: &str =
    "[backends.encodingcom]\nkind = \"encodingcom\"\n\n[routing]\ndefault = \"encodingcom\"\n";

struct World {
    store: Arc<MemJobStore>,
    objects: Arc<MemObjects>,
    queue: Arc<MemQueue>,
    prober: Arc<FakeProber>,
    remote: Arc<FakeRemote>,
    fleet: Arc<FakeFleet>,
    backends: Backends,
}

fn world(config: &str) -> World {
    let env: HashMap<String, String> = [
        (TABLE, "t"),
        (WORK_QUEUE_URL, "work"),
        (OUTBOX_BUCKET, "outbox"),
        (DELIVERY_BUCKET, "delivery"),
        (ENCODINGCOM_SOURCE_SECRET, "reader"),
        (CALLBACK_URL, "https://api.example/callbacks/encodingcom"),
        (CONFIG_TOML, config),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = BackendSettings::from_source(&env).unwrap();
    let (store, objects, queue) = (
        Arc::new(MemJobStore::default()),
        Arc::new(MemObjects::default()),
        Arc::new(MemQueue::default()),
    );
    let (prober, remote) = (Arc::new(FakeProber::default()), Arc::new(FakeRemote::default()));
    let fleet = Arc::new(FakeFleet::default());
    let mut encoders: BTreeMap<String, Arc<dyn RemoteEncoder>> = BTreeMap::new();
    encoders.insert("encodingcom".into(), remote.clone());
    let ports = Ports {
        store: store.clone(),
        objects: objects.clone(),
        queue: queue.clone(),
        prober: prober.clone(),
        handoff: Arc::new(FakeHandoff),
        fleet: fleet.clone(),
        remotes: Remotes::new(encoders),
    };
    World {
        backends: Backends::new(settings, ports),
        store,
        objects,
        queue,
        prober,
        remote,
        fleet,
    }
}

fn probe(seconds: f64, height: u32) -> Probe {
    let video = ProbeStream {
        index: 0,
        kind: crate::job::StreamKind::Video,
        codec: "h264".into(),
        width: Some(height * 16 / 9),
        height: Some(height),
        ..serde_json::from_str(r#"{"index":0,"kind":"video","codec":"h264"}"#).unwrap()
    };
    Probe {
        container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
        duration_seconds: Some(seconds),
        size: 1000,
        bit_rate: Some(1_000_000),
        streams: vec![video],
        interlacing: None,
    }
}

impl World {
    /// A submitted job for `key` in the inbox, its source media probing as `seconds` long.
    async fn submitted(&self, key: &str, outputs: &[(&str, &str)]) -> Job {
        self.objects
            .put("inbox", key, b"\x00\x00\x00\x18ftypmp42 not a playlist");
        self.prober.set(&format!("mem://inbox/{key}"), Ok(probe(10.0, 720)));
        let outputs = outputs.iter().map(|(n, p)| OutputSpec::new(*n, *p)).collect();
        let job = Job::new(
            crate::ids::random(),
            Origin::Api,
            S3Uri::new("inbox", key),
            outputs,
            Utc::now(),
        );
        self.store.create(&job).await.unwrap();
        job
    }

    /// The job dispatched a while ago (so a repeated dispatch is not a just-ran duplicate).
    async fn dispatched(&self, key: &str, outputs: &[(&str, &str)]) -> Job {
        let job = self.submitted(key, outputs).await;
        self.backends.dispatch(&job.id).await.unwrap();
        self.store.job(&job.id)
    }

    fn status(&self, media_id: &str, word: &str, progress: f64) -> RemoteStatus {
        let status = RemoteStatus {
            media_id: media_id.into(),
            status: crate::job::TaskStatus::parse(word),
            progress,
            errors: Vec::new(),
        };
        self.remote.set_status(status.clone());
        status
    }
}

#[tokio::test]
async fn dispatch_routes_to_the_fleet_and_queues_the_job_for_a_worker() {
    let w = world("");
    let job = w.submitted("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    w.backends.dispatch(&job.id).await.unwrap();
    let j = w.store.job(&job.id);
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.backend.as_deref(), Some("ffmpeg"));
    let d = j.routing.expect("a decision on the job");
    assert_eq!(d.facts.measured_by, crate::routing::Measured::Probe);
    assert_eq!(j.probe.and_then(|p| p.duration_seconds), Some(10.0));
    let sent = w.queue.bodies("work");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains(&job.id), "{sent:?}");
    assert!(w.remote.added.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dispatch_refuses_a_playlist_before_any_worker_downloads_it() {
    let w = world("");
    let job = w.submitted("inbox/list.mp4", &[("web", "mp4-720p")]).await;
    w.objects
        .put("inbox", "inbox/list.mp4", b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n");
    w.backends.dispatch(&job.id).await.unwrap();
    let j = w.store.job(&job.id);
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.error.map(|e| e.code), Some(JobErrorCode::RefusedSource));
    assert!(w.queue.bodies("work").is_empty());
}

#[tokio::test]
async fn a_source_that_cannot_be_probed_is_routed_on_the_request_facts() {
    let w = world("");
    let mut job = w.submitted("inbox/odd.mp4", &[("web", "mp4-720p")]).await;
    w.prober.set(
        "mem://inbox/inbox/odd.mp4",
        Err(crate::ports::ProbeFailure::Unavailable("no ffprobe".into())),
    );
    job.source_hints = Some(serde_json::from_str(r#"{"duration_seconds": 42.0, "height": 480}"#).unwrap());
    w.store.jobs.lock().unwrap().insert(job.id.clone(), job.clone());
    w.backends.dispatch(&job.id).await.unwrap();
    let d = w.store.job(&job.id).routing.unwrap();
    assert_eq!(d.facts.measured_by, crate::routing::Measured::Request);
    assert_eq!((d.facts.duration_seconds, d.facts.height), (Some(42.0), Some(480)));
}

#[tokio::test]
async fn a_repeated_dispatch_hands_nothing_over_twice() {
    let w = world("");
    let job = w.submitted("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    w.backends.dispatch(&job.id).await.unwrap();
    w.backends.dispatch(&job.id).await.unwrap();
    assert_eq!(w.queue.bodies("work").len(), 1, "a duplicate right after is ignored");
    let mut j = w.store.job(&job.id);
    j.state = JobState::Encoding;
    w.store.jobs.lock().unwrap().insert(j.id.clone(), j);
    w.backends.dispatch(&job.id).await.unwrap();
    assert_eq!(w.queue.bodies("work").len(), 1, "a job past dispatch is left alone");
}

#[tokio::test]
async fn a_rule_hands_the_job_to_encodingcom_with_the_readers_url_and_our_delivery_folders() {
    let w = world(ECOM);
    let j = w
        .dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p"), ("poster", "poster")])
        .await;
    assert_eq!(j.backend.as_deref(), Some("encodingcom"));
    let task = j.remote.expect("the task on the job");
    assert_eq!((task.media_id.as_str(), task.status.as_str()), ("media-1", "New"));
    let added = w.remote.added.lock().unwrap().clone();
    assert_eq!(added.len(), 1);
    let (url, callback, outputs) = &added[0];
    assert_eq!(
        url, "reader://inbox/inbox/remote/talk.mp4",
        "signed by the reader, not the function"
    );
    assert_eq!(callback, "https://api.example/callbacks/encodingcom");
    let folders: Vec<String> = outputs.iter().map(|(_, d)| d.to_string()).collect();
    assert_eq!(
        folders,
        [
            format!("s3://delivery/{}/web/", j.id),
            format!("s3://delivery/{}/poster/", j.id)
        ]
    );
    assert_eq!(
        w.store.job_for_media("encodingcom", "media-1").await.unwrap(),
        Some(j.id.clone())
    );
    assert!(w.queue.bodies("work").is_empty());
}

#[tokio::test]
async fn a_task_encodingcom_refuses_falls_back_to_the_fleet() {
    let w = world(ECOM);
    w.remote
        .answer_next_add(Err(RemoteError::Refused("Wrong user id or key!".into())));
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.backend.as_deref(), Some("ffmpeg"));
    let d = j.routing.unwrap();
    assert_eq!(d.fallback_from.as_deref(), Some("encodingcom"));
    assert!(j
        .history
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("falling back to ffmpeg"));
    assert_eq!(w.queue.bodies("work").len(), 1, "the fleet has it");
}

#[tokio::test]
async fn a_rule_whose_backend_cannot_make_the_outputs_is_passed_over_at_routing() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-av1-720p")]).await;
    assert_eq!(j.backend.as_deref(), Some("ffmpeg"));
    let d = j.routing.unwrap();
    assert!(
        d.unable.get("encodingcom").is_some_and(|why| why.contains("AV1")),
        "{d:?}"
    );
    assert!(
        w.remote.added.lock().unwrap().is_empty(),
        "no task for what it cannot make"
    );
}

#[tokio::test]
async fn a_busy_encodingcom_is_retried_not_failed() {
    let w = world(ECOM);
    w.remote.answer_next_add(Err(RemoteError::Retryable("503".into())));
    let job = w.submitted("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let e = w.backends.dispatch(&job.id).await.unwrap_err();
    assert!(matches!(e, BackendError::Remote(RemoteError::Retryable(_))), "{e:?}");
    let j = w.store.job(&job.id);
    assert_eq!(
        (j.state, j.backend.as_deref(), j.remote.is_none()),
        (JobState::Queued, Some("encodingcom"), true)
    );
}

#[tokio::test]
async fn without_a_fallback_a_refusal_fails_the_job_with_the_reason() {
    let w = world(ECOM_NO_FALLBACK);
    w.remote
        .answer_next_add(Err(RemoteError::Refused("Wrong user id or key!".into())));
    let j = w.dispatched("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    assert_eq!(j.state, JobState::Failed);
    let e = j.error.unwrap();
    assert_eq!(e.code, JobErrorCode::EncodeFailed);
    assert_eq!(e.message, "encodingcom: Wrong user id or key!");
}

#[tokio::test]
async fn remote_status_walks_the_job_forward_and_a_late_status_changes_nothing() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let s = w.status("media-1", "Processing", 40.0);
    let after = w.backends.apply_status(&j.id, &s, true).await.unwrap();
    assert_eq!((after.state, after.progress), (JobState::Encoding, 40));
    let states: Vec<JobState> = after.history.iter().map(|h| h.state).collect();
    assert_eq!(
        states,
        [
            JobState::Submitted,
            JobState::Queued,
            JobState::Downloading,
            JobState::Encoding
        ],
        "every step on the path, in order"
    );
    assert_eq!(after.remote.as_ref().unwrap().notifications, 1);
    let late = w.status("media-1", "Downloading", 0.0);
    let again = w.backends.apply_status(&j.id, &late, false).await.unwrap();
    assert_eq!(
        (again.state, again.progress),
        (JobState::Encoding, 40),
        "a status behind ours is ignored"
    );
}

#[tokio::test]
async fn a_remote_tasks_sign_of_life_is_its_status_moving_not_our_asking() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let moved = |j: &crate::job::Job| j.remote.as_ref().unwrap().moved_at.expect("moved_at");
    w.backends
        .apply_status(&j.id, &w.status("media-1", "Processing", 40.0), false)
        .await
        .unwrap();
    // the last check a minute ago: the same answer again is worth recording
    if let Some(t) = w
        .store
        .jobs
        .lock()
        .unwrap()
        .get_mut(&j.id)
        .and_then(|j| j.remote.as_mut())
    {
        t.checked_at -= chrono::Duration::minutes(1);
        t.moved_at = t.moved_at.map(|m| m - chrono::Duration::minutes(1));
    }
    let first = w.store.job(&j.id);
    let same = w
        .backends
        .apply_status(&j.id, &w.status("media-1", "Processing", 40.0), false)
        .await
        .unwrap();
    assert!(same.remote.as_ref().unwrap().checked_at > first.remote.as_ref().unwrap().checked_at);
    assert_eq!(moved(&same), moved(&first), "asking is not moving");
    let on = w
        .backends
        .apply_status(&j.id, &w.status("media-1", "Processing", 55.0), false)
        .await
        .unwrap();
    assert!(moved(&on) > moved(&first), "progress is");
}

#[tokio::test]
async fn finished_copies_the_delivery_into_the_outbox_and_checks_each_file() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let delivered = format!("{}/web/talk.mp4", j.id);
    w.objects.put("delivery", &delivered, b"mp4 bytes");
    let prefix = j.output_prefix(&j.outputs[0], &w.backends.settings.config.key_template);
    w.prober
        .set(&format!("mem://outbox/{prefix}talk.mp4"), Ok(probe(10.0, 720)));
    let s = w.status("media-1", "Finished", 100.0);
    let done = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(done.state, JobState::Complete, "{:?}", done.error);
    assert_eq!(w.objects.keys("outbox"), [format!("{prefix}talk.mp4")]);
    let m = &done.manifest[0];
    assert_eq!(
        (m.key.as_str(), m.height, m.duration_seconds),
        (format!("{prefix}talk.mp4").as_str(), Some(720), Some(10.0))
    );
    // the SHA-256 the storage computed writing the copy
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(b"mp4 bytes")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(m.sha256.as_deref(), Some(want.as_str()));
}

#[tokio::test]
async fn of_the_callers_that_hear_finished_one_collects_and_a_stale_claim_is_taken_over() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    w.objects
        .put("delivery", &format!("{}/web/talk.mp4", j.id), b"mp4 bytes");
    let prefix = j.output_prefix(&j.outputs[0], &w.backends.settings.config.key_template);
    w.prober
        .set(&format!("mem://outbox/{prefix}talk.mp4"), Ok(probe(10.0, 720)));
    let s = w.status("media-1", "Finished", 100.0);
    // the callback and the poller at once: one copy, one completion
    let (a, b) = tokio::join!(
        w.backends.apply_status(&j.id, &s, true),
        w.backends.apply_status(&j.id, &s, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.state == JobState::Complete || b.state == JobState::Complete,
        "{a:?}\n{b:?}"
    );
    assert_eq!(*w.objects.copies.lock().unwrap(), 1, "the delivery copied once");
    assert_eq!(w.store.require(&j.id).await.unwrap().state, JobState::Complete);
    let after = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(
        (after.state, *w.objects.copies.lock().unwrap()),
        (JobState::Complete, 1),
        "never after completion"
    );

    // another collector's claim, fresh: left to it; stale (it died): taken over
    let j = w.dispatched("inbox/remote/two.mp4", &[("web", "mp4-720p")]).await;
    w.objects
        .put("delivery", &format!("{}/web/two.mp4", j.id), b"mp4 bytes");
    let prefix = j.output_prefix(&j.outputs[0], &w.backends.settings.config.key_template);
    w.prober
        .set(&format!("mem://outbox/{prefix}two.mp4"), Ok(probe(10.0, 720)));
    let current = w.store.require(&j.id).await.unwrap();
    let mut claimed = current.clone();
    claimed
        .advance_to(JobState::Uploading, Utc::now(), "another collector")
        .unwrap();
    claimed.remote.as_mut().unwrap().collecting_since = Some(Utc::now());
    let claimed = w.store.replace(&current, claimed).await.unwrap();
    let s = w.status(claimed.remote.as_ref().unwrap().media_id.as_str(), "Finished", 100.0);
    let left = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(
        (left.state, *w.objects.copies.lock().unwrap()),
        (JobState::Uploading, 1)
    );
    let mut stale = claimed.clone();
    stale.remote.as_mut().unwrap().collecting_since =
        Some(Utc::now() - chrono::Duration::seconds(crate::flows::collect::COLLECT_LEASE_SECS + 1));
    w.store.replace(&claimed, stale).await.unwrap();
    let taken = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(
        (taken.state, *w.objects.copies.lock().unwrap()),
        (JobState::Complete, 2)
    );
}

#[tokio::test]
async fn a_delivery_too_short_or_missing_is_not_accepted() {
    let w = world(ECOM_NO_FALLBACK);
    let j = w.dispatched("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    let s = w.status("media-1", "Finished", 100.0);
    let failed = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed
        .error
        .unwrap()
        .message
        .contains("has no files under s3://delivery/"));

    let w = world(ECOM_NO_FALLBACK);
    let j = w.dispatched("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    w.objects.put("delivery", &format!("{}/web/talk.mp4", j.id), b"mp4");
    let prefix = j.output_prefix(&j.outputs[0], &w.backends.settings.config.key_template);
    w.prober
        .set(&format!("mem://outbox/{prefix}talk.mp4"), Ok(probe(4.0, 720)));
    let s = w.status("media-1", "Finished", 100.0);
    let failed = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert!(failed.error.unwrap().message.contains("lasts 4.0 s, expected 10.0 s"));
}

#[tokio::test]
async fn a_task_that_ends_in_error_falls_back_to_the_fleet() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let mut s = w.status("media-1", "Error", 0.0);
    s.errors = vec!["Source file is broken".into()];
    let after = w.backends.apply_status(&j.id, &s, false).await.unwrap();
    assert_eq!(
        (after.state, after.backend.as_deref()),
        (JobState::Queued, Some("ffmpeg"))
    );
    assert!(after.remote.is_none());
    assert!(after
        .history
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("Source file is broken"));
    assert_eq!(w.queue.bodies("work").len(), 1);
}

#[tokio::test]
async fn a_notification_is_confirmed_with_the_backend_and_unknown_tasks_are_ignored() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    w.status("media-1", "Saving", 90.0);
    let after = w.backends.on_notify("encodingcom", "media-1").await.unwrap().unwrap();
    assert_eq!((after.id.as_str(), after.state), (j.id.as_str(), JobState::Uploading));
    assert!(w
        .backends
        .on_notify("encodingcom", "someone-elses")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn poll_checks_tasks_not_heard_of_and_leaves_fresh_ones_alone() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    w.status("media-1", "Processing", 10.0);
    assert_eq!(w.backends.poll().await.unwrap(), 0, "just added: not due");
    let mut stale = w.store.job(&j.id);
    stale.remote.as_mut().unwrap().checked_at = Utc::now() - chrono::Duration::seconds(31);
    w.store.jobs.lock().unwrap().insert(j.id.clone(), stale);
    assert_eq!(w.backends.poll().await.unwrap(), 1);
    assert_eq!(w.store.job(&j.id).state, JobState::Encoding);
}

#[tokio::test]
async fn poll_adds_the_task_dispatch_never_added() {
    let w = world(ECOM);
    w.remote.answer_next_add(Err(RemoteError::Retryable("timeout".into())));
    let job = w.submitted("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    assert!(w.backends.dispatch(&job.id).await.is_err());
    let mut j = w.store.job(&job.id);
    j.updated_at = Utc::now() - chrono::Duration::seconds(151);
    w.store.jobs.lock().unwrap().insert(j.id.clone(), j);
    assert_eq!(w.backends.poll().await.unwrap(), 1);
    assert!(w.store.job(&job.id).remote.is_some(), "the poller added it");
}

#[tokio::test]
async fn cancel_stops_the_remote_task_and_refuses_a_finished_job() {
    let w = world(ECOM);
    let j = w.dispatched("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    let (cancelled, remote) = w.backends.cancel(&j.id, "changed my mind").await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(remote, Some(Ok(())));
    assert_eq!(*w.remote.cancelled.lock().unwrap(), ["media-1"]);
    let e = w.backends.cancel(&j.id, "again").await.unwrap_err();
    assert!(matches!(e, BackendError::Finished(JobState::Cancelled)), "{e:?}");
}

#[tokio::test]
async fn cancel_that_loses_a_race_reads_again_and_still_cancels() {
    let w = world("");
    let job = w.submitted("inbox/talk.mp4", &[("web", "mp4-720p")]).await;
    w.store.meddle(&job.id, |j| j.progress = 5);
    let (cancelled, remote) = w.backends.cancel(&job.id, "stop").await.unwrap();
    assert_eq!((cancelled.state, remote), (JobState::Cancelled, None));
    assert_eq!(cancelled.progress, 0, "built on the re-read job");
    assert_eq!(w.store.job(&job.id).version, 2, "the meddler's write and ours");
}

#[tokio::test]
async fn a_task_added_while_the_job_was_cancelled_is_taken_back() {
    let w = world(ECOM);
    let job = w.submitted("inbox/remote/talk.mp4", &[("web", "mp4-720p")]).await;
    // the cancel lands between AddMedia and the write of the task
    let id = job.id.clone();
    let mut routed = w.store.job(&id);
    routed
        .apply(crate::state::Transition::Dispatch, Utc::now(), None)
        .unwrap();
    routed.backend = Some("encodingcom".into());
    w.store.jobs.lock().unwrap().insert(id.clone(), routed.clone());
    w.store.meddle(&id, |j| {
        j.apply(crate::state::Transition::Cancel, Utc::now(), None).unwrap();
    });
    w.backends.hand_over(routed).await.unwrap();
    assert_eq!(w.store.job(&id).state, JobState::Cancelled);
    assert_eq!(
        *w.remote.cancelled.lock().unwrap(),
        ["media-1"],
        "the orphan task is cancelled"
    );
}

#[test]
fn the_state_path_is_the_state_machines() {
    for (from, to) in crate::state::PATH.iter().zip(crate::state::PATH.iter().skip(1)) {
        let t = from.forward().expect("a step forward");
        assert_eq!(from.next(t), Ok(*to));
        assert!(from.rank() < to.rank());
    }
    assert_eq!(JobState::Complete.forward(), None);
    assert_eq!(JobState::Failed.forward(), None);
}

fn beat(libvmaf: bool, seen_secs_ago: i64) -> crate::scaling::Heartbeat {
    crate::scaling::Heartbeat {
        active_jobs: 0,
        capacity: 1,
        draining: false,
        last_seen: Utc::now() - chrono::Duration::seconds(seen_secs_ago),
        idle_since: None,
        capabilities: crate::quality::Capabilities {
            libvmaf,
            psnr: true,
            ssim: true,
        },
    }
}

#[tokio::test]
async fn a_vmaf_output_is_failed_at_dispatch_when_no_live_worker_can_score_it() {
    let w = world(ECOM);
    // a live worker without libvmaf, and a stale one with it (gone: it does not count)
    w.fleet.beats.lock().unwrap().insert("i-1".into(), beat(false, 5));
    w.fleet.beats.lock().unwrap().insert("i-2".into(), beat(true, 3600));
    let job = w.submitted("inbox/talk.mp4", &[("auto", "hls-auto")]).await;
    w.backends.dispatch(&job.id).await.unwrap();
    let j = w.store.job(&job.id);
    assert_eq!(j.state, JobState::Failed);
    let e = j.error.unwrap();
    assert_eq!(e.code, JobErrorCode::NoBackend);
    assert!(
        e.message.contains("ffmpeg: output `auto`: it needs libvmaf")
            && e.message.contains("encodingcom: output `auto`: per-title"),
        "{}",
        e.message
    );
    assert!(w.queue.bodies("work").is_empty(), "nothing handed over");
    // a fixed ladder does not ask the fleet, and goes
    let fixed = w.submitted("inbox/talk.mp4", &[("web", "hls")]).await;
    w.backends.dispatch(&fixed.id).await.unwrap();
    assert_eq!(w.store.job(&fixed.id).state, JobState::Queued);
    // once a live worker has libvmaf, or none is live (scaled to zero), it goes too
    w.fleet.beats.lock().unwrap().insert("i-3".into(), beat(true, 5));
    let ok = w.submitted("inbox/talk.mp4", &[("auto", "mp4-auto")]).await;
    w.backends.dispatch(&ok.id).await.unwrap();
    let j = w.store.job(&ok.id);
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.routing.unwrap().facts.fleet_libvmaf, Some(true));
    w.fleet.beats.lock().unwrap().clear();
    let cold = w.submitted("inbox/talk.mp4", &[("auto", "hls-auto")]).await;
    w.backends.dispatch(&cold.id).await.unwrap();
    assert_eq!(w.store.job(&cold.id).state, JobState::Queued);
}
