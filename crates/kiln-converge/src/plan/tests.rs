//! Planner tests: pure, no host.

use super::*;
use crate::observe::{Meta, PathState, UnitStatus, UserInfo};
use crate::resource::{
    Command, Content, Directory, File, Group, Notify, Package, Symlink, Unit, User, unit_path,
};
use std::path::Path;

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        owner: "root".into(),
        group: "root".into(),
    }
}

fn file(path: &str, text: &str) -> File {
    File {
        path: path.into(),
        content: Content::text(text),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    }
}

fn present(text: &str, mode: u32, keep_text: bool) -> PathState {
    PathState::File {
        meta: meta(mode),
        sha256: sha256_hex(text.as_bytes()),
        text: keep_text.then(|| text.to_owned()),
    }
}

fn unit(name: &str, text: &str) -> Unit {
    Unit {
        name: name.into(),
        content: Content::text(text),
        enabled: true,
        started: true,
        sensitive: false,
        kind: crate::resource::UnitKind::File,
        guard: None,
        health: Default::default(),
        stage: Default::default(),
    }
}

fn ops(p: &Plan) -> Vec<String> {
    p.changes
        .iter()
        .map(|c| format!("{} {}", c.op, c.id))
        .collect()
}

#[test]
fn empty_host_gets_everything_created_in_dependency_order() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.groups = vec![Group {
        name: "app".into(),
        system: true,
    }];
    d.users = vec![User {
        name: "app".into(),
        system: true,
        home: None,
        shell: None,
        groups: vec!["app".into()],
    }];
    d.packages = vec![Package {
        name: "htop".into(),
    }];
    d.directories = vec![
        Directory {
            path: "/srv/app/data".into(),
            mode: 0o750,
            owner: "app".into(),
            group: "app".into(),
        },
        Directory {
            path: "/srv/app".into(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        },
    ];
    let mut f = file("/etc/app.conf", "a=1\n");
    f.notify = vec![Notify {
        unit: "app.service".into(),
        action: Trigger::Restart,
    }];
    d.files = vec![f];
    d.symlinks = vec![Symlink {
        path: "/usr/local/bin/app".into(),
        target: "/srv/app/bin/app".into(),
    }];
    d.units = vec![unit("app.service", "[Service]\n")];
    d.commands = vec![Command {
        name: "init".into(),
        run: "true".into(),
        unless: None,
        triggered_by: vec![],
        stage: Default::default(),
    }];
    let p = plan(&d, &Observed::default()).unwrap();
    assert_eq!(
        ops(&p),
        [
            "create group app",
            "create user app",
            "install package htop",
            "create directory /srv/app",
            "create directory /srv/app/data",
            "create file /etc/app.conf",
            "create symlink /usr/local/bin/app",
            "create file /etc/systemd/system/app.service",
            "daemon-reload systemd",
            "run command init",
            "enable unit app.service",
            "start unit app.service",
        ]
    );
    // A unit that is being started is not also restarted by its notifying file.
    assert!(!p.changes.iter().any(|c| c.op == Op::Restart));
    assert_eq!(
        p.counts(),
        Summary {
            create: 8,
            change: 4,
            remove: 0
        }
    );
    assert_eq!(p.owned_after.groups.len(), 1);
    assert_eq!(p.owned_after.packages.len(), 1);
    assert!(p.owned_after.commands.contains_key("init"));
}

fn converged(d: &DesiredState) -> Observed {
    let mut o = Observed::default();
    for f in &d.files {
        o.paths.insert(
            f.path.clone(),
            present(
                std::str::from_utf8(f.content.bytes()).unwrap(),
                f.mode,
                false,
            ),
        );
        o.owned.files.insert(f.path.clone());
    }
    for u in &d.units {
        if let Some(path) = u.path() {
            o.paths.insert(
                path,
                present(
                    std::str::from_utf8(u.content.bytes()).unwrap(),
                    0o644,
                    false,
                ),
            );
        }
        o.units.insert(
            u.name.clone(),
            UnitStatus {
                enabled: true,
                active: true,
            },
        );
        o.owned.units.insert(u.name.clone());
    }
    o
}

#[test]
fn converged_host_has_an_empty_plan() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/a", "x\n")];
    d.units = vec![unit("a.service", "[Service]\n")];
    let p = plan(&d, &converged(&d)).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
}

#[test]
fn changed_template_shows_a_diff_and_restarts_exactly_its_unit() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut a = file("/etc/a.conf", "port=1\nname=x\n");
    a.notify = vec![Notify {
        unit: "a.service".into(),
        action: Trigger::Restart,
    }];
    let mut b = file("/etc/b.conf", "b\n");
    b.notify = vec![Notify {
        unit: "b.service".into(),
        action: Trigger::Restart,
    }];
    d.files = vec![a, b];
    d.units = vec![
        unit("a.service", "[Service]\n"),
        unit("b.service", "[Service]\n"),
    ];
    let mut o = converged(&d);
    o.paths.insert(
        "/etc/a.conf".into(),
        present("port=0\nname=x\n", 0o644, true),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        ["update file /etc/a.conf", "restart unit a.service"]
    );
    let Some(Diff::Unified { text }) = &p.changes[0].diff else {
        panic!("no diff: {:?}", p.changes[0])
    };
    assert!(text.contains("-port=0\n+port=1\n"), "{text}");
    assert!(text.contains("--- a/etc/a.conf"), "{text}");
    assert_eq!(p.changes[1].reason.as_deref(), Some("/etc/a.conf changed"));
}

#[test]
fn sensitive_content_is_redacted() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut f = file("/etc/secret.env", "TOKEN=hunter2-planted\n");
    f.sensitive = true;
    f.mode = 0o600;
    d.files = vec![f];
    let p = plan(&d, &Observed::default()).unwrap();
    assert_eq!(p.changes[0].diff, Some(Diff::Redacted));
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
}

#[test]
fn metadata_only_change_does_not_rewrite_or_restart() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut f = file("/etc/a", "x\n");
    f.notify = vec![Notify {
        unit: "a.service".into(),
        action: Trigger::Restart,
    }];
    f.mode = 0o600;
    d.files = vec![f];
    d.units = vec![unit("a.service", "[Service]\n")];
    let mut o = converged(&d);
    o.paths
        .insert("/etc/a".into(), present("x\n", 0o644, false));
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["update file /etc/a"]);
    assert!(!p.changes[0].content);
    assert_eq!(p.changes[0].details, ["mode 0644 → 0600"]);
}

#[test]
fn undeclared_owned_resources_are_removed_deepest_first() {
    let d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut o = Observed::default();
    for p in ["/srv/a", "/srv/a/b"] {
        o.owned.directories.insert(p.into());
        o.paths
            .insert(p.into(), PathState::Directory { meta: meta(0o755) });
    }
    o.owned.files.insert("/srv/a/b/f".into());
    o.paths
        .insert("/srv/a/b/f".into(), present("x", 0o644, false));
    o.owned.files.insert("/etc/gone-already".into());
    o.paths
        .insert("/etc/gone-already".into(), PathState::Absent);
    o.owned.units.insert("old.service".into());
    o.paths
        .insert(unit_path("old.service"), present("[Unit]\n", 0o644, false));
    o.units.insert(
        "old.service".into(),
        UnitStatus {
            enabled: true,
            active: true,
        },
    );
    o.owned.packages.insert("htop".into());
    o.packages.insert("htop".into());
    o.owned.users.insert("app".into());
    o.users.insert(
        "app".into(),
        UserInfo {
            uid: 998,
            home: "/".into(),
            shell: "/bin/sh".into(),
            groups: Default::default(),
        },
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "stop unit old.service",
            "disable unit old.service",
            "remove file /etc/systemd/system/old.service",
            "daemon-reload systemd",
            "remove file /srv/a/b/f",
            "remove directory /srv/a/b",
            "remove directory /srv/a",
            "remove user app",
            "uninstall package htop",
        ]
    );
    assert_eq!(p.owned_after, Owned::default());
}

#[test]
fn preexisting_accounts_and_packages_are_not_owned_so_never_removed() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.packages = vec![Package {
        name: "curl".into(),
    }];
    d.groups = vec![Group {
        name: "adm".into(),
        system: true,
    }];
    let mut o = Observed::default();
    o.packages.insert("curl".into());
    o.groups.insert("adm".into());
    let p = plan(&d, &o).unwrap();
    assert!(p.is_empty());
    assert!(p.owned_after.packages.is_empty());
    assert!(p.owned_after.groups.is_empty());
}

#[test]
fn commands_run_when_guard_fails_when_triggered_or_once() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/a", "new\n")];
    d.commands = vec![
        Command {
            name: "guarded".into(),
            run: "x".into(),
            unless: Some("test -f /x".into()),
            triggered_by: vec![],
            stage: Default::default(),
        },
        Command {
            name: "trig".into(),
            run: "y".into(),
            unless: Some("true".into()),
            triggered_by: vec!["/etc/a".into()],
            stage: Default::default(),
        },
        Command {
            name: "once".into(),
            run: "z".into(),
            unless: None,
            triggered_by: vec![],
            stage: Default::default(),
        },
    ];
    let mut o = Observed::default();
    o.paths
        .insert("/etc/a".into(), present("new\n", 0o644, false));
    o.guards.insert("guarded".into(), true);
    o.guards.insert("trig".into(), true);
    o.owned.files.insert("/etc/a".into());
    o.owned.commands.insert("once".into(), sha256_hex(b"z"));
    assert!(plan(&d, &o).unwrap().is_empty());

    o.guards.insert("guarded".into(), false);
    o.paths
        .insert("/etc/a".into(), present("old\n", 0o644, true));
    o.owned
        .commands
        .insert("once".into(), sha256_hex(b"older text"));
    let p = plan(&d, &o).unwrap();
    let reasons: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.op == Op::Run)
        .map(|c| (c.id.to_string(), c.reason.clone().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "command guarded".to_owned(),
                "its `unless` check failed".to_owned()
            ),
            ("command trig".to_owned(), "/etc/a changed".to_owned()),
            ("command once".to_owned(), "its command changed".to_owned()),
        ]
    );
}

#[test]
fn refuses_to_replace_a_directory_with_a_file() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/a", "x")];
    let mut o = Observed::default();
    o.paths
        .insert("/etc/a".into(), PathState::Directory { meta: meta(0o755) });
    let err = plan(&d, &o).unwrap_err();
    assert_eq!(
        err.to_string().lines().next().unwrap(),
        "host web: file /etc/a: /etc/a is a directory; kiln will not replace it"
    );
}

#[test]
fn unit_state_changes_enable_disable_start_stop() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut u = unit("a.service", "[Service]\n");
    u.enabled = false;
    u.started = false;
    d.units = vec![u];
    let o = converged(&d);
    assert_eq!(
        ops(&plan(&d, &o).unwrap()),
        ["disable unit a.service", "stop unit a.service"]
    );
}

#[test]
fn user_attributes_are_updated() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.users = vec![User {
        name: "app".into(),
        system: true,
        home: Some("/srv/app".into()),
        shell: None,
        groups: vec!["www".into()],
    }];
    let mut o = Observed::default();
    o.users.insert(
        "app".into(),
        UserInfo {
            uid: 998,
            home: "/home/app".into(),
            shell: "/bin/sh".into(),
            groups: Default::default(),
        },
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["update user app"]);
    assert_eq!(
        p.changes[0].details,
        ["home /home/app → /srv/app", "groups [] → [www]"]
    );
}

/// `apply` enables every unit in one `systemctl enable` at the first enable; that is right
/// only because every unit file write and the daemon-reload come before any enable.
#[test]
fn every_unit_file_and_the_reload_precede_the_first_enable() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.units = (0..5)
        .map(|i| unit(&format!("u{i}.service"), "[Service]\n"))
        .collect();
    d.files = vec![file("/etc/after-units.conf", "x\n")];
    let p = plan(&d, &Observed::default()).unwrap();
    let first_enable = p
        .changes
        .iter()
        .position(|c| c.op == Op::Enable)
        .expect("enables planned");
    let last_file_or_reload = p
        .changes
        .iter()
        .rposition(|c| matches!(c.id, ResourceId::File(_) | ResourceId::Systemd))
        .unwrap();
    assert!(last_file_or_reload < first_enable, "{:?}", ops(&p));
    assert_eq!(p.changes.iter().filter(|c| c.op == Op::Enable).count(), 5);
}

fn quadlet(file: &str, text: &str) -> Unit {
    Unit::quadlet(file, Content::text(text)).unwrap()
}

#[test]
fn a_quadlet_is_installed_reloaded_and_started_never_enabled() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut conf = file("/etc/web/web.conf", "a\n");
    conf.notify = vec![Notify {
        unit: "web.service".into(),
        action: Trigger::Restart,
    }];
    d.files = vec![conf];
    d.units = vec![quadlet(
        "web.container",
        "[Container]\nImage=localhost/web:1\n",
    )];
    d.validate().unwrap();
    let p = plan(&d, &Observed::default()).unwrap();
    assert_eq!(
        ops(&p),
        [
            "create file /etc/web/web.conf",
            "create file /etc/containers/systemd/web.container",
            "daemon-reload systemd",
            "start unit web.service",
        ]
    );
    assert_eq!(
        p.owned_after
            .quadlets
            .get("web.service")
            .map(String::as_str),
        Some("web.container")
    );
    assert!(p.owned_after.units.contains("web.service"));

    // Running and converged: nothing to do, although systemd reports it not enabled
    // (UnitFileState=generated).
    let mut o = Observed::default();
    o.paths
        .insert("/etc/web/web.conf".into(), present("a\n", 0o644, false));
    o.paths.insert(
        "/etc/containers/systemd/web.container".into(),
        present("[Container]\nImage=localhost/web:1\n", 0o644, false),
    );
    o.units.insert(
        "web.service".into(),
        UnitStatus {
            enabled: false,
            active: true,
        },
    );
    o.owned = p.owned_after.clone();
    assert!(plan(&d, &o).unwrap().is_empty());

    // A new image tag: the quadlet changes, systemd regenerates, the unit restarts.
    d.units = vec![quadlet(
        "web.container",
        "[Container]\nImage=localhost/web:2\n",
    )];
    o.paths.insert(
        "/etc/containers/systemd/web.container".into(),
        present("[Container]\nImage=localhost/web:1\n", 0o644, true),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "update file /etc/containers/systemd/web.container",
            "daemon-reload systemd",
            "restart unit web.service",
        ]
    );
    assert_eq!(
        p.changes[2].reason.as_deref(),
        Some("/etc/containers/systemd/web.container changed")
    );

    // Declared stopped: stopped, still never disabled.
    d.units[0].started = false;
    d.units[0].content = Content::text("[Container]\nImage=localhost/web:1\n");
    assert_eq!(ops(&plan(&d, &o).unwrap()), ["stop unit web.service"]);
}

#[test]
fn a_removed_quadlet_is_stopped_and_its_file_removed_without_disable() {
    let d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut o = Observed::default();
    o.owned.units.insert("web.service".into());
    o.owned
        .quadlets
        .insert("web.service".into(), "web.container".into());
    o.paths.insert(
        "/etc/containers/systemd/web.container".into(),
        present("[Container]\n", 0o644, false),
    );
    o.units.insert(
        "web.service".into(),
        UnitStatus {
            // Even if systemd said so, a generated unit is not disabled.
            enabled: true,
            active: true,
        },
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "stop unit web.service",
            "remove file /etc/containers/systemd/web.container",
            "daemon-reload systemd",
        ]
    );
    assert_eq!(p.owned_after, Owned::default());
}

fn original(text: &str, mode: u32) -> crate::owned::Original {
    crate::owned::Original::File {
        sha256: sha256_hex(text.as_bytes()),
        mode,
        owner: "root".into(),
        group: "root".into(),
    }
}

#[test]
fn a_file_that_existed_before_kiln_is_taken_over_then_restored() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/motd", "managed by kiln\n")];
    let mut o = Observed::default();
    o.paths.insert(
        "/etc/motd".into(),
        present("Debian GNU/Linux\n", 0o600, true),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["take-over file /etc/motd"]);
    let c = &p.changes[0];
    assert!(c.content, "the content is written too");
    assert_eq!(
        c.details,
        [
            "content",
            "mode 0600 → 0644",
            "the original is kept and given back when kiln stops managing it"
        ]
    );
    let Some(Diff::Unified { text }) = &c.diff else {
        panic!("no diff: {c:?}")
    };
    assert!(
        text.contains("-Debian GNU/Linux\n+managed by kiln\n"),
        "{text}"
    );
    assert_eq!(
        p.owned_after.originals.get(Path::new("/etc/motd")),
        Some(&original("Debian GNU/Linux\n", 0o600))
    );
    assert!(p.owned_after.files.contains(Path::new("/etc/motd")));

    // Converged: nothing to do, the original stays recorded.
    o.paths.insert(
        "/etc/motd".into(),
        present("managed by kiln\n", 0o644, false),
    );
    o.owned = p.owned_after.clone();
    let p = plan(&d, &o).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
    assert_eq!(p.owned_after, o.owned);

    // No longer declared: the original is given back, not removed.
    d.files.clear();
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["restore file /etc/motd"]);
    assert_eq!(p.changes[0].details, ["the original from before kiln"]);
    assert_eq!(p.owned_after, Owned::default());
    // Even when someone deleted it meanwhile.
    o.paths.insert("/etc/motd".into(), PathState::Absent);
    assert_eq!(ops(&plan(&d, &o).unwrap()), ["restore file /etc/motd"]);
}

#[test]
fn a_file_already_as_declared_is_still_taken_over_once() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/motd", "same\n")];
    let mut o = Observed::default();
    o.paths
        .insert("/etc/motd".into(), present("same\n", 0o644, false));
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["take-over file /etc/motd"]);
    assert!(!p.changes[0].content, "nothing to write");
    assert!(p.owned_after.originals.contains_key(Path::new("/etc/motd")));
}

#[test]
fn a_file_kiln_created_is_removed_not_restored() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files = vec![file("/etc/new.conf", "x\n")];
    let p = plan(&d, &Observed::default()).unwrap();
    assert_eq!(ops(&p), ["create file /etc/new.conf"]);
    assert!(p.owned_after.originals.is_empty());
    let mut o = Observed::default();
    o.paths
        .insert("/etc/new.conf".into(), present("x\n", 0o644, false));
    o.owned = p.owned_after;
    d.files.clear();
    assert_eq!(ops(&plan(&d, &o).unwrap()), ["remove file /etc/new.conf"]);
}

#[test]
fn a_packaged_unit_shadowed_by_kiln_is_given_back_to_the_package() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.units = vec![unit("pkg.service", "[Service]\nExecStart=/bin/kiln\n")];
    let mut o = Observed::default();
    o.vendor_units.insert("pkg.service".into());
    o.units.insert(
        "pkg.service".into(),
        UnitStatus {
            enabled: true,
            active: true,
        },
    );
    let p = plan(&d, &o).unwrap();
    // kiln's copy shadows the package's: a file kiln creates (removed later, not
    // restored), and a unit it borrows.
    assert_eq!(
        ops(&p),
        [
            "create file /etc/systemd/system/pkg.service",
            "daemon-reload systemd",
            "restart unit pkg.service",
        ]
    );
    assert_eq!(
        p.owned_after.borrowed_units.get("pkg.service"),
        Some(&crate::owned::BorrowedUnit {
            enabled: true,
            active: true
        })
    );
    assert!(p.owned_after.originals.is_empty());

    // Declaration removed: kiln's copy goes, the package's unit runs again, still enabled:
    // never stopped nor disabled.
    let mut o2 = converged(&d);
    o2.owned = p.owned_after.clone();
    d.units.clear();
    let p = plan(&d, &o2).unwrap();
    assert_eq!(
        ops(&p),
        [
            "remove file /etc/systemd/system/pkg.service",
            "daemon-reload systemd",
            "restart unit pkg.service",
        ]
    );
    assert_eq!(
        p.changes[2].reason.as_deref(),
        Some("its unit file from before kiln is back")
    );
    assert_eq!(p.owned_after, Owned::default());
}

#[test]
fn a_unit_file_kiln_overwrote_is_restored_with_the_state_it_had() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    // Declared enabled and started; it was disabled and stopped before kiln.
    d.units = vec![unit("own.service", "[Service]\nExecStart=/bin/kiln\n")];
    let mut o = Observed::default();
    o.paths.insert(
        unit_path("own.service"),
        present("[Service]\nExecStart=/bin/theirs\n", 0o644, true),
    );
    o.units.insert(
        "own.service".into(),
        UnitStatus {
            enabled: false,
            active: false,
        },
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "take-over file /etc/systemd/system/own.service",
            "daemon-reload systemd",
            "enable unit own.service",
            "start unit own.service",
        ]
    );
    assert!(
        p.owned_after
            .originals
            .contains_key(&unit_path("own.service"))
    );
    // Removed: stopped and disabled as it was, its own file back, and reloaded; with
    // another unit's file changing in the same plan, the reload comes again after the
    // restore.
    let mut o2 = converged(&d);
    o2.owned = p.owned_after.clone();
    d.units = vec![unit("other.service", "[Service]\n")];
    let mut o3 = o2.clone();
    o3.owned.units.insert("other.service".into());
    o3.paths
        .insert(unit_path("other.service"), present("[Unit]\n", 0o644, true));
    o3.units.insert(
        "other.service".into(),
        UnitStatus {
            enabled: true,
            active: true,
        },
    );
    let p = plan(&d, &o3).unwrap();
    assert_eq!(
        ops(&p),
        [
            "update file /etc/systemd/system/other.service",
            "daemon-reload systemd",
            "restart unit other.service",
            "stop unit own.service",
            "disable unit own.service",
            "restore file /etc/systemd/system/own.service",
            "daemon-reload systemd",
        ]
    );
    assert!(p.owned_after.originals.is_empty());
    assert!(p.owned_after.borrowed_units.is_empty());
}

#[test]
fn symlinks_and_files_in_each_others_place_are_taken_over_and_given_back() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    // /etc/resolv.conf is a symlink on many systems; kiln is told to write a file there.
    // /usr/bin/editor is a regular file; kiln is told to make it a symlink.
    d.files = vec![file("/etc/resolv.conf", "nameserver 10.0.0.1\n")];
    d.symlinks = vec![Symlink {
        path: "/usr/bin/editor".into(),
        target: "/usr/bin/vim".into(),
    }];
    let mut o = Observed::default();
    o.paths.insert(
        "/etc/resolv.conf".into(),
        PathState::Symlink {
            target: "../run/systemd/resolve/stub-resolv.conf".into(),
        },
    );
    o.paths.insert(
        "/usr/bin/editor".into(),
        present("#!/bin/sh\n", 0o755, false),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "take-over file /etc/resolv.conf",
            "take-over symlink /usr/bin/editor"
        ]
    );
    assert_eq!(
        p.owned_after.originals[Path::new("/etc/resolv.conf")],
        crate::owned::Original::Symlink {
            target: "../run/systemd/resolve/stub-resolv.conf".into()
        }
    );
    assert_eq!(
        p.owned_after.originals[Path::new("/usr/bin/editor")],
        original("#!/bin/sh\n", 0o755)
    );
    let mut o2 = Observed {
        owned: p.owned_after.clone(),
        ..Default::default()
    };
    o2.paths.insert(
        "/etc/resolv.conf".into(),
        present("nameserver 10.0.0.1\n", 0o644, false),
    );
    o2.paths.insert(
        "/usr/bin/editor".into(),
        PathState::Symlink {
            target: "/usr/bin/vim".into(),
        },
    );
    assert!(plan(&d, &o2).unwrap().is_empty());
    let p = plan(
        &DesiredState {
            host: "web".into(),
            ..Default::default()
        },
        &o2,
    )
    .unwrap();
    assert_eq!(
        ops(&p),
        [
            "restore file /etc/resolv.conf",
            "restore symlink /usr/bin/editor"
        ]
    );
}

#[test]
fn a_directory_that_existed_before_kiln_is_not_kiln_s_to_remove() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.directories = vec![
        Directory {
            path: "/etc/ssh/sshd_config.d".into(),
            mode: 0o700,
            owner: "root".into(),
            group: "root".into(),
        },
        Directory {
            path: "/srv/new".into(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        },
    ];
    let mut o = Observed::default();
    o.paths.insert(
        "/etc/ssh/sshd_config.d".into(),
        PathState::Directory { meta: meta(0o755) },
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "create directory /srv/new",
            "update directory /etc/ssh/sshd_config.d"
        ]
    );
    assert_eq!(
        p.owned_after.directories.iter().collect::<Vec<_>>(),
        [Path::new("/srv/new")]
    );
}

fn image(reference: &str, service: &str) -> crate::resource::Image {
    crate::resource::Image {
        reference: reference.into(),
        service: Some(service.into()),
        container: Some(service.into()),
    }
}

fn container(image: &str) -> crate::observe::ContainerState {
    crate::observe::ContainerState {
        image: image.into(),
        state: "running".into(),
        health: Some("healthy".into()),
        started_at: Some(1_796_190_824),
        id: "3e37f89d64c5".into(),
        unit: None,
    }
}

fn healthy(mut u: Unit, container: &str, stage: u8) -> Unit {
    u.health = Some(crate::resource::Health {
        container: container.into(),
        timeout_s: 60,
    });
    u.stage = crate::resource::Stage(stage);
    u
}

fn staged_command(name: &str, stage: u8) -> Command {
    Command {
        name: name.into(),
        run: format!("echo {name}"),
        unless: None,
        triggered_by: vec![],
        stage: crate::resource::Stage(stage),
    }
}

/// A database (stage 0), the command creating its database (stage 1), the application
/// using it (stage 2), declared out of order.
fn stack() -> DesiredState {
    let mut d = DesiredState {
        host: "app".into(),
        ..Default::default()
    };
    d.packages = vec![Package {
        name: "podman".into(),
    }];
    d.images = vec![
        image("docker.io/matrixdotorg/synapse:v1.118.0", "synapse"),
        image("docker.io/library/postgres:17", "postgres"),
    ];
    d.units = vec![
        healthy(
            quadlet(
                "synapse.container",
                "[Container]\nImage=docker.io/matrixdotorg/synapse:v1.118.0\nContainerName=synapse\n",
            ),
            "synapse",
            2,
        ),
        unit("side.service", "[Service]\n"),
        healthy(
            quadlet(
                "postgres.container",
                "[Container]\nImage=docker.io/library/postgres:17\nContainerName=postgres\n",
            ),
            "postgres",
            0,
        ),
    ];
    d.commands = vec![
        staged_command("create-db", 1),
        staged_command("early", 0),
        staged_command("late", 2),
    ];
    d
}

#[test]
fn stages_order_commands_then_unit_changes_after_packages_images_and_unit_files() {
    let d = stack();
    d.validate().unwrap();
    let p = plan(&d, &Observed::default()).unwrap();
    assert_eq!(
        ops(&p),
        [
            "install package podman",
            "pull image docker.io/matrixdotorg/synapse:v1.118.0",
            "pull image docker.io/library/postgres:17",
            "create file /etc/containers/systemd/synapse.container",
            "create file /etc/systemd/system/side.service",
            "create file /etc/containers/systemd/postgres.container",
            "daemon-reload systemd",
            // stage 0
            "run command early",
            "enable unit side.service",
            "start unit side.service",
            "start unit postgres.service",
            // stage 1
            "run command create-db",
            // stage 2
            "run command late",
            "start unit synapse.service",
        ]
    );
    assert_eq!(p.changes[1].details, ["for service synapse"]);
    assert_eq!(p.changes[1].reason, None, "nothing ran before");
    assert_eq!(
        p.counts(),
        Summary {
            create: 6,
            change: 8,
            remove: 0
        }
    );
}

#[test]
fn images_held_are_not_pulled_and_a_converged_stack_has_an_empty_plan() {
    let d = stack();
    let mut o = converged(&d);
    o.packages.insert("podman".into());
    o.owned.commands = plan(&d, &Observed::default()).unwrap().owned_after.commands;
    o.images = d.images.iter().map(|i| i.reference.clone()).collect();
    o.containers.insert(
        "postgres".into(),
        container("docker.io/library/postgres:17"),
    );
    o.containers.insert(
        "synapse".into(),
        container("docker.io/matrixdotorg/synapse:v1.118.0"),
    );
    let p = plan(&d, &o).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
    // Only the image no longer held is pulled; nothing restarts for a pull.
    o.images.remove("docker.io/library/postgres:17");
    assert_eq!(
        ops(&plan(&d, &o).unwrap()),
        ["pull image docker.io/library/postgres:17"]
    );
}

#[test]
fn a_new_version_is_said_on_the_pull_and_on_exactly_its_unit_s_restart() {
    let d = stack();
    let mut o = converged(&d);
    o.packages.insert("podman".into());
    o.owned.commands = plan(&d, &Observed::default()).unwrap().owned_after.commands;
    o.images.insert("docker.io/library/postgres:17".into());
    o.containers.insert(
        "postgres".into(),
        container("docker.io/library/postgres:17"),
    );
    o.containers.insert(
        "synapse".into(),
        container("docker.io/matrixdotorg/synapse:v1.117.0"),
    );
    let old = "[Container]\nImage=docker.io/matrixdotorg/synapse:v1.117.0\nContainerName=synapse\n";
    o.paths.insert(
        "/etc/containers/systemd/synapse.container".into(),
        present(old, 0o644, true),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "pull image docker.io/matrixdotorg/synapse:v1.118.0",
            "update file /etc/containers/systemd/synapse.container",
            "daemon-reload systemd",
            "restart unit synapse.service",
        ]
    );
    assert_eq!(
        p.changes[0].reason.as_deref(),
        Some("synapse v1.117.0 → v1.118.0")
    );
    assert_eq!(
        p.changes[3].reason.as_deref(),
        Some("synapse v1.117.0 → v1.118.0, /etc/containers/systemd/synapse.container changed")
    );
    assert_eq!(
        p.changes[3].details,
        ["previous image docker.io/matrixdotorg/synapse:v1.117.0"]
    );
    // Another repository: full references.
    o.containers.insert(
        "synapse".into(),
        container("ghcr.io/element-hq/synapse:v1.117.0"),
    );
    assert_eq!(
        plan(&d, &o).unwrap().changes[0].reason.as_deref(),
        Some(
            "synapse ghcr.io/element-hq/synapse:v1.117.0 → docker.io/matrixdotorg/synapse:v1.118.0"
        )
    );
}

#[test]
fn a_precondition_contradicted_by_the_host_refuses_the_plan() {
    let mut d = DesiredState {
        host: "db".into(),
        ..Default::default()
    };
    d.preconditions = vec![crate::resource::Precondition {
        path: "/srv/postgres/data/PG_VERSION".into(),
        expect: "17".into(),
        refusal: "service postgres: /srv/postgres/data holds PostgreSQL 16 data, version is 17\n  hint: upgrade the data first".into(),
    }];
    d.files = vec![file("/etc/a", "x\n")];
    // Fresh data (no file) and the expected version (trimmed) pass.
    assert!(plan(&d, &Observed::default()).is_ok());
    let mut o = Observed::default();
    o.preconditions
        .insert("/srv/postgres/data/PG_VERSION".into(), "17\n".into());
    assert!(plan(&d, &o).is_ok());
    o.preconditions
        .insert("/srv/postgres/data/PG_VERSION".into(), "16\n".into());
    let err = plan(&d, &o).unwrap_err();
    assert_eq!(
        err,
        PlanError::Precondition {
            host: "db".into(),
            refusal: d.preconditions[0].refusal.clone()
        }
    );
    assert_eq!(
        err.to_string().lines().next().unwrap(),
        "host db: service postgres: /srv/postgres/data holds PostgreSQL 16 data, version is 17"
    );
}

#[test]
fn a_quadlet_refused_by_the_generator_refuses_the_plan_naming_the_unit() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.units = vec![quadlet("web.container", "[Container]\nImagee=x\n")];
    let o = Observed {
        quadlet_refused: Some(crate::podman::QuadletRefusal {
            refused: vec![("web.service".into(), "web.container".into())],
            message: "converting \"web.container\": unsupported key 'Imagee' in group 'Container' in web.container".into(),
        }),
        ..Default::default()
    };
    let err = plan(&d, &o).unwrap_err().to_string();
    assert!(
        err.starts_with("host web: unit web.service: quadlet file /etc/containers/systemd/web.container is refused by podman's quadlet generator on the host: converting \"web.container\": unsupported key 'Imagee'"),
        "{err}"
    );
}

#[test]
fn numeric_owners_match_the_named_accounts_of_the_same_id() {
    let mut d = DesiredState {
        host: "db".into(),
        ..Default::default()
    };
    let dir = |path: &str, owner: &str| Directory {
        path: path.into(),
        mode: 0o700,
        owner: owner.into(),
        group: owner.into(),
    };
    d.directories = vec![
        dir("/srv/postgres", "999"),
        dir("/srv/synapse", "991"),
        dir("/srv/other", "10000"),
    ];
    let mut o = Observed::default();
    let owned_by = |owner: &str| PathState::Directory {
        meta: Meta {
            mode: 0o700,
            owner: owner.into(),
            group: owner.into(),
        },
    };
    // uid/gid 999 has a name on this host; 991 has none; /srv/other belongs to 999.
    o.paths
        .insert("/srv/postgres".into(), owned_by("systemd-journal"));
    o.paths.insert("/srv/synapse".into(), owned_by("991"));
    o.paths
        .insert("/srv/other".into(), owned_by("systemd-journal"));
    o.uids.insert("systemd-journal".into(), 999);
    o.gids.insert("systemd-journal".into(), 999);
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), ["update directory /srv/other"]);
    assert_eq!(
        p.changes[0].details,
        [
            "owner systemd-journal → 10000",
            "group systemd-journal → 10000"
        ]
    );
}

#[test]
fn a_packaged_unit_gets_no_file_and_a_changed_drop_in_reloads_systemd_then_restarts_it() {
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let mut dropin = file(
        "/etc/systemd/system/prometheus-node-exporter.service.d/50-kiln.conf",
        "[Unit]\nAfter=wg-quick@wg0.service\n",
    );
    dropin.notify = vec![Notify {
        unit: "prometheus-node-exporter.service".into(),
        action: Trigger::Restart,
    }];
    dropin.note = Some("why it reads so".into());
    d.files = vec![dropin];
    d.units = vec![Unit::packaged("prometheus-node-exporter.service")];
    let mut o = converged(&d);
    assert!(plan(&d, &o).unwrap().is_empty());
    o.paths.insert(
        "/etc/systemd/system/prometheus-node-exporter.service.d/50-kiln.conf".into(),
        present("[Unit]\n", 0o644, true),
    );
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        ops(&p),
        [
            "update file /etc/systemd/system/prometheus-node-exporter.service.d/50-kiln.conf",
            "daemon-reload systemd",
            "restart unit prometheus-node-exporter.service"
        ]
    );
    assert!(p.changes[0].details.contains(&"why it reads so".to_owned()));
    // Not running yet (just installed): started, never a file written for it.
    o.units.insert(
        "prometheus-node-exporter.service".into(),
        UnitStatus {
            enabled: false,
            active: false,
        },
    );
    o.paths.remove(Path::new(
        "/etc/systemd/system/prometheus-node-exporter.service.d/50-kiln.conf",
    ));
    let p = plan(&d, &o).unwrap();
    assert!(
        !ops(&p)
            .iter()
            .any(|c| c.contains("/etc/systemd/system/prometheus-node-exporter.service ")),
        "{:?}",
        ops(&p)
    );
    assert!(ops(&p).contains(&"enable unit prometheus-node-exporter.service".to_owned()));
    assert!(ops(&p).contains(&"start unit prometheus-node-exporter.service".to_owned()));
}
