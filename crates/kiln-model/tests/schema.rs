//! The generated JSON Schema against the sample configurations: every valid sample (and
//! the examples) validates, as editors using the schema would see it; samples with an
//! unknown key, an unknown kind or a mistyped option do not. The TOML is converted to
//! JSON first, as taplo does.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> jsonschema::Validator {
    let schema = kiln_model::reference::config_schema();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("invalid schema: {e}"))
}

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(value).unwrap()
}

fn errors(v: &jsonschema::Validator, path: &Path) -> Vec<String> {
    v.iter_errors(&as_json(path))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_schema_is_draft_7_with_descriptions() {
    let schema = kiln_model::reference::config_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(jsonschema::draft7::meta::is_valid(&schema));
    let project = &schema["properties"]["project"]["properties"];
    assert!(project["acme_email"]["description"].is_string());
    let host = &schema["definitions"]["Host"]["properties"];
    assert_eq!(host["ssh_port"]["default"], 22);
    let base = &schema["definitions"]["Base"]["properties"];
    assert_eq!(base["rollback_seconds"]["default"], 60);
    assert_eq!(base["sshd"]["default"], true);
    assert!(base["sshd"]["description"].is_string());
}

#[test]
fn every_valid_sample_and_example_validates() {
    let v = validator();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/config/valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    files.push(repo().join("examples/reference/kiln.toml"));
    files.push(repo().join("examples/demo/kiln.toml"));
    for f in files {
        let e = errors(&v, &f);
        assert!(e.is_empty(), "{}: {e:#?}", f.display());
    }
}

#[test]
fn unknown_keys_kinds_and_mistyped_options_do_not_validate() {
    let v = validator();
    for (file, expected) in [
        ("unknown-top-level-key.toml", "additional"),
        ("unknown-project-key.toml", "additional"),
        ("unknown-service-key.toml", "additional"),
        ("unknown-role-key.toml", "additional"),
        ("backups-unknown-retention-key.toml", "additional"),
        ("unknown-option.toml", "additional"),
        ("unknown-kind.toml", "is not one of"),
        ("option-wrong-type.toml", "is not of type"),
        ("missing-required-key.toml", "is a required property"),
        ("unknown-os.toml", "is not one of"),
        ("base-unknown-key.toml", "additional"),
        ("base-host-unknown-key.toml", "additional"),
        ("base-password-login.toml", "is not valid under any"),
        ("base-unknown-reboot.toml", "is not valid under any"),
        ("base-rollback-out-of-range.toml", "less than the minimum"),
        ("base-part-wrong-type.toml", "is not valid under any"),
    ] {
        let path = repo().join("tests/config/invalid").join(file);
        let e = errors(&v, &path);
        assert!(
            e.iter().any(|m| m.to_lowercase().contains(expected)),
            "{file}: expected an error containing {expected:?}, got {e:#?}"
        );
    }
}
