//! What the CLI's integration tests share: the kiln binary under test, with the variables a
//! developer's shell may set (`KILN_CONFIG`, `KILN_ENV`) removed, and an `Output` as text.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

/// `kiln` as built for these tests, blind to the caller's `KILN_CONFIG` and `KILN_ENV`.
pub fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env_remove("KILN_CONFIG").env_remove("KILN_ENV");
    c
}

/// [`kiln`] with output made stable for comparisons: no colour, 100 columns.
pub fn kiln_plain() -> Command {
    let mut c = kiln();
    c.env("NO_COLOR", "1").env("COLUMNS", "100");
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Runs `c` with `stdin` written to it (when given), capturing stdout and stderr.
/// An error as words, without miette's line wrapping and margin.
pub fn words(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != "|")
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run_with_stdin(mut c: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        // kiln may refuse before reading stdin (bad name): a closed pipe is fine.
        match child.stdin.take().unwrap().write_all(s.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
    }
    child.wait_with_output().unwrap()
}

/// stdout then stderr (kiln's progress goes to stderr).
pub fn all_output(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// The address kiln.toml's `lab` environment records for `role` (written by `kiln lab up`).
pub fn lab_address(config: &std::path::Path, role: &str) -> String {
    let t = std::fs::read_to_string(config).unwrap();
    let m = kiln_model::parse_str("kiln.toml", &t, config.parent().unwrap())
        .unwrap_or_else(|d| panic!("{}", d.render(100, false)));
    let env = m.environment("lab").unwrap();
    env.host(role).unwrap().address.to_string()
}

/// The root of the certificates the lab's Pebble issues this run (written by `kiln lab up`).
pub fn issuing_root(lab: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(format!("/var/lib/kiln-lab/{lab}/acme/issuing-root.pem"));
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// The issuer and subjectAltName of the certificate `ip:443` presents for `name`, by
/// openssl.
pub fn certificate(ip: &str, name: &str) -> String {
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {ip}:443 -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -issuer -ext subjectAltName"
        ))
        .output()
        .expect("openssl");
    stdout(&o)
}

/// Through Synapse's client API, from inside its container (its Python): log in as
/// `alice`, create a room and send a message, or upload or download a media file; read
/// the messages back; and the versions endpoint.
pub const MATRIX_CLIENT: &str = r#"
import json, sys, urllib.request
base = "http://localhost:8008"
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)
versions = call("GET", "/_matrix/client/versions")
login = call("POST", "/_matrix/client/v3/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": sys.argv[1]})
token = login["access_token"]
out = {"user_id": login["user_id"], "sliding": versions.get("unstable_features", {}).get("org.matrix.simplified_msc3575")}
if sys.argv[2] == "send":
    room = call("POST", "/_matrix/client/v3/createRoom", {"name": "kiln e2e"}, token)["room_id"]
    call("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/txn1" % room, {"msgtype": "m.text", "body": sys.argv[3]}, token)
    out["room"] = room
if sys.argv[2] == "upload":
    req = urllib.request.Request(base + "/_matrix/media/v3/upload?filename=note.txt", method="POST",
        data=sys.argv[3].encode(), headers={"Content-Type": "text/plain", "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        out["mxc"] = json.load(r)["content_uri"]
if sys.argv[2] == "download":
    req = urllib.request.Request(base + "/_matrix/client/v1/media/download/" + sys.argv[3][len("mxc://"):],
        headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        out["content"] = r.read().decode()
rooms = call("GET", "/_matrix/client/v3/joined_rooms", None, token)["joined_rooms"]
bodies = []
for room in rooms:
    msgs = call("GET", "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=20" % room, None, token)
    bodies += [e["content"].get("body") for e in msgs["chunk"] if e["type"] == "m.room.message"]
out["bodies"] = bodies
print(json.dumps(out))
"#;

/// A kiln repository in a temporary folder (`infra/kiln.toml` and a passphrase file) for
/// one lab: the lab end-to-end tests' way to run kiln as a user would.
pub struct LabRepo {
    _tmp: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub pass: std::path::PathBuf,
    pub lab: String,
}

impl LabRepo {
    /// `toml` as `infra/kiln.toml`, a passphrase, and a lab named `<prefix>-<pid>`.
    pub fn new(toml: &str, prefix: &str) -> LabRepo {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("infra/kiln.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, toml).unwrap();
        let pass = tmp.path().join("passphrase");
        std::fs::write(&pass, format!("correct horse battery staple {prefix}\n")).unwrap();
        LabRepo {
            _tmp: tmp,
            config,
            pass,
            lab: format!("{prefix}-{}", std::process::id() % 100_000),
        }
    }

    /// `kiln <args> --config …`
    pub fn kiln(&self, args: &[&str]) -> Output {
        kiln()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// What [`Self::kiln_env`] adds: the lab environment, the passphrase, the config.
    pub fn env_args(&self) -> Vec<String> {
        vec![
            "--env".into(),
            "lab".into(),
            "--passphrase-file".into(),
            self.pass.display().to_string(),
            "--config".into(),
            self.config.display().to_string(),
        ]
    }

    /// `kiln <args> --env lab --passphrase-file … --config …`
    pub fn kiln_env(&self, args: &[&str]) -> Output {
        kiln().args(args).args(self.env_args()).output().unwrap()
    }

    /// A root shell script on lab server `server`.
    pub fn on(&self, server: &str, script: &str) -> Output {
        self.kiln(&[
            "lab", "ssh", "--lab", &self.lab, server, "--", "sudo", "bash", "-c", script,
        ])
    }

    /// [`Self::on`], which must succeed; its stdout.
    pub fn on_ok(&self, server: &str, script: &str) -> String {
        let o = self.on(server, script);
        assert!(o.status.success(), "{server}: {script}: {}", text(&o));
        stdout(&o)
    }

    /// [`MATRIX_CLIENT`] run in the Synapse container of lab server `server` with `args`
    /// (`PASSWORD read`, `PASSWORD send BODY`, `PASSWORD upload TEXT` or `PASSWORD
    /// download MXC`): its JSON answer.
    pub fn matrix(&self, server: &str, args: &str) -> serde_json::Value {
        let out = self.on_ok(
            server,
            &format!(
                "cat > /tmp/matrix.py <<'PYEOF'\n{MATRIX_CLIENT}\nPYEOF\npodman cp /tmp/matrix.py synapse:/tmp/matrix.py && podman exec synapse python3 /tmp/matrix.py {args}"
            ),
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// A secret of the lab environment's vault.
    pub fn secret(&self, name: &str) -> String {
        let o = self.kiln_env(&["secrets", "get", name]);
        assert!(o.status.success(), "secrets get {name}: {}", text(&o));
        stdout(&o).trim_end().to_owned()
    }

    /// `kiln secrets set NAME`, the value on stdin.
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut c = kiln();
        c.args(["secrets", "set", name]).args(self.env_args());
        let o = run_with_stdin(c, Some(value));
        assert!(o.status.success(), "secrets set {name}: {}", text(&o));
    }

    /// The address `kiln lab up` recorded for `role`.
    pub fn address(&self, role: &str) -> String {
        lab_address(&self.config, role)
    }

    pub fn toml(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    pub fn set_toml(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Runs `scenario`, then removes the lab whatever happened; the scenario's panic
    /// wins over a failed teardown.
    pub fn run(&self, scenario: impl FnOnce(&LabRepo)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(self)));
        let down = self.kiln(&["lab", "down", "--lab", &self.lab]);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        assert!(down.status.success(), "kiln lab down: {}", text(&down));
    }
}

/// The snapshot-path backup tests' setting: a lab with an S3 server (and `vms`), a
/// repository initialized under `kiln/lab`, and one service `notes` whose files it backs
/// up.
pub struct NotesBackup {
    pub lab: kiln_lab::Lab,
    pub s3: kiln_lab::S3State,
    pub location: kiln_backup::Location,
    pub password: &'static str,
}

impl NotesBackup {
    pub fn start(prefix: &str, bucket: &str, vms: &[&str], password: &'static str) -> Self {
        assert!(
            kiln_lab::prereq::is_root(),
            "the lab end-to-end tests need root (after .ci/install-lab.sh)"
        );
        let opts = kiln_lab::LabOptions {
            s3: Some(kiln_lab::S3Options {
                bucket: bucket.into(),
                retention_days: 1,
                ..Default::default()
            }),
            vms: vms.iter().map(|v| (*v).to_owned()).collect(),
            ..kiln_lab::LabOptions::unique(prefix, 0)
        };
        let started = std::time::Instant::now();
        let lab = kiln_lab::Lab::start(opts).expect("lab with S3 starts");
        eprintln!("lab up in {:.0?}", started.elapsed());
        let s3 = lab.s3().expect("S3").clone();
        let location = kiln_backup::Location {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            bucket: s3.bucket.clone(),
            prefix: "kiln/lab".into(),
        };
        kiln_backup::Repo::init(&location, &s3.server, &kiln_secrets::Secret::new(password))
            .expect("init");
        NotesBackup {
            lab,
            s3,
            location,
            password,
        }
    }

    /// Host `host`'s plan: `notes`'s files at `data`, its unit `unit` stopped for the
    /// copy when there is no snapshot.
    pub fn plan(
        &self,
        host: &str,
        data: &std::path::Path,
        unit: &str,
        state_path: std::path::PathBuf,
    ) -> kiln_backup::plan::HostPlan {
        use kiln_backup::plan::{HostPlan, Item, Kind, PlanLocation, Source};
        HostPlan {
            environment: "lab".into(),
            host: host.into(),
            repository: PlanLocation::from(&self.location),
            metrics_dir: None,
            state_path,
            items: vec![Item {
                service: "notes".into(),
                kind: Kind::Files,
                source: Source::Paths {
                    paths: vec![data.to_path_buf()],
                },
                description: "volumes data of service notes".into(),
                stop_units: vec![unit.into()],
                before: vec![],
                after: vec![],
                unit: Some(unit.into()),
                database: None,
            }],
        }
    }

    /// The host's secrets: the servers' credential and the repository password.
    pub fn secrets(&self) -> kiln_backup::plan::HostSecrets {
        kiln_backup::plan::HostSecrets {
            access_key_id: self.s3.server.access_key_id.clone(),
            secret_access_key: self.s3.server.secret_access_key.expose().to_owned(),
            repository_password: self.password.into(),
        }
    }

    /// Debian's restic on the repository with the read-only credential (no lock), which
    /// must succeed: its stdout.
    pub fn restic(&self, args: &[&str]) -> String {
        let o = Command::new("restic")
            .args(["-r", &self.location.restic_url(), "--no-cache", "--no-lock"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.s3.readonly.access_key_id)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                self.s3.readonly.secret_access_key.expose(),
            )
            .env("RESTIC_PASSWORD", self.password)
            .output()
            .expect("restic (apt install restic)");
        assert!(o.status.success(), "restic {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// File `path` of `notes`'s latest snapshot, as restic dumps it.
    pub fn dump(&self, path: &str) -> String {
        self.restic(&["dump", "--tag", "service=notes", "latest", path])
    }
}
