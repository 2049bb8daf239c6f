//! Convergence on a local temporary root: random desired states, applied one after the
//! other by the real agent code, must leave observed == desired and an empty next plan,
//! and remove what the previous state declared and this one does not.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_converge::event::Event;
use kiln_converge::resource::{Content, DesiredState, Directory, File, Symlink};
use kiln_converge::system::{SystemRunner, Target};
use kiln_converge::{agent, observe, plan};
use proptest::prelude::*;

fn target(root: &Path) -> Target {
    Target {
        root: root.to_owned(),
        runner: Box::new(SystemRunner),
    }
}

fn make_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\n",
    )
    .unwrap();
    dir
}

fn run(root: &Path, d: &DesiredState, plan_only: bool) -> Vec<Event> {
    let input = agent::frame_input(d).unwrap();
    let mut events = vec![];
    let ok = agent::run(&mut target(root), &input, plan_only, &mut events);
    assert!(ok, "agent failed: {events:?}");
    events
}

fn owner_strategy() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        Just(("root".to_owned(), "root".to_owned())),
        Just(("nobody".to_owned(), "nogroup".to_owned())),
        Just(("root".to_owned(), "nogroup".to_owned())),
    ]
}

fn state_strategy() -> impl Strategy<Value = DesiredState> {
    let dirs = prop::collection::btree_map(
        (0u8..3, prop::option::of(0u8..2)),
        (
            prop::sample::select(vec![0o755u32, 0o700, 0o750, 0o1777]),
            owner_strategy(),
        ),
        0..5,
    );
    let files = prop::collection::btree_map(
        (0u8..3, prop::option::of(0u8..2), 0u8..4),
        (
            prop_oneof![
                "[a-z =\n]{0,60}".prop_map(Content::text),
                prop::collection::vec(any::<u8>(), 0..64).prop_map(Content),
            ],
            prop::sample::select(vec![0o644u32, 0o600, 0o640, 0o755, 0o400]),
            owner_strategy(),
            any::<bool>(),
        ),
        0..8,
    );
    let links = prop::collection::btree_map((0u8..3, 0u8..3), "[a-z/]{1,12}", 0..4);
    (dirs, files, links).prop_map(|(dirs, files, links)| {
        let sub = |i: u8, s: Option<u8>| match s {
            Some(s) => PathBuf::from(format!("/d{i}/s{s}")),
            None => PathBuf::from(format!("/d{i}")),
        };
        DesiredState {
            host: "local".into(),
            directories: dirs
                .into_iter()
                .map(|((i, s), (mode, (owner, group)))| Directory {
                    path: sub(i, s),
                    mode,
                    owner,
                    group,
                })
                .collect(),
            files: files
                .into_iter()
                .map(
                    |((i, s, f), (content, mode, (owner, group), sensitive))| File {
                        path: sub(i, s).join(format!("f{f}")),
                        content,
                        mode,
                        owner,
                        group,
                        sensitive,
                        notify: vec![],
                        guard: None,
                        validate: None,
                        note: None,
                    },
                )
                .collect(),
            symlinks: links
                .into_iter()
                .map(|((i, l), t)| Symlink {
                    path: PathBuf::from(format!("/d{i}/l{l}")),
                    target: t.into(),
                })
                .collect(),
            ..Default::default()
        }
    })
}

fn uid(name: &str) -> u32 {
    if name == "root" { 0 } else { 65534 }
}

/// Checks the real files against the desired state, independently of the observe code.
fn assert_matches(root: &Path, d: &DesiredState) {
    let real = |p: &Path| root.join(p.strip_prefix("/").unwrap());
    for dir in &d.directories {
        let m = std::fs::symlink_metadata(real(&dir.path)).unwrap();
        assert!(m.is_dir(), "{}", dir.path.display());
        assert_eq!(m.mode() & 0o7777, dir.mode, "{}", dir.path.display());
        assert_eq!((m.uid(), m.gid()), (uid(&dir.owner), uid(&dir.group)));
    }
    for f in &d.files {
        let m = std::fs::symlink_metadata(real(&f.path)).unwrap();
        assert!(m.is_file());
        assert_eq!(m.mode() & 0o7777, f.mode, "{}", f.path.display());
        assert_eq!((m.uid(), m.gid()), (uid(&f.owner), uid(&f.group)));
        assert_eq!(std::fs::read(real(&f.path)).unwrap(), f.content.bytes());
    }
    for s in &d.symlinks {
        assert_eq!(std::fs::read_link(real(&s.path)).unwrap(), s.target);
    }
}

fn declared_paths(d: &DesiredState) -> BTreeSet<PathBuf> {
    d.files
        .iter()
        .map(|f| f.path.clone())
        .chain(d.symlinks.iter().map(|s| s.path.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_states_converge_and_the_next_plan_is_empty(a in state_strategy(), b in state_strategy()) {
        let dir = make_root();
        let root = dir.path();
        for d in [&a, &b] {
            run(root, d, false);
            assert_matches(root, d);
            let mut t = target(root);
            let observed = observe::observe(&mut t, None, d).unwrap();
            let next = plan::plan(d, &observed).unwrap();
            prop_assert!(next.is_empty(), "not converged: {:?}", next.changes);
        }
        // What a declared and b does not is gone.
        for p in declared_paths(&a).difference(&declared_paths(&b)) {
            let r = root.join(p.strip_prefix("/").unwrap());
            prop_assert!(std::fs::symlink_metadata(&r).is_err(), "{} survived", p.display());
        }
        // Applying b again changes nothing.
        let events = run(root, &b, false);
        let applied = events.iter().filter(|e| matches!(e, Event::Applied { .. })).count();
        prop_assert_eq!(applied, 0);
    }
}

#[test]
fn plan_only_changes_nothing() {
    let dir = make_root();
    let d = DesiredState {
        host: "local".into(),
        files: vec![File {
            path: "/etc/app/a.conf".into(),
            content: Content::text("x=1\n"),
            mode: 0o640,
            owner: "root".into(),
            group: "nogroup".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        ..Default::default()
    };
    let events = run(dir.path(), &d, true);
    let planned = events.iter().find_map(|e| match e {
        Event::Planned { plan, .. } => Some(plan.clone()),
        _ => None,
    });
    assert_eq!(planned.unwrap().changes.len(), 1);
    assert!(!dir.path().join("etc/app/a.conf").exists());
    assert!(!dir.path().join("var/lib/kiln/owned.json").exists());
}

#[test]
fn a_file_written_with_a_restrictive_mode_never_has_a_looser_one() {
    // The temporary file is created 0600 and chmodded before content is written: check the
    // final state and that no temporary file is left behind.
    let dir = make_root();
    let d = DesiredState {
        host: "local".into(),
        files: vec![File {
            path: "/etc/secret.env".into(),
            content: Content::text("TOKEN=hunter2-planted\n"),
            mode: 0o400,
            owner: "nobody".into(),
            group: "nogroup".into(),
            sensitive: true,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        ..Default::default()
    };
    let events = run(dir.path(), &d, false);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("hunter2"), "secret leaked into events: {all}");
    let names: Vec<_> = std::fs::read_dir(dir.path().join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().contains("kiln-tmp")),
        "{names:?}"
    );
    let m = std::fs::metadata(dir.path().join("etc/secret.env")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o400);
}

#[test]
fn apply_refuses_a_plan_other_than_the_confirmed_one() {
    let dir = make_root();
    let file = |p: &str| File {
        path: p.into(),
        content: Content::text("x\n"),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    };
    let mut d = DesiredState {
        host: "local".into(),
        files: vec![file("/etc/a"), file("/etc/b")],
        ..Default::default()
    };
    let planned = run(dir.path(), &d, true)
        .into_iter()
        .find_map(|e| match e {
            Event::Planned { plan, .. } => Some(plan),
            _ => None,
        })
        .unwrap();
    // The host changes after the user saw the plan: /etc/b appears with other content.
    std::fs::write(dir.path().join("etc/b"), "someone else's\n").unwrap();
    d.expect_plan = Some(planned.fingerprint());
    let input = agent::frame_input(&d).unwrap();
    let mut events = vec![];
    assert!(!agent::run(
        &mut target(dir.path()),
        &input,
        false,
        &mut events
    ));
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { message } if message.contains("changed since the plan was shown"))),
        "{events:?}"
    );
    assert!(!dir.path().join("etc/a").exists(), "nothing applied");
    // Unchanged host: the confirmed plan is applied.
    std::fs::remove_file(dir.path().join("etc/b")).unwrap();
    let events = run(dir.path(), &d, false);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Finished {
            applied: 2,
            failed: false,
            ..
        }
    )));
}

#[test]
fn a_failing_host_does_not_stop_the_others() {
    use kiln_converge::host::{AgentBinary, Privilege};
    use kiln_converge::resource::Package;
    use kiln_converge::run::{Connect, Job, run_jobs};
    let binary =
        AgentBinary::from_path(Path::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))).unwrap();
    let good_root = make_root();
    let bad_root = make_root();
    let good = DesiredState {
        host: "good".into(),
        files: vec![File {
            path: "/etc/ok".into(),
            content: Content::text("ok\n"),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        ..Default::default()
    };
    // Packages on a root without /etc/os-release: the agent cannot observe them.
    let bad = DesiredState {
        host: "bad".into(),
        packages: vec![Package {
            name: "htop".into(),
        }],
        ..Default::default()
    };
    let job = |name: &str, root: &Path, desired: DesiredState| Job {
        name: name.into(),
        connect: Connect::Local {
            root: Some(root.to_owned()),
        },
        privilege: Privilege::Root,
        desired,
    };
    let jobs = vec![
        job("bad", bad_root.path(), bad),
        job("good", good_root.path(), good),
    ];
    let mut done = std::collections::BTreeMap::new();
    for (name, r) in run_jobs(jobs, &binary, false, 1, &mut |_, _| {}) {
        done.insert(name, r.unwrap());
    }
    assert!(done["bad"].failed);
    assert!(
        done["bad"].errors[0].contains("distribution is unknown"),
        "{:?}",
        done["bad"].errors
    );
    assert!(!done["good"].failed);
    assert_eq!(done["good"].applied, 1);
    assert_eq!(
        std::fs::read_to_string(good_root.path().join("etc/ok")).unwrap(),
        "ok\n"
    );
}

fn planned(events: &[Event]) -> kiln_converge::Plan {
    events
        .iter()
        .find_map(|e| match e {
            Event::Planned { plan, .. } => Some(plan.clone()),
            _ => None,
        })
        .expect("a plan")
}

#[test]
fn a_file_taken_over_is_given_back_exactly_and_a_created_one_is_removed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = make_root();
    let root = dir.path();
    // What the distribution shipped: a text file, and a binary one with another owner.
    std::fs::write(root.join("etc/motd"), "The programs included with Debian\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/motd"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let blob: Vec<u8> = vec![0xff, 0x00, 0x01, 0x80, b'\n'];
    std::fs::write(root.join("etc/blob.bin"), &blob).unwrap();
    std::os::unix::fs::chown(root.join("etc/blob.bin"), Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        root.join("etc/blob.bin"),
        std::fs::Permissions::from_mode(0o604),
    )
    .unwrap();
    let file = |p: &str, text: &str| File {
        path: p.into(),
        content: Content::text(text),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    };
    let taken = DesiredState {
        host: "local".into(),
        files: vec![
            file("/etc/motd", "managed by kiln\n"),
            file("/etc/blob.bin", "now text\n"),
        ],
        ..Default::default()
    };

    // 1. Taken over: the plan says so, the originals are kept, root only.
    let events = run(root, &taken, false);
    let ops: Vec<String> = planned(&events)
        .changes
        .iter()
        .map(|c| format!("{} {}", c.op, c.id))
        .collect();
    assert_eq!(
        ops,
        ["take-over file /etc/motd", "take-over file /etc/blob.bin"]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "managed by kiln\n"
    );
    let store = root.join("var/lib/kiln/originals");
    assert_eq!(std::fs::metadata(&store).unwrap().mode() & 0o7777, 0o700);
    let mut kept: Vec<Vec<u8>> = vec![];
    for e in std::fs::read_dir(&store).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 0), "{:?}", e.path());
        kept.push(std::fs::read(e.path()).unwrap());
    }
    kept.sort();
    let mut want = vec![
        blob.clone(),
        b"The programs included with Debian\n".to_vec(),
    ];
    want.sort();
    assert_eq!(kept, want);
    let record = std::fs::read_to_string(root.join("var/lib/kiln/owned.json")).unwrap();
    assert!(record.contains("\"originals\""), "{record}");
    assert!(
        !record.contains("The programs"),
        "contents stay out of the record"
    );

    // 2. Converged: nothing to do.
    assert!(planned(&run(root, &taken, true)).is_empty());

    // 3. Declarations removed: the exact originals are back (bytes, mode, owner).
    let none = DesiredState {
        host: "local".into(),
        ..Default::default()
    };
    let events = run(root, &none, false);
    let plan = planned(&events);
    let shown: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {} ({})", c.op, c.id, c.details.join("; ")))
        .collect();
    assert_eq!(
        shown,
        [
            "restore file /etc/blob.bin (the original from before kiln)",
            "restore file /etc/motd (the original from before kiln)",
        ]
    );
    assert_eq!(
        std::fs::read(root.join("etc/motd")).unwrap(),
        b"The programs included with Debian\n"
    );
    let m = std::fs::metadata(root.join("etc/motd")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0));
    assert_eq!(std::fs::read(root.join("etc/blob.bin")).unwrap(), blob);
    let m = std::fs::metadata(root.join("etc/blob.bin")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o604, 65534, 65534));
    assert_eq!(
        std::fs::read_dir(&store).unwrap().count(),
        0,
        "originals given back are not kept"
    );
    assert!(planned(&run(root, &none, true)).is_empty());

    // 4. A file kiln created is removed when its declaration goes.
    let created = DesiredState {
        host: "local".into(),
        files: vec![file("/etc/kiln-new.conf", "new\n")],
        ..Default::default()
    };
    let ops: Vec<String> = planned(&run(root, &created, false))
        .changes
        .iter()
        .map(|c| format!("{} {}", c.op, c.id))
        .collect();
    assert_eq!(ops, ["create file /etc/kiln-new.conf"]);
    run(root, &none, false);
    assert!(!root.join("etc/kiln-new.conf").exists());
    assert!(root.join("etc/motd").exists());
}

#[test]
fn a_file_changed_between_plan_and_apply_keeps_its_original_unwritten() {
    // keep_originals checks the bytes are still those observed.
    let dir = make_root();
    let root = dir.path();
    std::fs::write(root.join("etc/motd"), "before\n").unwrap();
    let d = DesiredState {
        host: "local".into(),
        files: vec![File {
            path: "/etc/motd".into(),
            content: Content::text("kiln\n"),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        ..Default::default()
    };
    let mut t = target(root);
    let observed = observe::observe(&mut t, None, &d).unwrap();
    let p = plan::plan(&d, &observed).unwrap();
    std::fs::write(root.join("etc/motd"), "someone else\n").unwrap();
    let mut events: Vec<Event> = vec![];
    let (applied, ok) =
        kiln_converge::apply::apply(&mut t, None, &d, &observed.owned, &p, &mut events);
    assert_eq!((applied, ok), (0, false));
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { message } if message.contains("/etc/motd: changed since it was observed"))),
        "{events:?}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "someone else\n"
    );
}

#[test]
fn a_symlink_a_file_replaced_and_a_file_a_symlink_replaced_come_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = make_root();
    let root = dir.path();
    std::fs::create_dir_all(root.join("run")).unwrap();
    std::fs::write(root.join("run/stub-resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
    std::os::unix::fs::symlink("../run/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
    std::fs::write(root.join("etc/editor"), "#!/bin/sh\nexec vi \"$@\"\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/editor"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/pre-existing.d")).unwrap();
    let d = DesiredState {
        host: "local".into(),
        files: vec![File {
            path: "/etc/resolv.conf".into(),
            content: Content::text("nameserver 10.0.0.1\n"),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        symlinks: vec![Symlink {
            path: "/etc/editor".into(),
            target: "/usr/bin/nano".into(),
        }],
        directories: vec![Directory {
            path: "/etc/pre-existing.d".into(),
            mode: 0o700,
            owner: "root".into(),
            group: "root".into(),
        }],
        ..Default::default()
    };
    run(root, &d, false);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
        "nameserver 10.0.0.1\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("run/stub-resolv.conf")).unwrap(),
        "nameserver 127.0.0.53\n",
        "the symlink was replaced, its target left alone"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/editor")).unwrap(),
        PathBuf::from("/usr/bin/nano")
    );
    run(
        root,
        &DesiredState {
            host: "local".into(),
            ..Default::default()
        },
        false,
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
        PathBuf::from("../run/stub-resolv.conf")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/editor")).unwrap(),
        "#!/bin/sh\nexec vi \"$@\"\n"
    );
    assert_eq!(
        std::fs::symlink_metadata(root.join("etc/editor"))
            .unwrap()
            .mode()
            & 0o7777,
        0o755
    );
    assert!(
        root.join("etc/pre-existing.d").is_dir(),
        "a directory kiln did not create is not removed"
    );
}

#[test]
fn every_failed_step_is_reported_and_only_its_dependents_are_skipped() {
    let dir = make_root();
    let file = |p: &str, owner: &str, group: &str| File {
        path: p.into(),
        content: Content::text("x\n"),
        mode: 0o644,
        owner: owner.into(),
        group: group.into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    };
    let d = DesiredState {
        host: "local".into(),
        directories: vec![Directory {
            path: "/srv/bad".into(),
            mode: 0o755,
            owner: "no-such-user".into(),
            group: "root".into(),
        }],
        files: vec![
            file("/srv/bad/inside.conf", "root", "root"),
            file("/etc/bad-group.conf", "root", "no-such-group"),
            file("/etc/ok.conf", "root", "root"),
        ],
        symlinks: vec![Symlink {
            path: "/srv/bad/link".into(),
            target: "/etc/ok.conf".into(),
        }],
        ..Default::default()
    };
    let input = agent::frame_input(&d).unwrap();
    let mut events = vec![];
    assert!(!agent::run(
        &mut target(dir.path()),
        &input,
        false,
        &mut events
    ));
    let failed: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Failed { id, op, error, .. } => Some(format!("{op} {id}: {error}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(
        failed[0].starts_with("create directory /srv/bad: "),
        "{failed:?}"
    );
    assert!(failed[0].contains("no-such-user"), "{failed:?}");
    assert!(
        failed[1].starts_with("create file /etc/bad-group.conf: "),
        "{failed:?}"
    );
    let skipped: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped { id, because, .. } => Some((id.to_string(), because.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "file /srv/bad/inside.conf".to_owned(),
                "create directory /srv/bad".to_owned()
            ),
            (
                "symlink /srv/bad/link".to_owned(),
                "create directory /srv/bad".to_owned()
            ),
        ]
    );
    // The independent step went on.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/ok.conf")).unwrap(),
        "x\n"
    );
    assert!(!dir.path().join("srv/bad").exists());
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            applied: 1,
            failed: true,
            ..
        })
    ));
}

#[test]
fn one_apply_at_a_time_per_host_while_plans_run_alongside() {
    use kiln_converge::lock::{Holder, acquire};
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = make_root();
    let d = DesiredState {
        host: "local".into(),
        files: vec![File {
            path: "/etc/app.conf".into(),
            content: Content::text("x\n"),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }],
        ..Default::default()
    };
    // Another run (e.g. from another checkout) is applying.
    let other = acquire(
        &target(dir.path()),
        &Holder::now("apply", Some("bob@other-laptop".into())),
        Duration::ZERO,
    )
    .unwrap();

    // A plan runs regardless, and writes nothing.
    let events = run(dir.path(), &d, true);
    assert!(matches!(
        events.last(),
        Some(Event::Finished { failed: false, .. })
    ));

    // A second apply (a real agent process) waits, then is refused naming the holder.
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))
        .args(["agent", "--operator", "alice@laptop", "--root"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&agent::frame_input(&d).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "it waited briefly"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let error = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .find_map(|e| match e {
            Event::Error { message } => Some(message),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error event: {stdout}"));
    assert!(
        error.starts_with("host local: another kiln run holds the lock on this host"),
        "{error}"
    );
    assert!(error.contains("apply by bob@other-laptop"), "{error}");
    assert!(
        error.contains(&format!("pid {}", std::process::id())),
        "{error}"
    );
    assert!(error.contains(" since 20"), "{error}");
    assert!(!dir.path().join("etc/app.conf").exists(), "nothing applied");

    // Once the other run is done, the apply goes through and records its operator.
    drop(other);
    let input = agent::frame_input(&d).unwrap();
    let mut events = vec![];
    let opts = agent::RunOptions {
        operator: Some("alice@laptop".into()),
        ..agent::RunOptions::default()
    };
    assert!(agent::run_with(
        &mut target(dir.path()),
        &input,
        &opts,
        &mut events
    ));
    assert!(dir.path().join("etc/app.conf").exists());
    let holder = kiln_converge::lock::read_holder(&dir.path().join("var/lib/kiln/lock")).unwrap();
    assert_eq!(holder.operator.as_deref(), Some("alice@laptop"));
}

mod guarded {
    use super::*;
    use kiln_converge::host::{AgentBinary, ExecOutput, Host, HostError, LocalHost, Privilege};

    fn binary() -> AgentBinary {
        AgentBinary::from_path(Path::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))).unwrap()
    }

    fn local(root: &Path) -> LocalHost {
        LocalHost {
            name: "local".into(),
            root: Some(root.to_owned()),
            privilege: Privilege::Root,
        }
    }

    fn guarded_file(path: &str, text: &str, owner: &str) -> File {
        File {
            path: path.into(),
            content: Content::text(text),
            mode: 0o644,
            owner: owner.into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: Some("ssh".into()),
            validate: None,
            note: None,
        }
    }

    fn state(files: Vec<File>) -> DesiredState {
        DesiredState {
            host: "local".into(),
            files,
            guard_timeout_s: Some(30),
            ..Default::default()
        }
    }

    fn saved_states(root: &Path) -> usize {
        // Armed groups' saved states (a rollback leaves a `.rolled-back` marker).
        std::fs::read_dir(root.join("var/lib/kiln/guard"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
                })
                .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn a_guarded_group_is_confirmed_over_a_fresh_local_connection() {
        let dir = make_root();
        let d = state(vec![guarded_file(
            "/etc/ssh/kiln.conf",
            "Port 2222\n",
            "root",
        )]);
        let mut events = vec![];
        let out = local(dir.path())
            .run_agent(&binary(), &d, false, &mut |e| events.push(e.clone()))
            .unwrap();
        assert!(!out.failed, "{:?}", out.errors);
        assert_eq!(out.confirmed, ["ssh"]);
        let plan = out.plan.unwrap();
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].name, "ssh");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::GuardArmed { deadline_s, .. } if *deadline_s <= 30))
        );
        assert_eq!(
            saved_states(dir.path()),
            0,
            "disarmed: nothing left to roll back"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/kiln.conf")).unwrap(),
            "Port 2222\n"
        );
    }

    /// A host whose fresh connections cannot log in (e.g. the new sshd config locks
    /// the operator out), while the already open connection still works.
    struct LockedOut(LocalHost);
    impl Host for LockedOut {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn privilege(&self) -> &Privilege {
            self.0.privilege()
        }
        fn exec(
            &mut self,
            command: &str,
            stdin: &[u8],
            on_line: &mut dyn FnMut(&str),
        ) -> Result<ExecOutput, HostError> {
            self.0.exec(command, stdin, on_line)
        }
        fn agent_location(&self, b: &AgentBinary) -> kiln_converge::host::AgentLocation {
            self.0.agent_location(b)
        }
        fn fresh_connection(&mut self) -> Result<Box<dyn Host>, HostError> {
            Err(HostError::Connect {
                host: "local".into(),
                message: "Permission denied (publickey)".into(),
                hint: "test".into(),
            })
        }
    }

    #[test]
    fn an_unconfirmed_group_is_reported_and_its_rollback_restores_the_files() {
        let dir = make_root();
        std::fs::create_dir_all(dir.path().join("etc/ssh")).unwrap();
        std::fs::write(dir.path().join("etc/ssh/kiln.conf"), "Port 22\n").unwrap();
        let d = state(vec![
            guarded_file("/etc/ssh/kiln.conf", "Port 2222\n", "root"),
            guarded_file("/etc/ssh/new.conf", "new\n", "root"),
        ]);
        let mut token = None;
        let out = LockedOut(local(dir.path()))
            .run_agent(&binary(), &d, false, &mut |e| {
                if let Event::GuardArmed { token: t, .. } = e {
                    token = Some(t.clone());
                }
            })
            .unwrap();
        assert!(out.failed);
        assert_eq!(out.unconfirmed, ["ssh"]);
        assert!(
            out.errors[0].contains("guarded group ssh could not be confirmed")
                && out.errors[0].contains("Permission denied"),
            "{:?}",
            out.errors
        );
        assert_eq!(saved_states(dir.path()), 1, "still armed");
        // What the host's timer runs at the deadline.
        let token = token.unwrap();
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))
            .args(["agent", "--root"])
            .arg(dir.path())
            .args(["rollback", &token])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        assert!(String::from_utf8_lossy(&st.stdout).contains("guard-rolled-back"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/kiln.conf")).unwrap(),
            "Port 22\n"
        );
        assert!(!dir.path().join("etc/ssh/new.conf").exists());
        assert_eq!(saved_states(dir.path()), 0);
    }

    #[test]
    fn a_failed_step_of_a_group_rolls_the_whole_group_back_at_once() {
        let dir = make_root();
        std::fs::create_dir_all(dir.path().join("etc/ssh")).unwrap();
        std::fs::write(dir.path().join("etc/ssh/a.conf"), "old a\n").unwrap();
        let mut other = guarded_file("/etc/other.conf", "unguarded\n", "root");
        other.guard = None;
        let d = state(vec![
            guarded_file("/etc/ssh/a.conf", "new a\n", "root"),
            guarded_file("/etc/ssh/b.conf", "new b\n", "no-such-user"),
            guarded_file("/etc/ssh/c.conf", "new c\n", "root"),
            other,
        ]);
        let input = agent::frame_input(&d).unwrap();
        let mut events = vec![];
        assert!(!agent::run(
            &mut target(dir.path()),
            &input,
            false,
            &mut events
        ));
        assert!(
            events.iter().any(|e| matches!(e, Event::Skipped { id, because, .. }
                if id.to_string() == "file /etc/ssh/c.conf" && because == "create file /etc/ssh/b.conf")),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::GuardRolledBack { group, reason, .. }
                if group == "ssh" && reason == "create file /etc/ssh/b.conf failed")),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::GuardArmed { .. })));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/a.conf")).unwrap(),
            "old a\n"
        );
        assert!(!dir.path().join("etc/ssh/c.conf").exists());
        assert!(
            dir.path().join("etc/other.conf").exists(),
            "outside the group: kept"
        );
        assert_eq!(saved_states(dir.path()), 0);
    }
}
