//! S3 with Object Lock for the lab (filled in below).

use serde::{Deserialize, Serialize};

/// What the lab recorded about its S3 server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3State {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub retention_days: u32,
    pub admin: Credentials,
    pub server: Credentials,
}

/// An access key pair.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}
