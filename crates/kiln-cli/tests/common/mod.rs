//! What the CLI's integration tests share: the kiln binary under test, with the variables a
//! developer's shell may set (`KILN_CONFIG`, `KILN_ENV`) removed, and an `Output` as text.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

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
