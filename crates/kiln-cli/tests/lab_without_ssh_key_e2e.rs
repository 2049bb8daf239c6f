//! End-to-end: the lab works for a user with no SSH key of their own. As a new user would
//! on a fresh machine (root, `HOME` an empty folder: no `~/.ssh`), `kiln lab up --config
//! kiln.toml`, then `kiln apply --env lab --yes` without `--identity`, then `kiln plan
//! --env lab` shows zero changes and `kiln trust` finds the keys `lab up` pinned, then
//! `kiln lab down`. plan/apply find the running lab's operator key by themselves, from the
//! lab whose servers have the environment's addresses. Needs root and the lab's
//! prerequisites (.ci/install-lab.sh).

mod common;
use common::text;

use std::path::Path;
use std::process::Output;

const KILN_TOML: &str = r#"# a one-host lab environment, as a user would write it
[project]
name = "nokey"
domain = "nokey.lab"
acme_email = "ops@nokey.lab"

[base]          # not this test's subject (base_lab_e2e.rs)
sshd = false
firewall = false
updates = false
time = false
node_exporter = false
wireguard = false

[environments.lab]
domain = "nokey.lab"
acme_ca = "internal"

[environments.lab.hosts.web]
address = "10.77.0.11"   # replaced by the lab's address
admin_user = "kiln"
os = "debian13"

[roles.web]

[[roles.web.files]]
path = "/etc/kiln-nokey.txt"
content = "deployed without a key of my own\n"
"#;

fn kiln(home: &Path, config: &Path, args: &[&str]) -> Output {
    common::kiln()
        .args(args)
        .arg("--config")
        .arg(config)
        .env("HOME", home)
        .env_remove("SUDO_USER")
        .env_remove("KILN_SSH_IDENTITY")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

#[test]
fn lab_up_then_apply_and_plan_without_an_ssh_key_of_ones_own() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let lab = format!("nokey-{}", std::process::id() % 100_000);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = tmp.path().join("infra/kiln.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, KILN_TOML).unwrap();

    let result = std::panic::catch_unwind(|| {
        let up = kiln(&home, &config, &["lab", "up", "--yes", "--lab", &lab]);
        assert!(up.status.success(), "kiln lab up: {}", text(&up));
        let toml = std::fs::read_to_string(&config).unwrap();
        assert!(toml.contains("host_keys = ["), "{toml}");
        assert!(toml.contains("# replaced by the lab's address"), "{toml}");

        let apply = kiln(&home, &config, &["apply", "--env", "lab", "--yes"]);
        assert!(apply.status.success(), "kiln apply: {}", text(&apply));
        assert!(
            String::from_utf8_lossy(&apply.stdout).contains("; 0 failed."),
            "{}",
            text(&apply)
        );

        let plan = kiln(&home, &config, &["plan", "--env", "lab"]);
        assert_eq!(plan.status.code(), Some(0), "kiln plan: {}", text(&plan));
        let out = String::from_utf8_lossy(&plan.stdout);
        assert!(out.contains("web: no changes\n"), "{}", text(&plan));
        assert!(
            out.contains("Plan: 0 to create, 0 to change, 0 to remove, on 0 of 1 host(s)."),
            "{}",
            text(&plan)
        );

        let trust = kiln(&home, &config, &["trust", "web", "--env", "lab"]);
        assert!(trust.status.success(), "kiln trust: {}", text(&trust));
        assert!(
            String::from_utf8_lossy(&trust.stdout).contains("These keys are already pinned"),
            "{}",
            text(&trust)
        );
        // Nothing was written into the empty home.
        assert!(!home.join(".ssh/id_ed25519").exists());
    });
    let down = kiln(&home, &config, &["lab", "down", "--lab", &lab]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(down.status.success(), "kiln lab down: {}", text(&down));
    let labs = kiln_lab::status(&kiln_lab::Roots::default()).unwrap();
    assert!(labs.iter().all(|l| l.name != lab), "lab {lab} is left");
}
