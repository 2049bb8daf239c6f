//! What `kiln backup init` verifies of the bucket before it trusts it with backups: Object
//! Lock on with a default retention of at least the model's `object_lock_days`, versioning
//! on, a lifecycle rule expiring non-current versions (else storage grows forever), and
//! that the **server credential cannot delete**: a canary object is written and deleting
//! its version with the server credential must be refused.
//!
//! Pure S3 calls through [`kiln_s3::S3Client`]; each finding says what to fix.

use kiln_s3::{S3Client, S3Error};

/// Where the canary goes, under the repository's prefix.
pub const CANARY: &str = "kiln-canary";

/// One problem with the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// No Object Lock configuration (or no default retention).
    NoObjectLock { bucket: String },
    /// A default retention shorter than asked.
    ShortRetention {
        bucket: String,
        mode: String,
        days: u32,
        wanted: u32,
    },
    /// Versioning is not enabled.
    NoVersioning { bucket: String },
    /// No rule expires non-current versions.
    NoLifecycle { bucket: String },
    /// The servers' credential may not write there: the servers could not back up.
    ServerCannotWrite {
        bucket: String,
        key: String,
        answer: String,
    },
    /// The server credential deleted a version: a compromised server could destroy the
    /// backups.
    ServerCanDelete { bucket: String, key: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NoObjectLock { bucket } => write!(
                f,
                "bucket {bucket} has no Object Lock default retention: a compromised server could delete the backups\n  hint: create the bucket with Object Lock enabled (it cannot be added later at most providers) and a default retention in COMPLIANCE mode, or set `allow_unlocked = true` in [backups] to accept the risk"
            ),
            Finding::ShortRetention {
                bucket,
                mode,
                days,
                wanted,
            } => write!(
                f,
                "bucket {bucket} keeps object versions {days} day(s) ({mode}), [backups] object_lock_days asks {wanted}\n  hint: raise the bucket's default retention to at least {wanted} days"
            ),
            Finding::NoVersioning { bucket } => write!(
                f,
                "bucket {bucket} does not keep object versions (versioning is off)\n  hint: turn versioning on (Object Lock needs it)"
            ),
            Finding::NoLifecycle { bucket } => write!(
                f,
                "bucket {bucket} has no lifecycle rule expiring non-current versions: storage grows forever\n  hint: add one expiring non-current versions after the retention (`kiln backup init --set-lifecycle` sets it)"
            ),
            Finding::ServerCannotWrite {
                bucket,
                key,
                answer,
            } => write!(
                f,
                "the servers' credential may not write {bucket}/{key} ({answer}): the servers could not back up\n  hint: allow s3:PutObject, s3:GetObject and s3:ListBucket on the bucket to the servers' credential"
            ),
            Finding::ServerCanDelete { bucket, key } => write!(
                f,
                "the servers' credential was not refused deleting a version of {bucket}/{key}: a compromised server could destroy the backups\n  hint: deny s3:DeleteObjectVersion (and s3:BypassGovernanceRetention, s3:PutObjectRetention, s3:PutBucketObjectLockConfiguration, s3:PutBucketVersioning, s3:PutLifecycleConfiguration) to the servers' credential in its policy"
            ),
        }
    }
}

/// Checks `bucket` with the admin credential (`admin`) and proves that the servers'
/// credential (`server`) cannot delete a version under `prefix`. Returns every finding
/// (empty: the bucket is fit). An S3 call that fails for another reason is an error.
pub fn verify(
    admin: &S3Client,
    server: &S3Client,
    bucket: &str,
    prefix: &str,
    object_lock_days: u32,
) -> Result<Vec<Finding>, S3Error> {
    let mut out = vec![];
    let b = || bucket.to_owned();
    match admin.get_object_lock_configuration(bucket) {
        Ok((mode, days)) if days == 0 || mode.is_empty() => {
            out.push(Finding::NoObjectLock { bucket: b() })
        }
        Ok((mode, days)) if days < object_lock_days => out.push(Finding::ShortRetention {
            bucket: b(),
            mode,
            days,
            wanted: object_lock_days,
        }),
        Ok(_) => {}
        Err(S3Error::Refused { status: 404, .. }) => {
            out.push(Finding::NoObjectLock { bucket: b() })
        }
        Err(e) => return Err(e),
    }
    if admin.get_bucket_versioning(bucket)?.as_deref() != Some("Enabled") {
        out.push(Finding::NoVersioning { bucket: b() });
    }
    let rules = match admin.get_bucket_lifecycle(bucket) {
        Ok(r) => r,
        Err(S3Error::Refused { status: 404, .. }) => vec![],
        Err(e) => return Err(e),
    };
    if !rules
        .iter()
        .any(|r| r.noncurrent_version_expiration_days.is_some())
    {
        out.push(Finding::NoLifecycle { bucket: b() });
    }
    // The canary: written by the server, its version deleted by the server.
    let key = format!("{}/{CANARY}", prefix.trim_matches('/'))
        .trim_start_matches('/')
        .to_owned();
    let version = match server.put_object(
        bucket,
        &key,
        b"kiln: this version must not be deletable by the servers' credential\n",
    ) {
        Ok(v) => v,
        Err(S3Error::Refused {
            status: 403, code, ..
        }) => {
            out.push(Finding::ServerCannotWrite {
                bucket: b(),
                key,
                answer: format!("HTTP 403 {code}"),
            });
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    if version.is_empty() {
        // No version id: the bucket does not keep versions (found above); nothing to try.
        return Ok(out);
    }
    // The strongest delete there is: a GOVERNANCE retention gives way to a credential
    // allowed to bypass it, a COMPLIANCE one to nobody.
    let answer = server.delete_version_bypassing_governance(bucket, &key, &version)?;
    // Only a refusal of the permission counts; any other answer (a success, an error of
    // another kind) leaves the question open, which is not good enough.
    if !(answer.status == 403 && answer.error_code().as_deref() == Some("AccessDenied")) {
        out.push(Finding::ServerCanDelete { bucket: b(), key });
    }
    Ok(out)
}
