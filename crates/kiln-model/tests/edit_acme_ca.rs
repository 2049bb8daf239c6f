//! `kiln lab up` records the lab's ACME directory in kiln.toml's `lab` environment through
//! `kiln_model::edit::set_acme_ca`, and its S3 server (`--s3`) through
//! `set_backup_repository`: the file still loads, with the new values, and the comments
//! around them (and beside them) stay.

use std::path::Path;

use kiln_model::{AcmeCa, CustomAcme};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_recorded_directory_loads_and_comments_stay() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference");
    let dir = std::env::temp_dir().join(format!("kiln-edit-acme-{}", std::process::id()));
    copy_dir(&example, &dir);
    let path = dir.join("kiln.toml");
    kiln_model::edit::set_acme_ca(
        &path,
        "lab",
        "https://10.77.7.1:14000/dir",
        Path::new("/var/lib/kiln-lab/t/acme/ca.pem"),
    )
    .unwrap();
    let m = kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)));
    assert_eq!(
        m.environment("lab").unwrap().acme_ca,
        AcmeCa::Custom(CustomAcme {
            directory: "https://10.77.7.1:14000/dir".into(),
            ca_root: Some("/var/lib/kiln-lab/t/acme/ca.pem".into()),
        })
    );
    // Other environments keep theirs.
    assert_eq!(
        m.environment("production").unwrap().acme_ca,
        AcmeCa::Letsencrypt
    );
    let text = std::fs::read_to_string(&path).unwrap();
    // The named CA was replaced in place, the comments around it kept.
    assert!(
        text.contains("domain = \"ergaster.test\"             # reserved for testing (RFC 6761): never a public name\nacme_ca = { directory = \"https://10.77.7.1:14000/dir\", ca_root = \"/var/lib/kiln-lab/t/acme/ca.pem\" }   # the lab's Pebble: `kiln lab up` records its root\napex_host = \"services\"\n"),
        "{text}"
    );
    assert!(text.contains(
        "[environments.lab]                  # throwaway servers on this machine: `kiln lab up`\n"
    ));
    let err = kiln_model::edit::set_acme_ca(&path, "nope", "https://d/dir", Path::new("/r"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("{}: no [environments.nope] table", path.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_recorded_backup_repository_loads_and_keeps_the_rest() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference");
    let dir = std::env::temp_dir().join(format!("kiln-edit-s3-{}", std::process::id()));
    copy_dir(&example, &dir);
    let path = dir.join("kiln.toml");
    kiln_model::edit::set_backup_repository(
        &path,
        "lab",
        "http://10.77.9.1:9000",
        "lab-bucket",
        "us-east-1",
    )
    .unwrap();
    let m = kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)));
    let b = m.backups.as_ref().unwrap();
    let lab = b.repository_for(m.environment("lab").unwrap());
    assert_eq!(lab.endpoint, "http://10.77.9.1:9000");
    assert_eq!(lab.bucket, "lab-bucket");
    assert_eq!(lab.region.as_deref(), Some("us-east-1"));
    // Production keeps the top level's.
    let prod = b.repository_for(m.environment("production").unwrap());
    assert_eq!(prod.bucket, "ergaster-backups");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# the lab's S3: `kiln lab up --s3` records it\n"),
        "{text}"
    );
    // Staging had none: it gets one, inline, and still loads.
    kiln_model::edit::set_backup_repository(&path, "staging", "https://s3.example.org", "b-b", "r")
        .unwrap();
    let m = kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)));
    assert_eq!(
        m.environment("staging")
            .unwrap()
            .backup_repository
            .bucket
            .as_deref(),
        Some("b-b")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
