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

#[test]
fn every_warning_sample_loads_with_located_hinted_warnings() {
    let files = corpus("warnings");
    assert!(
        files.len() >= 2,
        "warning corpus too small: {}",
        files.len()
    );
    for path in files {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let m = parse(&path).unwrap_or_else(|d| {
            panic!(
                "{} should load (with warnings):\n{}",
                path.display(),
                d.render(100, false)
            )
        });
        assert!(!m.warnings.is_empty(), "{stem}: no warning");
        for w in &m.warnings {
            let loc = w
                .location()
                .unwrap_or_else(|| panic!("{stem}: warning without location: {w}"));
            assert!(
                loc.starts_with(&format!("warnings/{stem}.toml:")),
                "{stem}: {loc}"
            );
            assert!(
                w.help.as_deref().is_some_and(|h| !h.is_empty()),
                "{stem}: warning without hint: {w}"
            );
        }
        let rendered: Vec<String> = m.warnings.iter().map(|w| w.render_plain()).collect();
        let rendered = rendered.join("\n");
        insta::assert_snapshot!(format!("warning-{stem}"), rendered);
    }
}

#[test]
fn the_base_sample_resolves_host_over_environment_over_top_level() {
    use kiln_model::{PortSpec, Protocol, Reboot, RebootWindow};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/valid/base-every-key.toml");
    let m = parse(&path).unwrap();
    assert!(m.warnings.is_empty(), "{:#?}", m.warnings);

    let prod = m.environment("production").unwrap();
    assert_eq!(
        prod.wireguard_range.map(|r| r.to_string()).as_deref(),
        Some("10.50.0.0/28"),
        "set by the environment"
    );
    let web = &prod.host("web").unwrap().base;
    assert_eq!(web.rollback_seconds, 120, "environment over top level");
    assert!(!web.node_exporter, "host over top level");
    assert!(web.time);
    let sshd = web.sshd.as_ref().unwrap();
    assert_eq!(
        sshd.allow_groups,
        ["ops", "deploy"],
        "a host's list replaces"
    );
    assert_eq!(
        sshd.penalties_exempt
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        ["203.0.113.7/32", "198.51.100.0/24", "2001:db8:7::/48"],
        "the keys the host does not set are the upper level's"
    );
    assert_eq!(
        web.firewall.as_ref().unwrap().extra_ports,
        [
            PortSpec {
                port: 8448,
                protocol: Protocol::Tcp
            },
            PortSpec {
                port: 3478,
                protocol: Protocol::Udp
            }
        ]
    );
    let updates = web.updates.as_ref().unwrap();
    assert_eq!(updates.reboot, Reboot::WhenNeeded, "from the top level");
    assert_eq!(
        updates.reboot_window,
        RebootWindow::parse("04:00-05:00"),
        "the environment's table changes only its window"
    );
    let wg = web.wireguard.unwrap();
    assert_eq!((wg.port, wg.keepalive), (51821, 15));
    assert_eq!(Some(wg.range), prod.wireguard_range);

    let db = &prod.host("db").unwrap().base;
    assert!(db.firewall.is_none() && db.updates.is_none());
    let wg = db.wireguard.unwrap();
    assert_eq!((wg.port, wg.keepalive), (51822, 0));
    // Sorted by role: db, web.
    assert_eq!(
        prod.wireguard_address("db"),
        Some("10.50.0.1".parse().unwrap())
    );
    assert_eq!(
        prod.wireguard_address("web"),
        Some("10.50.0.2".parse().unwrap())
    );
    assert_eq!(prod.wireguard_address("nope"), None);

    let staging = m.environment("staging").unwrap();
    assert_eq!(
        staging.wireguard_range.map(|r| r.to_string()).as_deref(),
        Some("10.102.0.0/24"),
        "the default of the second environment"
    );
    let sweb = &staging.host("web").unwrap().base;
    assert!(sweb.sshd.is_none() && sweb.updates.is_none() && !sweb.time);
    assert_eq!(sweb.rollback_seconds, 90);
    let sdb = &staging.host("db").unwrap().base;
    assert_eq!(
        sdb.sshd.as_ref().map(|s| s.allow_groups.clone()),
        Some(vec!["ops".to_string()]),
        "`sshd = true` turns it back on with the upper levels' settings"
    );
    assert!(sdb.wireguard.is_none());
    assert_eq!(staging.wireguard_address("db"), None, "not in the mesh");
    assert_eq!(
        staging.wireguard_address("web"),
        Some("10.102.0.2".parse().unwrap()),
        "db keeps its place"
    );
}

#[test]
fn without_a_base_every_part_is_on_with_its_defaults() {
    use kiln_model::Reboot;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/valid/minimal.toml");
    let m = parse(&path).unwrap();
    let env = m.environment("production").unwrap();
    let base = &env.host("web").unwrap().base;
    assert_eq!(base.sshd.as_ref().map(|s| s.allow_groups.len()), Some(0));
    assert_eq!(base.firewall.as_ref().map(|f| f.extra_ports.len()), Some(0));
    assert_eq!(
        base.updates.as_ref().map(|u| (u.reboot, u.reboot_window)),
        Some((Reboot::Never, None))
    );
    assert!(base.time && base.node_exporter);
    let wg = base.wireguard.unwrap();
    assert_eq!((wg.port, wg.keepalive), (51820, 25));
    assert_eq!(base.rollback_seconds, 60);
    assert_eq!(
        env.wireguard_range.map(|r| r.to_string()).as_deref(),
        Some("10.101.0.0/24")
    );
    assert_eq!(
        env.wireguard_address("web"),
        Some("10.101.0.1".parse().unwrap())
    );
}
