//! The SHA-256 of what is uploaded: computed here while the file is read, sent with each
//! request (S3 checks the bytes it got against it and keeps it), and compared after the
//! upload with what S3 says it stored (HeadObject, checksum mode on). For a multipart
//! upload S3 keeps a composite: the SHA-256 of the parts' SHA-256 digests, `-N` for N
//! parts, which is not the file's SHA-256; the file's own is computed here either way and
//! is what the manifest shows.

use base64::Engine;
use nommer_core::ports::ObjectError;
use sha2::{Digest, Sha256};

/// What an upload stored, as computed while reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex (as `sha256sum` prints it).
    pub sha256: String,
}

/// The digests of a file read in parts.
#[derive(Debug, Clone, Default)]
pub struct Hasher {
    whole: Sha256,
    parts: Vec<[u8; 32]>,
    size: u64,
}

impl Hasher {
    /// Takes the next part; returns its SHA-256, base64 (what S3 wants with the part).
    pub fn part(&mut self, bytes: &[u8]) -> String {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.parts.push(digest);
        b64(&digest)
    }

    /// The digests once every part is in.
    pub fn finish(self) -> Digests {
        Digests {
            whole: self.whole.finalize().into(),
            parts: self.parts,
            size: self.size,
        }
    }
}

/// A file's SHA-256, and each of its parts'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub whole: [u8; 32],
    pub parts: Vec<[u8; 32]>,
    pub size: u64,
}

impl Digests {
    pub fn uploaded(&self) -> Uploaded {
        Uploaded {
            size: self.size,
            sha256: hex::encode(self.whole),
        }
    }

    /// The file's SHA-256, base64 (a single PUT's checksum).
    pub fn whole_b64(&self) -> String {
        b64(&self.whole)
    }

    /// The checksum S3 keeps for the object: the file's own for a single PUT; for a
    /// multipart upload the composite of its parts, `<base64>-<N>`.
    pub fn stored(&self, multipart: bool) -> String {
        if !multipart {
            return self.whole_b64();
        }
        let mut all = Sha256::new();
        for p in &self.parts {
            all.update(p);
        }
        let composite: [u8; 32] = all.finalize().into();
        format!("{}-{}", b64(&composite), self.parts.len())
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A full-object SHA-256 as S3 writes it (base64) in hex; `None` for a composite
/// (`…-N`, not the file's own) or anything that is not a SHA-256.
pub fn hex_of_full(stored: &str) -> Option<String> {
    if stored.contains('-') {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(stored).ok()?;
    (bytes.len() == 32).then(|| hex::encode(&bytes))
}

/// Compares the checksum S3 reports for an object with the one computed here. S3 writes
/// a composite as `<base64>-<N>`; an emulator may leave the `-N` off, which is read as
/// the same count. A missing or different checksum is a failed upload (retryable: the
/// next attempt uploads again).
pub fn verify(bucket: &str, key: &str, ours: &str, reported: Option<&str>) -> Result<(), ObjectError> {
    let mismatch = |theirs: &str| ObjectError::ChecksumMismatch {
        bucket: bucket.to_string(),
        key: key.to_string(),
        ours: ours.to_string(),
        theirs: theirs.to_string(),
    };
    let Some(theirs) = reported else {
        return Err(mismatch("none"));
    };
    let split = |v: &str| match v.split_once('-') {
        Some((d, n)) => (d.to_string(), Some(n.to_string())),
        None => (v.to_string(), None),
    };
    let ((our_digest, our_n), (their_digest, their_n)) = (split(ours), split(theirs));
    let counts_agree = their_n.is_none() || their_n == our_n;
    if our_digest == their_digest && counts_agree {
        Ok(())
    } else {
        Err(mismatch(theirs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(parts: &[&[u8]]) -> Digests {
        let mut h = Hasher::default();
        for p in parts {
            h.part(p);
        }
        h.finish()
    }

    #[test]
    fn the_files_sha256_is_the_same_however_it_is_read() {
        let one = digests(&[b"hello world"]);
        let two = digests(&[b"hello ", b"world"]);
        let want = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(one.uploaded().sha256, want);
        assert_eq!(two.uploaded().sha256, want);
        assert_eq!(two.uploaded().size, 11);
        assert_eq!(one.stored(false), "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=");
        // the composite is over the parts' digests, not the bytes
        assert_ne!(two.stored(true), format!("{}-2", two.whole_b64()));
        assert!(two.stored(true).ends_with("-2"));
    }

    #[test]
    fn a_full_object_checksum_reads_as_hex_and_a_composite_does_not() {
        let d = digests(&[b"hello world"]);
        assert_eq!(hex_of_full(&d.stored(false)), Some(d.uploaded().sha256));
        assert_eq!(hex_of_full(&digests(&[b"a", b"b"]).stored(true)), None);
        assert_eq!(hex_of_full("not base64!"), None);
    }

    #[test]
    fn a_matching_checksum_passes_with_or_without_the_part_count() {
        let d = digests(&[b"aaaa", b"bbbb"]);
        let ours = d.stored(true);
        verify("b", "k", &ours, Some(&ours)).unwrap();
        let bare = ours.split('-').next().unwrap();
        verify("b", "k", &ours, Some(bare)).unwrap();
        verify("b", "k", &d.stored(false), Some(&d.stored(false))).unwrap();
    }

    #[test]
    fn a_different_or_missing_checksum_is_a_clear_retryable_failure() {
        let ours = digests(&[b"what we read"]).stored(false);
        let theirs = digests(&[b"what S3 got"]).stored(false);
        let err = verify("outbox", "j/web/a.mp4", &ours, Some(&theirs)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("s3://outbox/j/web/a.mp4"), "{text}");
        assert!(text.contains(&ours) && text.contains(&theirs), "{text}");
        assert!(matches!(err, ObjectError::ChecksumMismatch { .. }));
        let none = verify("outbox", "k", &ours, None).unwrap_err();
        assert!(none.to_string().contains("none"), "{none}");
        // the same digest over another number of parts is another object
        let d = digests(&[b"aa", b"bb"]);
        let three = format!("{}-3", d.stored(true).split('-').next().unwrap());
        assert!(verify("b", "k", &d.stored(true), Some(&three)).is_err());
    }
}
