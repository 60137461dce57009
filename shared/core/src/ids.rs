//! Job identities that are stable for the same request, so at-least-once delivery makes
//! one job.

use sha2::{Digest, Sha256};

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The id of the job an S3 upload makes. `revision` is the object's version id when the
/// bucket is versioned, else its ETag (a re-upload of the same key with new content is a
/// new job; a redelivered event is not).
pub fn for_upload(bucket: &str, key: &str, revision: &str) -> String {
    format!("j{}", digest(&["s3", bucket, key, revision]))
}

/// The id of the job an API request with this `Idempotency-Key` makes.
pub fn for_idempotency_key(key: &str) -> String {
    format!("j{}", digest(&["api", key]))
}

/// A fresh id for a request without an idempotency key.
pub fn random() -> String {
    format!("j{}", uuid::Uuid::new_v4().simple())
}

/// A fingerprint of a request body, to tell a replay from a different request reusing
/// an idempotency key.
pub fn fingerprint(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// True when `s` has the shape of a job id (checked before it reaches DynamoDB).
pub fn looks_valid(s: &str) -> bool {
    s.len() == 33 && s.starts_with('j') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upload_same_id_other_revision_other_id() {
        let a = for_upload("inbox", "a/b.mov", "etag1");
        assert_eq!(a, for_upload("inbox", "a/b.mov", "etag1"));
        assert_ne!(a, for_upload("inbox", "a/b.mov", "etag2"));
        assert_ne!(a, for_upload("inbox2", "a/b.mov", "etag1"));
        // length-prefixed parts: moving a separator does not collide
        assert_ne!(for_upload("ab", "c", "d"), for_upload("a", "bc", "d"));
        assert!(looks_valid(&a), "{a}");
    }

    #[test]
    fn idempotency_keys_and_random_ids_are_valid_and_distinct() {
        let k = for_idempotency_key("order-17");
        assert_eq!(k, for_idempotency_key("order-17"));
        assert_ne!(k, for_idempotency_key("order-18"));
        assert!(looks_valid(&k));
        let r = random();
        assert!(looks_valid(&r), "{r}");
        assert_ne!(r, random());
        assert!(!looks_valid("../../etc"));
        assert!(!looks_valid("jZZ"));
    }
}
