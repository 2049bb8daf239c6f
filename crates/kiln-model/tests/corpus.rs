//! The configuration corpus at the repository root: every `tests/config/valid/*.toml`
//! loads; every `tests/config/invalid/*.toml` fails, each error naming file:line:column
//! with a hint, and the rendered errors match their snapshot
//! (`tests/snapshots/corpus__<name>.snap`, reviewed with `cargo insta review`).

use std::path::{Path, PathBuf};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Parses a corpus file under the name `<kind>/<file>` so snapshots do not depend on
/// where the repository is checked out.
fn parse(path: &Path) -> Result<kiln_model::Model, kiln_model::Diagnostics> {
    let text = std::fs::read_to_string(path).unwrap();
    let kind = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let name = format!("{kind}/{}", path.file_name().unwrap().to_str().unwrap());
    kiln_model::parse_str(&name, &text, path.parent().unwrap())
}

#[test]
fn every_valid_sample_loads() {
    let files = corpus("valid");
    assert!(files.len() >= 5, "valid corpus too small: {}", files.len());
    for path in files {
        if let Err(d) = parse(&path) {
            panic!(
                "{} should be valid:\n{}",
                path.display(),
                d.render(100, false)
            );
        }
    }
}

#[test]
fn every_invalid_sample_fails_with_located_hinted_errors() {
    let files = corpus("invalid");
    assert!(
        files.len() >= 40,
        "invalid corpus too small: {}",
        files.len()
    );
    for path in files {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let diags = match parse(&path) {
            Ok(_) => panic!("{} should be rejected", path.display()),
            Err(d) => d,
        };
        assert!(!diags.is_empty());
        for e in diags.items() {
            let loc = e
                .location()
                .unwrap_or_else(|| panic!("{stem}: error without location: {e}"));
            assert!(
                loc.starts_with(&format!("invalid/{stem}.toml:")),
                "{stem}: {loc}"
            );
            assert!(
                e.help.as_deref().is_some_and(|h| !h.is_empty()),
                "{stem}: error without hint: {e}"
            );
        }
        let rendered = diags.render(100, false);
        insta::assert_snapshot!(stem, rendered);
    }
}

#[test]
fn the_many_errors_sample_reports_each_of_its_mistakes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/config/invalid/many-errors-at-once.toml");
    let diags = parse(&path).err().unwrap();
    let codes: Vec<_> = diags.items().map(|e| e.message.clone()).collect();
    for expected in [
        "e-mail address `admin`",
        "ssh_port 0",
        "unknown key `adress`",
        "unknown service kind `nginx`",
        "unknown key `subdomian`",
    ] {
        assert!(
            codes.iter().any(|m| m.contains(expected)),
            "missing {expected:?} in {codes:#?}"
        );
    }
}

#[test]
fn display_names_file_line_and_column() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/invalid/unknown-kind.toml");
    let text = parse(&path).err().unwrap().to_string();
    assert!(text.starts_with("invalid/unknown-kind.toml:"), "{text}");
    assert!(text.contains("did you mean `container`?"), "{text}");
}

#[test]
fn custom_containers_take_image_and_port_from_their_options() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/valid/minimal.toml");
    let m = parse(&path).unwrap();
    let blog = m.service("blog").unwrap();
    assert_eq!(
        blog.image().as_deref(),
        Some("docker.io/library/nginx:1.27")
    );
    assert_eq!(blog.port(), Some(80));
}

#[test]
fn the_roles_sample_is_typed_as_the_contract_says() {
    use kiln_model::Content;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/valid/roles.toml");
    let m = parse(&path).unwrap();
    let web = &m.roles["web"];
    assert_eq!(web.packages, ["htop", "rsync"]);
    assert_eq!(web.vars["workers"].as_integer(), Some(4));
    assert_eq!(web.vars["limits"]["memory"].as_str(), Some("1G"));
    let dir = &web.directories[0];
    assert_eq!(
        (
            dir.path.to_str(),
            dir.mode,
            dir.owner.as_str(),
            dir.group.as_str()
        ),
        (Some("/srv/app"), 0o750, "app", "app")
    );
    let conf = &web.files[0];
    assert_eq!(
        conf.content,
        Content::Template("templates/app.conf.j2".into())
    );
    assert_eq!((conf.mode, conf.group.as_str()), (0o640, "app"));
    assert_eq!(conf.notify, ["app.service"]);
    assert_eq!(web.files[1].content, Content::Inline("hello\n".into()));
    assert_eq!(
        (web.files[1].mode, web.files[1].owner.as_str()),
        (0o644, "root"),
        "defaults"
    );
    assert_eq!(
        web.files[2].content,
        Content::Source("files/logo.svg".into())
    );
    assert_eq!(web.symlinks[0].target.to_str(), Some("/srv/app/bin/app"));
    let user = &web.users[0];
    assert!(user.system);
    assert_eq!(
        user.shell.as_deref().and_then(|s| s.to_str()),
        Some("/usr/sbin/nologin")
    );
    assert_eq!(user.groups, ["app"]);
    assert!(web.groups[0].system);
    assert!(web.units[0].enabled && web.units[0].started);
    assert!(web.units[1].enabled && !web.units[1].started);
    let cmd = &web.commands[0];
    assert_eq!(cmd.unless.as_deref(), Some("test -f /srv/app/.migrated"));
    assert_eq!(
        cmd.triggered_by,
        [std::path::PathBuf::from("/etc/app/app.conf")]
    );
}
