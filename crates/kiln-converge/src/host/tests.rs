//! Protocol tests against the strict fake host, and the local host running a real shell.

use super::*;
use crate::agent::INPUT_MARKER;
use crate::owned::Owned;

fn binary() -> AgentBinary {
    AgentBinary::from_bytes(b"\x7fELF fake agent".to_vec(), "/nonexistent")
}

fn finished_lines() -> Vec<String> {
    let plan = Plan {
        host: "web".into(),
        changes: vec![],
        owned_after: Owned::default(),
        groups: vec![],
        warnings: vec![],
    };
    vec![
        serde_json::to_string(&Event::Planned {
            plan,
            observe_ms: 1,
        })
        .unwrap(),
        serde_json::to_string(&Event::Finished {
            applied: 0,
            failed: false,
            plan_only: false,
            ms: 2,
        })
        .unwrap(),
    ]
}

fn expect(contains: &[&str], stdout: Vec<String>, code: i32) -> Expect {
    Expect {
        contains: contains.iter().map(|s| s.to_string()).collect(),
        stdout,
        code,
        stderr: String::new(),
    }
}

#[test]
fn agent_already_there_takes_one_command() {
    let b = binary();
    let mut h = FakeHost {
        name: "web".into(),
        privilege: Privilege::Sudo,
        script: VecDeque::from([expect(
            &[&b.remote_path(AGENT_DIR), "sudo -n --", " agent"],
            finished_lines(),
            0,
        )]),
        received: vec![],
        fresh: Default::default(),
    };
    let mut events = vec![];
    let out = h
        .run_agent(
            &b,
            &DesiredState {
                host: "web".into(),
                ..Default::default()
            },
            false,
            &mut |e| events.push(e.clone()),
        )
        .unwrap();
    assert!(!out.failed);
    assert!(!out.uploaded);
    assert_eq!(h.received.len(), 1);
    assert_eq!(events.len(), 2);
    let stdin = String::from_utf8(h.received[0].1.clone()).unwrap();
    assert!(stdin.starts_with(&format!("{INPUT_MARKER}\n{{")), "{stdin}");
}

#[test]
fn missing_agent_is_uploaded_then_run() {
    let b = binary();
    let mut h = FakeHost {
        name: "web".into(),
        privilege: Privilege::Root,
        script: VecDeque::from([
            expect(&["if [ -x"], vec![], crate::agent::AGENT_MISSING_EXIT),
            expect(&["sha256sum -c", &b.sha256, "mv -f"], vec![], 0),
            expect(&["if [ -x"], finished_lines(), 0),
        ]),
        received: vec![],
        fresh: Default::default(),
    };
    let out = h
        .run_agent(&b, &DesiredState::default(), true, &mut |_| {})
        .unwrap();
    assert!(out.uploaded);
    assert!(h.received[0].0.contains("--plan-only"));
    assert!(!h.received[0].0.contains("sudo"));
    let upload_stdin = &h.received[1].1;
    assert!(upload_stdin.starts_with(b"KILN-UPLOAD-V1\n"));
    assert!(upload_stdin.ends_with(&b.bytes().unwrap()));
}

#[test]
fn sudo_password_goes_on_stdin_never_in_the_command() {
    let b = binary();
    let mut h = FakeHost {
        name: "web".into(),
        privilege: Privilege::SudoPassword(Secret::new("hunter2-planted")),
        script: VecDeque::from([expect(&["sudo -S -p"], finished_lines(), 0)]),
        received: vec![],
        fresh: Default::default(),
    };
    h.run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap();
    let (cmd, stdin) = &h.received[0];
    assert!(!cmd.contains("hunter2"), "{cmd}");
    let mut expected = b"hunter2-planted".to_vec();
    expected.extend_from_slice(&[b'\n'; 10]);
    expected.extend_from_slice(b"KILN-AGENT-INPUT-V1\n");
    assert!(stdin.starts_with(&expected));
}

#[test]
fn agent_that_dies_without_finishing_is_an_error_naming_the_host() {
    let b = binary();
    let mut h = FakeHost {
        name: "web".into(),
        privilege: Privilege::Root,
        script: VecDeque::from([Expect {
            contains: vec![],
            stdout: vec![],
            code: 137,
            stderr: "Killed\n".into(),
        }]),
        received: vec![],
        fresh: Default::default(),
    };
    let err = h
        .run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "host web: the agent failed (exit 137): Killed"
    );
}

#[test]
fn strict_fake_refuses_unexpected_commands() {
    let mut h = FakeHost {
        name: "web".into(),
        privilege: Privilege::Root,
        script: VecDeque::new(),
        received: vec![],
        fresh: Default::default(),
    };
    assert!(matches!(
        h.exec("rm -rf /", b"", &mut |_| {}),
        Err(HostError::Unexpected { .. })
    ));
}

#[test]
fn local_host_streams_lines_and_passes_stdin() {
    let mut h = LocalHost {
        name: "local".into(),
        root: None,
        privilege: Privilege::Root,
    };
    let mut lines = vec![];
    let out = h
        .exec(
            "read a; echo got:$a; echo err >&2; exit 3",
            b"hello\n",
            &mut |l| lines.push(l.to_owned()),
        )
        .unwrap();
    assert_eq!(lines, ["got:hello"]);
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stderr, "err\n");
}

#[test]
fn upload_script_really_installs_the_binary_under_a_shell() {
    // Run the exact upload command through a real shell, with the agent dir redirected
    // into a temporary folder, to check the marker/head/sha256 logic.
    let dir = tempfile::tempdir().unwrap();
    let b = binary();
    struct Redirect {
        inner: LocalHost,
        dir: String,
    }
    impl Host for Redirect {
        fn name(&self) -> &str {
            "local"
        }
        fn privilege(&self) -> &Privilege {
            &self.inner.privilege
        }
        fn exec(
            &mut self,
            command: &str,
            stdin: &[u8],
            on_line: &mut dyn FnMut(&str),
        ) -> Result<ExecOutput, HostError> {
            let cmd = command.replace(AGENT_DIR, &self.dir);
            self.inner.exec(&cmd, stdin, on_line)
        }
    }
    let mut h = Redirect {
        inner: LocalHost {
            name: "local".into(),
            root: None,
            privilege: Privilege::Root,
        },
        dir: dir.path().join("bin").display().to_string(),
    };
    // An agent shipped by an old kiln, unused for 10 days, and a recent one.
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::write(bin_dir.join("kiln-old"), b"old").unwrap();
    std::fs::write(bin_dir.join("kiln-recent"), b"recent").unwrap();
    let st = std::process::Command::new("touch")
        .args(["-d", "10 days ago"])
        .arg(bin_dir.join("kiln-old"))
        .status()
        .unwrap();
    assert!(st.success());
    h.upload(&b).unwrap();
    assert!(
        !bin_dir.join("kiln-old").exists(),
        "old agents are cleaned up"
    );
    assert!(bin_dir.join("kiln-recent").exists());
    let installed = dir.path().join("bin").join(format!("kiln-{}", b.sha256));
    assert_eq!(std::fs::read(&installed).unwrap(), *b.bytes().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

fn fake(script: Vec<Expect>) -> FakeHost {
    FakeHost {
        name: "web".into(),
        privilege: Privilege::Root,
        script: VecDeque::from(script),
        received: vec![],
        fresh: Default::default(),
    }
}

#[test]
fn lines_that_are_not_events_are_reported_not_dropped() {
    let b = binary();
    let mut stdout = vec!["{\"event\":\"from-a-newer-agent\",\"x\":1}".to_owned()];
    stdout.extend(finished_lines());
    let mut h = fake(vec![expect(&["if [ -x"], stdout, 0)]);
    let out = h
        .run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap();
    assert!(out.failed, "an unreadable agent line fails the host");
    assert!(
        out.errors
            .iter()
            .any(|e| e.contains("not kiln events") && e.contains("from-a-newer-agent")),
        "{:?}",
        out.errors
    );
}

#[test]
fn an_agent_that_dies_names_the_lines_it_printed() {
    let b = binary();
    let mut h = fake(vec![Expect {
        contains: vec![],
        stdout: vec!["Segmentation fault in frobnicator".into()],
        code: 139,
        stderr: String::new(),
    }]);
    let err = h
        .run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("host web: the agent failed (exit 139)"),
        "{text}"
    );
    assert!(text.contains("Segmentation fault in frobnicator"), "{text}");
}

#[test]
fn an_agent_of_another_version_is_an_error() {
    let b = binary();
    let mut stdout = vec![
        serde_json::to_string(&Event::Started {
            version: "0.0.0-other".into(),
            facts: None,
        })
        .unwrap(),
    ];
    stdout.extend(finished_lines());
    let mut h = fake(vec![expect(&["if [ -x"], stdout, 0)]);
    let out = h
        .run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap();
    assert!(out.failed);
    assert!(
        out.errors
            .iter()
            .any(|e| e.contains("0.0.0-other") && e.contains(env!("CARGO_PKG_VERSION"))),
        "{:?}",
        out.errors
    );
}

fn guarded_desired() -> DesiredState {
    serde_json::from_str(
        r#"{"host":"web","files":[{"path":"/etc/ssh/sshd_config.d/kiln.conf","content":"Port 22\n","guard":"ssh"}]}"#,
    )
    .unwrap()
}

fn armed_lines(token: &str) -> Vec<String> {
    let mut lines = vec![
        serde_json::to_string(&Event::GuardArmed {
            group: "ssh".into(),
            token: token.into(),
            deadline_s: 90,
        })
        .unwrap(),
    ];
    lines.extend(finished_lines());
    lines
}

#[test]
fn an_armed_group_is_disarmed_over_a_fresh_connection_through_sudo() {
    let b = binary();
    let token = "00aa11bb22cc33dd";
    let mut h = fake(vec![expect(
        &["if [ -x", "--operator"],
        armed_lines(token),
        0,
    )]);
    h.privilege = Privilege::Sudo;
    h.fresh = FreshScript::new(vec![expect(
        &["sudo -n --", " agent disarm ", token],
        vec![
            serde_json::to_string(&Event::GuardDisarmed {
                token: token.into(),
            })
            .unwrap(),
        ],
        0,
    )]);
    let mut events = vec![];
    let out = h
        .run_agent(&b, &guarded_desired(), false, &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    assert_eq!(out.confirmed, ["ssh"]);
    assert!(events.contains(&Event::GuardConfirmed {
        group: "ssh".into(),
        token: token.into()
    }));
    assert_eq!(
        h.received.len(),
        1,
        "the disarm did not use the main connection"
    );
    let fresh = h.fresh.received();
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0].contains(&b.remote_path(AGENT_DIR)), "{fresh:?}");
}

#[test]
fn a_group_that_cannot_be_confirmed_fails_the_host_naming_it_and_the_rollback() {
    let b = binary();
    let token = "00aa11bb22cc33dd";
    let mut h = fake(vec![expect(&["if [ -x"], armed_lines(token), 0)]);
    h.fresh = FreshScript::new(vec![Expect {
        contains: vec!["disarm".into()],
        stdout: vec![],
        code: 255,
        stderr: "kiln@web: Permission denied (publickey).".into(),
    }]);
    let mut events = vec![];
    let out = h
        .run_agent(&b, &guarded_desired(), false, &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    assert!(out.failed);
    assert_eq!(out.unconfirmed, ["ssh"]);
    let text = out.errors.join("\n");
    assert!(
        text.contains("guarded group ssh could not be confirmed over a fresh connection")
            && text.contains("Permission denied (publickey)")
            && text
                .contains("rolls it back within 90 s (timer kiln-rollback-00aa11bb22cc33dd.timer)"),
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::GuardUnconfirmed { group, .. } if group == "ssh"))
    );

    // A disarm the host refuses (already rolled back) is no confirmation either.
    let mut h = fake(vec![expect(&["if [ -x"], armed_lines(token), 0)]);
    h.fresh = FreshScript::new(vec![expect(
        &["disarm"],
        vec![
            serde_json::to_string(&Event::Error {
                message: "no armed guard 00aa11bb22cc33dd on this host".into(),
            })
            .unwrap(),
        ],
        1,
    )]);
    let out = h
        .run_agent(&b, &guarded_desired(), false, &mut |_| {})
        .unwrap();
    assert!(out.failed);
    assert!(
        out.errors.join("\n").contains("no armed guard"),
        "{:?}",
        out.errors
    );
}

#[test]
fn skipped_steps_fail_the_host_and_say_why() {
    use crate::resource::ResourceId;
    let b = binary();
    let mut stdout = vec![
        serde_json::to_string(&Event::Failed {
            index: 0,
            id: ResourceId::File("/etc/app.conf".into()),
            op: crate::plan::Op::Update,
            error: "disk full".into(),
        })
        .unwrap(),
        serde_json::to_string(&Event::Skipped {
            index: 1,
            id: ResourceId::Unit("app.service".into()),
            op: crate::plan::Op::Restart,
            because: "update file /etc/app.conf".into(),
        })
        .unwrap(),
    ];
    stdout.extend(finished_lines());
    let mut h = fake(vec![expect(&["if [ -x"], stdout, 0)]);
    let out = h
        .run_agent(&b, &DesiredState::default(), false, &mut |_| {})
        .unwrap();
    assert!(out.failed);
    assert_eq!(
        out.errors,
        [
            "update file /etc/app.conf: disk full",
            "restart unit app.service: skipped because update file /etc/app.conf failed"
        ]
    );
}

#[test]
fn a_fresh_connection_refused_while_sshd_restarts_is_tried_again() {
    let b = binary();
    let token = "00aa11bb22cc33dd";
    let mut h = fake(vec![expect(&["if [ -x"], armed_lines(token), 0)]);
    h.fresh = FreshScript::new(vec![
        Expect {
            contains: vec!["disarm".into()],
            stdout: vec![],
            code: 255,
            stderr: "ssh: connect to host web port 22: Connection refused".into(),
        },
        expect(
            &["disarm", token],
            vec![
                serde_json::to_string(&Event::GuardDisarmed {
                    token: token.into(),
                })
                .unwrap(),
            ],
            0,
        ),
    ]);
    let out = h
        .run_agent(&b, &guarded_desired(), false, &mut |_| {})
        .unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    assert_eq!(out.confirmed, ["ssh"]);
    assert_eq!(h.fresh.received().len(), 2);
}

#[test]
fn the_agents_hash_is_remembered_until_the_binary_changes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("kiln");
    let cache = dir.path().join("cache");
    std::fs::write(&bin, b"first build").unwrap();
    let a = AgentBinary::from_path_cached(&bin, &cache).unwrap();
    assert_eq!(a.sha256, AgentBinary::from_path(&bin).unwrap().sha256);
    let record = std::fs::read_to_string(cache.join("agent-sha256")).unwrap();
    assert!(record.trim_end().ends_with(&a.sha256), "{record}");
    // A hit reads the file only when an upload asks for its bytes.
    let hit = AgentBinary::from_path_cached(&bin, &cache).unwrap();
    assert_eq!(*hit.bytes().unwrap(), b"first build");
    // The record is what is used while the file is the same one…
    let forged = record.replace(&a.sha256, &"0".repeat(64));
    std::fs::write(cache.join("agent-sha256"), &forged).unwrap();
    let stale = AgentBinary::from_path_cached(&bin, &cache).unwrap();
    assert_eq!(stale.sha256, "0".repeat(64));
    // …and bytes that do not match it are refused, never uploaded under that name.
    assert!(stale.bytes().is_err());
    // …and a new build (another size, another time) is hashed again.
    std::fs::write(&bin, b"second build, longer").unwrap();
    let b = AgentBinary::from_path_cached(&bin, &cache).unwrap();
    assert_eq!(b.sha256, AgentBinary::from_path(&bin).unwrap().sha256);
    assert_eq!(*b.bytes().unwrap(), b"second build, longer");
}
