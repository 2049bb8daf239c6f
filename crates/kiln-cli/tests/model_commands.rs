//! `kiln check`, `kiln dns`, `kiln show` and `kiln init` as a user runs them: the real
//! binary, from the repository root, on the bundled example and the config corpus.

mod common;
use common::{stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn kiln(args: &[&str]) -> Output {
    kiln_in(&root(), args)
}

fn kiln_in(dir: &Path, args: &[&str]) -> Output {
    common::kiln_plain()
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

const EXAMPLE: &str = "examples/reference/kiln.toml";

#[test]
fn check_accepts_the_reference_example() {
    let o = kiln(&["check", "--config", EXAMPLE]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "examples/reference/kiln.toml: ok — 3 environments (production, staging, lab), 6 hosts, 5 services, 20 secrets needed\n\
         note: staging: no pinned SSH host key yet for monitoring, services (run `kiln trust <role> --env staging` before deploying)\n\
         note: lab: no pinned SSH host key yet for monitoring, services (run `kiln trust <role> --env lab` before deploying)\n"
    );
}

#[test]
fn check_rejects_every_invalid_sample_with_exit_2_and_located_errors() {
    let dir = root().join("tests/config/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = format!(
            "tests/config/invalid/{}",
            path.file_name().unwrap().to_str().unwrap()
        );
        let o = kiln(&["check", "--config", &rel]);
        assert_eq!(o.status.code(), Some(2), "{rel}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("[{rel}:")),
            "{rel}: no file:line:column in\n{err}"
        );
        assert!(err.contains("help:"), "{rel}: no hint in\n{err}");
        assert!(
            err.contains(" in tests/config/invalid/"),
            "{rel}: no summary in\n{err}"
        );
        assert!(stdout(&o).is_empty(), "{rel}: printed on stdout");
        n += 1;
    }
    assert!(n >= 40);
}

#[test]
fn check_finds_kiln_toml_in_a_parent_folder_and_reports_a_missing_one() {
    let o = kiln_in(&root().join("examples/reference/templates"), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let empty = std::env::temp_dir().join(format!("kiln-no-config-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let o = kiln_in(&empty, &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no kiln.toml"), "{}", stderr(&o));
    let o = kiln(&["check", "--config", "examples/reference"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a folder means its kiln.toml: {}",
        stderr(&o)
    );
    let o = kiln(&["check", "--config", "does/not/exist.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read does/not/exist.toml"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn dns_table_for_production() {
    let o = kiln(&["dns", "--config", EXAMPLE, "--env", "production"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn dns_zone_for_staging() {
    let o = kiln(&[
        "dns", "--config", EXAMPLE, "--env", "staging", "--format", "zone", "--ttl", "300",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn dns_json_lists_every_environment() {
    let o = kiln(&["dns", "--config", EXAMPLE, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let recs = v.as_array().unwrap();
    for env in ["production", "staging", "lab"] {
        assert!(recs.iter().any(|r| r["environment"] == env), "{env}");
    }
    assert!(recs.iter().any(|r| r["name"] == "hdoc.ergaster.org"
        && r["type"] == "CNAME"
        && r["value"] == "ergaster.org"));
}

#[test]
fn unknown_environment_is_an_input_error() {
    let o = kiln(&["dns", "--config", EXAMPLE, "--env", "prod"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no environment `prod`"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("production, staging, lab"),
        "{}",
        stderr(&o)
    );
    let o = kiln(&["show", "--config", EXAMPLE, "--env", "prod"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn show_production() {
    let o = kiln(&["show", "--config", EXAMPLE, "--env", "production"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn show_json_has_urls_fingerprints_and_only_secret_names() {
    let o = kiln(&["show", "--config", EXAMPLE, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let prod = &v["environments"][0];
    assert_eq!(prod["name"], "production");
    let urls: Vec<_> = prod["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["url"].as_str())
        .collect();
    assert!(urls.contains(&"https://matrix.ergaster.org"));
    assert_eq!(v["overridden_templates"], serde_json::json!([]));
    let services = prod["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["role"] == "services")
        .unwrap();
    assert_eq!(
        services["host_keys"][0]["fingerprint"],
        "SHA256:Qc7EggqBggRLGeCuG7adwg84SvzKzLw7DyySS94vH84"
    );
    let names: Vec<_> = prod["secret_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"synapse_signing_key"));
    assert_eq!(
        v["environments"][1]["backups"],
        serde_json::Value::Null,
        "staging has backups off"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-init-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_writes_a_starter_that_passes_check() {
    let dir = scratch("ok").join("My Infra");
    let d = dir.to_str().unwrap();
    let o = kiln(&["init", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["kiln.toml", ".gitignore", "secrets/README.md"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let toml = std::fs::read_to_string(dir.join("kiln.toml")).unwrap();
    assert!(toml.contains("name = \"my-infra\""), "{toml}");
    let o = kiln(&["check", "--config", dir.join("kiln.toml").to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "starter fails check:\n{}",
        stderr(&o)
    );
    // Also found without --config, from inside the new repository.
    let o = kiln_in(&dir, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn init_with_a_domain_fills_it_in_and_dns_uses_it() {
    let dir = scratch("domain");
    let d = dir.to_str().unwrap();
    let o = kiln(&["init", d, "--domain", "ergaster.org"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg = dir.join("kiln.toml");
    let o = kiln(&[
        "dns",
        "--config",
        cfg.to_str().unwrap(),
        "--env",
        "production",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "hdoc.ergaster.org")
    );
    assert!(stdout(&o).contains("mailto:admin@ergaster.org"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_twice_fails_naming_the_files_and_changes_nothing() {
    let dir = scratch("twice");
    let d = dir.to_str().unwrap();
    assert_eq!(kiln(&["init", d]).status.code(), Some(0));
    std::fs::write(dir.join("kiln.toml"), "# edited by the user\n").unwrap();
    let before = snapshot_dir(&dir);
    let o = kiln(&["init", d]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("kiln.toml") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(snapshot_dir(&dir), before, "a refused init changed files");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_refuses_when_only_one_file_exists_and_writes_none() {
    let dir = scratch("partial");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    let o = kiln(&["init", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(".gitignore"), "{}", stderr(&o));
    assert!(!dir.join("kiln.toml").exists());
    assert!(!dir.join("secrets").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "target/\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
