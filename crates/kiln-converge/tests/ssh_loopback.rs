//! The real SSH transport against a throwaway sshd bound to 127.0.0.1 on a free high port
//! (its own host key and authorized key in a temporary folder; loopback only). The agent
//! shipped is this crate's standalone agent binary, converging a temporary root.
//!
//! Needs `/usr/sbin/sshd` (Debian package openssh-server, see .ci/install-converge.sh).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_converge::event::Event;
use kiln_converge::host::keys::HostKey;
use kiln_converge::host::ssh::{SshHost, SshTarget};
use kiln_converge::host::{AgentBinary, Host, HostError, Privilege};
use kiln_converge::resource::{Content, DesiredState, File};

struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    host_key: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn start_sshd() -> Sshd {
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "/usr/sbin/sshd is missing: install openssh-server (.ci/install-converge.sh)"
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
         StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nMaxStartups 50\nMaxSessions 50\n",
        hk = d.join("host_key").display(),
        pid = d.join("sshd.pid").display(),
        ak = d.join("authorized_keys").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
    let host_key = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Sshd {
        child,
        dir,
        port,
        host_key,
    }
}

fn target(sshd: &Sshd, keys: Vec<String>, root: &Path) -> SshTarget {
    SshTarget {
        name: "loop".into(),
        address: "127.0.0.1".into(),
        port: sshd.port,
        user: "root".into(),
        host_keys: keys,
        identity_file: Some(sshd.dir.path().join("id")),
        connect_timeout_s: 5,
        test_paths: Some((
            sshd.dir.path().join("agents").display().to_string(),
            root.to_owned(),
        )),
        env: None,
    }
}

fn agent() -> AgentBinary {
    AgentBinary::from_path(Path::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))).unwrap()
}

fn desired(n: usize, text: &str) -> DesiredState {
    DesiredState {
        host: "loop".into(),
        files: (0..n)
            .map(|i| File {
                path: PathBuf::from(format!("/etc/app/f{i}.conf")),
                content: Content::text(format!("{text} {i}\n")),
                mode: 0o640,
                owner: "root".into(),
                group: "root".into(),
                sensitive: false,
                notify: vec![],
                guard: None,
                validate: None,
                note: None,
            })
            .collect(),
        ..Default::default()
    }
}

fn make_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    root
}

#[test]
fn ships_the_agent_once_applies_then_reports_zero_changes() {
    let sshd = start_sshd();
    let root = make_root();
    let bin = agent();
    let d = desired(20, "v1");

    let mut host = SshHost::new(
        target(&sshd, vec![sshd.host_key.clone()], root.path()),
        Privilege::Root,
    )
    .unwrap();
    let mut events = vec![];
    let first = host
        .run_agent(&bin, &d, false, &mut |e| events.push(e.clone()))
        .unwrap();
    assert!(first.uploaded, "first contact ships the agent");
    assert!(!first.failed, "{:?}", first.errors);
    assert_eq!(first.applied, 20);
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/app/f7.conf")).unwrap(),
        "v1 7\n"
    );
    assert!(
        sshd.dir
            .path()
            .join("agents")
            .join(format!("kiln-{}", bin.sha256))
            .exists()
    );

    // Same connection, same desired state: no upload, nothing to do.
    let second = host.run_agent(&bin, &d, false, &mut |_| {}).unwrap();
    assert!(!second.uploaded);
    assert_eq!(second.applied, 0);
    assert!(second.plan.unwrap().is_empty());
    drop(host);

    // A new run (new connection): plan-only shows the change, apply makes it.
    let mut host = SshHost::new(
        target(&sshd, vec![sshd.host_key.clone()], root.path()),
        Privilege::Root,
    )
    .unwrap();
    let d2 = desired(20, "v2");
    let planned = host.run_agent(&bin, &d2, true, &mut |_| {}).unwrap();
    assert_eq!(planned.plan.unwrap().changes.len(), 20);
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/app/f7.conf")).unwrap(),
        "v1 7\n"
    );
    let applied = host.run_agent(&bin, &d2, false, &mut |_| {}).unwrap();
    assert_eq!(applied.applied, 20);
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/app/f7.conf")).unwrap(),
        "v2 7\n"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Finished { failed: false, .. }))
    );
}

#[test]
fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let sshd = start_sshd();
    let root = make_root();
    let other = sshd.dir.path().join("other_key");
    keygen(&other);
    let pinned = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let pinned_fp = HostKey::parse(&pinned).unwrap().fingerprint();
    let real_fp = HostKey::parse(&sshd.host_key).unwrap().fingerprint();

    let mut host = SshHost::new(
        target(&sshd, vec![pinned.trim().to_owned()], root.path()),
        Privilege::Root,
    )
    .unwrap();
    let err = host
        .run_agent(&agent(), &desired(1, "x"), false, &mut |_| {})
        .unwrap_err();
    match &err {
        HostError::HostKeyChanged {
            host,
            expected,
            presented,
            trust,
        } => {
            assert_eq!(trust, "kiln trust loop");
            assert_eq!(host, "loop");
            assert!(
                expected.iter().any(|e| e.contains(&pinned_fp)),
                "{expected:?}"
            );
            assert!(
                presented.iter().any(|p| p.contains(&real_fp)),
                "{presented:?}"
            );
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&pinned_fp) && text.contains(&real_fp),
        "{text}"
    );
    // Nothing was applied.
    assert!(!root.path().join("etc/app").exists());
}

#[test]
fn no_pinned_key_means_no_connection() {
    let sshd = start_sshd();
    let root = make_root();
    let err = SshHost::new(target(&sshd, vec![], root.path()), Privilege::Root)
        .err()
        .unwrap();
    assert!(matches!(err, HostError::NoHostKey { .. }), "{err}");
}

#[test]
fn a_killed_apply_leaves_whole_files_and_the_rerun_converges() {
    let root = make_root();
    let bin = env!("CARGO_BIN_EXE_kiln-converge-agent");
    let old = desired(400, "old");
    let new = desired(400, &"new content line\n".repeat(50));
    // Converge to the old state first.
    let run = |d: &DesiredState, kill_after: Option<usize>| {
        let mut child = Command::new(bin)
            .args(["agent", "--root"])
            .arg(root.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = kiln_converge::agent::frame_input(d).unwrap();
        use std::io::{BufRead, Write};
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.stdout.take().unwrap();
        let mut applied = 0;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(e) = serde_json::from_str::<Event>(&line.unwrap()) else {
                continue;
            };
            if matches!(e, Event::Applied { .. }) {
                applied += 1;
                if Some(applied) == kill_after {
                    child.kill().unwrap();
                    break;
                }
            }
        }
        child.wait().unwrap();
        applied
    };
    assert_eq!(run(&old, None), 400);
    let done = run(&new, Some(50));
    assert_eq!(done, 50);
    // Every file is wholly old or wholly new.
    let (mut olds, mut news) = (0, 0);
    for (i, (o, n)) in old.files.iter().zip(&new.files).enumerate() {
        let got = std::fs::read(root.path().join(format!("etc/app/f{i}.conf"))).unwrap();
        if got == o.content.bytes() {
            olds += 1;
        } else if got == n.content.bytes() {
            news += 1;
        } else {
            panic!("f{i}.conf is neither old nor new");
        }
    }
    assert!(news >= 50 && olds > 0, "old {olds}, new {news}");
    // The rerun finishes the job and the one after has nothing to do.
    assert_eq!(run(&new, None), 400 - news);
    assert_eq!(run(&new, None), 0);
    let leftovers: Vec<_> = std::fs::read_dir(root.path().join("etc/app"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("kiln-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn poison_a_planted_secret_never_shows_in_plans_or_events() {
    let sshd = start_sshd();
    let root = make_root();
    let planted = "hunter2-poison-0xC0FFEE";
    let mut d = desired(1, "public");
    d.files.push(File {
        path: "/etc/app/secret.env".into(),
        content: Content::text(format!("TOKEN={planted}\n")),
        mode: 0o600,
        owner: "root".into(),
        group: "root".into(),
        sensitive: true,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    });
    let mut host = SshHost::new(
        target(&sshd, vec![sshd.host_key.clone()], root.path()),
        Privilege::Root,
    )
    .unwrap();
    let mut events = vec![];
    let planned = host
        .run_agent(&agent(), &d, true, &mut |e| events.push(e.clone()))
        .unwrap();
    // Change it once applied, so the next plan is an update of a secret file.
    host.run_agent(&agent(), &d, false, &mut |e| events.push(e.clone()))
        .unwrap();
    d.files[1].content = Content::text(format!("TOKEN={planted}-rotated\n"));
    let update = host
        .run_agent(&agent(), &d, true, &mut |e| events.push(e.clone()))
        .unwrap();
    let everything = format!(
        "{}\n{:?}\n{:?}\n{:?}",
        serde_json::to_string(&events).unwrap(),
        events,
        planned.plan,
        update.plan
    );
    assert!(
        !everything.contains("hunter2"),
        "secret leaked: {everything}"
    );
    assert!(
        everything.contains("redacted"),
        "the plan says the secret file changes"
    );
    // On the host, the file has the secret and its restrictive mode.
    let real = root.path().join("etc/app/secret.env");
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        format!("TOKEN={planted}\n")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

fn guarded(text: &str) -> DesiredState {
    let mut d = desired(1, "plain");
    d.files.push(File {
        path: "/etc/ssh/kiln.conf".into(),
        content: Content::text(text),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: Some("ssh".into()),
        validate: None,
        note: None,
    });
    d.guard_timeout_s = Some(30);
    d
}

#[test]
fn a_guarded_group_is_proven_by_a_new_login_not_the_multiplexed_connection() {
    let sshd = start_sshd();
    let root = make_root();
    let bin = agent();
    let mut host = SshHost::new(
        target(&sshd, vec![sshd.host_key.clone()], root.path()),
        Privilege::Root,
    )
    .unwrap();

    // 1. New logins work: the group is confirmed.
    let mut events = vec![];
    let out = host
        .run_agent(&bin, &guarded("Port 22\n"), false, &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    assert_eq!(out.confirmed, ["ssh"]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::GuardConfirmed { .. }))
    );

    // 2. The open (multiplexed) connection still works but new logins are refused: what a
    //    broken sshd or firewall change looks like from the laptop.
    std::fs::remove_file(sshd.dir.path().join("authorized_keys")).unwrap();
    let mut token = None;
    let out = host
        .run_agent(&bin, &guarded("Port 2222\n"), false, &mut |e| {
            if let Event::GuardArmed { token: t, .. } = e {
                token = Some(t.clone());
            }
        })
        .unwrap();
    assert!(out.failed, "the change was applied over the old connection");
    assert_eq!(out.unconfirmed, ["ssh"]);
    let text = out.errors.join("\n");
    assert!(
        text.contains("guarded group ssh could not be confirmed over a fresh connection")
            && text.contains("Permission denied"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/ssh/kiln.conf")).unwrap(),
        "Port 2222\n"
    );
    // The host's timer (none under a test root: run by hand) puts the old file back.
    let st = Command::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))
        .args(["agent", "--root"])
        .arg(root.path())
        .args(["rollback", &token.unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/ssh/kiln.conf")).unwrap(),
        "Port 22\n"
    );
}
