//! End-to-end: the lab's S3 server (moto) with Object Lock and enforced IAM. The server
//! credential can write but is refused when deleting a locked object version; COMPLIANCE
//! retention refuses even the admin; unknown keys are refused; servers reach the endpoint.

mod common;

use kiln_lab::{Credentials, Lab, LabOptions, S3Client, S3Options};

#[test]
fn locked_versions_cannot_be_deleted_with_the_server_credential() {
    common::require_root();
    let opts = LabOptions {
        s3: Some(S3Options {
            bucket: "backups".into(),
            retention_days: 3,
            ..Default::default()
        }),
        ..LabOptions::unique("s3", 1)
    };
    let lab = Lab::start(opts).expect("lab with S3 starts");
    let s3 = lab.s3().expect("S3 recorded").clone();
    let (admin, server) = (s3.admin_client(), s3.server_client());

    // The bucket has Object Lock with the default retention asked for.
    assert_eq!(
        admin.get_object_lock_configuration("backups").unwrap(),
        ("COMPLIANCE".to_string(), 3)
    );

    // The server credential writes; the new version is locked by the default retention.
    let v1 = server
        .put_object("backups", "data/pack-1", b"first")
        .unwrap();
    assert!(!v1.is_empty(), "versioned bucket returns a version id");
    let head = server
        .head_object("backups", "data/pack-1", Some(&v1))
        .unwrap();
    assert_eq!(head.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    assert!(head.header("x-amz-object-lock-retain-until-date").is_some());

    // Deleting that version with the server credential is refused.
    let refused = server
        .delete_object("backups", "data/pack-1", Some(&v1))
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(
        refused.error_code().as_deref(),
        Some("AccessDenied"),
        "{}",
        refused.text()
    );
    // So is it for the admin while COMPLIANCE retention runs.
    let refused = admin
        .delete_object("backups", "data/pack-1", Some(&v1))
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(
        server
            .get_object("backups", "data/pack-1", Some(&v1))
            .unwrap(),
        b"first"
    );

    // A plain delete only adds a delete marker: the locked version stays and can be read back.
    let marker = server
        .delete_object("backups", "data/pack-1", None)
        .unwrap();
    assert!(marker.is_success(), "{}", marker.text());
    let versions = admin.list_object_versions("backups", "data/").unwrap();
    assert!(
        versions
            .iter()
            .any(|v| v.version_id == v1 && !v.delete_marker),
        "{versions:?}"
    );
    assert!(versions.iter().any(|v| v.delete_marker), "{versions:?}");
    assert_eq!(
        admin
            .get_object("backups", "data/pack-1", Some(&v1))
            .unwrap(),
        b"first"
    );

    // IAM is enforced: the server credential cannot change the lock, unknown keys get nothing.
    let err = server
        .put_object_lock_configuration("backups", "GOVERNANCE", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") && err.contains("AccessDenied"), "{err}");
    assert_eq!(
        admin.get_object_lock_configuration("backups").unwrap(),
        ("COMPLIANCE".to_string(), 3)
    );
    let stranger = S3Client::new(
        &s3.endpoint,
        &s3.region,
        Credentials::new("AKIANOTAKEY000000000", "nope"),
    );
    let r = stranger
        .request("s3", "GET", "/backups", &[], &[], b"")
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    // A wrong secret for a real key id is refused too (signatures are checked).
    let forged = S3Client::new(
        &s3.endpoint,
        &s3.region,
        Credentials::new(s3.server.access_key_id.clone(), "forged"),
    );
    let r = forged
        .request("s3", "GET", "/backups", &[], &[], b"")
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    // Versioning (implied by Object Lock) and lifecycle rules, as kiln's backups set them:
    // the admin may change lifecycle, the server credential may not.
    assert_eq!(
        admin.get_bucket_versioning("backups").unwrap().as_deref(),
        Some("Enabled")
    );
    let rules = vec![kiln_s3::LifecycleRule {
        id: "expire-old-versions".into(),
        prefix: "data/".into(),
        noncurrent_version_expiration_days: Some(30),
        ..Default::default()
    }];
    admin.put_bucket_lifecycle("backups", &rules).unwrap();
    assert_eq!(admin.get_bucket_lifecycle("backups").unwrap(), rules);
    let err = server.put_bucket_lifecycle("backups", &rules).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // The read-only credential (drills, the runbook) lists and reads, and writes nothing.
    let readonly = s3.readonly_client();
    let listed = readonly.list_objects("backups", "");
    assert!(
        listed.is_ok(),
        "the read-only credential lists the bucket: {listed:?}"
    );
    assert!(readonly.list_object_versions("backups", "data/").is_ok());
    assert!(
        readonly
            .get_object("backups", "data/pack-1", Some(&v1))
            .is_ok()
    );
    let err = readonly
        .put_object("backups", "data/by-readonly", b"x")
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let refused = readonly
        .delete_object("backups", "data/pack-1", None)
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());

    // The servers reach the S3 endpoint through the lab network (an unsigned request gets an
    // HTTP error answer from moto: what matters here is that it answers).
    let probe = format!(
        "python3 -c 'import urllib.request,urllib.error\ntry:\n    urllib.request.urlopen(\"{}/backups\", timeout=5)\nexcept urllib.error.HTTPError as e:\n    print(e.code)'",
        s3.endpoint
    );
    let code: u16 = lab
        .exec_ok("server1", &probe)
        .unwrap()
        .trim()
        .parse()
        .expect("an HTTP status code");
    assert!((400..600).contains(&code), "{code}");
}
