//! The stand-in's S3 writes, as Encoding.com makes them (a canned ACL on every object,
//! written as a foreign account), judged first by the rules S3 would apply and moto does
//! not: Object Ownership, Block Public Access, the bucket policy.

use super::{Ctx, CANONICAL_USER_ID};
use serde_json::Value;
use std::path::PathBuf;

/// One object to write: where, and with which ACL.
pub(super) struct Put {
    pub path: PathBuf,
    pub bucket: String,
    pub key: String,
    pub acl: String,
    pub canonical_id: Option<String>,
}

fn code_of<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    e.as_service_error().and_then(|s| s.code()).unwrap_or("").to_string()
}

/// What S3 would say to this write, judged from the bucket's settings as the emulator
/// stores them (moto enforces none of them). A bucket without Object Ownership or Block
/// Public Access settings gets S3's defaults for new buckets: `BucketOwnerEnforced` and
/// every block on.
async fn check_write(ctx: &Ctx, bucket: &str, acl: &str) -> anyhow::Result<()> {
    let ownership = match ctx.s3.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(o) => o
            .ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string()),
        Err(e) if code_of(&e).contains("NotFound") => None,
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    }
    .unwrap_or_else(|| "BucketOwnerEnforced".into());
    let block_public_acls = match ctx.s3.get_public_access_block().bucket(bucket).send().await {
        Ok(o) => o
            .public_access_block_configuration()
            .and_then(|c| c.block_public_acls())
            .unwrap_or(false),
        Err(e) if code_of(&e).contains("NoSuchPublicAccessBlock") => true,
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    };
    if ownership == "BucketOwnerEnforced" && acl != "bucket-owner-full-control" {
        anyhow::bail!(
            "Saving failed: s3://{bucket}: AccessControlListNotSupported: The bucket does not allow ACLs (Object Ownership is BucketOwnerEnforced; the object was written with ACL {acl})"
        );
    }
    if block_public_acls && ["public-read", "public-read-write", "authenticated-read"].contains(&acl) {
        anyhow::bail!(
            "Saving failed: s3://{bucket}: AccessDenied: the public ACL {acl} is blocked by the bucket's BlockPublicAcls setting"
        );
    }
    // the stand-in writes as Encoding.com does, as a foreign account: the bucket's
    // policy must let its canonical user put objects
    let policy = match ctx.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(p) => p.policy().unwrap_or_default().to_string(),
        Err(e) if code_of(&e).contains("NoSuchBucketPolicy") => String::new(),
        Err(e) => anyhow::bail!(
            "Saving failed: s3://{bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    };
    anyhow::ensure!(
        policy_lets_us_put(&policy),
        "Saving failed: s3://{bucket}: AccessDenied: the bucket policy does not grant s3:PutObject to Encoding.com's canonical user"
    );
    Ok(())
}

fn listed(v: Option<&Value>, want: impl Fn(&str) -> bool) -> bool {
    match v {
        Some(Value::String(s)) => want(s),
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str().is_some_and(&want)),
        _ => false,
    }
}

fn policy_lets_us_put(policy: &str) -> bool {
    let Ok(p) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let statements = match p.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return false,
    };
    statements.iter().any(|st| {
        st.get("Effect").and_then(|e| e.as_str()) == Some("Allow")
            && listed(st.get("Principal").and_then(|p| p.get("CanonicalUser")), |c| {
                c == CANONICAL_USER_ID
            })
            && listed(st.get("Action"), |a| a == "s3:PutObject" || a == "s3:*")
    })
}

pub(super) async fn put(ctx: &Ctx, p: &Put) -> anyhow::Result<()> {
    check_write(ctx, &p.bucket, &p.acl).await?;
    ctx.s3
        .put_object()
        .bucket(&p.bucket)
        .key(&p.key)
        .acl(aws_sdk_s3::types::ObjectCannedAcl::from(p.acl.as_str()))
        .content_type(nommer_core::content_type::of(&p.key))
        .body(aws_sdk_s3::primitives::ByteStream::from_path(&p.path).await?)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("Saving failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    if let Some(id) = &p.canonical_id {
        // documented: `canonical_id` gets FULL_CONTROL on the object, beside the ACL's grant
        let mut req = ctx
            .s3
            .put_object_acl()
            .bucket(&p.bucket)
            .key(&p.key)
            .grant_full_control(format!("id={id}"));
        match p.acl.as_str() {
            "authenticated-read" => {
                req = req.grant_read("uri=\"http://acs.amazonaws.com/groups/global/AuthenticatedUsers\"")
            }
            "public-read" => req = req.grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""),
            _ => {}
        }
        req.send()
            .await
            .map_err(|e| anyhow::anyhow!("Saving failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}
