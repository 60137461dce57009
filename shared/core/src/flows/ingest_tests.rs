//! Ingest on the fakes: one job per upload however often S3 says so, the preset from the
//! key or the metadata, refusals that fail the job at once.

use super::ingest::{Ingest, RecordOutcome, Upload};
use crate::fakes::*;
use crate::settings::*;
use crate::state::JobState;
use crate::JobErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

fn world(max_source_bytes: Option<&str>) -> (Ingest, Arc<MemJobStore>, Arc<MemObjects>, Arc<MemQueue>) {
    let mut env: HashMap<String, String> = [(TABLE, "t"), (JOBS_QUEUE_URL, "jobs")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(m) = max_source_bytes {
        env.insert(MAX_SOURCE_BYTES.into(), m.into());
    }
    let settings = IngestSettings::from_source(&env).unwrap();
    let (store, objects, queue) = (
        Arc::new(MemJobStore::default()),
        Arc::new(MemObjects::default()),
        Arc::new(MemQueue::default()),
    );
    let ingest = Ingest {
        settings,
        store: store.clone(),
        objects: objects.clone(),
        queue: queue.clone(),
    };
    (ingest, store, objects, queue)
}

fn upload(key: &str) -> Upload {
    Upload {
        event_name: "ObjectCreated:Put".into(),
        bucket: "inbox".into(),
        key: key.into(),
        size: Some(100),
        e_tag: Some("abc".into()),
        ..Upload::default()
    }
}

#[tokio::test]
async fn an_upload_makes_one_job_however_often_it_is_announced() {
    let (ingest, store, objects, queue) = world(None);
    objects.put("inbox", "inbox/mp4-480p/talk.mov", &[1u8; 100]);
    let RecordOutcome::Created(id) = ingest.upload(&upload("inbox/mp4-480p/talk.mov")).await.unwrap() else {
        panic!("created")
    };
    let again = ingest.upload(&upload("inbox/mp4-480p/talk.mov")).await.unwrap();
    assert_eq!(again, RecordOutcome::Duplicate(id.clone()));
    let job = store.job(&id);
    assert_eq!(
        (job.state, job.outputs[0].preset.as_str()),
        (JobState::Submitted, "mp4-480p")
    );
    assert_eq!(
        queue.bodies("jobs").len(),
        2,
        "queued while submitted: a crash between the two steps is repaired"
    );
}

#[tokio::test]
async fn the_preset_comes_from_the_metadata_and_an_unknown_one_fails_the_job_at_once() {
    let (ingest, store, objects, queue) = world(None);
    objects.put("inbox", "inbox/a.mov", &[1u8; 100]);
    objects.set_metadata("inbox", "inbox/a.mov", &[("preset", "no-such"), ("owner", "ann")]);
    let RecordOutcome::Created(id) = ingest.upload(&upload("inbox/a.mov")).await.unwrap() else {
        panic!("created")
    };
    let job = store.job(&id);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.unwrap().code, JobErrorCode::UnknownPreset);
    assert_eq!(job.user_metadata.get("owner").map(String::as_str), Some("ann"));
    assert!(!job.user_metadata.contains_key("preset"));
    assert!(queue.bodies("jobs").is_empty(), "a failed job is not dispatched");
}

#[tokio::test]
async fn too_big_empty_gone_and_folder_uploads_make_no_work() {
    let (ingest, store, objects, _) = world(Some("50"));
    objects.put("inbox", "inbox/big.mov", &[1u8; 100]);
    let RecordOutcome::Created(id) = ingest.upload(&upload("inbox/big.mov")).await.unwrap() else {
        panic!("created")
    };
    assert_eq!(store.job(&id).error.unwrap().code, JobErrorCode::SourceTooLarge);
    let gone = ingest.upload(&upload("inbox/gone.mov")).await.unwrap();
    assert_eq!(gone, RecordOutcome::Skipped("object gone".into()));
    let folder = ingest.upload(&upload("inbox/folder/")).await.unwrap();
    assert_eq!(folder, RecordOutcome::Skipped("folder marker".into()));
    let removed = Upload {
        event_name: "ObjectRemoved:Delete".into(),
        ..upload("inbox/big.mov")
    };
    assert!(matches!(
        ingest.upload(&removed).await.unwrap(),
        RecordOutcome::Skipped(_)
    ));
}
