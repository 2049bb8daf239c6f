//! `kiln trust` as a user runs it, without any server: the host comes from the validated
//! model (one environment rule, `--config DIR` understood), so a broken pinned key is
//! reported with its place in kiln.toml before anything is scanned, and an ambiguous or
//! unknown target is an input error naming the choices. Only loopback addresses.

mod common;
use common::stderr;

use std::path::Path;
use std::process::Output;

const HEAD: &str =
    "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n";

fn env(name: &str, loopback: u8, host_keys: &str) -> String {
    format!(
        "[environments.{name}]\ndomain = \"{name}.example.org\"\nacme_ca = \"internal\"\n\
         [environments.{name}.hosts.web]\naddress = \"127.0.0.{loopback}\"\nssh_port = 9\nadmin_user = \"admin\"\n{host_keys}"
    )
}

fn trust(dir: &Path, args: &[&str]) -> Output {
    common::kiln_plain()
        .arg("trust")
        .args(args)
        // A folder: its kiln.toml (trust used to ignore `--config DIR`).
        .arg("--config")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn a_broken_pinned_key_is_reported_with_its_place_before_any_scan() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}{}",
        env("lab", 1, "host_keys = [\"ssh-ed25519 AAAAnotakey\"]\n")
    );
    std::fs::write(dir.path().join("kiln.toml"), text).unwrap();
    let out = trust(dir.path(), &["web", "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("host key has invalid base64"), "{err}");
    assert!(
        err.contains("kiln.toml:"),
        "the diagnostic points into the file: {err}"
    );
    assert!(!err.contains("ssh-keyscan"), "nothing was scanned: {err}");
}

#[test]
fn the_environment_follows_the_one_rule_and_roles_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{HEAD}{}{}", env("lab", 1, ""), env("staging", 2, ""));
    std::fs::write(dir.path().join("kiln.toml"), text).unwrap();
    let out = trust(dir.path(), &["web", "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("several environments (lab, staging) and none is named `production`"),
        "{err}"
    );
    let out = trust(dir.path(), &["db", "--env", "lab", "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("environment lab has no host playing role `db`"),
        "{err}"
    );
    assert!(err.contains("roles with a host there: web"), "{err}");
}
