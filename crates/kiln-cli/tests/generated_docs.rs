//! The generated references in docs/ (kiln.toml reference, JSON Schema, CLI reference)
//! are current: `kiln util generate-docs --check` passes on the repository's docs/, and
//! fails naming each stale or missing file on a copy that is out of date. Regenerate with
//! `cargo run -q -- util generate-docs` from the repository root.

mod common;
use common::stderr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GENERATED: [&str; 3] = [
    "config-reference.md",
    "kiln.schema.json",
    "cli-reference.md",
];

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_CONFIG")
        .output()
        .expect("run kiln")
}

fn check(dir: &Path) -> Output {
    kiln(&[
        "util",
        "generate-docs",
        "--check",
        "--dir",
        dir.to_str().unwrap(),
    ])
}

#[test]
fn the_checked_in_docs_are_current() {
    let o = check(&docs());
    assert_eq!(
        o.status.code(),
        Some(0),
        "docs/ is stale; regenerate with `cargo run -q -- util generate-docs` and commit:\n{}",
        stderr(&o)
    );
}

#[test]
fn the_check_names_each_stale_or_missing_file_and_writing_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    for f in GENERATED {
        std::fs::copy(docs().join(f), dir.join(f)).unwrap();
    }
    assert_eq!(
        check(&dir).status.code(),
        Some(0),
        "{}",
        stderr(&check(&dir))
    );

    // One file edited by hand, one gone.
    let reference = dir.join("config-reference.md");
    let text = std::fs::read_to_string(&reference).unwrap();
    std::fs::write(&reference, format!("{text}\nedited by hand\n")).unwrap();
    std::fs::remove_file(dir.join("cli-reference.md")).unwrap();
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("config-reference.md"), "{err}");
    assert!(err.contains("cli-reference.md"), "{err}");
    assert!(!err.contains("kiln.schema.json"), "{err}");
    assert!(err.contains("util generate-docs"), "{err}");

    let o = kiln(&["util", "generate-docs", "--dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(check(&dir).status.code(), Some(0));
    for f in GENERATED {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(docs().join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn config_schema_prints_the_schema_and_init_writes_it_where_kiln_toml_points() {
    let o = kiln(&["util", "config-schema"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let schema = std::fs::read(docs().join("kiln.schema.json")).unwrap();
    assert_eq!(o.stdout, schema);

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("infra");
    let o = kiln(&["init", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let toml = std::fs::read_to_string(repo.join("kiln.toml")).unwrap();
    let first = toml.lines().next().unwrap();
    let rel = first
        .strip_prefix("#:schema ")
        .expect("a #:schema first line");
    // Editors resolve the path relative to kiln.toml.
    assert_eq!(std::fs::read(repo.join(rel)).unwrap(), schema, "{rel}");
}
