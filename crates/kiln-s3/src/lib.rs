//! kiln's S3 client: AWS Signature Version 4 ([`sigv4`]) and [`S3Client`], the S3 and IAM
//! calls kiln needs for backups under Object Lock and for the lab's S3 server: buckets with
//! Object Lock and default retention, versioning, lifecycle rules, objects and their versions,
//! and IAM users, inline policies and access keys.
//!
//! Owns: request signing, the HTTP exchange, the few XML bodies and answers involved.
//! Must not: print, read AWS config files or the environment (credentials come in as
//! [`Credentials`], their secret a redacting [`Secret`]), or start servers (the lab does).

mod client;
mod error;
pub mod sigv4;
pub mod xml;

pub use client::{LifecycleRule, ObjectVersion, S3Client, S3Response};
pub use error::{Result, S3Error};
pub use kiln_secrets::Secret;

/// An access key pair. `Debug` shows the key id and never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_redacts_the_secret() {
        let c = Credentials {
            access_key_id: "AKIA1".into(),
            secret_access_key: Secret::new("very-secret"),
        };
        let d = format!("{c:?}");
        assert!(d.contains("AKIA1") && !d.contains("very-secret"), "{d}");
    }
}
