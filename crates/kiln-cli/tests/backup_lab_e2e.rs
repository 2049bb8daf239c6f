//! End-to-end, as a user would: `kiln lab up --s3` records the lab's S3 server as the lab
//! environment's backup repository and stores its three credentials (server, admin,
//! read-only) in the lab vault; `kiln backup init` verifies the bucket and creates the
//! repository; Debian's stock `restic` reads it with the read-only credential and writes
//! a snapshot with the servers' one, which `kiln backup list` then shows by service (and
//! `--json`) and `kiln backup check --read-data-subset` reads back. Then the services:
//! `kiln apply` installs the host's backup plan, secrets and timer; `kiln backup run`
//! dumps Synapse's database (PostgreSQL and Synapse for real, a message and a media file
//! posted through its client API, the rows of its key tables recorded) and HedgeDoc's
//! (the lab's contract image, a test double), copies their files with the service
//! stopped and Nextcloud's (contract image) in maintenance mode, switched off after and
//! also after a SIGKILL; after Synapse's database and files are lost, `kiln backup restore
//! synapse --in-place` verifies the rows and files and the message and media come back; restic dumps the database
//! back and PostgreSQL's pg_restore reads it; with PostgreSQL down, the dump fails naming
//! why and the files are still backed up; after its rows and files are lost, `kiln backup
//! restore hedgedoc --in-place` brings them back (owners, modes, a stray file removed) and
//! HedgeDoc runs again, and `--to DIR` restores into a folder here; the timer's backup
//! SIGKILLed while HedgeDoc is stopped for its copy: the unit's ExecStopPost starts it
//! again, restic's check passes, the next run completes; `kiln backup forget` applies the
//! retention (a dry run first) and says until when Object Lock keeps what it forgot.
//! Refusals: a list before init, a wrong
//! repository password (nothing written), a bucket without Object Lock, and a servers'
//! credential that can delete a version. Each `kiln backup run` also stores the
//! infrastructure repository, age-encrypted to the vault's recipients: the stock `age`
//! decrypts it with a recovery key, and the stock `tar` gives kiln.toml and the vault back. Needs root and the lab's prerequisites
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

[services.synapse]
kind = "synapse"
host = "services"
subdomain = "matrix"
version = "v1.162.0"
options = { database = "postgres" }

[services.hedgedoc]
kind = "hedgedoc"
host = "services"
subdomain = "hdoc"
version = "1.10.3"
options = { database = "postgres" }

[services.nextcloud]
kind = "nextcloud"
host = "services"
subdomain = "cloud"
version = "31"
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
    let versions = || -> std::collections::BTreeSet<(String, String)> {
        admin
            .list_object_versions("kiln-backups", "")
            .unwrap()
            .into_iter()
            .map(|v| (v.key, v.version_id))
            .collect()
    };
    let before = versions();
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
    // `init` leaves only its canary's version (the servers' credential cannot remove it).
    let new: Vec<_> = versions().difference(&before).cloned().collect();
    assert!(
        new.len() <= 1 && new.iter().all(|(k, _)| k == "kiln/lab/kiln-canary"),
        "written with a wrong password: {new:?}"
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

    // Synapse for real: a user, a room, a message through its client API.
    repo.on_ok(
        "services",
        "podman exec synapse register_new_matrix_user -c /config/homeserver.yaml -u alice -p alice-e2e-password --no-admin http://localhost:8008",
    );
    let m = repo.matrix(
        "services",
        "alice-e2e-password send 'kept through a backup'",
    );
    assert_eq!(
        m["bodies"],
        serde_json::json!(["kept through a backup"]),
        "{m}"
    );
    let m = repo.matrix("services", "alice-e2e-password upload 'a media file'");
    let mxc = m["mxc"]
        .as_str()
        .unwrap_or_else(|| panic!("{m}"))
        .to_owned();

    let o = repo.kiln_env(&["backup", "run"]);
    assert!(o.status.success(), "backup run: {}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("hedgedoc dump: done"), "{out}");
    assert!(out.contains("synapse dump: done"), "{out}");
    assert!(
        out.contains("synapse files: done") && out.contains("synapse stopped"),
        "{out}"
    );
    assert!(
        out.contains("hedgedoc files: done") && out.contains("hedgedoc stopped"),
        "{out}"
    );
    nextcloud_in_maintenance_for_its_copy(repo, &out);
    repository_archived(repo, &out);
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
    // The services needing it went down with it: all started again.
    repo.on_ok(
        "services",
        "systemctl start postgres.service synapse.service hedgedoc.service nextcloud.service",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("hedgedoc dump: FAILED"), "{out}");
    // It fails counting the key tables' rows, before pg_dump: psql cannot reach the server.
    assert!(
        out.contains("counting the rows of database hedgedoc (psql in postgres)"),
        "{out}"
    );
    assert!(out.contains("hedgedoc files: done"), "{out}");
    synapse_restored(repo, &mxc);
    restored_in_place(repo);
    killed_mid_way(repo);
    killed_in_maintenance(repo);
    forgotten(repo);
    let o = repo.kiln_env(&["backup", "run", "--service", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("no host backs up a service `nope`"),
        "{}",
        text(&o)
    );
}

const PSQL: &str = "podman exec postgres psql -U postgres -d hedgedoc -At -c";

/// Synapse's database and files lost, restored in place: the message and the media file
/// are read back through the client API, the rows of its key tables verified against what the dump's
/// snapshot recorded (counted in the dump's own transaction snapshot).
fn synapse_restored(repo: &Repo, mxc: &str) {
    let o = repo.backup(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let dump = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["service"] == "synapse" && s["kind"] == "dump")
        .unwrap_or_else(|| panic!("no dump of synapse: {v}"));
    let recorded = dump["description"].as_str().unwrap_or_default();
    let rows = recorded
        .lines()
        .find(|l| l.starts_with("rows: "))
        .unwrap_or_else(|| panic!("no row counts recorded: {dump}"));
    let users = repo.on_ok(
        "services",
        "podman exec postgres psql -U postgres -d synapse -At -c 'SELECT count(*) FROM users'",
    );
    assert!(
        rows.contains(&format!("users={}", users.trim())) && rows.contains("events="),
        "{rows} (users now: {users})"
    );
    // Lost: the database, the media store and the rest of /data.
    let left = repo.on_ok(
        "services",
        "systemctl stop synapse.service && podman exec postgres dropdb -U postgres synapse && rm -rf /srv/kiln/synapse/data/* && ls -A /srv/kiln/synapse/data | wc -l",
    );
    assert_eq!(left.trim(), "0");
    let o = repo.kiln_env(&["backup", "restore", "synapse", "--in-place"]);
    assert!(o.status.success(), "restore synapse: {}", text(&o));
    let out = stdout(&o);
    eprintln!("kiln backup restore synapse --in-place said:\n{out}");
    assert!(
        out.contains("database synapse restored") && out.contains(rows),
        "the restore verifies the recorded counts ({rows}): {out}"
    );
    assert!(out.contains("started synapse.service"), "{out}");
    // The files counted where they were restored, as many as the snapshot recorded.
    let files_line = out
        .lines()
        .find(|l| l.contains("files restored"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        files_line.contains(", verified: ") && files_line.contains("/srv/kiln/synapse/data"),
        "{files_line}"
    );
    let collation = repo.on_ok(
        "services",
        "podman exec postgres psql -U postgres -At -c \"SELECT datcollate FROM pg_database WHERE datname = 'synapse'\"",
    );
    assert_eq!(collation.trim(), "C");
    let m = repo.matrix("services", "alice-e2e-password read");
    assert_eq!(
        m["bodies"],
        serde_json::json!(["kept through a backup"]),
        "{m}"
    );
    let m = repo.matrix("services", &format!("alice-e2e-password download {mxc}"));
    assert_eq!(m["content"], "a media file", "{m}");
}

/// Data lost, then restored in place from the latest snapshots.
fn restored_in_place(repo: &Repo) {
    repo.on_ok(
        "services",
        &format!(
            "systemctl start postgres.service hedgedoc.service && {PSQL} \"INSERT INTO kiln_contract (app, at, detail) VALUES ('marker', now(), '{{}}')\" && echo precious > /srv/kiln/hedgedoc/uploads/note.txt && chown 10000:10000 /srv/kiln/hedgedoc/uploads/note.txt && chmod 640 /srv/kiln/hedgedoc/uploads/note.txt"
        ),
    );
    let o = repo.kiln_env(&["backup", "run", "--service", "hedgedoc"]);
    assert!(o.status.success(), "backup run: {}", text(&o));
    // Lost: the rows, the files; a stray file appears.
    repo.on_ok(
        "services",
        &format!(
            "{PSQL} 'DELETE FROM kiln_contract' && rm -f /srv/kiln/hedgedoc/uploads/* && touch /srv/kiln/hedgedoc/uploads/stray"
        ),
    );
    let o = repo.kiln_env(&["backup", "restore", "hedgedoc", "--in-place"]);
    assert!(o.status.success(), "restore: {}", text(&o));
    let out = stdout(&o);
    for said in [
        "stopped hedgedoc.service",
        "database hedgedoc restored",
        "files restored",
        "started hedgedoc.service",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    let rows = repo.on_ok(
        "services",
        &format!("{PSQL} \"SELECT count(*) FROM kiln_contract WHERE app = 'marker'\""),
    );
    assert_eq!(rows.trim(), "1", "the marker row is back");
    let files = repo.on_ok(
        "services",
        "cd /srv/kiln/hedgedoc/uploads && stat -c '%n %u %a' * && cat note.txt && systemctl is-active hedgedoc.service",
    );
    assert!(files.contains("note.txt 10000 640\n"), "{files}");
    assert!(files.contains("precious\nactive\n"), "{files}");
    assert!(!files.contains("stray"), "{files}");

    // Into a folder here, with the read-only credential.
    let dir = tempfile::tempdir().unwrap();
    let o = repo.kiln_env(&[
        "backup",
        "restore",
        "hedgedoc",
        "--to",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "restore --to: {}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("files/srv/kiln/hedgedoc/uploads/note.txt"))
            .unwrap(),
        "precious\n"
    );
    assert!(dir.path().join("dump/hedgedoc.dump").is_file());
    // A snapshot that does not exist: refused before anything is stopped.
    let o = repo.kiln_env(&[
        "backup",
        "restore",
        "hedgedoc",
        "--in-place",
        "--snapshot",
        "abcdef12",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        words(&stderr(&o)).contains("no snapshot abcdef12"),
        "{}",
        text(&o)
    );
    repo.on_ok("services", "systemctl is-active hedgedoc.service");
}

const OCC: &str = "podman exec -u www-data nextcloud php occ maintenance:mode";

/// Nextcloud (the lab's contract image, a test double) is copied in maintenance mode, not
/// stopped: the copy of its settings holds `maintenance: true`; it is off again after.
fn nextcloud_in_maintenance_for_its_copy(repo: &Repo, run: &str) {
    assert!(run.contains("nextcloud files: done"), "{run}");
    assert!(
        !run.contains("nextcloud: stopped"),
        "Nextcloud is not stopped: {run}"
    );
    let o = repo.restic(
        "backup_readonly",
        &[
            "--no-lock",
            "dump",
            "--tag",
            "service=nextcloud,kind=files",
            "latest",
            "/srv/kiln/nextcloud/html/config/kiln-contract.json",
        ],
    );
    assert!(o.status.success(), "restic dump: {}", text(&o));
    let copied: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON settings");
    assert_eq!(copied["maintenance"], true, "{copied}");
    let now = repo.on_ok("services", OCC);
    assert!(
        now.contains("Maintenance mode is currently disabled"),
        "{now}"
    );
}

/// The timer's run SIGKILLed around Nextcloud's copy: its maintenance mode is switched
/// off again by the unit's ExecStopPost.
fn killed_in_maintenance(repo: &Repo) {
    let said = repo.on_ok(
        "services",
        &format!(
            "systemctl start --no-block kiln-backup.service
         for i in $(seq 1 2000); do grep -qs '\"service\":\"nextcloud\"' /var/lib/kiln/backup/pending.json && break; sleep 0.01; done
         grep -qs '\"service\":\"nextcloud\"' /var/lib/kiln/backup/pending.json || {{ echo 'the run never reached Nextcloud'; exit 1; }}
         kill -9 \"$(systemctl show -p MainPID --value kiln-backup.service)\"
         for i in $(seq 1 1200); do [ \"$(systemctl is-active kiln-backup.service)\" = failed ] && break; sleep 0.1; done
         systemctl show -p Result --value kiln-backup.service
         {OCC}
         test -e /var/lib/kiln/backup/pending.json && echo pending-left || echo pending-gone"
        ),
    );
    assert!(
        said.starts_with("signal\n")
            && said.contains("Maintenance mode is currently disabled\n")
            && said.ends_with("pending-gone\n"),
        "{said}"
    );
    let o = repo.kiln_env(&["backup", "run", "--service", "nextcloud"]);
    assert!(o.status.success(), "the next run: {}", text(&o));
}

/// The timer's run SIGKILLed while Synapse (the first service stopped) is stopped for its
/// copy.
fn killed_mid_way(repo: &Repo) {
    let said = repo.on_ok(
        "services",
        "systemctl start --no-block kiln-backup.service
         for i in $(seq 1 200); do [ -f /var/lib/kiln/backup/pending.json ] && break; sleep 0.05; done
         test -f /var/lib/kiln/backup/pending.json || { echo 'the run never stopped Synapse'; exit 1; }
         kill -9 \"$(systemctl show -p MainPID --value kiln-backup.service)\"
         for i in $(seq 1 1200); do [ \"$(systemctl is-active kiln-backup.service)\" = failed ] && break; sleep 0.1; done
         systemctl show -p Result --value kiln-backup.service
         systemctl is-active synapse.service hedgedoc.service
         test -e /var/lib/kiln/backup/pending.json && echo pending-left || echo pending-gone",
    );
    // Killed while Synapse was stopped for its copy (or starting again after it): the
    // unit's ExecStopPost starts it.
    assert_eq!(said, "signal\nactive\nactive\npending-gone\n", "{said}");
    let o = repo.restic("backup_readonly", &["--no-lock", "check"]);
    assert!(
        o.status.success(),
        "restic check after a kill: {}",
        text(&o)
    );
    let o = repo.kiln_env(&["backup", "run"]);
    assert!(o.status.success(), "the next run: {}", text(&o));
}

/// The retention applied: one snapshot per service and kind is left, restic agrees.
fn forgotten(repo: &Repo) {
    let count = |repo: &Repo| {
        let o = repo.backup(&["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
        v["snapshots"].as_array().unwrap().len()
    };
    let before = count(repo);
    let toml = repo.toml();
    repo.set_toml(&toml.replace("retention = { daily = 7 }", "retention = { daily = 1 }"));
    let o = repo.backup(&["forget", "--dry-run"]);
    assert!(o.status.success(), "forget --dry-run: {}", text(&o));
    assert!(stdout(&o).contains("would forget"), "{}", text(&o));
    assert_eq!(count(repo), before, "a dry run removes nothing");
    let o = repo.backup(&["forget"]);
    assert!(o.status.success(), "forget: {}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains("forgotten  its data stays in the bucket's old versions until at least"),
        "{out}"
    );
    // One per host, service and kind: synapse's, hedgedoc's and nextcloud's dumps and
    // files, and restic's demo.
    assert_eq!(count(repo), 7, "{out}");
    let o = repo.restic("backup_readonly", &["--no-lock", "check"]);
    assert!(
        o.status.success(),
        "restic check after forget: {}",
        text(&o)
    );
    repo.set_toml(&toml);
}

/// The infrastructure repository in the bucket, readable with a recovery key and the
/// read-only credential alone.
fn repository_archived(repo: &Repo, first_run: &str) {
    assert!(
        first_run.contains("infrastructure repository:")
            && first_run.contains("stored as s3://kiln-backups/kiln-repository/lab/"),
        "{first_run}"
    );
    // A recovery key, then a run: the archive is encrypted to it too.
    let o = repo.kiln_env(&["secrets", "recovery-key"]);
    assert!(o.status.success(), "recovery-key: {}", text(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    let key = all
        .split_whitespace()
        .find(|w| w.starts_with("AGE-SECRET-KEY-1") && w.len() > 60)
        .unwrap_or_else(|| panic!("no recovery key in:\n{all}"))
        .to_owned();
    let o = repo.kiln_env(&["backup", "run", "--service", "hedgedoc"]);
    assert!(o.status.success(), "backup run: {}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("encrypted to 2 key(s)"), "{out}");
    let readonly = repo.s3("backup_readonly");
    let mut keys: Vec<String> = readonly
        .list_objects("kiln-backups", "kiln-repository/lab/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    let sealed = readonly
        .get_object("kiln-backups", keys.last().unwrap(), None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("archive.tar.age"), &sealed).unwrap();
    std::fs::write(dir.path().join("recovery.txt"), format!("{key}\n")).unwrap();
    let o = Command::new("sh")
        .current_dir(dir.path())
        .args([
            "-c",
            "age -d -i recovery.txt archive.tar.age | tar x && cat kiln-repository/kiln.toml",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "age -d | tar x: {}", text(&o));
    assert_eq!(stdout(&o), repo.toml());
    assert!(
        dir.path()
            .join("kiln-repository/secrets/lab/backup_repository_password.age")
            .is_file()
    );
}
