//! [`S3Client`]: signed S3 and IAM calls over HTTP (path-style URLs), one blocking request at
//! a time. Request bodies are built by pure functions (tested below); answers are read with
//! [`crate::xml`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::Digest;

use crate::error::{Result, S3Error};
use crate::{Credentials, sigv4, xml};

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
        xml::first(&self.text(), "Code")
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One object version as listed by ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    pub delete_marker: bool,
}

/// One lifecycle rule for a versioned backup bucket: what expires under `prefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleRule {
    pub id: String,
    /// Keys the rule applies to (`""`: the whole bucket).
    pub prefix: String,
    /// Days after which a version that is no longer current is deleted (Object Lock still
    /// keeps it until its retention ends).
    pub noncurrent_version_expiration_days: Option<u32>,
    /// Remove delete markers that no longer hide any version.
    pub expired_object_delete_marker: bool,
    /// Days after which unfinished multipart uploads are aborted.
    pub abort_incomplete_multipart_upload_days: Option<u32>,
}

const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The body of PutObjectLockConfiguration: Object Lock enabled, a default retention.
pub(crate) fn object_lock_xml(mode: &str, days: u32) -> String {
    format!(
        "<ObjectLockConfiguration xmlns=\"{S3_XMLNS}\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>{}</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
        xml::escape(mode)
    )
}

/// The body of PutBucketVersioning.
pub(crate) fn versioning_xml(enabled: bool) -> String {
    let status = if enabled { "Enabled" } else { "Suspended" };
    format!(
        "<VersioningConfiguration xmlns=\"{S3_XMLNS}\"><Status>{status}</Status></VersioningConfiguration>"
    )
}

/// The body of PutBucketLifecycleConfiguration.
pub(crate) fn lifecycle_xml(rules: &[LifecycleRule]) -> String {
    let mut out = format!("<LifecycleConfiguration xmlns=\"{S3_XMLNS}\">");
    for r in rules {
        out.push_str(&format!(
            "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>Enabled</Status>",
            xml::escape(&r.id),
            xml::escape(&r.prefix)
        ));
        if r.expired_object_delete_marker {
            out.push_str(
                "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
            );
        }
        if let Some(d) = r.noncurrent_version_expiration_days {
            out.push_str(&format!(
                "<NoncurrentVersionExpiration><NoncurrentDays>{d}</NoncurrentDays></NoncurrentVersionExpiration>"
            ));
        }
        if let Some(d) = r.abort_incomplete_multipart_upload_days {
            out.push_str(&format!(
                "<AbortIncompleteMultipartUpload><DaysAfterInitiation>{d}</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
            ));
        }
        out.push_str("</Rule>");
    }
    out.push_str("</LifecycleConfiguration>");
    out
}

/// Reads the rules of a GetBucketLifecycleConfiguration answer.
pub(crate) fn parse_lifecycle(text: &str) -> Vec<LifecycleRule> {
    xml::blocks(text, "Rule")
        .iter()
        .map(|rule| {
            let days = |outer: &str, inner: &str| {
                xml::blocks(rule, outer)
                    .first()
                    .and_then(|b| xml::first(b, inner))
                    .and_then(|d| d.trim().parse().ok())
            };
            LifecycleRule {
                id: xml::first(rule, "ID").unwrap_or_default(),
                prefix: xml::first(rule, "Prefix").unwrap_or_default(),
                noncurrent_version_expiration_days: days(
                    "NoncurrentVersionExpiration",
                    "NoncurrentDays",
                ),
                expired_object_delete_marker: xml::first(rule, "ExpiredObjectDeleteMarker")
                    .is_some_and(|v| v.trim() == "true"),
                abort_incomplete_multipart_upload_days: days(
                    "AbortIncompleteMultipartUpload",
                    "DaysAfterInitiation",
                ),
            }
        })
        .collect()
}

/// Reads a ListObjectVersions answer (versions first, then delete markers).
pub(crate) fn parse_versions(text: &str) -> Vec<ObjectVersion> {
    let mut out = Vec::new();
    for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
        for block in xml::blocks(text, tag) {
            out.push(ObjectVersion {
                key: xml::first(&block, "Key").unwrap_or_default(),
                version_id: xml::first(&block, "VersionId").unwrap_or_default(),
                delete_marker: marker,
            });
        }
    }
    out
}

/// The form body of an IAM Query API call.
pub(crate) fn iam_form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .chain(std::iter::once(&("Version", "2010-05-08")))
        .map(|(k, v)| {
            format!(
                "{}={}",
                sigv4::uri_encode(k, false),
                sigv4::uri_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A minimal S3 (and IAM) client signing with SigV4, path-style URLs, plain HTTP.
pub struct S3Client {
    endpoint: String,
    region: String,
    creds: Credentials,
    agent: ureq::Agent,
    /// Waits before each retry of a request that could not be sent or that the server
    /// answered with a transient error (429, 500, 502, 503, 504): a blip of the network
    /// or of the provider does not fail a backup; a lasting outage does, within seconds.
    retry_delays: Vec<Duration>,
}

/// [`S3Client::new`]'s retries: three, after 0.5, 1 and 2 s.
const RETRY_DELAYS_MS: [u64; 3] = [500, 1000, 2000];

/// Whether an answer's status is worth another try.
fn transient(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `endpoint` (`http://host:port`) in `region`.
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
            retry_delays: RETRY_DELAYS_MS.map(Duration::from_millis).to_vec(),
        }
    }

    /// The same client with these waits before its retries (none: no retry).
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> S3Client {
        self.retry_delays = delays;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one signed request and returns the answer whatever its status, after
    /// retrying what failed transiently (see `retry_delays`). `path` is unencoded
    /// (`/bucket/key`).
    pub fn request(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<S3Response> {
        let mut delays = self.retry_delays.iter();
        loop {
            let r = self.request_once(service, method, path, query, extra_headers, body);
            let again = match &r {
                Ok(resp) => transient(resp.status),
                Err(S3Error::Transport { .. }) => true,
                Err(_) => false,
            };
            match delays.next() {
                Some(d) if again => std::thread::sleep(*d),
                _ => return r,
            }
        }
    }

    /// One signed request, no retry.
    fn request_once(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<S3Response> {
        let err = |message: String| S3Error::Transport {
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
            sign_content_sha256: true,
        };
        let signed = sigv4::sign(&req, &self.creds, &self.region, service, now);
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
            Err(S3Error::Refused {
                operation: op.into(),
                target: format!("{}{target}", self.endpoint),
                status: r.status,
                code: r.error_code().unwrap_or_else(|| r.text()),
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

    /// A bucket sub-resource PUT (`?object-lock`, `?versioning`, `?lifecycle`) with a checksum.
    fn put_config(&self, op: &str, bucket: &str, resource: &str, body: &str) -> Result<()> {
        let [a, b] = Self::checksum_headers(body.as_bytes());
        let path = format!("/{bucket}");
        let r = self.request(
            "s3",
            "PUT",
            &path,
            &[(resource, "")],
            &[(a.0, &a.1), (b.0, &b.1)],
            body.as_bytes(),
        )?;
        self.ok(op, &path, r).map(|_| ())
    }

    fn get_config(&self, op: &str, bucket: &str, resource: &str) -> Result<String> {
        let path = format!("/{bucket}");
        let r = self.request("s3", "GET", &path, &[(resource, "")], &[], b"")?;
        Ok(self.ok(op, &path, r)?.text())
    }

    /// An IAM Query API call (form-encoded POST), e.g. `[("Action", "CreateUser"), ...]`;
    /// returns the answer's XML.
    pub fn iam(&self, params: &[(&str, &str)]) -> Result<String> {
        let body = iam_form(params);
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

    /// IAM CreateUser.
    pub fn create_user(&self, user: &str) -> Result<()> {
        self.iam(&[("Action", "CreateUser"), ("UserName", user)])
            .map(|_| ())
    }

    /// IAM PutUserPolicy: an inline policy (JSON document) for `user`.
    pub fn put_user_policy(&self, user: &str, policy_name: &str, document: &str) -> Result<()> {
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", policy_name),
            ("PolicyDocument", document),
        ])
        .map(|_| ())
    }

    /// IAM CreateAccessKey: a new key pair for `user`.
    pub fn create_access_key(&self, user: &str) -> Result<Credentials> {
        let text = self.iam(&[("Action", "CreateAccessKey"), ("UserName", user)])?;
        match (
            xml::first(&text, "AccessKeyId"),
            xml::first(&text, "SecretAccessKey"),
        ) {
            (Some(id), Some(secret)) => Ok(Credentials::new(id, secret)),
            _ => Err(S3Error::Answer {
                operation: "CreateAccessKey".into(),
                target: self.endpoint.clone(),
                message: format!("no key for user `{user}` in the answer"),
            }),
        }
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

    /// HeadBucket: whether the bucket exists and these credentials may use it.
    pub fn head_bucket(&self, bucket: &str) -> Result<()> {
        let path = format!("/{bucket}");
        let r = self.request("s3", "HEAD", &path, &[], &[], b"")?;
        self.ok("HeadBucket", &path, r).map(|_| ())
    }

    /// Sets the bucket's default retention (`mode` `COMPLIANCE` or `GOVERNANCE`).
    pub fn put_object_lock_configuration(&self, bucket: &str, mode: &str, days: u32) -> Result<()> {
        self.put_config(
            "PutObjectLockConfiguration",
            bucket,
            "object-lock",
            &object_lock_xml(mode, days),
        )
    }

    /// (mode, days) of the bucket's default retention.
    pub fn get_object_lock_configuration(&self, bucket: &str) -> Result<(String, u32)> {
        let text = self.get_config("GetObjectLockConfiguration", bucket, "object-lock")?;
        let mode = xml::first(&text, "Mode").unwrap_or_default();
        // The default retention is in Days or in Years.
        let days = xml::first(&text, "Days")
            .and_then(|d| d.trim().parse().ok())
            .or_else(|| {
                xml::first(&text, "Years")
                    .and_then(|y| y.trim().parse::<u32>().ok())
                    .map(|y| y.saturating_mul(365))
            })
            .unwrap_or(0);
        Ok((mode, days))
    }

    /// Enables (or suspends) versioning; Object Lock buckets are always versioned.
    pub fn put_bucket_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        self.put_config(
            "PutBucketVersioning",
            bucket,
            "versioning",
            &versioning_xml(enabled),
        )
    }

    /// The versioning status (`Enabled`, `Suspended`), `None` when never set.
    pub fn get_bucket_versioning(&self, bucket: &str) -> Result<Option<String>> {
        let text = self.get_config("GetBucketVersioning", bucket, "versioning")?;
        Ok(xml::first(&text, "Status"))
    }

    /// Replaces the bucket's lifecycle rules.
    pub fn put_bucket_lifecycle(&self, bucket: &str, rules: &[LifecycleRule]) -> Result<()> {
        self.put_config(
            "PutBucketLifecycleConfiguration",
            bucket,
            "lifecycle",
            &lifecycle_xml(rules),
        )
    }

    /// The bucket's lifecycle rules.
    pub fn get_bucket_lifecycle(&self, bucket: &str) -> Result<Vec<LifecycleRule>> {
        let text = self.get_config("GetBucketLifecycleConfiguration", bucket, "lifecycle")?;
        Ok(parse_lifecycle(&text))
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

    /// HeadObject; its headers carry the version's lock (`x-amz-object-lock-mode`,
    /// `x-amz-object-lock-retain-until-date`).
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

    /// Deletes version `version_id` of an object, asking to bypass a GOVERNANCE retention
    /// (`x-amz-bypass-governance-retention`): the strongest delete a credential can try.
    /// Returns the raw answer.
    pub fn delete_version_bypassing_governance(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<S3Response> {
        let path = format!("/{bucket}/{key}");
        self.request(
            "s3",
            "DELETE",
            &path,
            &[("versionId", version_id)],
            &[("x-amz-bypass-governance-retention", "true")],
            b"",
        )
    }

    /// Every current object under `prefix` with its size, all pages (ListObjectsV2).
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = format!("/{bucket}");
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let r = self.request("s3", "GET", &path, &q, &[], b"")?;
            let text = self.ok("ListObjectsV2", &path, r)?.text();
            for block in xml::blocks(&text, "Contents") {
                let key = xml::first(&block, "Key").unwrap_or_default();
                let size = xml::first(&block, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push((key, size));
            }
            token = (xml::first(&text, "IsTruncated").as_deref() == Some("true"))
                .then(|| xml::first(&text, "NextContinuationToken"))
                .flatten();
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// `length` bytes of an object from `offset` (a ranged GetObject).
    pub fn get_object_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let path = format!("/{bucket}/{key}");
        let range = format!("bytes={offset}-{}", offset + length.max(1) - 1);
        let r = self.request("s3", "GET", &path, &[], &[("range", &range)], b"")?;
        Ok(self.ok("GetObject", &path, r)?.body)
    }

    /// Every version and delete marker under `prefix` (one page: up to 1000 entries).
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
        Ok(parse_versions(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-thread HTTP server on loopback answering its connections in turn: `None`
    /// drops the connection unanswered, `Some(status)` answers with that status and a
    /// body `ok`. Returns its endpoint and how many connections it saw.
    fn scripted(
        answers: Vec<Option<u16>>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                if let Some(status) = answer {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                }
            }
        });
        (endpoint, seen)
    }

    fn client(endpoint: &str, retries: usize) -> S3Client {
        S3Client::new(endpoint, "us-east-1", Credentials::new("id", "secret"))
            .with_retry_delays(vec![Duration::from_millis(10); retries])
    }

    #[test]
    fn a_dropped_connection_and_a_503_are_retried_then_the_answer_returned() {
        let (endpoint, seen) = scripted(vec![None, Some(503), Some(200)]);
        let body = client(&endpoint, 3).get_object("b", "k", None).unwrap();
        assert_eq!(body, b"ok");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_lasting_outage_fails_after_the_retries_naming_the_endpoint() {
        let (endpoint, seen) = scripted(vec![Some(503); 5]);
        let err = client(&endpoint, 2).get_object("b", "k", None).unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(err.to_string().contains(&endpoint), "{err}");
        // A refusal that is no outage is not retried.
        let (endpoint, seen) = scripted(vec![Some(403), Some(200)]);
        let err = client(&endpoint, 2).get_object("b", "k", None).unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn lifecycle_rules_round_trip_and_escape_their_values() {
        let rules = vec![
            LifecycleRule {
                id: "old <versions>".into(),
                prefix: "data/".into(),
                noncurrent_version_expiration_days: Some(30),
                expired_object_delete_marker: true,
                abort_incomplete_multipart_upload_days: Some(2),
            },
            LifecycleRule {
                id: "markers".into(),
                ..Default::default()
            },
        ];
        let body = lifecycle_xml(&rules);
        assert!(body.contains("<ID>old &lt;versions&gt;</ID>"), "{body}");
        assert!(
            body.contains("<NoncurrentDays>30</NoncurrentDays>"),
            "{body}"
        );
        assert_eq!(parse_lifecycle(&body), rules);
    }

    #[test]
    fn object_lock_and_versioning_bodies() {
        let b = object_lock_xml("COMPLIANCE", 7);
        assert!(
            b.contains("<DefaultRetention><Mode>COMPLIANCE</Mode><Days>7</Days>"),
            "{b}"
        );
        assert_eq!(
            xml::first(&b, "ObjectLockEnabled").as_deref(),
            Some("Enabled")
        );
        assert_eq!(
            xml::first(&versioning_xml(true), "Status").as_deref(),
            Some("Enabled")
        );
        assert_eq!(
            xml::first(&versioning_xml(false), "Status").as_deref(),
            Some("Suspended")
        );
    }

    #[test]
    fn versions_and_delete_markers_are_told_apart() {
        let x = "<ListVersionsResult><Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version><DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId></DeleteMarker></ListVersionsResult>";
        assert_eq!(
            parse_versions(x),
            vec![
                ObjectVersion {
                    key: "a&b".into(),
                    version_id: "1".into(),
                    delete_marker: false
                },
                ObjectVersion {
                    key: "a&b".into(),
                    version_id: "2".into(),
                    delete_marker: true
                },
            ]
        );
    }

    #[test]
    fn iam_form_encodes_every_value() {
        assert_eq!(
            iam_form(&[
                ("Action", "PutUserPolicy"),
                ("PolicyDocument", "{\"a\": 1}")
            ]),
            "Action=PutUserPolicy&PolicyDocument=%7B%22a%22%3A%201%7D&Version=2010-05-08"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = S3Client::new(
            "http://127.0.0.1:1/",
            "r",
            Credentials::new("AKIA", "planted-secret"),
        );
        let d = format!("{c:?}");
        assert!(d.contains("AKIA") && !d.contains("planted-secret"), "{d}");
        assert_eq!(c.endpoint(), "http://127.0.0.1:1");
    }

    #[test]
    fn a_refused_connection_names_the_operation_and_endpoint() {
        // Port 1 on loopback: nothing listens there.
        let c = S3Client::new("http://127.0.0.1:1", "r", Credentials::new("AKIA", "s"));
        let err = c.head_bucket("b").unwrap_err().to_string();
        assert!(
            err.contains("HEAD /b") && err.contains("http://127.0.0.1:1"),
            "{err}"
        );
    }
}
