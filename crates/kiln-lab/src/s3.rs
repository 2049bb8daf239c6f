//! S3 with Object Lock for the lab: moto's server (from PyPI) started in the lab's cgroup on the
//! host side of the bridge, with IAM enforcement switched on after setup, a bucket created with
//! Object Lock and a default COMPLIANCE retention, and two credentials: `admin` (everything) and
//! `server` (write/read, never delete versions nor touch the lock). Also the small SigV4 client
//! used for all of it ([`S3Client`]), meant to be reused by kiln's backups.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{LabError, Result};
use crate::layout::{self, Roots, S3_PORT};
use crate::process::{self, Restart};
use crate::sigv4;

/// What the lab recorded about its S3 server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3State {
    /// `http://<host side address>:<port>`, reachable from the host and from the servers.
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

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct S3Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl S3Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The S3 error code of an error answer (`AccessDenied`, ...).
    pub fn error_code(&self) -> Option<String> {
        xml_values(&self.text(), "Code").into_iter().next()
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Values of every `<tag>...</tag>` in `xml` (no nesting of the same tag).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    out
}

/// One object version as listed by ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    pub delete_marker: bool,
}

/// A minimal S3 (and IAM) client signing with SigV4, path-style URLs, plain HTTP.
pub struct S3Client {
    endpoint: String,
    region: String,
    creds: Credentials,
    agent: ureq::Agent,
}

impl S3Client {
    pub fn new(endpoint: &str, region: &str, creds: Credentials) -> S3Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        S3Client {
            endpoint: endpoint.trim_end_matches('/').into(),
            region: region.into(),
            creds,
            agent,
        }
    }

    /// Sends one signed request. `path` is unencoded (`/bucket/key`).
    pub fn request(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<S3Response> {
        let err = |message: String| LabError::S3 {
            operation: format!("{method} {path}"),
            target: self.endpoint.clone(),
            message,
        };
        let host = self
            .endpoint
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.endpoint)
            .to_string();
        let enc_path = sigv4::uri_encode(path, true);
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut headers: Vec<(String, String)> = vec![("host".into(), host)];
        headers.extend(
            extra_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
        );
        let payload = sigv4::sha256_hex(body);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let req = sigv4::Request {
            method,
            path: &enc_path,
            query: &query,
            headers: &headers,
            payload_sha256: &payload,
        };
        let signed = sigv4::sign(
            &req,
            &self.creds.access_key_id,
            &self.creds.secret_access_key,
            &self.region,
            service,
            now,
        );
        let qs = sigv4::canonical_query(&query);
        let url = if qs.is_empty() {
            format!("{}{enc_path}", self.endpoint)
        } else {
            format!("{}{enc_path}?{qs}", self.endpoint)
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in &signed {
            if k != "host" {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        let http_req = builder
            .body(body.to_vec())
            .map_err(|e| err(e.to_string()))?;
        let mut resp = self.agent.run(http_req).map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| err(e.to_string()))?;
        Ok(S3Response {
            status,
            headers,
            body,
        })
    }

    fn ok(&self, op: &str, target: &str, r: S3Response) -> Result<S3Response> {
        if r.is_success() {
            Ok(r)
        } else {
            Err(LabError::S3 {
                operation: op.into(),
                target: format!("{}{target}", self.endpoint),
                message: format!(
                    "HTTP {} {}",
                    r.status,
                    r.error_code().unwrap_or_else(|| r.text())
                ),
            })
        }
    }

    fn checksum_headers(body: &[u8]) -> [(&'static str, String); 2] {
        let sum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
        [
            ("x-amz-sdk-checksum-algorithm", "SHA256".into()),
            ("x-amz-checksum-sha256", sum),
        ]
    }

    /// An IAM Query API call (form-encoded POST), e.g. `[("Action", "CreateUser"), ...]`.
    pub fn iam(&self, params: &[(&str, &str)]) -> Result<String> {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.push(("Version", "2010-05-08"));
        let body = all
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, false),
                    sigv4::uri_encode(v, false)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let r = self.request(
            "iam",
            "POST",
            "/",
            &[],
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body.as_bytes(),
        )?;
        let action = params
            .iter()
            .find(|(k, _)| *k == "Action")
            .map(|(_, v)| *v)
            .unwrap_or("IAM call");
        Ok(self.ok(action, "/", r)?.text())
    }

    pub fn create_bucket(&self, bucket: &str, object_lock: bool) -> Result<()> {
        let mut h: Vec<(&str, &str)> = Vec::new();
        if object_lock {
            h.push(("x-amz-bucket-object-lock-enabled", "true"));
        }
        let path = format!("/{bucket}");
        let r = self.request("s3", "PUT", &path, &[], &h, b"")?;
        self.ok("CreateBucket", &path, r).map(|_| ())
    }

    pub fn put_object_lock_configuration(&self, bucket: &str, mode: &str, days: u32) -> Result<()> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
        );
        let [a, b] = Self::checksum_headers(body.as_bytes());
        let path = format!("/{bucket}");
        let r = self.request(
            "s3",
            "PUT",
            &path,
            &[("object-lock", "")],
            &[(a.0, &a.1), (b.0, &b.1)],
            body.as_bytes(),
        )?;
        self.ok("PutObjectLockConfiguration", &path, r).map(|_| ())
    }

    /// (mode, days) of the bucket's default retention.
    pub fn get_object_lock_configuration(&self, bucket: &str) -> Result<(String, u32)> {
        let path = format!("/{bucket}");
        let r = self.request("s3", "GET", &path, &[("object-lock", "")], &[], b"")?;
        let text = self.ok("GetObjectLockConfiguration", &path, r)?.text();
        let mode = xml_values(&text, "Mode")
            .into_iter()
            .next()
            .unwrap_or_default();
        let days = xml_values(&text, "Days")
            .into_iter()
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        Ok((mode, days))
    }

    /// Uploads an object (with a checksum, as Object Lock buckets require); returns its version id.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<String> {
        let [a, b] = Self::checksum_headers(body);
        let path = format!("/{bucket}/{key}");
        let r = self.request("s3", "PUT", &path, &[], &[(a.0, &a.1), (b.0, &b.1)], body)?;
        let r = self.ok("PutObject", &path, r)?;
        Ok(r.header("x-amz-version-id").unwrap_or_default().to_string())
    }

    pub fn get_object(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Vec<u8>> {
        let path = format!("/{bucket}/{key}");
        let q: Vec<(&str, &str)> = version_id
            .map(|v| vec![("versionId", v)])
            .unwrap_or_default();
        let r = self.request("s3", "GET", &path, &q, &[], b"")?;
        Ok(self.ok("GetObject", &path, r)?.body)
    }

    pub fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<S3Response> {
        let path = format!("/{bucket}/{key}");
        let q: Vec<(&str, &str)> = version_id
            .map(|v| vec![("versionId", v)])
            .unwrap_or_default();
        let r = self.request("s3", "HEAD", &path, &q, &[], b"")?;
        self.ok("HeadObject", &path, r)
    }

    /// Deletes an object (a delete marker without `version_id`); returns the raw answer so
    /// callers can tell a refusal (`AccessDenied`) from success.
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<S3Response> {
        let path = format!("/{bucket}/{key}");
        let q: Vec<(&str, &str)> = version_id
            .map(|v| vec![("versionId", v)])
            .unwrap_or_default();
        self.request("s3", "DELETE", &path, &q, &[], b"")
    }

    pub fn list_object_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let path = format!("/{bucket}");
        let r = self.request(
            "s3",
            "GET",
            &path,
            &[("versions", ""), ("prefix", prefix)],
            &[],
            b"",
        )?;
        let text = self.ok("ListObjectVersions", &path, r)?.text();
        let mut out = Vec::new();
        for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
            for block in xml_values(&text, tag) {
                out.push(ObjectVersion {
                    key: xml_values(&block, "Key")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                    version_id: xml_values(&block, "VersionId")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                    delete_marker: marker,
                });
            }
        }
        Ok(out)
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
const SETUP_CALLS: usize = 6;

fn server_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:GetObjectVersion","s3:DeleteObject","s3:ListBucket","s3:ListBucketVersions","s3:HeadBucket","s3:GetBucketLocation","s3:GetBucketVersioning","s3:GetBucketObjectLockConfiguration"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Effect":"Deny","Action":["s3:DeleteObjectVersion","s3:BypassGovernanceRetention","s3:PutObjectRetention","s3:PutObjectLegalHold","s3:PutBucketObjectLockConfiguration","s3:PutBucketVersioning","s3:PutLifecycleConfiguration","s3:PutBucketPolicy","s3:DeleteBucket","s3:DeleteBucketPolicy","s3:CreateBucket"],"Resource":"*"}}]}}"#
    )
}

const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

fn access_key(xml: &str) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: xml_values(xml, "AccessKeyId").into_iter().next()?,
        secret_access_key: xml_values(xml, "SecretAccessKey").into_iter().next()?,
    })
}

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
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Command {
                command: argv.join(" "),
                status: status.to_string(),
                stderr: std::fs::read_to_string(&log).unwrap_or_default(),
                hint: None,
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                server: "(host)".into(),
                what: format!("S3 server on {sock}"),
                seconds: 60,
                hint: Some(format!("see {}", log.display())),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The launcher is in the lab's cgroup; teardown kills it.
    std::mem::drop(child);
    let endpoint = format!("http://{sock}");
    // Exactly SETUP_CALLS unauthenticated IAM calls; every later request is checked.
    let anon = S3Client::new(
        &endpoint,
        &opts.region,
        Credentials {
            access_key_id: "setup".into(),
            secret_access_key: "setup".into(),
        },
    );
    anon.iam(&[("Action", "CreateUser"), ("UserName", "admin")])?;
    anon.iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "admin"),
        ("PolicyName", "admin"),
        ("PolicyDocument", ADMIN_POLICY),
    ])?;
    let admin = access_key(&anon.iam(&[("Action", "CreateAccessKey"), ("UserName", "admin")])?)
        .ok_or_else(|| LabError::S3 {
            operation: "CreateAccessKey".into(),
            target: endpoint.clone(),
            message: "no key in the answer".into(),
        })?;
    anon.iam(&[("Action", "CreateUser"), ("UserName", "server")])?;
    let policy = server_policy(&opts.bucket);
    anon.iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "server"),
        ("PolicyName", "server-no-delete"),
        ("PolicyDocument", &policy),
    ])?;
    let server = access_key(&anon.iam(&[("Action", "CreateAccessKey"), ("UserName", "server")])?)
        .ok_or_else(|| LabError::S3 {
        operation: "CreateAccessKey".into(),
        target: endpoint.clone(),
        message: "no key in the answer".into(),
    })?;

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
    })
}

impl S3State {
    pub fn admin_client(&self) -> S3Client {
        S3Client::new(&self.endpoint, &self.region, self.admin.clone())
    }
    pub fn server_client(&self) -> S3Client {
        S3Client::new(&self.endpoint, &self.region, self.server.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_reads_repeated_tags() {
        let x = "<R><Version><Key>a</Key><VersionId>1</VersionId></Version><Version><Key>b</Key><VersionId>2</VersionId></Version></R>";
        let v = xml_values(x, "Version");
        assert_eq!(v.len(), 2);
        assert_eq!(xml_values(&v[1], "Key"), vec!["b".to_string()]);
        assert!(xml_values(x, "Missing").is_empty());
    }

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
    }

    #[test]
    fn credentials_debug_redacts_the_secret() {
        let c = Credentials {
            access_key_id: "AKIA1".into(),
            secret_access_key: "very-secret".into(),
        };
        let d = format!("{c:?}");
        assert!(d.contains("AKIA1") && !d.contains("very-secret"), "{d}");
    }
}
