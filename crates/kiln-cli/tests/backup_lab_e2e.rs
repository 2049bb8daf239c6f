//! End-to-end, as a user would: `kiln lab up --s3` records the lab's S3 server as the lab
//! environment's backup repository and stores its three credentials (server, admin,
//! read-only) in the lab vault; `kiln backup init` verifies the bucket and creates the
//! repository; Debian's stock `restic` reads it with the read-only credential and writes
//! a snapshot with the servers' one, which `kiln backup list` then shows by service (and
//! `--json`) and `kiln backup check --read-data-subset` reads back. Then the services:
//! `kiln apply` installs the host's backup plan, secrets and timer; `kiln backup run`
//! dumps HedgeDoc's database (PostgreSQL for real; HedgeDoc is the lab's contract image,
//! a test double) and copies its uploads with HedgeDoc stopped; restic dumps the database
//! back and PostgreSQL's pg_restore reads it; with PostgreSQL down, the dump fails naming
//! why and the files are still backed up. Refusals: a list before init, a wrong
//! repository password (nothing written), a bucket without Object Lock, and a servers'
//! credential that can delete a version. Needs root and the lab's prerequisites
//! (.ci/install-lab.sh: moto, restic).

mod common;
use common::{LabRepo, stderr, stdout, text, words};

use std::process::Command;

const KILN_TOML: &str = r#"
[project]
name = "bk"
domain = "bk.test"
acme_email = "admin@bk.example.org"

[environments.lab]
domain = "bk.test"
acme_ca = "internal"

[environments.lab.hosts.services]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"

[base]                             # not this test's subject
sshd = false
firewall = false
updates = false
time = false
node_exporter = false
wireguard = false

[services.postgres]
kind = "postgres"
host = "services"
version = "17"

[services.hedgedoc]
kind = "hedgedoc"
host = "services"
subdomain = "hdoc"
version = "1.10.3"
options = { database = "postgres" }

[backups]
schedule = "*-*-* 03:00:00"
object_lock_days = 2
retention = { daily = 7 }

[backups.repository]
endpoint = "https://s3.example.org"
bucket = "production-bucket"
prefix = "kiln/{env}"

[backups.credentials]
server = "backup_server"
admin = "backup_admin"
readonly = "backup_readonly"
repository_password = "backup_repository_password"
"#;

struct Repo(LabRepo);

impl std::ops::Deref for Repo {
    type Target = LabRepo;
    fn deref(&self) -> &LabRepo {
        &self.0
    }
}

impl Repo {
    fn endpoint(&self) -> String {
        let t = self.toml();
        let m = kiln_model::parse_str("kiln.toml", &t, self.config.parent().unwrap())
            .unwrap_or_else(|d| panic!("{}", d.render(100, false)));
        let b = m.backups.as_ref().unwrap();
        b.repository_for(m.environment("lab").unwrap()).endpoint
    }

    fn url(&self) -> String {
        format!("s3:{}/kiln-backups/kiln/lab", self.endpoint())
    }

    /// Stock restic on the lab repository with credential `cred` (a `[backups.credentials]`
    /// name) and the vault's repository password.
    fn restic(&self, cred: &str, args: &[&str]) -> std::process::Output {
        Command::new("restic")
            .arg("-r")
            .arg(self.url())
            .arg("--no-cache")
            .args(args)
            .env(
                "AWS_ACCESS_KEY_ID",
                self.secret(&format!("{cred}_access_key")),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                self.secret(&format!("{cred}_secret_key")),
            )
            .env("RESTIC_PASSWORD", self.secret("backup_repository_password"))
            .output()
            .expect("restic (apt install restic)")
    }

    fn s3(&self, cred: &str) -> kiln_s3::S3Client {
        kiln_s3::S3Client::new(
            &self.endpoint(),
            "us-east-1",
            kiln_s3::Credentials::new(
                self.secret(&format!("{cred}_access_key")),
                self.secret(&format!("{cred}_secret_key")),
            ),
        )
    }

    fn backup(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["backup"];
        all.extend_from_slice(args);
        self.kiln_env(&all)
    }
}

#[test]
fn lab_s3_credentials_init_list_check_and_refusals() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let repo = Repo(LabRepo::new(KILN_TOML, "bk"));
    repo.run(|_| scenario(&repo));
}

fn scenario(repo: &Repo) {
    let up = repo.kiln(&[
        "lab",
        "up",
        "--lab",
        &repo.lab,
        "--s3",
        "kiln-backups",
        "--retention-days",
        "2",
        "--yes",
        "--passphrase-file",
        repo.pass.to_str().unwrap(),
    ]);
    assert!(up.status.success(), "lab up: {}", text(&up));
    let said = words(&stderr(&up));
    assert!(
        said.contains(
            "stored the lab S3's server, admin and read-only credentials in the lab vault"
        ),
        "{said}"
    );
    // Recorded in kiln.toml: the lab's endpoint and bucket; the prefix stays the top level's.
    let endpoint = repo.endpoint();
    assert!(endpoint.starts_with("http://10.77."), "{endpoint}");
    assert!(
        repo.toml().contains("backup_repository = {"),
        "{}",
        repo.toml()
    );
    for name in ["backup_server", "backup_admin", "backup_readonly"] {
        assert!(!repo.secret(&format!("{name}_access_key")).is_empty());
        assert!(!repo.secret(&format!("{name}_secret_key")).is_empty());
    }
    assert!(repo.secret("backup_repository_password").len() >= 40);

    // Nothing there yet.
    let o = repo.backup(&["list"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("no repository there yet"),
        "{}",
        text(&o)
    );
    assert!(words(&stderr(&o)).contains(&repo.url()), "{}", text(&o));

    // init: verified and created; the missing lifecycle rule is a warning until set.
    let o = repo.backup(&["init"]);
    assert!(o.status.success(), "init: {}", text(&o));
    assert!(
        stdout(&o).contains(&format!("created backup repository {}", repo.url())),
        "{}",
        text(&o)
    );
    assert!(
        words(&stderr(&o)).contains("no lifecycle rule"),
        "{}",
        text(&o)
    );
    assert!(
        words(&stderr(&o))
            .contains("the servers' credential is refused deleting an object version"),
        "{}",
        text(&o)
    );
    let o = repo.backup(&["init", "--set-lifecycle"]);
    assert!(o.status.success(), "init again: {}", text(&o));
    assert!(stdout(&o).contains("is already there"), "{}", text(&o));
    let rules = repo
        .s3("backup_admin")
        .get_bucket_lifecycle("kiln-backups")
        .unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r.noncurrent_version_expiration_days == Some(3)),
        "{rules:?}"
    );
    let o = repo.backup(&["init"]);
    assert!(
        !words(&stderr(&o)).contains("no lifecycle rule"),
        "{}",
        text(&o)
    );

    // Stock restic reads it with the read-only credential (no lock: it cannot write one),
    // which writes nothing, and the servers' credential backs up.
    let o = repo.restic("backup_readonly", &["--no-lock", "snapshots", "--json"]);
    assert!(o.status.success(), "restic snapshots: {}", text(&o));
    assert_eq!(stdout(&o).trim(), "[]");
    // …which writes nothing…
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), "first file\n").unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    let d = data.path().to_str().unwrap();
    let err = repo
        .s3("backup_readonly")
        .put_object("kiln-backups", "kiln/lab/by-readonly", b"x")
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(403),
        "the read-only credential wrote: {err}"
    );
    let o = repo.restic(
        "backup_server",
        &[
            "backup",
            "--host",
            "services",
            "--tag",
            "service=demo,kind=files",
            d,
        ],
    );
    assert!(o.status.success(), "restic backup: {}", text(&o));

    let o = repo.backup(&["list"]);
    assert!(o.status.success(), "list: {}", text(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("repository: {}\n", repo.url())),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("demo "))
        .unwrap_or_else(|| panic!("no row for service demo:\n{out}"));
    assert!(
        row.contains(" files ") && row.contains(" services "),
        "{row}"
    );
    let o = repo.backup(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["repository"], repo.url());
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{v}");
    assert_eq!(snaps[0]["service"], "demo");
    assert_eq!(snaps[0]["kind"], "files");
    // restic 0.14 writes no summary into its snapshots; kiln's own have one.
    assert!(snaps[0]["files"].is_u64(), "{v}");

    let o = repo.backup(&["check", "--read-data-subset", "100%"]);
    assert!(o.status.success(), "check: {}", text(&o));
    assert!(stdout(&o).contains("no problem found"), "{}", text(&o));
    let o = repo.backup(&["check", "--read-data-subset", "lots"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(words(&stderr(&o)).contains("`lots`"), "{}", text(&o));

    services_are_backed_up(repo);

    // A wrong repository password: refused, nothing written.
    let admin = repo.s3("backup_admin");
    let before = admin
        .list_object_versions("kiln-backups", "")
        .unwrap()
        .len();
    let right = repo.secret("backup_repository_password");
    repo.set_secret("backup_repository_password", "not the password");
    for args in [&["list"][..], &["init"][..]] {
        let o = repo.backup(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            words(&stderr(&o)).contains("the repository password does not open it"),
            "{args:?}: {}",
            text(&o)
        );
    }
    let after = admin.list_object_versions("kiln-backups", "").unwrap();
    // `init` leaves only its canary's version (the servers' credential cannot remove it).
    assert!(
        after.len() <= before + 1
            && after
                .iter()
                .all(|v| v.key.starts_with("kiln/lab/") || v.key == "kiln/lab/kiln-canary"),
        "{before} → {after:?}"
    );
    repo.set_secret("backup_repository_password", &right);

    // A bucket without Object Lock: refused before anything is created.
    admin.create_bucket("unlocked", false).unwrap();
    admin.put_bucket_versioning("unlocked", true).unwrap();
    let locked = repo.toml();
    repo.set_toml(&locked.replace("bucket = \"kiln-backups\"", "bucket = \"unlocked\""));
    let o = repo.backup(&["init"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("has no Object Lock default retention"),
        "{}",
        text(&o)
    );
    assert!(
        words(&stderr(&o)).contains("nothing was created"),
        "{}",
        text(&o)
    );
    // The lab's servers' credential is limited to the lab's bucket: it cannot write here.
    assert!(
        words(&stderr(&o))
            .contains("the servers' credential may not write unlocked/kiln/lab/kiln-canary"),
        "{}",
        text(&o)
    );
    let keys = admin.list_objects("unlocked", "kiln/lab/").unwrap();
    assert!(
        keys.iter().all(|(k, _)| !k.ends_with("/config")),
        "{keys:?}"
    );
    // Accepted knowingly, the bucket still fails when the servers' credential can delete:
    // here it is the admin's.
    repo.set_toml(
        &repo
            .toml()
            .replace("object_lock_days = 2", "allow_unlocked = true"),
    );
    repo.set_secret(
        "backup_server_access_key",
        &repo.secret("backup_admin_access_key"),
    );
    repo.set_secret(
        "backup_server_secret_key",
        &repo.secret("backup_admin_secret_key"),
    );
    let o = repo.backup(&["init"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("the servers' credential was not refused deleting a version"),
        "{}",
        text(&o)
    );
}

/// `kiln apply` installs the backups; `kiln backup run` backs the services up.
fn services_are_backed_up(repo: &Repo) {
    let o = repo.kiln_env(&["secrets", "generate"]);
    assert!(o.status.success(), "secrets generate: {}", text(&o));
    let o = repo.kiln_env(&["apply", "--yes"]);
    assert!(o.status.success(), "apply: {}", text(&o));
    // What the host got: its plan, its secrets (0600, the servers' credential only), the
    // timer at the schedule.
    let listing = repo.on_ok(
        "services",
        "stat -c '%a %U %n' /etc/kiln/backup/plan.json /etc/kiln/backup/secrets.json; systemctl is-enabled kiln-backup.timer; systemctl show -p TimersCalendar --value kiln-backup.timer",
    );
    assert!(
        listing.contains("600 root /etc/kiln/backup/secrets.json"),
        "{listing}"
    );
    assert!(listing.contains("\nenabled\n"), "{listing}");
    assert!(listing.contains("*-*-* 03:00:00"), "{listing}");
    let on_host = repo.on_ok("services", "cat /etc/kiln/backup/secrets.json");
    assert!(on_host.contains(&repo.secret("backup_server_access_key")));
    for other in ["backup_admin_secret_key", "backup_readonly_secret_key"] {
        assert!(
            !on_host.contains(&repo.secret(other)),
            "{other} reached the host"
        );
    }
    // A second apply has nothing to do.
    let o = repo.kiln_env(&["plan"]);
    assert!(o.status.success(), "plan: {}", text(&o));
    assert!(stdout(&o).contains("services: no changes"), "{}", text(&o));

    let o = repo.kiln_env(&["backup", "run"]);
    assert!(o.status.success(), "backup run: {}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("hedgedoc dump: done"), "{out}");
    assert!(
        out.contains("hedgedoc files: done") && out.contains("hedgedoc stopped"),
        "{out}"
    );
    // HedgeDoc runs again after its copy.
    repo.on_ok("services", "systemctl is-active hedgedoc.service");
    let o = repo.backup(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let kinds: Vec<(String, String)> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["service"] == "hedgedoc")
        .map(|s| {
            (
                s["kind"].as_str().unwrap().into(),
                s["hostname"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(kinds.contains(&("dump".into(), "services".into())), "{v}");
    assert!(kinds.contains(&("files".into(), "services".into())), "{v}");

    // restic gives the dump back, and PostgreSQL reads it: the contract image's table.
    let o = repo.restic(
        "backup_readonly",
        &[
            "--no-lock",
            "dump",
            "--tag",
            "service=hedgedoc,kind=dump",
            "latest",
            "/hedgedoc.dump",
        ],
    );
    assert!(o.status.success(), "restic dump: {}", text(&o));
    let dump = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(dump.path(), &o.stdout).unwrap();
    let listed = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "lab",
            "ssh",
            "--lab",
            &repo.lab,
            "services",
            "--",
            "sudo",
            "podman",
            "exec",
            "-i",
            "postgres",
            "pg_restore",
            "--list",
        ])
        .stdin(std::fs::File::open(dump.path()).unwrap())
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "pg_restore --list: {}",
        text(&listed)
    );
    assert!(
        stdout(&listed).contains("TABLE DATA public kiln_contract hedgedoc"),
        "{}",
        stdout(&listed)
    );

    // PostgreSQL down: the dump fails loudly, naming why; the files are still backed up.
    repo.on_ok("services", "systemctl stop postgres.service");
    let o = repo.kiln_env(&["backup", "run", "--service", "hedgedoc"]);
    repo.on_ok("services", "systemctl start postgres.service");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("hedgedoc dump: FAILED"), "{out}");
    assert!(out.contains("pg_dump"), "{out}");
    assert!(out.contains("hedgedoc files: done"), "{out}");
    let o = repo.kiln_env(&["backup", "run", "--service", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("no host backs up a service `nope`"),
        "{}",
        text(&o)
    );
}
