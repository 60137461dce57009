use super::*;

fn job() -> Job {
    Job::new(
        crate::ids::random(),
        Origin::Api,
        S3Uri::new("inbox", "a.mov"),
        vec![OutputSpec::new("mp4-720p", "mp4-720p")],
        Utc::now(),
    )
}

#[test]
fn s3_uris_parse_and_refuse_with_reasons() {
    let u = S3Uri::parse("s3://my-bucket/path/to/clip.mov").unwrap();
    assert_eq!(u.bucket, "my-bucket");
    assert_eq!(u.key, "path/to/clip.mov");
    assert_eq!(u.file_name(), "clip.mov");
    assert_eq!(u.to_string(), "s3://my-bucket/path/to/clip.mov");
    assert!(S3Uri::parse("https://x/y").unwrap_err().contains("not an s3://"));
    assert!(S3Uri::parse("s3://bucket").unwrap_err().contains("no object key"));
    assert!(S3Uri::parse("s3://Bad_Bucket/x").unwrap_err().contains("bucket name"));
    assert!(S3Uri::parse("s3://bucket/dir/").unwrap_err().contains("folder"));
}

#[test]
fn names_are_sanitised() {
    assert_eq!(sanitize_stem("my clip (1)"), "my_clip__1_");
    assert_eq!(sanitize_stem("../../etc"), "_.._etc");
    assert_eq!(sanitize_stem("..."), "output");
    assert_eq!(S3Uri::new("b", "in/my clip.final.mov").output_stem(), "my_clip.final");
    assert_eq!(S3Uri::new("b", "in/.hidden").output_stem(), "hidden");
}

#[test]
fn apply_counts_attempts_and_records_history() {
    let mut j = job();
    let now = Utc::now();
    j.apply(Transition::Dispatch, now, None).unwrap();
    j.apply(Transition::StartDownload, now, None).unwrap();
    assert_eq!(j.attempts, 1);
    j.apply(Transition::Requeue, now, Some("worker lost".into())).unwrap();
    j.apply(Transition::StartDownload, now, None).unwrap();
    assert_eq!(j.attempts, 2);
    let states: Vec<_> = j.history.iter().map(|h| h.state).collect();
    assert_eq!(
        states,
        [
            JobState::Submitted,
            JobState::Queued,
            JobState::Downloading,
            JobState::Queued,
            JobState::Downloading
        ]
    );
    assert!(j.apply(Transition::Finish, now, None).is_err());
    assert_eq!(j.state, JobState::Downloading, "a refused transition changes nothing");
}

#[test]
fn fail_keeps_the_reason() {
    let mut j = job();
    j.fail(
        JobError::new(JobErrorCode::InvalidMedia, "moov atom not found"),
        Utc::now(),
    )
    .unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.error.as_ref().unwrap().code, JobErrorCode::InvalidMedia);
    assert!(j.history.last().unwrap().note.as_ref().unwrap().contains("moov atom"));
}

#[test]
fn json_round_trip() {
    let j = job();
    let s = serde_json::to_string(&j).unwrap();
    assert!(s.contains("\"source\":\"s3://inbox/a.mov\""), "{s}");
    let back: Job = serde_json::from_str(&s).unwrap();
    assert_eq!(back, j);
}
