//! S3 adapter: what the functions and the worker need of object storage. Downloads
//! stream to local disk; an upload of up to [`MULTIPART_THRESHOLD`] is read whole and
//! sent in one PUT, a larger one streams in [`PART_SIZE`] parts.

pub use crate::checksum::Uploaded;
use crate::checksum::{Digests, Hasher};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files above this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of each part (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

pub use nommer_core::ports::ObjectError;

pub use nommer_core::ports::ObjectInfo;

/// An object's GET, answered but not yet read.
pub struct Download {
    /// The object's size (the response's Content-Length).
    pub size: u64,
    body: ByteStream,
}

impl Download {
    /// Streams the body to a local file; returns the bytes written.
    pub async fn to_file(self, path: &Path) -> Result<u64, ObjectError> {
        let mut file = tokio::fs::File::create(path).await?;
        let mut body = self.body.into_async_read();
        let n = tokio::io::copy(&mut body, &mut file).await?;
        file.flush().await?;
        Ok(n)
    }
}

#[derive(Clone, Debug)]
pub struct S3ObjectStore {
    client: Client,
}

impl S3ObjectStore {
    pub fn new(client: Client) -> Self {
        S3ObjectStore { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// HEAD; `None` when the object does not exist.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(o) => Ok(Some(ObjectInfo {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                version_id: o.version_id().filter(|v| *v != "null").map(str::to_string),
                content_type: o.content_type().map(str::to_string),
                metadata: o.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().map(|s| s.is_not_found()).unwrap_or(false) => Ok(None),
            Err(e) if e.raw_response().map(|r| r.status().as_u16() == 404).unwrap_or(false) => Ok(None),
            Err(e) => Err(crate::sdk::failed::<ObjectError, _>(e)),
        }
    }

    /// Streams an object to a local file; returns the bytes written. With `etag`, only
    /// that revision of the object is accepted.
    pub async fn download_to_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        etag: Option<&str>,
    ) -> Result<u64, ObjectError> {
        self.open_download(bucket, key, etag).await?.to_file(path).await
    }

    /// Sends an object's GET and returns once S3 has answered, before its body is read:
    /// the size is known before a byte is written. With `etag`, only that revision of
    /// the object is accepted.
    pub async fn open_download(&self, bucket: &str, key: &str, etag: Option<&str>) -> Result<Download, ObjectError> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some(e) = etag {
            req = req.if_match(format!("\"{e}\""));
        }
        match req.send().await {
            Ok(o) => Ok(Download {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                body: o.body,
            }),
            Err(e) if e.as_service_error().map(|s| s.is_no_such_key()).unwrap_or(false) => Err(ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            }),
            Err(e) if e.raw_response().map(|r| r.status().as_u16() == 412).unwrap_or(false) => {
                Err(ObjectError::Replaced {
                    bucket: bucket.into(),
                    key: key.into(),
                    etag: etag.unwrap_or_default().into(),
                })
            }
            Err(e) => Err(crate::sdk::failed::<ObjectError, _>(e)),
        }
    }

    /// Uploads a local file, in parts when it is large, with S3 checksums (SHA-256) on
    /// every request, and checks afterwards that S3 stored what was read (a mismatch is
    /// [`ObjectError::ChecksumMismatch`], to try again). Returns the file's size and
    /// SHA-256, computed while reading it (see [`crate::checksum`]).
    pub async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> Result<Uploaded, ObjectError> {
        let size = tokio::fs::metadata(path).await?.len();
        if size <= MULTIPART_THRESHOLD {
            // at most 16 MiB: read once, so the bytes hashed are the bytes sent
            let bytes = tokio::fs::read(path).await?;
            let mut hasher = Hasher::default();
            hasher.part(&bytes);
            let digests = hasher.finish();
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(digests.whole_b64())
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(crate::sdk::failed::<ObjectError, _>)?;
            self.verify_stored(bucket, key, &digests.stored(false)).await?;
            return Ok(digests.uploaded());
        }
        let create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        let upload_id = create
            .upload_id()
            .ok_or_else(|| ObjectError::Aws("S3 returned no upload id".into()))?
            .to_string();
        match self.upload_parts(bucket, key, &upload_id, path).await {
            Ok((parts, digests)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(crate::sdk::failed::<ObjectError, _>)?;
                self.verify_stored(bucket, key, &digests.stored(true)).await?;
                Ok(digests.uploaded())
            }
            Err(e) => {
                // leave no orphaned parts behind (they cost money)
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    /// Sends the file's parts, each with its SHA-256; returns them for the completion
    /// and the digests read on the way.
    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        path: &Path,
    ) -> Result<(Vec<CompletedPart>, Digests), ObjectError> {
        let mut file = tokio::fs::File::open(path).await?;
        let mut parts = Vec::new();
        let mut hasher = Hasher::default();
        let mut number = 1;
        loop {
            let mut buf = Vec::with_capacity(PART_SIZE);
            let n = (&mut file).take(PART_SIZE as u64).read_to_end(&mut buf).await?;
            if n == 0 {
                break;
            }
            let part_sha = hasher.part(&buf);
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&part_sha)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(crate::sdk::failed::<ObjectError, _>)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .checksum_sha256(out.checksum_sha256().unwrap_or(&part_sha))
                    .build(),
            );
            number += 1;
        }
        Ok((parts, hasher.finish()))
    }

    /// Asks S3 for the SHA-256 it stored for an object and compares it with `ours`.
    async fn verify_stored(&self, bucket: &str, key: &str, ours: &str) -> Result<(), ObjectError> {
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        crate::checksum::verify(bucket, key, ours, head.checksum_sha256())
    }

    /// Deletes an object (no error when it is already gone).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        Ok(())
    }

    /// Puts a small object from memory.
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        Ok(())
    }

    /// A URL anyone holding it can GET the object with, for `expires`.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, ObjectError> {
        let req = self.client.get_object().bucket(bucket).key(key);
        url_of(req.presigned(presigning(expires)?).await)
    }

    /// The first `n` bytes of an object (fewer if it is shorter), and its whole size (from
    /// the ranged GET's `Content-Range`, so no HEAD is needed).
    pub async fn head_bytes(&self, bucket: &str, key: &str, n: u64) -> Result<(Vec<u8>, u64), ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes=0-{}", n.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().map(|s| s.is_no_such_key()).unwrap_or(false) {
                    ObjectError::NotFound {
                        bucket: bucket.into(),
                        key: key.into(),
                    }
                } else {
                    crate::sdk::failed::<ObjectError, _>(e)
                }
            })?;
        let total = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok());
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Aws(e.to_string()))?
            .into_bytes()
            .to_vec();
        // an object shorter than the range comes whole
        let total = total.unwrap_or(bytes.len() as u64);
        Ok((bytes, total))
    }

    /// Copies an object server-side (CopyObject: nothing passes through us), S3
    /// computing the copy's SHA-256 as it writes it; returns that (hex) when S3 gives a
    /// full-object one.
    pub async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<String>, ObjectError> {
        let out = self
            .client
            .copy_object()
            .copy_source(copy_source(from_bucket, from_key))
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| {
                ObjectError::Aws(format!(
                    "copying s3://{from_bucket}/{from_key} to s3://{bucket}/{key}: {}",
                    crate::sdk::error_text(&e)
                ))
            })?;
        let stored = out.copy_object_result().and_then(|r| r.checksum_sha256());
        Ok(stored.and_then(crate::checksum::hex_of_full))
    }

    /// Keys and sizes under a prefix.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(crate::sdk::failed::<ObjectError, _>)?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A presigned PUT of one object.
    pub async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        expires: std::time::Duration,
    ) -> Result<String, ObjectError> {
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type);
        url_of(req.presigned(presigning(expires)?).await)
    }

    /// Starts a multipart upload and presigns a PUT for each of its `parts`.
    pub async fn presign_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        parts: u32,
        expires: std::time::Duration,
    ) -> Result<(String, Vec<String>), ObjectError> {
        let up = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        let upload_id = up.upload_id().unwrap_or_default().to_string();
        let mut urls = Vec::new();
        for n in 1..=parts {
            let req = self.client.upload_part().bucket(bucket).key(key).upload_id(&upload_id);
            urls.push(url_of(req.part_number(n as i32).presigned(presigning(expires)?).await)?);
        }
        Ok((upload_id, urls))
    }

    /// Completes a multipart upload from its parts' ETags, in order.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), ObjectError> {
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, e)| CompletedPart::builder().part_number(i as i32 + 1).e_tag(e).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(crate::sdk::failed::<ObjectError, _>)?;
        Ok(())
    }
}

/// CopyObject's `x-amz-copy-source`: `bucket/key`, the key URL-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!("{bucket}/{}", percent_encoding::utf8_percent_encode(key, SET))
}

/// How long a presigned URL lives.
fn presigning(expires: std::time::Duration) -> Result<aws_sdk_s3::presigning::PresigningConfig, ObjectError> {
    aws_sdk_s3::presigning::PresigningConfig::expires_in(expires).map_err(|e| ObjectError::Aws(e.to_string()))
}

/// The URL of a presigned request.
fn url_of<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug + Send + Sync + 'static>(
    req: Result<aws_sdk_s3::presigning::PresignedRequest, aws_sdk_s3::error::SdkError<E, R>>,
) -> Result<String, ObjectError> {
    Ok(req.map_err(crate::sdk::failed::<ObjectError, _>)?.uri().to_string())
}

#[async_trait::async_trait]
impl nommer_core::ports::ObjectStore for S3ObjectStore {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        S3ObjectStore::head(self, bucket, key).await
    }
    async fn head_bytes(&self, bucket: &str, key: &str, n: u64) -> Result<(Vec<u8>, u64), ObjectError> {
        S3ObjectStore::head_bytes(self, bucket, key, n).await
    }
    async fn presign_get(&self, bucket: &str, key: &str, lifetime: std::time::Duration) -> Result<String, ObjectError> {
        S3ObjectStore::presign_get(self, bucket, key, lifetime).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError> {
        S3ObjectStore::list(self, bucket, prefix).await
    }
    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<Option<String>, ObjectError> {
        S3ObjectStore::copy_object(self, from_bucket, from_key, to_bucket, to_key).await
    }
}
