//! End-to-end against the lab's S3 server (moto, Object Lock with a default retention,
//! enforced IAM) and Debian's stock `restic`: a repository kiln creates with the server
//! credential (write, no delete) is one restic lists, checks and restores; a snapshot
//! restic writes there is one kiln lists and restores; a second `init` and a wrong
//! password are refused without writing anything. Needs root and the lab's prerequisites
//! (.ci/install-lab.sh installs restic and moto).

use std::path::Path;
use std::process::Command;

use kiln_backup::{Location, Repo, RepoError};
use kiln_lab::{Lab, LabOptions, S3Options};
use kiln_secrets::Secret;

const PASSWORD: &str = "correct horse battery staple backups";

fn restic(location: &Location, creds: &kiln_lab::Credentials, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("-r")
        .arg(location.restic_url())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key.expose())
        .env("AWS_DEFAULT_REGION", &location.region)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("kiln-backup-test-restic-cache"),
        )
        .output()
        .expect("restic (apt install restic)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every regular file under `dir`, relative path → content.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_repository_kiln_writes_is_one_restic_reads_and_the_other_way_round() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let opts = LabOptions {
        s3: Some(S3Options {
            bucket: "backups".into(),
            retention_days: 2,
            ..Default::default()
        }),
        ..LabOptions::unique("bk", 1)
    };
    let lab = Lab::start(opts).expect("lab with S3 starts");
    let s3 = lab.s3().expect("S3 recorded").clone();
    let location = Location {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        prefix: "kiln/lab".into(),
    };
    let password = Secret::new(PASSWORD);
    let work = tempfile::tempdir().unwrap();

    // A new repository, with the server credential: it writes, it cannot delete.
    let mut repo = Repo::init(&location, &s3.server, &password).expect("init");
    let again = Repo::init(&location, &s3.server, &password);
    assert!(
        matches!(again, Err(RepoError::Exists { .. })),
        "second init"
    );
    let wrong = Repo::open(&location, &s3.server, &Secret::new("not the password"));
    let Err(e @ RepoError::WrongPassword { .. }) = wrong else {
        panic!("a wrong password must be refused");
    };
    assert!(e.to_string().contains(&location.restic_url()), "{e}");

    // kiln backs a folder up.
    let data = work.path().join("srv/synapse");
    std::fs::create_dir_all(data.join("media/ab")).unwrap();
    std::fs::write(data.join("homeserver.yaml"), "server_name: ergaster.test\n").unwrap();
    std::fs::write(data.join("media/ab/cdef"), vec![7u8; 300_000]).unwrap();
    let tags = vec![
        "env=lab".to_owned(),
        "service=synapse".to_owned(),
        "kind=files".to_owned(),
    ];
    let snap = repo
        .backup_paths(std::slice::from_ref(&data), "services", &tags, None)
        .expect("backup");
    assert_eq!(snap.files, 2);
    assert!(snap.bytes_added > 0);
    let listed = repo.snapshots().unwrap();
    assert_eq!(listed.len(), 1);
    let mut sorted = tags.clone();
    sorted.sort();
    let mut stored = listed[0].tags.clone();
    stored.sort();
    assert_eq!(stored, sorted);
    assert_eq!(listed[0].hostname, "services");

    // The stock restic lists, checks and restores it.
    let json: serde_json::Value =
        serde_json::from_str(&restic(&location, &s3.server, &["snapshots", "--json"])).unwrap();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [snap.id.as_str()]);
    assert_eq!(json[0]["hostname"], "services");
    restic(&location, &s3.server, &["check"]);
    let by_restic = work.path().join("restored-by-restic");
    restic(
        &location,
        &s3.server,
        &["restore", &snap.id, "--target", by_restic.to_str().unwrap()],
    );
    assert_eq!(
        files(&by_restic.join(data.strip_prefix("/").unwrap())),
        files(&data)
    );

    // restic writes a snapshot; kiln lists it, checks the repository and restores it.
    let other = work.path().join("srv/hedgedoc");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("upload.png"), b"\x89PNG not really").unwrap();
    restic(
        &location,
        &s3.server,
        &[
            "backup",
            "--host",
            "services",
            "--tag",
            "service=hedgedoc",
            other.to_str().unwrap(),
        ],
    );
    let mut repo = Repo::open(&location, &s3.server, &password).expect("open");
    let listed = repo.snapshots().unwrap();
    assert_eq!(listed.len(), 2);
    let theirs = &listed[1];
    assert_eq!(theirs.tags, ["service=hedgedoc"]);
    repo.check(None).expect("check");
    let by_kiln = work.path().join("restored-by-kiln");
    repo.restore(&theirs.id, &by_kiln).expect("restore");
    assert_eq!(
        files(&by_kiln.join(other.strip_prefix("/").unwrap())),
        files(&other)
    );

    // A command's output (a database dump), streamed into a snapshot; restic dumps it back.
    let argv: Vec<String> = [
        "sh",
        "-c",
        "for i in $(seq 1 2000); do echo \"row $i\"; done",
    ]
    .map(str::to_owned)
    .to_vec();
    let dump_tags = vec!["service=postgres".to_owned(), "kind=dump".to_owned()];
    let dumped = repo
        .backup_command(&argv, "synapse.sql", "services", &dump_tags, None)
        .expect("dump backup");
    let back = restic(&location, &s3.server, &["dump", &dumped.id, "/synapse.sql"]);
    assert_eq!(back.lines().count(), 2000);
    assert_eq!(back.lines().last(), Some("row 2000"));
    // A dump that fails (the database is down): an error naming the command, and no
    // snapshot left that would look like a backup.
    let before = repo.snapshots().unwrap().len();
    let bad: Vec<String> = [
        "sh",
        "-c",
        "echo partial; echo 'pg_dump: connection refused' >&2; exit 1",
    ]
    .map(str::to_owned)
    .to_vec();
    let err = repo
        .backup_command(&bad, "synapse.sql", "services", &dump_tags, None)
        .unwrap_err()
        .to_string();
    // The command, its exit status and what it said on stderr.
    assert!(err.contains("`sh -c"), "{err}");
    assert!(err.contains("exit status: 1"), "{err}");
    assert!(
        err.contains("it said: pg_dump: connection refused"),
        "{err}"
    );
    assert_eq!(repo.snapshots().unwrap().len(), before, "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&restic(&location, &s3.server, &["snapshots", "--json"])).unwrap();
    assert_eq!(
        json.as_array().unwrap().len(),
        before,
        "restic sees no failed dump either"
    );
    eprintln!("a failed dump: {err}");

    // Nothing kiln wrote can be deleted with the server credential (Object Lock).
    let client = s3.server_client();
    let versions = client
        .list_object_versions(&s3.bucket, "kiln/lab/")
        .unwrap();
    assert!(!versions.is_empty());
    let refused = client
        .delete_object(&s3.bucket, &versions[0].key, Some(&versions[0].version_id))
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());

    // The bucket checks `kiln backup init` makes: the lab's bucket is locked long enough
    // and versioned, its server credential cannot delete (the canary's deletion is
    // refused); it has no lifecycle rule yet, which is said.
    let admin = s3.admin_client();
    let found = kiln_backup::bucket::verify(&admin, &client, &s3.bucket, "kiln/lab", 2).unwrap();
    assert_eq!(
        found,
        [kiln_backup::bucket::Finding::NoLifecycle {
            bucket: s3.bucket.clone()
        }],
        "{found:?}"
    );
    let longer = kiln_backup::bucket::verify(&admin, &client, &s3.bucket, "kiln/lab", 30).unwrap();
    assert!(
        matches!(
            &longer[0],
            kiln_backup::bucket::Finding::ShortRetention {
                days: 2,
                wanted: 30,
                ..
            }
        ),
        "{longer:?}"
    );
    // A bucket without Object Lock, and a credential that can delete: both found, each
    // message saying what to fix.
    admin.create_bucket("unlocked", false).unwrap();
    admin.put_bucket_versioning("unlocked", true).unwrap();
    let found = kiln_backup::bucket::verify(&admin, &admin, "unlocked", "kiln/lab", 2).unwrap();
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        matches!(found[0], kiln_backup::bucket::Finding::NoObjectLock { .. })
            && found
                .iter()
                .any(|f| matches!(f, kiln_backup::bucket::Finding::ServerCanDelete { .. })),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("deny s3:DeleteObjectVersion")),
        "{text:#?}"
    );

    lab.down().unwrap();
}
