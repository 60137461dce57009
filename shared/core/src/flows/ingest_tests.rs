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

mod hostile {
    //! Whatever an S3 notification names, ingest makes a job the store can read back, or
    //! refuses the record with a clear error; never a panic.
    use super::*;
    use crate::job::Job;
    use proptest::prelude::*;

    fn odd() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z0-9.-]{0,70}",
            "inbox/[a-z0-9-]{0,12}/[\\PC]{0,20}",
            (0usize..1100).prop_map(|n| format!("inbox/{}", "k".repeat(n))),
        ]
    }

    fn uploads() -> impl Strategy<Value = Upload> {
        (
            prop_oneof![Just("ObjectCreated:Put".to_string()), any::<String>()],
            odd(),
            odd(),
            prop::option::of(any::<u64>()),
            prop::option::of(odd()),
            prop::option::of(odd()),
            prop::option::of(odd()),
        )
            .prop_map(|(event_name, bucket, key, size, version_id, e_tag, sequencer)| Upload {
                event_name,
                bucket,
                key,
                size,
                version_id,
                e_tag,
                sequencer,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_upload_makes_a_readable_job_or_is_refused(u in uploads(), metadata in prop::option::of(odd())) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (ingest, store, objects, _) = world(None);
            objects.put(&u.bucket, &u.key, &[1u8; 10]);
            if let Some(m) = &metadata {
                objects.set_metadata(&u.bucket, &u.key, &[("preset", m.as_str()), ("k", m.as_str())]);
            }
            match rt.block_on(ingest.upload(&u)) {
                Ok(RecordOutcome::Created(id)) => {
                    // the store keeps the job as JSON: what ingest made must read back
                    let job = store.job(&id);
                    let doc = serde_json::to_string(&job).unwrap();
                    let back: Result<Job, _> = serde_json::from_str(&doc);
                    prop_assert!(back.is_ok(), "{:?} for {:?}", back.err(), u);
                    prop_assert_eq!(back.unwrap(), job);
                }
                Ok(RecordOutcome::Skipped(why)) => prop_assert!(!why.is_empty()),
                Ok(RecordOutcome::Duplicate(_)) => prop_assert!(false, "a first upload is no duplicate"),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
