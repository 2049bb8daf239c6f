//! S3 with Object Lock for the lab: moto's server (from PyPI) started in the lab's cgroup on the
//! host side of the bridge, with IAM enforcement switched on after setup, a bucket created with
//! Object Lock and a default COMPLIANCE retention, and three credentials: `admin` (everything),
//! `server` (write/read, never delete versions nor touch the lock) and `readonly` (list and
//! read, nothing else), the three `[backups.credentials]` names. The client itself is
//! `kiln_s3` (shared with kiln's backups); what the lab records is [`S3State`] in `layout.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use kiln_s3::{Credentials, ObjectVersion, S3Client, S3Response};

use crate::error::{LabError, Result};
pub use crate::layout::S3State;
use crate::layout::{self, Roots, S3_PORT};
use crate::process::{self, Restart};

/// How to set up the lab's S3 server.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    pub retention_days: u32,
    pub region: String,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            bucket: "kiln-backups".into(),
            retention_days: 7,
            region: "us-east-1".into(),
        }
    }
}

/// The moto server program: `KILN_LAB_MOTO_SERVER`, the venv `.ci/install-lab.sh` makes, or PATH.
pub fn moto_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KILN_LAB_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/opt/kiln-lab/venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    crate::cmd::which("moto_server")
}

/// IAM calls made before authentication starts: moto counts them (INITIAL_NO_AUTH_ACTION_COUNT).
const SETUP_CALLS: usize = 9;

fn server_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:GetObjectVersion","s3:DeleteObject","s3:ListBucket","s3:ListBucketVersions","s3:HeadBucket","s3:GetBucketLocation","s3:GetBucketVersioning","s3:GetBucketObjectLockConfiguration"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Effect":"Deny","Action":["s3:DeleteObjectVersion","s3:BypassGovernanceRetention","s3:PutObjectRetention","s3:PutObjectLegalHold","s3:PutBucketObjectLockConfiguration","s3:PutBucketVersioning","s3:PutLifecycleConfiguration","s3:PutBucketPolicy","s3:DeleteBucket","s3:DeleteBucketPolicy","s3:CreateBucket"],"Resource":"*"}}]}}"#
    )
}

/// Read and list the bucket, nothing else: drills and the runbook's paper page.
fn readonly_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject","s3:GetObjectVersion","s3:ListBucket","s3:ListBucketVersions","s3:HeadBucket","s3:GetBucketLocation","s3:GetBucketVersioning","s3:GetBucketObjectLockConfiguration"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// Starts moto for the lab on `host:S3_PORT` and sets up users, keys and the locked bucket.
pub fn start(roots: &Roots, lab: &str, host: IpAddr, opts: &S3Options) -> Result<S3State> {
    let bin = moto_binary().ok_or_else(|| LabError::MissingPrerequisites {
        missing: vec![
            "moto_server (PyPI moto[server]): the lab's S3 server with Object Lock".into(),
        ],
        hint: "run .ci/install-lab.sh (a venv in /opt/kiln-lab/venv), or set KILN_LAB_MOTO_SERVER"
            .into(),
    })?;
    let log = roots.lab_dir(lab).join("s3.log");
    let argv = vec![
        bin.display().to_string(),
        "-H".into(),
        host.to_string(),
        "-p".into(),
        S3_PORT.to_string(),
    ];
    let count = SETUP_CALLS.to_string();
    let mut child = process::spawn_in_cgroups(
        &layout::cgroup_dirs(lab, "s3"),
        &argv,
        &[
            ("INITIAL_NO_AUTH_ACTION_COUNT", count.as_str()),
            ("MOTO_ALLOW_NONEXISTENT_REGION", "false"),
        ],
        &log,
        Restart::Never,
    )?;
    let sock = SocketAddr::new(host, S3_PORT);
    process::wait_listening(
        &mut child,
        &argv,
        sock,
        &log,
        Duration::from_secs(60),
        "the S3 server",
    )?;
    // The launcher is in the lab's cgroup; teardown kills it.
    std::mem::drop(child);
    let endpoint = format!("http://{sock}");
    // Exactly SETUP_CALLS unauthenticated IAM calls; every later request is checked.
    let anon = S3Client::new(&endpoint, &opts.region, Credentials::new("setup", "setup"));
    anon.create_user("admin")?;
    anon.put_user_policy("admin", "admin", ADMIN_POLICY)?;
    let admin = anon.create_access_key("admin")?;
    anon.create_user("server")?;
    anon.put_user_policy("server", "server-no-delete", &server_policy(&opts.bucket))?;
    let server = anon.create_access_key("server")?;
    anon.create_user("readonly")?;
    anon.put_user_policy("readonly", "readonly", &readonly_policy(&opts.bucket))?;
    let readonly = anon.create_access_key("readonly")?;

    let client = S3Client::new(&endpoint, &opts.region, admin.clone());
    client.create_bucket(&opts.bucket, true)?;
    client.put_object_lock_configuration(&opts.bucket, "COMPLIANCE", opts.retention_days)?;
    Ok(S3State {
        endpoint,
        bucket: opts.bucket.clone(),
        region: opts.region.clone(),
        retention_days: opts.retention_days,
        admin,
        server,
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_policy_denies_version_deletes_and_lock_changes() {
        let p: serde_json::Value = serde_json::from_str(&server_policy("b")).unwrap();
        let deny = &p["Statement"][1];
        assert_eq!(deny["Effect"], "Deny");
        let actions: Vec<&str> = deny["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for a in [
            "s3:DeleteObjectVersion",
            "s3:BypassGovernanceRetention",
            "s3:PutBucketObjectLockConfiguration",
        ] {
            assert!(actions.contains(&a), "{a}");
        }
        serde_json::from_str::<serde_json::Value>(ADMIN_POLICY).unwrap();
        let r: serde_json::Value = serde_json::from_str(&readonly_policy("b")).unwrap();
        let allowed = r["Statement"][0]["Action"].as_array().unwrap();
        assert!(
            allowed.iter().all(|a| {
                let a = a.as_str().unwrap();
                a.starts_with("s3:Get") || a.starts_with("s3:List") || a == "s3:HeadBucket"
            }),
            "{allowed:?}"
        );
    }
}
