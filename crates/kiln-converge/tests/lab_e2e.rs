//! End-to-end on a lab server (Debian 13 in systemd-nspawn, reached over the real SSH
//! transport as the lab's `kiln` admin user with sudo): the desired state comes from a
//! kiln.toml `[roles.web]` through the model and the minijinja rendering, as `kiln apply`
//! does. Needs root and the lab's prerequisites (.ci/install-lab.sh).

use std::path::Path;
use std::sync::Arc;

use kiln_converge::desired::{NoSecrets, desired_for_host};
use kiln_converge::event::Event;
use kiln_converge::host::ssh::{SshHost, SshTarget};
use kiln_converge::host::{AgentBinary, AgentOutcome, Host, HostError, Privilege};
use kiln_converge::plan::{Diff, Op};
use kiln_converge::resource::{DesiredState, ResourceId};
use kiln_lab::{Lab, LabOptions, Server};

fn require_root() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
}

fn agent() -> AgentBinary {
    AgentBinary::from_path(Path::new(env!("CARGO_BIN_EXE_kiln-converge-agent"))).unwrap()
}

fn target(s: &Server, keys: Vec<String>) -> SshTarget {
    SshTarget {
        name: "web".into(),
        address: s.address.to_string(),
        port: s.ssh_port,
        user: s.admin_user.clone(),
        host_keys: keys,
        identity_file: Some(s.identity_file.clone()),
        connect_timeout_s: 30,
        test_paths: None,
        env: Some("lab".into()),
    }
}

/// kiln.toml for one `web` host at the server's address, plus templates.
fn write_config(dir: &Path, s: &Server, greeting: &str, with_extra: bool) -> DesiredState {
    let keys: Vec<String> = s.host_keys.iter().map(|k| format!("{k:?}")).collect();
    let extra = if with_extra {
        "\n[[roles.web.files]]\npath = \"/etc/kiln-e2e/extra.conf\"\ncontent = \"extra\\n\"\n"
    } else {
        ""
    };
    let toml = format!(
        r#"[project]
name = "e2e"
domain = "e2e.lab"
acme_email = "ops@e2e.lab"

[base]                             # not this test's subject (kiln-cli's base_lab_e2e.rs)
sshd = false
firewall = false
updates = false
time = false
node_exporter = false
wireguard = false

[environments.lab]
domain = "e2e.lab"
acme_ca = "internal"

[environments.lab.hosts.web]
address = "{addr}"
ssh_port = {port}
admin_user = "{user}"
os = "debian13"
host_keys = [{keys}]

[roles.web]
packages = ["tree"]
vars = {{ greeting = "{greeting}" }}

[[roles.web.directories]]
path = "/etc/kiln-e2e"

[[roles.web.groups]]
name = "kilnapp"
system = true

[[roles.web.users]]
name = "kilnapp"
system = true
home = "/srv/kilnapp"
shell = "/usr/sbin/nologin"
groups = ["kilnapp"]

[[roles.web.directories]]
path = "/srv/kilnapp"
mode = "0750"
owner = "kilnapp"
group = "kilnapp"

[[roles.web.symlinks]]
path = "/usr/local/bin/kiln-e2e-link"
target = "/etc/kiln-e2e/a.conf"

[[roles.web.commands]]
name = "init-once"
run = "echo ran >> /srv/kilnapp/init-runs"
unless = "test -f /srv/kilnapp/init-runs"

[[roles.web.commands]]
name = "on-b"
run = "echo ran >> /srv/kilnapp/b-runs"
unless = "true"
triggered_by = ["/etc/kiln-e2e/b.conf"]

[[roles.web.files]]
path = "/etc/kiln-e2e/a.conf"
template = "templates/a.conf.j2"
notify = ["kiln-e2e-a.service"]

[[roles.web.files]]
path = "/etc/kiln-e2e/b.conf"
content = "b is constant\n"
notify = ["kiln-e2e-b.service"]
{extra}
[[roles.web.units]]
name = "kiln-e2e-a.service"
content = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"

[[roles.web.units]]
name = "kiln-e2e-b.service"
content = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
"#,
        addr = s.address,
        port = s.ssh_port,
        user = s.admin_user,
        keys = keys.join(", "),
    );
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("kiln.toml"), toml).unwrap();
    std::fs::write(
        dir.join("templates/a.conf.j2"),
        "# {{ host.role }} in {{ env.name }}\ngreeting = {{ vars.greeting }}\n",
    )
    .unwrap();
    let model = kiln_model::load(&dir.join("kiln.toml")).unwrap_or_else(|d| panic!("{d:?}"));
    let env = model.environment("lab").unwrap();
    desired_for_host(
        &model,
        env,
        env.host("web").unwrap(),
        Arc::new(NoSecrets("no vault in this test".into())),
    )
    .unwrap()
}

fn run(s: &Server, d: &DesiredState, plan_only: bool) -> AgentOutcome {
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let out = host.run_agent(&agent(), d, plan_only, &mut |_| {}).unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    out
}

fn invocation(s: &Server, unit: &str) -> String {
    s.exec_ok(&format!("systemctl show -p InvocationID --value {unit}"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn lab_apply_converges_restarts_exactly_what_changed_removes_and_survives_a_kill() {
    require_root();
    let lab = Lab::start(LabOptions::unique("converge", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    let dir = tempfile::tempdir().unwrap();

    // 1. From scratch.
    let d1 = write_config(dir.path(), s, "hello", true);
    let first = run(s, &d1, false);
    assert!(first.applied > 0);
    assert_eq!(
        s.exec_ok("cat /etc/kiln-e2e/a.conf").unwrap(),
        "# web in lab\ngreeting = hello\n"
    );
    assert_eq!(
        s.exec_ok("systemctl is-active kiln-e2e-a.service kiln-e2e-b.service")
            .unwrap(),
        "active\nactive\n"
    );
    assert_eq!(
        s.exec_ok("systemctl is-enabled kiln-e2e-a.service")
            .unwrap(),
        "enabled\n"
    );
    assert!(s.exec_ok("tree --version").unwrap().contains("tree"));
    let pw = s.exec_ok("getent passwd kilnapp").unwrap();
    assert!(
        pw.trim_end().ends_with(":/srv/kilnapp:/usr/sbin/nologin"),
        "{pw}"
    );
    assert_eq!(s.exec_ok("id -gn kilnapp").unwrap(), "kilnapp\n");
    assert_eq!(
        s.exec_ok("sudo stat -c %U:%G:%a /srv/kilnapp").unwrap(),
        "kilnapp:kilnapp:750\n"
    );
    assert_eq!(
        s.exec_ok("readlink /usr/local/bin/kiln-e2e-link").unwrap(),
        "/etc/kiln-e2e/a.conf\n"
    );
    let runs = |f: &str| s.exec_ok(&format!("sudo cat /srv/kilnapp/{f}")).unwrap();
    assert_eq!(
        (runs("init-runs"), runs("b-runs")),
        ("ran\n".into(), "ran\n".into())
    );

    // 2. Second apply: zero changes.
    let second = run(s, &d1, false);
    assert_eq!(second.applied, 0);
    assert!(second.plan.unwrap().is_empty());
    assert_eq!(
        (runs("init-runs"), runs("b-runs")),
        ("ran\n".into(), "ran\n".into()),
        "guarded commands did not rerun"
    );

    // 3. A changed template: its diff in the plan, exactly its unit restarted.
    let (a_before, b_before) = (
        invocation(s, "kiln-e2e-a.service"),
        invocation(s, "kiln-e2e-b.service"),
    );
    let d2 = write_config(dir.path(), s, "bonjour", true);
    let plan = run(s, &d2, true).plan.unwrap();
    let ops: Vec<(Op, ResourceId)> = plan.changes.iter().map(|c| (c.op, c.id.clone())).collect();
    assert_eq!(
        ops,
        [
            (Op::Update, ResourceId::File("/etc/kiln-e2e/a.conf".into())),
            (Op::Restart, ResourceId::Unit("kiln-e2e-a.service".into())),
        ]
    );
    let Some(Diff::Unified { text }) = &plan.changes[0].diff else {
        panic!("no diff")
    };
    assert!(
        text.contains("-greeting = hello\n+greeting = bonjour\n"),
        "{text}"
    );
    assert_eq!(run(s, &d2, false).applied, 2);
    assert_ne!(invocation(s, "kiln-e2e-a.service"), a_before, "a restarted");
    assert_eq!(invocation(s, "kiln-e2e-b.service"), b_before, "b untouched");

    // 4. A resource removed from the config is removed from the host.
    let d3 = write_config(dir.path(), s, "bonjour", false);
    let removal = run(s, &d3, false);
    assert_eq!(removal.applied, 1);
    assert_eq!(
        s.exec("test -e /etc/kiln-e2e/extra.conf")
            .unwrap()
            .status
            .code(),
        Some(1)
    );

    // 5. An apply killed midway (agent SIGKILLed on the host) converges on rerun.
    let mut big = d3.clone();
    for i in 0..600 {
        let mut f = big.files[1].clone();
        f.path = format!("/etc/kiln-e2e/many/f{i}.conf").into();
        f.content = kiln_converge::resource::Content::text(format!("file {i}\n").repeat(200));
        f.notify.clear();
        big.files.push(f);
    }
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let mut seen = 0;
    let killer = s;
    let result = host.run_agent(&agent(), &big, false, &mut |e| {
        if matches!(e, Event::Applied { .. }) {
            seen += 1;
            if seen == 20 {
                killer
                    .exec_ok("sudo pkill -KILL -f '/var/lib/kiln/bin/kil[n]-' || true")
                    .unwrap();
            }
        }
    });
    assert!(
        result.is_err() || result.as_ref().is_ok_and(|o| o.failed),
        "the agent was killed: {result:?}"
    );
    let partial = s
        .exec_ok("ls /etc/kiln-e2e/many | grep -c '^f' || true")
        .unwrap();
    assert!(
        partial.trim().parse::<usize>().unwrap() < 600,
        "killed before the end: {partial}"
    );
    let rerun = run(s, &big, false);
    assert!(rerun.applied > 0);
    assert_eq!(
        s.exec_ok("ls /etc/kiln-e2e/many | grep -c '^f'")
            .unwrap()
            .trim(),
        "600"
    );
    assert_eq!(
        s.exec_ok("ls -a /etc/kiln-e2e/many | grep -c kiln-tmp || true")
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(run(s, &big, false).applied, 0);
}

#[test]
fn lab_changed_host_key_is_refused() {
    require_root();
    let lab = Lab::start(LabOptions::unique("hostkey", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    // Pin a key of another "server": what a reinstalled or impostor host looks like.
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.path().join("k"))
        .status()
        .unwrap();
    assert!(st.success());
    let other = std::fs::read_to_string(dir.path().join("k.pub")).unwrap();
    let other_fp = kiln_converge::host::keys::HostKey::parse(&other)
        .unwrap()
        .fingerprint();
    let mut host = SshHost::new(target(s, vec![other.trim().to_owned()]), Privilege::Sudo).unwrap();
    let err = host
        .run_agent(&agent(), &DesiredState::default(), false, &mut |_| {})
        .unwrap_err();
    let HostError::HostKeyChanged {
        expected,
        presented,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(expected[0].contains(&other_fp));
    assert!(
        err.to_string().contains("run `kiln trust web --env lab`"),
        "{err}"
    );
    let real: Vec<String> = s
        .host_keys
        .iter()
        .map(|k| {
            kiln_converge::host::keys::HostKey::parse(k)
                .unwrap()
                .fingerprint()
        })
        .collect();
    assert!(
        presented.iter().any(|p| real.iter().any(|r| p.contains(r))),
        "{presented:?} vs {real:?}"
    );
}

#[test]
fn lab_sudo_password_is_sent_on_stdin_and_a_wrong_one_fails_cleanly() {
    require_root();
    let lab = Lab::start(LabOptions::unique("sudopw", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    // An admin user whose sudo asks for a password.
    s.exec_ok(
        "sudo useradd -m -s /bin/sh op && echo 'op:correct-horse-9' | sudo chpasswd \
         && echo 'op ALL=(ALL) ALL' | sudo tee /etc/sudoers.d/op >/dev/null \
         && sudo install -d -o op -m 700 /home/op/.ssh \
         && sudo install -o op -m 600 /home/kiln/.ssh/authorized_keys /home/op/.ssh/authorized_keys",
    )
    .unwrap();
    let mut t = target(s, s.host_keys.clone());
    t.user = "op".into();
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files.push(kiln_converge::resource::File {
        path: "/etc/kiln-sudo.conf".into(),
        content: kiln_converge::resource::Content::text("via sudo -S\n"),
        mode: 0o600,
        owner: "root".into(),
        group: "root".into(),
        sensitive: true,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    });

    let wrong = kiln_secrets::Secret::new("wrong-password");
    let mut host = SshHost::new(t.clone(), Privilege::SudoPassword(wrong)).unwrap();
    let err = host
        .run_agent(&agent(), &d, false, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, HostError::Sudo { .. }), "{err}");
    assert_eq!(
        s.exec("sudo test -e /etc/kiln-sudo.conf")
            .unwrap()
            .status
            .code(),
        Some(1)
    );

    let right = kiln_secrets::Secret::new("correct-horse-9");
    let mut host = SshHost::new(t, Privilege::SudoPassword(right)).unwrap();
    let out = host.run_agent(&agent(), &d, false, &mut |_| {}).unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    assert_eq!(out.applied, 1);
    assert_eq!(
        s.exec_ok("sudo cat /etc/kiln-sudo.conf").unwrap(),
        "via sudo -S\n"
    );
    assert_eq!(
        s.exec_ok("sudo stat -c %a:%U /etc/kiln-sudo.conf").unwrap(),
        "600:root\n"
    );
}

/// The command line of a unit's main process (what really runs, not what its file says).
fn main_cmdline(s: &Server, unit: &str) -> String {
    s.exec_ok(&format!(
        "pid=$(systemctl show -p MainPID --value {unit}) && sudo tr '\\0' ' ' < /proc/$pid/cmdline"
    ))
    .unwrap()
    .trim()
    .to_owned()
}

fn ops_of(out: &AgentOutcome) -> Vec<String> {
    out.plan
        .as_ref()
        .unwrap()
        .changes
        .iter()
        .map(|c| format!("{} {}", c.op, c.id))
        .collect()
}

#[test]
fn lab_taking_over_a_file_and_units_gives_back_the_originals() {
    require_root();
    let lab = Lab::start(LabOptions::unique("takeover", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    let unit_text = |sleep: u32| {
        format!("[Service]\nExecStart=/bin/sleep {sleep}\n[Install]\nWantedBy=multi-user.target\n")
    };
    // Before kiln: Debian's /etc/motd, a unit a package installed (in /usr/lib), and a
    // unit the admin wrote in /etc/systemd/system, both enabled and running.
    s.exec_ok(&format!(
        "printf '{}' | sudo tee /usr/lib/systemd/system/kiln-pkg.service >/dev/null \
         && printf '{}' | sudo tee /etc/systemd/system/kiln-own.service >/dev/null \
         && sudo systemctl daemon-reload \
         && sudo systemctl enable --now kiln-pkg.service kiln-own.service",
        unit_text(1000).replace('\n', "\\n"),
        unit_text(2000).replace('\n', "\\n"),
    ))
    .unwrap();
    let motd_before = s
        .exec_ok("sudo sha256sum /etc/motd && sudo stat -c %a:%U:%G /etc/motd")
        .unwrap();
    assert!(motd_before.contains(":root:root"), "{motd_before}");
    let own_before = s
        .exec_ok("sudo sha256sum /etc/systemd/system/kiln-own.service")
        .unwrap();

    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.files.push(kiln_converge::resource::File {
        path: "/etc/motd".into(),
        content: kiln_converge::resource::Content::text("managed by kiln\n"),
        mode: 0o600,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    });
    let unit = |name: &str, sleep| {
        kiln_converge::resource::Unit::file(
            name,
            kiln_converge::resource::Content::text(unit_text(sleep)),
        )
    };
    d.units = vec![
        unit("kiln-pkg.service", 1001),
        unit("kiln-own.service", 2001),
    ];

    // 1. Taken over: the plan says so, the originals are kept (root only), kiln's runs.
    let first = run(s, &d, false);
    assert_eq!(
        ops_of(&first),
        [
            "take-over file /etc/motd",
            "create file /etc/systemd/system/kiln-pkg.service",
            "take-over file /etc/systemd/system/kiln-own.service",
            "daemon-reload systemd",
            "restart unit kiln-pkg.service",
            "restart unit kiln-own.service",
        ]
    );
    assert_eq!(
        s.exec_ok("sudo cat /etc/motd && sudo stat -c %a /etc/motd")
            .unwrap(),
        "managed by kiln\n600\n"
    );
    assert_eq!(main_cmdline(s, "kiln-pkg.service"), "/bin/sleep 1001");
    assert_eq!(main_cmdline(s, "kiln-own.service"), "/bin/sleep 2001");
    assert_eq!(
        s.exec_ok("sudo stat -c %a:%U /var/lib/kiln/originals && sudo ls /var/lib/kiln/originals | wc -l && sudo sh -c 'stat -c %a /var/lib/kiln/originals/*' | sort -u")
            .unwrap(),
        "700:root\n2\n600\n"
    );
    let record: kiln_converge::owned::Owned =
        serde_json::from_str(&s.exec_ok("sudo cat /var/lib/kiln/owned.json").unwrap()).unwrap();
    assert_eq!(
        record.originals.keys().cloned().collect::<Vec<_>>(),
        [
            std::path::PathBuf::from("/etc/motd"),
            "/etc/systemd/system/kiln-own.service".into()
        ]
    );
    assert_eq!(
        record.borrowed_units.keys().cloned().collect::<Vec<_>>(),
        ["kiln-own.service", "kiln-pkg.service"]
    );
    assert_eq!(run(s, &d, false).applied, 0, "converged");

    // 2. Declarations removed: everything is as it was before kiln.
    let none = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    let gone = run(s, &none, false);
    assert_eq!(
        ops_of(&gone),
        [
            "restore file /etc/systemd/system/kiln-own.service",
            "remove file /etc/systemd/system/kiln-pkg.service",
            "daemon-reload systemd",
            "restart unit kiln-own.service",
            "restart unit kiln-pkg.service",
            "restore file /etc/motd",
        ]
    );
    assert_eq!(
        s.exec_ok("sudo sha256sum /etc/motd && sudo stat -c %a:%U:%G /etc/motd")
            .unwrap(),
        motd_before,
        "the exact original motd, mode and owner"
    );
    assert_eq!(
        s.exec_ok("sudo sha256sum /etc/systemd/system/kiln-own.service")
            .unwrap(),
        own_before
    );
    assert_eq!(
        s.exec_ok("test -e /etc/systemd/system/kiln-pkg.service || echo gone")
            .unwrap(),
        "gone\n"
    );
    assert_eq!(
        s.exec_ok("systemctl show -p FragmentPath --value kiln-pkg.service")
            .unwrap(),
        "/usr/lib/systemd/system/kiln-pkg.service\n",
        "the package's unit is back"
    );
    assert_eq!(
        s.exec_ok("systemctl is-enabled kiln-pkg.service kiln-own.service && systemctl is-active kiln-pkg.service kiln-own.service")
            .unwrap(),
        "enabled\nenabled\nactive\nactive\n"
    );
    assert_eq!(main_cmdline(s, "kiln-pkg.service"), "/bin/sleep 1000");
    assert_eq!(main_cmdline(s, "kiln-own.service"), "/bin/sleep 2000");
    assert_eq!(
        s.exec_ok("sudo ls /var/lib/kiln/originals | wc -l")
            .unwrap(),
        "0\n"
    );
    assert!(run(s, &none, true).plan.unwrap().is_empty());

    // 3. A file kiln created is removed when its declaration goes.
    let mut created = none.clone();
    created.files.push(kiln_converge::resource::File {
        path: "/etc/kiln-created.conf".into(),
        content: kiln_converge::resource::Content::text("kiln's\n"),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![],
        guard: None,
        validate: None,
        note: None,
    });
    assert_eq!(
        ops_of(&run(s, &created, false)),
        ["create file /etc/kiln-created.conf"]
    );
    assert_eq!(
        ops_of(&run(s, &none, false)),
        ["remove file /etc/kiln-created.conf"]
    );
    assert_eq!(
        s.exec("test -e /etc/kiln-created.conf")
            .unwrap()
            .status
            .code(),
        Some(1)
    );
}

fn unit_json(name: &str, content: &str, guard: Option<&str>) -> kiln_converge::resource::Unit {
    kiln_converge::resource::Unit {
        name: name.into(),
        content: kiln_converge::resource::Content::text(content),
        enabled: false,
        started: true,
        sensitive: false,
        kind: kiln_converge::resource::UnitKind::File,
        guard: guard.map(str::to_owned),
        health: Default::default(),
        stage: Default::default(),
    }
}

#[test]
fn lab_a_unit_that_dies_at_once_is_reported_failed_with_its_journal_and_the_rest_goes_on() {
    require_root();
    let lab = Lab::start(LabOptions::unique("badunit", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    let mut d = DesiredState {
        host: "web".into(),
        ..Default::default()
    };
    d.units.push(unit_json(
        "kiln-e2e-bad.service",
        "[Service]\nExecStart=/bin/sh -c 'echo kiln-e2e-bad is about to fail; exit 3'\n",
        None,
    ));
    d.units.push(unit_json(
        "kiln-e2e-good.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
        None,
    ));
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let mut events = vec![];
    let out = host
        .run_agent(&agent(), &d, false, &mut |e| events.push(e.clone()))
        .unwrap();
    assert!(out.failed, "a unit that died is not started: {events:?}");
    let text = out.errors.join("\n");
    assert!(
        text.contains("unit kiln-e2e-bad.service: unit kiln-e2e-bad.service did not stay active after `systemctl restart`: failed"),
        "{text}"
    );
    assert!(text.contains("last journal lines:"), "{text}");
    assert!(text.contains("kiln-e2e-bad is about to fail"), "{text}");
    // The other unit was still started (independent step).
    assert_eq!(
        s.exec_ok("systemctl is-active kiln-e2e-good.service")
            .unwrap(),
        "active\n"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished { failed: true, .. })
    ));
}

/// The lab server's own sshd unit, declared as a guarded unit so that a drop-in can
/// notify it (kiln writes the same content to /etc/systemd/system).
fn ssh_unit(s: &Server) -> kiln_converge::resource::Unit {
    let content = s
        .exec_ok("cat /usr/lib/systemd/system/ssh.service")
        .unwrap();
    let mut u = unit_json("ssh.service", &content, Some("ssh"));
    u.enabled = s
        .exec_ok("systemctl is-enabled ssh.service || true")
        .unwrap()
        .trim()
        == "enabled";
    u
}

fn sshd_dropin(path: &str, text: &str) -> kiln_converge::resource::File {
    kiln_converge::resource::File {
        path: path.into(),
        content: kiln_converge::resource::Content::text(text),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
        sensitive: false,
        notify: vec![kiln_converge::resource::Notify {
            unit: "ssh.service".into(),
            action: kiln_converge::resource::Trigger::Restart,
        }],
        guard: Some("ssh".into()),
        validate: None,
        note: None,
    }
}

fn timer_state(s: &Server, token: &str) -> String {
    s.exec_ok(&format!(
        "systemctl is-active kiln-rollback-{token}.timer || true"
    ))
    .unwrap()
    .trim()
    .to_owned()
}

#[test]
fn lab_guarded_sshd_change_is_confirmed_and_a_lockout_is_rolled_back_by_the_timer() {
    require_root();
    let lab = Lab::start(LabOptions::unique("guard", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    const TIMEOUT_S: u32 = 8;

    // 1. A harmless sshd change: proven by a fresh login, kept after the deadline.
    let mut d = DesiredState {
        host: "web".into(),
        guard_timeout_s: Some(TIMEOUT_S),
        ..Default::default()
    };
    d.units.push(ssh_unit(s));
    d.files.push(sshd_dropin(
        "/etc/ssh/sshd_config.d/01-kiln-e2e.conf",
        "LoginGraceTime 90\n",
    ));
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let mut events = vec![];
    let out = host
        .run_agent(&agent(), &d, false, &mut |e| events.push(e.clone()))
        .unwrap();
    assert!(!out.failed, "{:?}", out.errors);
    assert_eq!(out.confirmed, ["ssh"]);
    let plan = out.plan.unwrap();
    assert_eq!(plan.groups.len(), 1, "{:?}", plan.groups);
    let token = events
        .iter()
        .find_map(|e| match e {
            Event::GuardConfirmed { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("confirmed");
    drop(host);
    std::thread::sleep(std::time::Duration::from_secs(u64::from(TIMEOUT_S) + 3));
    assert_eq!(
        s.exec_ok("cat /etc/ssh/sshd_config.d/01-kiln-e2e.conf")
            .unwrap(),
        "LoginGraceTime 90\n",
        "a confirmed group stays"
    );
    assert_ne!(timer_state(s, &token), "active", "the timer was stopped");
    assert_eq!(s.exec_ok("sudo ls /var/lib/kiln/guard").unwrap().trim(), "");

    // 2. sshd moved to a port kiln does not use: the apply goes through over the open
    //    connection, the fresh login fails, the host's timer puts sshd back.
    d.files.push(sshd_dropin(
        "/etc/ssh/sshd_config.d/00-kiln-e2e-port.conf",
        "Port 2222\n",
    ));
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let start = std::time::Instant::now();
    let out = host.run_agent(&agent(), &d, false, &mut |_| {}).unwrap();
    assert!(out.failed);
    assert_eq!(out.unconfirmed, ["ssh"]);
    let text = out.errors.join("\n");
    assert!(
        text.contains("guarded group ssh could not be confirmed over a fresh connection"),
        "{text}"
    );
    drop(host);
    // Back on port 22 after the deadline.
    let deadline = start + std::time::Duration::from_secs(u64::from(TIMEOUT_S) + 60);
    loop {
        if s.exec("true").map(|o| o.status.success()).unwrap_or(false) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd never came back on port 22"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(u64::from(TIMEOUT_S) - 1),
        "rolled back by the timer, not before"
    );
    assert_eq!(
        s.exec("test -e /etc/ssh/sshd_config.d/00-kiln-e2e-port.conf")
            .unwrap()
            .status
            .code(),
        Some(1),
        "the new file is gone"
    );
    assert_eq!(
        s.exec_ok("cat /etc/ssh/sshd_config.d/01-kiln-e2e.conf")
            .unwrap(),
        "LoginGraceTime 90\n",
        "the file as it was before the group is back"
    );
    let journal = s
        .exec_ok("sudo journalctl -o cat --no-pager -u 'kiln-rollback-*' || true")
        .unwrap();
    assert!(journal.contains("guard-rolled-back"), "{journal}");
    assert_eq!(
        s.exec_ok("systemctl is-active ssh.service").unwrap(),
        "active\n"
    );
}

/// Runs the agent and returns what it did, failed or not, with its events.
fn run_events(s: &Server, d: &DesiredState, plan_only: bool) -> (AgentOutcome, Vec<Event>) {
    let mut host = SshHost::new(target(s, s.host_keys.clone()), Privilege::Sudo).unwrap();
    let mut events = vec![];
    let out = host
        .run_agent(&agent(), d, plan_only, &mut |e| events.push(e.clone()))
        .unwrap();
    (out, events)
}

const PG_IMAGE: &str = "docker.io/library/postgres:17";

fn quadlet_unit(
    file: &str,
    text: &str,
    health: Option<(&str, u32)>,
    stage: u8,
) -> kiln_converge::resource::Unit {
    let mut u =
        kiln_converge::resource::Unit::quadlet(file, kiln_converge::resource::Content::text(text))
            .unwrap();
    u.health = health.map(|(c, t)| kiln_converge::resource::Health {
        container: c.into(),
        timeout_s: t,
    });
    u.stage = kiln_converge::resource::Stage(stage);
    u
}

fn staged(name: &str, run: &str, stage: u8) -> kiln_converge::resource::Command {
    kiln_converge::resource::Command {
        name: name.into(),
        run: run.into(),
        unless: None,
        triggered_by: vec![],
        stage: kiln_converge::resource::Stage(stage),
    }
}

/// Podman as kiln installs it (without recommends): netavark needs `nft` for a
/// container's network, which is only a recommendation of its package.
fn podman_host() -> DesiredState {
    DesiredState {
        host: "web".into(),
        packages: ["podman", "nftables"]
            .map(|name| kiln_converge::resource::Package { name: name.into() })
            .into(),
        ..Default::default()
    }
}

const BAD_QUADLET: &str = "[Container]\nImagee=docker.io/library/postgres:17\n";

#[test]
fn lab_quadlets_with_health_checks_stages_unhealthy_halt_and_generator_refusal() {
    require_root();
    let lab = Lab::start(LabOptions::unique("podman", 1)).expect("lab starts");
    let s = &lab.servers()[0];

    // 0. Podman from the desired state's packages, with a bad quadlet in the same apply:
    //    the generator is not there at observation, so apply checks it once podman is
    //    installed, and installs none of it.
    let mut d0 = podman_host();
    d0.units
        .push(quadlet_unit("bad.container", BAD_QUADLET, None, 0));
    let (out, _) = run_events(s, &d0, false);
    assert!(out.failed);
    let text = out.errors.join("\n");
    assert!(
        text.contains("unit bad.service (quadlet bad.container): refused by podman's quadlet generator: converting \"bad.container\": unsupported key 'Imagee'"),
        "{text}"
    );
    assert!(s.exec_ok("podman --version").unwrap().contains("podman"));
    assert_eq!(
        s.exec("test -e /etc/containers/systemd/bad.container")
            .unwrap()
            .status
            .code(),
        Some(1),
        "nothing installed"
    );
    assert_eq!(
        lab.load_image("server1", "postgres").unwrap(),
        "localhost/postgres:17"
    );

    // 1. A PostgreSQL quadlet with a health check (Notify=healthy: its start job lasts
    //    until healthy) becomes healthy, then a stage-1 command uses it.
    let pg = "[Container]\nImage=docker.io/library/postgres:17\nContainerName=pg\nEnvironment=POSTGRES_PASSWORD=e2e\nHealthCmd=pg_isready -U postgres\nHealthInterval=2s\nNotify=healthy\n[Service]\nTimeoutStartSec=180\n";
    let mut d1 = podman_host();
    d1.images.push(kiln_converge::resource::Image {
        reference: PG_IMAGE.into(),
        service: Some("postgres".into()),
        container: Some("pg".into()),
    });
    d1.units
        .push(quadlet_unit("pg.container", pg, Some(("pg", 120)), 0));
    d1.commands.push(staged(
        "create-db",
        "podman exec pg psql -U postgres -c 'CREATE DATABASE kiln'",
        1,
    ));
    let first = run(s, &d1, false);
    assert_eq!(
        ops_of(&first),
        [
            "create file /etc/containers/systemd/pg.container",
            "daemon-reload systemd",
            "start unit pg.service",
            "run command create-db",
        ],
        "the image is held (loaded), so not pulled"
    );
    assert_eq!(
        s.exec_ok("sudo podman inspect --format '{{.State.Health.Status}}' pg")
            .unwrap(),
        "healthy\n"
    );
    assert!(
        s.exec_ok("sudo podman exec pg psql -U postgres -lqt")
            .unwrap()
            .lines()
            .any(|l| l.trim_start().starts_with("kiln ")),
        "the stage-1 command ran once postgres was healthy"
    );

    // 2. No change: an empty plan, observed with one podman process (counted by a
    //    wrapper first in sudo's PATH; systemd and health checks call /usr/bin/podman).
    s.exec_ok(
        "printf '#!/bin/sh\\necho \"$*\" >> /run/kiln-e2e-podman-calls\\nexec /usr/bin/podman \"$@\"\\n' | sudo tee /usr/local/bin/podman >/dev/null && sudo chmod 755 /usr/local/bin/podman && sudo rm -f /run/kiln-e2e-podman-calls",
    )
    .unwrap();
    let (second, events) = run_events(s, &d1, true);
    assert!(!second.failed, "{:?}", second.errors);
    assert!(
        second.plan.as_ref().unwrap().is_empty(),
        "{:?}",
        ops_of(&second)
    );
    let calls = s.exec_ok("sudo cat /run/kiln-e2e-podman-calls").unwrap();
    s.exec_ok("sudo rm -f /usr/local/bin/podman /run/kiln-e2e-podman-calls")
        .unwrap();
    assert_eq!(calls, "ps -a --format json\n", "one podman process");
    let observe_ms = events.iter().find_map(|e| match e {
        Event::Planned { observe_ms, .. } => Some(*observe_ms),
        _ => None,
    });
    println!("no-change observation of the stack: {observe_ms:?} ms, podman calls: {calls:?}");
    let pg_started = s
        .exec_ok("sudo podman inspect --format '{{.State.StartedAt}}' pg")
        .unwrap();

    // 3. A container whose health check always fails: reported unhealthy with its journal;
    //    everything after it on the host is skipped, the healthy container left alone.
    let sick = "[Container]\nImage=docker.io/library/postgres:17\nContainerName=sick\nEnvironment=POSTGRES_PASSWORD=e2e\nHealthCmd=false\nHealthInterval=1s\nHealthRetries=1\n";
    let mut d2 = d1.clone();
    d2.units
        .push(quadlet_unit("sick.container", sick, Some(("sick", 6)), 0));
    d2.units.push(unit_json(
        "kiln-e2e-later.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
        None,
    ));
    d2.commands
        .push(staged("after-sick", "touch /run/kiln-e2e-after-sick", 1));
    let (out, events) = run_events(s, &d2, false);
    assert!(out.failed);
    let text = out.errors.join("\n");
    assert!(
        text.contains("unit sick.service: container sick is not healthy after "),
        "{text}"
    );
    assert!(text.contains("last journal lines:"), "{text}");
    let skipped: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped {
                id, op, because, ..
            } => Some((format!("{op} {id}"), because.clone())),
            _ => None,
        })
        .collect();
    let because = "unit sick.service is not healthy: kiln changes nothing more on this host";
    assert_eq!(
        skipped,
        [
            (
                "start unit kiln-e2e-later.service".to_owned(),
                because.to_owned()
            ),
            ("run command after-sick".to_owned(), because.to_owned()),
        ]
    );
    assert_eq!(
        s.exec("test -e /run/kiln-e2e-after-sick")
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        s.exec_ok("sudo podman inspect --format '{{.State.StartedAt}}' pg")
            .unwrap(),
        pg_started,
        "the healthy container was not restarted"
    );

    // 4. A quadlet with an unknown key: `kiln plan` already refuses it, naming the unit.
    let mut d3 = d1.clone();
    d3.units
        .push(quadlet_unit("bad.container", BAD_QUADLET, None, 0));
    let (out, _) = run_events(s, &d3, true);
    assert!(out.failed);
    let text = out.errors.join("\n");
    assert!(
        text.contains("unit bad.service: quadlet file /etc/containers/systemd/bad.container is refused by podman's quadlet generator on the host: converting \"bad.container\": unsupported key 'Imagee'"),
        "{text}"
    );
    let (out, _) = run_events(s, &d3, false);
    assert!(out.failed && out.applied == 0, "{:?}", out.errors);
    assert_eq!(
        s.exec("test -e /etc/containers/systemd/bad.container")
            .unwrap()
            .status
            .code(),
        Some(1),
        "nothing installed"
    );
}
