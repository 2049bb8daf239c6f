//! End-to-end, as a user would: the reference infrastructure's services on a fresh lab
//! server. `kiln lab up` (which loads the lab's images under the upstream names), `kiln
//! secrets generate`, `kiln apply --env lab`: PostgreSQL and Synapse run for real (Synapse
//! built from PyPI for the pinned version), HedgeDoc and Nextcloud as **contract images**
//! (test doubles of kiln's side of their upstream contract, never the applications). Then:
//! a user registered with the shared secret sends a message and reads it back through the
//! client API; native sliding sync is advertised; the contract images wrote their rows with
//! the vault's passwords into their own databases and their files as the upstream UIDs; no
//! secret in `ps`, `podman inspect`, unit files or kiln's output; a second plan is empty;
//! a Synapse upgrade restarts Synapse only; a deliberately broken version (a contract image
//! whose health check fails) is reported unhealthy with its journal and how to go back,
//! the other services untouched. Needs root and the lab's prerequisites
//! (.ci/install-lab.sh).

mod common;
use common::{all_output, certificate, text};

use std::process::Command;

/// The stack, shared with bench/services.py.
const KILN_TOML: &str = include_str!("../../../examples/lab-services/kiln.toml");

/// The lab repository, with what this test asks of the services server.
struct Repo(common::LabRepo);

impl std::ops::Deref for Repo {
    type Target = common::LabRepo;
    fn deref(&self) -> &common::LabRepo {
        &self.0
    }
}

impl Repo {
    /// A root shell script on the services server, which must succeed.
    fn on_server_ok(&self, script: &str) -> String {
        self.on_ok("services", script)
    }

    fn set_version(&self, service: &str, from: &str, to: &str) {
        let t = std::fs::read_to_string(&self.config).unwrap();
        let old = format!(
            "[services.{service}]\nkind = \"{service}\"\nhost = \"services\"\nsubdomain = \"matrix\"\nversion = \"{from}\""
        );
        assert!(t.contains(&old), "{t}");
        let new = old.replace(
            &format!("version = \"{from}\""),
            &format!("version = \"{to}\""),
        );
        std::fs::write(&self.config, t.replace(&old, &new)).unwrap();
    }

    /// The services server's address, as `kiln lab up` recorded it.
    fn address(&self) -> String {
        self.0.address("services")
    }

    fn started_at(&self, containers: &[&str]) -> Vec<String> {
        let out = self.on_server_ok(&format!(
            "podman inspect --format '{{{{.Name}}}} {{{{.State.StartedAt}}}}' {}",
            containers.join(" ")
        ));
        out.lines().map(str::to_owned).collect()
    }
}

fn matrix(repo: &Repo, args: &str) -> serde_json::Value {
    repo.matrix("services", args)
}

#[test]
fn the_reference_services_run_upgrade_and_report_a_broken_version() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let repo = Repo(common::LabRepo::new(KILN_TOML, "svc"));
    repo.0.run(|_| scenario(&repo));
}

fn scenario(repo: &Repo) {
    let up = repo.kiln(&["lab", "up", "--yes", "--lab", &repo.lab]);
    assert!(up.status.success(), "kiln lab up: {}", text(&up));
    let up_out = all_output(&up);
    assert!(
        up_out.contains("contract image") && up_out.contains("quay.io/hedgedoc/hedgedoc:1.10.3"),
        "lab up names the contract images it substitutes: {up_out}"
    );
    let gen_ = repo.kiln_env(&["secrets", "generate"]);
    assert!(gen_.status.success(), "secrets generate: {}", text(&gen_));

    // First apply: everything from nothing, healthy.
    let apply = repo.kiln_env(&["apply", "--yes"]);
    let apply_out = all_output(&apply);
    assert!(apply.status.success(), "kiln apply: {}", text(&apply));
    assert!(apply_out.contains("; 0 failed."), "{apply_out}");
    for unit in ["postgres", "synapse", "hedgedoc", "nextcloud"] {
        assert!(
            apply_out.contains(&format!("] {unit}.service is healthy (")),
            "apply reports {unit} healthy: {apply_out}"
        );
    }
    let ps = repo.on_server_ok("podman ps --format '{{.Names}} {{.Status}}'");
    for c in ["postgres", "synapse", "hedgedoc", "nextcloud"] {
        assert!(
            ps.lines()
                .any(|l| l.starts_with(&format!("{c} ")) && l.contains("(healthy)")),
            "{c} is not healthy:\n{ps}"
        );
    }

    // `kiln status`: every service active, healthy, on its pinned version.
    let status = repo.kiln_env(&["status"]);
    let status_out = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(
        status.status.code(),
        Some(0),
        "kiln status: {}",
        text(&status)
    );
    for (svc, version) in [
        ("postgres", "17"),
        ("synapse", "v1.162.0"),
        ("hedgedoc", "1.10.3"),
        ("nextcloud", "31"),
    ] {
        assert!(
            status_out.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 4 && w[..4] == [svc, "active", "healthy", version]
            }),
            "{svc}: {status_out}"
        );
    }

    // A second plan has nothing to do.
    let plan = repo.kiln_env(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "kiln plan: {}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("services: no changes\n"),
        "{}",
        text(&plan)
    );

    // Through the reverse proxy (Caddy), from the lab host, with certificates the lab's
    // Pebble issued for exactly each name: Synapse's client API (native sliding sync
    // advertised), its admin API hidden, the apex's Matrix delegation, HedgeDoc's contract
    // image, Nextcloud's CalDAV redirect.
    https_checks(repo);

    // Synapse, for real: a user registered with the shared secret (read by Synapse's own
    // tool from homeserver.yaml), a room, a message sent and read back; sliding sync.
    repo.on_server_ok(
        "podman exec synapse register_new_matrix_user -c /config/homeserver.yaml -u alice -p alice-e2e-password --no-admin http://localhost:8008",
    );
    let m = matrix(repo, "alice-e2e-password send 'hello from kiln'");
    assert_eq!(m["user_id"], "@alice:ergaster.test", "{m}");
    assert_eq!(
        m["sliding"], true,
        "simplified sliding sync advertised: {m}"
    );
    assert!(
        m["bodies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "hello from kiln"),
        "{m}"
    );

    // The contract images (test doubles) connected with the vault's passwords and wrote
    // their rows, and their files are owned by the upstream UIDs.
    for (db, app) in [("hedgedoc", "hedgedoc"), ("nextcloud", "nextcloud")] {
        let rows = repo.on_server_ok(&format!(
            "podman exec postgres psql -U postgres -d {db} -tAc \"SELECT app FROM kiln_contract\""
        ));
        assert!(rows.lines().any(|l| l == app), "{db}: {rows}");
        let owner = repo.on_server_ok(&format!(
            "podman exec postgres psql -U postgres -d postgres -tAc \"SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = '{db}'\""
        ));
        assert_eq!(owner.trim(), db);
    }
    let synapse_collation = repo.on_server_ok(
        "podman exec postgres psql -U postgres -tAc \"SELECT datcollate FROM pg_database WHERE datname = 'synapse'\"",
    );
    assert_eq!(synapse_collation.trim(), "C");
    let owners = repo.on_server_ok(
        "stat -c '%u %n' /srv/kiln/hedgedoc/uploads /srv/kiln/hedgedoc/uploads/* /srv/kiln/nextcloud/data /srv/kiln/nextcloud/html /srv/kiln/synapse/data /srv/kiln/postgres/data",
    );
    for l in owners.lines() {
        let (uid, path) = l.split_once(' ').unwrap();
        let want = match path {
            p if p.starts_with("/srv/kiln/hedgedoc") => "10000",
            p if p.starts_with("/srv/kiln/nextcloud") => "33",
            p if p.starts_with("/srv/kiln/synapse") => "991",
            _ => "999",
        };
        assert_eq!(uid, want, "{l}");
    }

    // No secret anywhere it could leak: processes, containers' configuration, unit files,
    // kiln's own output.
    let secrets: Vec<String> = [
        "postgres_superuser_password",
        "synapse_db_password",
        "synapse_registration_shared_secret",
        "synapse_macaroon_secret_key",
        "hedgedoc_db_password",
        "hedgedoc_session_secret",
        "nextcloud_db_password",
        "nextcloud_admin_password",
    ]
    .iter()
    .map(|n| repo.secret(n))
    .collect();
    let exposed = repo.on_server_ok(
        "ps auxww; podman inspect postgres synapse hedgedoc nextcloud; cat /etc/containers/systemd/*.container /run/systemd/generator/*.service; systemctl show postgres synapse hedgedoc nextcloud",
    );
    let ours = format!("{apply_out}{}", all_output(&plan));
    for s in &secrets {
        assert!(s.len() >= 24, "a generated secret");
        assert!(
            !exposed.contains(s.as_str()),
            "a secret is visible on the host"
        );
        assert!(!ours.contains(s.as_str()), "a secret is in kiln's output");
    }

    // Upgrade: one line in kiln.toml; the plan says it; Synapse alone restarts.
    let others = ["postgres", "hedgedoc", "nextcloud"];
    let before = repo.started_at(&others);
    let img = repo.kiln(&[
        "lab",
        "image",
        "--lab",
        &repo.lab,
        "--server",
        "services",
        "docker.io/matrixdotorg/synapse:v1.163.2",
    ]);
    assert!(img.status.success(), "lab image: {}", text(&img));
    repo.set_version("synapse", "v1.162.0", "v1.163.2");
    let plan = repo.kiln_env(&["plan"]);
    let plan_out = all_output(&plan);
    assert!(
        plan_out.contains("synapse v1.162.0 → v1.163.2"),
        "{plan_out}"
    );
    let apply = repo.kiln_env(&["apply", "--yes"]);
    assert!(apply.status.success(), "upgrade: {}", text(&apply));
    assert_eq!(repo.started_at(&others), before, "only Synapse restarts");
    let running = repo
        .on_server_ok("podman inspect --format '{{.ImageName}} {{.State.Health.Status}}' synapse");
    assert_eq!(
        running.trim(),
        "docker.io/matrixdotorg/synapse:v1.163.2 healthy"
    );
    let m = matrix(repo, "alice-e2e-password read");
    assert!(
        m["bodies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "hello from kiln"),
        "the message survived the upgrade: {m}"
    );

    // A broken version (a contract image whose health check always fails): reported
    // unhealthy with its journal and how to go back; the other services untouched.
    let img = repo.kiln(&[
        "lab",
        "image",
        "--lab",
        &repo.lab,
        "--server",
        "services",
        "docker.io/matrixdotorg/synapse:v9.9.9-kiln-broken",
    ]);
    assert!(img.status.success(), "lab image: {}", text(&img));
    repo.set_version("synapse", "v1.163.2", "v9.9.9-kiln-broken");
    let apply = repo.kiln_env(&["apply", "--yes"]);
    let out = all_output(&apply);
    assert!(!apply.status.success(), "a broken version fails: {out}");
    assert!(out.contains("unhealthy"), "{out}");
    assert!(
        out.contains("deliberately unhealthy"),
        "its journal is shown: {out}"
    );
    assert!(
        out.contains("v1.163.2"),
        "how to go back names the previous version: {out}"
    );
    assert_eq!(
        repo.started_at(&others),
        before,
        "the other services are untouched"
    );
    let status = repo.kiln_env(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "kiln status says a service is not healthy: {}",
        text(&status)
    );
    // Going back is the same one-line change.
    repo.set_version("synapse", "v9.9.9-kiln-broken", "v1.163.2");
    let apply = repo.kiln_env(&["apply", "--yes"]);
    assert!(apply.status.success(), "back to v1.163.2: {}", text(&apply));
    let m = matrix(repo, "alice-e2e-password read");
    assert!(
        m["bodies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "hello from kiln")
    );
}

/// curl from the lab host to the services server's proxy: (status, body).
fn https(repo: &Repo, name: &str, path: &str) -> (String, String) {
    let ip = repo.address();
    let root = common::issuing_root(&repo.lab);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&root)
            .arg("--resolve")
            .arg(format!("{name}:443:{ip}"))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://{name}{path}"))
            .output()
            .expect("curl");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() {
            let (body, code) = out.rsplit_once('\n').unwrap();
            return (code.to_owned(), body.to_owned());
        }
        // The proxy may still be getting its certificates.
        assert!(
            std::time::Instant::now() < deadline,
            "https://{name}{path}: {}",
            text(&o)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn https_checks(repo: &Repo) {
    let (code, body) = https(repo, "matrix.ergaster.test", "/_matrix/client/versions");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("org.matrix.simplified_msc3575"), "{body}");
    let (code, _) = https(
        repo,
        "matrix.ergaster.test",
        "/_synapse/admin/v1/server_version",
    );
    assert_eq!(code, "404", "Synapse's admin API is not public");
    let (code, body) = https(repo, "ergaster.test", "/.well-known/matrix/server");
    assert_eq!(code, "200");
    assert_eq!(body, r#"{"m.server":"matrix.ergaster.test:443"}"#);
    let (code, body) = https(repo, "ergaster.test", "/.well-known/matrix/client");
    assert_eq!(code, "200");
    assert!(body.contains("https://matrix.ergaster.test"), "{body}");
    let (code, body) = https(repo, "hdoc.ergaster.test", "/status");
    assert_eq!(
        code, "200",
        "HedgeDoc's contract image behind its name: {body}"
    );
    let (code, _) = https(repo, "cloud.ergaster.test", "/.well-known/caldav");
    assert_eq!(code, "301", "Nextcloud's CalDAV redirect");
    for name in [
        "matrix.ergaster.test",
        "hdoc.ergaster.test",
        "ergaster.test",
    ] {
        let cert = certificate(&repo.address(), name);
        assert!(cert.contains("Pebble"), "{name}: {cert}");
        assert!(
            cert.contains(&format!("DNS:{name}")) && !cert.contains(", DNS:"),
            "{name}: exactly its name: {cert}"
        );
    }
}
