//! End-to-end, as a user would: the hardened base on two fresh lab servers, and the
//! lockout guard against changes that would cut the owner off. `kiln lab up`, `kiln
//! secrets generate`, `kiln apply --env lab` installs sshd's drop-in, firewalld, automatic
//! security updates, chrony, node-exporter and the WireGuard mesh (wireguard-go in the
//! lab: its kernel has no WireGuard device). Checked with the real clients from the lab
//! host and from the other server: password login refused, key login works, only the
//! expected ports answer, the servers ping each other over wg0 and node-exporter answers
//! over wg0 only, unattended-upgrades' dry run works through the lab's apt proxy. Then
//! each bad change ends rolled back by the host itself, with its time printed. Needs root
//! and the lab's prerequisites (.ci/install-lab.sh).

mod common;
use common::{all_output, text};

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds a guarded change has to be proven (the model's minimum).
const ROLLBACK_S: u64 = 20;

/// The configuration, shared with bench/base.py.
const KILN_TOML: &str = include_str!("../../../examples/lab-base/kiln.toml");

/// The mesh addresses: the lab environment's default range 10.101.0.0/24, hosts by
/// sorted role (monitoring .1, services .2).
const WG_MONITORING: &str = "10.101.0.1";
const WG_SERVICES: &str = "10.101.0.2";

type Repo = common::LabRepo;

/// Whether `port` on `ip` accepts a TCP connection, tried from `server`.
fn port_open(repo: &Repo, server: &str, ip: &str, port: u16) -> bool {
    let out = repo.on_ok(
        server,
        &format!(
            "python3 -c 'import socket,sys\ns=socket.socket();s.settimeout(3)\ntry:\n s.connect((\"{ip}\",{port}));print(\"open\")\nexcept Exception as e:\n print(\"closed\",e)'"
        ),
    );
    out.starts_with("open")
}

/// `kiln apply` of a change that must be rolled back: fails, says so, prints the time;
/// returns the seconds to rollback it printed.
fn apply_rolled_back(repo: &Repo, what: &str) -> f64 {
    let started = Instant::now();
    let apply = repo.kiln_env(&["apply", "--yes"]);
    let out = all_output(&apply);
    assert!(!apply.status.success(), "{what}: apply must fail: {out}");
    assert!(
        out.contains("would have locked you out") && out.contains("ROLLED BACK by the host"),
        "{what}: {out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("ROLLED BACK by the host"))
        .unwrap();
    let secs: f64 = line
        .split(", ")
        .last()
        .and_then(|t| t.split(" s after").next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    eprintln!(
        "{what}: rolled back {secs:.1} s after it was applied (apply took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(secs <= 60.0, "{what}: rollback took {secs} s");
    secs
}

/// The host answers a fresh key login, has no armed guard left, and has a rollback's
/// marker.
fn reachable_and_restored(repo: &Repo, server: &str, absent: &str) {
    let o = repo.on_ok(
        server,
        &format!(
            "test -z \"$(ls /var/lib/kiln/guard/*.json 2>/dev/null)\" && ls /var/lib/kiln/guard/*.rolled-back >/dev/null && test ! -e {absent} && echo restored"
        ),
    );
    assert_eq!(o.trim(), "restored", "{server}: {o}");
}

fn scenario(repo: &Repo) {
    let up = repo.kiln(&["lab", "up", "--yes", "--lab", &repo.lab]);
    assert!(up.status.success(), "kiln lab up: {}", text(&up));
    let gen_ = repo.kiln_env(&["secrets", "generate"]);
    assert!(gen_.status.success(), "secrets generate: {}", text(&gen_));
    let services = repo.address("services");

    // The plan names the guarded groups.
    let plan = repo.kiln_env(&["plan"]);
    let shown = all_output(&plan);
    for group in ["ssh", "firewall", "wireguard"] {
        assert!(
            shown.contains(&format!("guarded {group}: ")),
            "{group}: {shown}"
        );
    }

    // 1. From fresh servers: the base, every guarded group proven by a fresh login.
    let t = Instant::now();
    let apply = repo.kiln_env(&["apply", "--yes"]);
    let out = all_output(&apply);
    assert!(apply.status.success(), "first apply: {out}");
    eprintln!(
        "first apply (base from fresh servers): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for group in ["ssh", "firewall", "wireguard"] {
        assert!(
            out.contains(&format!(
                "guarded {group}: a fresh SSH login works, changes kept"
            )),
            "{group}: {out}"
        );
    }

    assert!(
        out.contains("[services] WireGuard: handshake with monitoring (10.101.0.1)")
            && out.contains("[monitoring] WireGuard: handshake with services (10.101.0.2)"),
        "the mesh check after the apply: {out}"
    );

    // 2. A second apply changes nothing.
    let t = Instant::now();
    let again = repo.kiln_env(&["apply", "--yes"]);
    let again_out = all_output(&again);
    assert!(again.status.success(), "{again_out}");
    assert!(
        again_out.contains("Applied 0 change(s) on 2 host(s)"),
        "{again_out}"
    );
    eprintln!("no-change apply: {:.2} s", t.elapsed().as_secs_f64());

    // 3. sshd: keys only, no root, as sshd itself reads its configuration.
    let effective = repo.on_ok("services", "sshd -T");
    for line in [
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
        "allowusers kiln",
        "loglevel VERBOSE",
    ] {
        assert!(effective.lines().any(|l| l == line), "{line}: {effective}");
    }
    // Password login refused by the real client: the server offers public keys only.
    let pw = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(format!("kiln@{services}"))
        .arg("true")
        .output()
        .unwrap();
    let pw_err = String::from_utf8_lossy(&pw.stderr);
    assert!(
        !pw.status.success() && pw_err.contains("Permission denied (publickey)"),
        "{pw_err}"
    );
    // Key login works (kiln lab ssh: the lab's key, the pinned host key).
    assert_eq!(repo.on_ok("services", "echo in").trim(), "in");
    // No weak algorithm offered: ssh-audit's verdict from the lab host (exit 0: no
    // warning and no failure).
    let audit = Command::new("ssh-audit")
        .args(["-n", "-l", "warn", &services])
        .output()
        .expect("ssh-audit (installed by .ci/install-lab.sh)");
    let said = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "ssh-audit: {said}");
    eprintln!("ssh-audit {services}: no warning, no failure");

    // 4. Only the expected ports answer, from the other server; node-exporter over wg0 only.
    assert!(port_open(repo, "monitoring", &services, 22));
    assert!(!port_open(repo, "monitoring", &services, 9100));
    assert!(!port_open(repo, "monitoring", &services, 80));
    repo.on_ok("monitoring", &format!("ping -c 2 -W 3 {WG_SERVICES}"));
    repo.on_ok("services", &format!("ping -c 2 -W 3 {WG_MONITORING}"));
    assert!(port_open(repo, "monitoring", WG_SERVICES, 9100));
    let metrics = repo.on_ok(
        "monitoring",
        &format!(
            "python3 -c 'import urllib.request;print(urllib.request.urlopen(\"http://{WG_SERVICES}:9100/metrics\",timeout=5).read().decode())'"
        ),
    );
    assert!(metrics.contains("node_uname_info"), "{metrics}");

    // 5. Automatic security updates: configured, and a dry run through the apt proxy.
    let dry = repo.on_ok(
        "services",
        "unattended-upgrade --dry-run -d 2>&1; echo rc=$?",
    );
    assert!(dry.contains("rc=0"), "{dry}");
    assert!(dry.contains("Allowed origins are:"), "{dry}");
    assert!(
        repo.on_ok(
            "services",
            "apt-config dump APT::Periodic::Unattended-Upgrade"
        )
        .contains("\"1\""),
    );

    // 6. Bad changes, each rolled back by the host.
    let good = repo.toml();
    // 6a. An sshd setting that passes `sshd -t` but refuses the admin's key, forced in
    // through a role's file (it sorts first: sshd keeps the first value).
    const BAD: &str = "/etc/ssh/sshd_config.d/000-test.conf";
    repo.set_toml(&format!(
        "{good}\n[[roles.services.files]]\npath = \"{BAD}\"\ncontent = \"AuthorizedKeysFile /nonexistent/%u\\n\"\nnotify = [\"ssh.service\"]\n"
    ));
    apply_rolled_back(repo, "wrong AuthorizedKeysFile");
    reachable_and_restored(repo, "services", BAD);
    // 6b. AllowGroups naming a group that does not exist (the admin is in none).
    repo.set_toml(&good.replace(
        "[base.sshd]\n",
        "[base.sshd]\nallow_groups = [\"nosuchgroup\"]\n",
    ));
    apply_rolled_back(repo, "AllowGroups nosuchgroup");
    let conf = repo.on_ok("services", "cat /etc/ssh/sshd_config.d/00-kiln.conf");
    assert!(!conf.contains("nosuchgroup"), "{conf}");
    // 6c. A firewall rule set that drops SSH (a policy rejecting port 22).
    const DROP: &str = "/etc/firewalld/policies/kiln-test-drop.xml";
    repo.set_toml(&format!(
        "{good}\n[[roles.services.files]]\npath = \"{DROP}\"\ncontent = '''<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<policy target=\"CONTINUE\" priority=\"-100\"><ingress-zone name=\"ANY\"/><egress-zone name=\"HOST\"/><rule family=\"ipv4\"><port port=\"22\" protocol=\"tcp\"/><reject/></rule></policy>\n'''\nnotify = [\"firewalld.service\"]\n"
    ));
    apply_rolled_back(repo, "firewall dropping SSH");
    reachable_and_restored(repo, "services", DROP);
    assert!(port_open(repo, "monitoring", &services, 22));

    // 6d. kiln killed right after arming: the host rolls back on its own.
    repo.set_toml(&good.replace(
        "[base.sshd]\n",
        "[base.sshd]\nallow_groups = [\"nosuchgroup\"]\n",
    ));
    kill_after_arming(repo);

    // 6e. A wrong public key for a peer (in the vault): the mesh check names the peer, and
    // SSH is not affected.
    repo.set_toml(&good);
    let right = repo.secret("wireguard_monitoring_public");
    // A valid key (32 bytes in base64) that is nobody's.
    let wrong = "kilnTestWrongPublicKeyAAAAAAAAAAAAAAAAAAAAA=";
    repo.set_secret("wireguard_monitoring_public", wrong);
    let apply = repo.kiln_env(&["apply", "--yes"]);
    let out = all_output(&apply);
    assert!(
        !apply.status.success(),
        "a wrong peer key must fail the apply: {out}"
    );
    // The progress line, then the failure (wrapped to the terminal's width).
    assert!(
        out.contains(&format!(
            "[services] WireGuard: NO handshake with monitoring (10.101.0.1, public key {wrong})"
        )) && out.contains("services: host services: WireGuard peer monitoring (10.101.0.1")
            && out.contains("wireguard_monitoring_public"),
        "{out}"
    );
    assert_eq!(repo.on_ok("services", "echo still-in").trim(), "still-in");
    repo.set_secret("wireguard_monitoring_public", &right);

    // Back to the good configuration: a plan with nothing left over, then no changes.
    let back = repo.kiln_env(&["apply", "--yes"]);
    let back_out = all_output(&back);
    assert!(back.status.success(), "{back_out}");
    assert!(
        back_out.contains("[services] WireGuard: handshake with monitoring"),
        "{back_out}"
    );
    let plan = repo.kiln_env(&["plan"]);
    let shown = all_output(&plan);
    assert!(
        shown.contains("services: no changes") && shown.contains("monitoring: no changes"),
        "{shown}"
    );
}

/// Starts `kiln apply` of a change that cannot be confirmed (AllowGroups naming a group
/// the admin is not in), SIGKILLs kiln and its ssh processes the moment it reports the
/// group armed, and checks that the host, with no kiln left to wait for it, rolled the
/// group back by itself at its deadline.
fn kill_after_arming(repo: &Repo) {
    let mut child = common::kiln()
        .args(["apply", "--yes"])
        .args(repo.env_args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    // Progress lines go to stderr.
    let progress = child.stderr.take().unwrap();
    let mut seen = vec![];
    let mut armed = None;
    for line in BufReader::new(progress).lines().map_while(Result::ok) {
        if line.contains("guarded ssh: applied, rollback armed") {
            armed = Some(Instant::now());
            break;
        }
        seen.push(line);
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    let armed = armed.unwrap_or_else(|| panic!("kiln apply never reported ssh armed: {seen:?}"));
    // The host rolls back at its deadline, by itself.
    let mut restored = None;
    while armed.elapsed() < Duration::from_secs(ROLLBACK_S + 40) {
        let conf = repo.on(
            "services",
            "cat /etc/ssh/sshd_config.d/00-kiln.conf; ls /var/lib/kiln/guard",
        );
        let said = String::from_utf8_lossy(&conf.stdout).into_owned();
        if conf.status.success() && !said.contains("nosuchgroup") && !said.contains(".json") {
            restored = Some(armed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = restored.expect("the host did not roll back by itself");
    eprintln!(
        "kiln SIGKILLed right after arming: the host rolled back by itself, reachable again {:.1} s after",
        after.as_secs_f64()
    );
    let journal = repo.on_ok(
        "services",
        "journalctl -q -o cat -u 'kiln-rollback-*' | tail -5",
    );
    assert!(journal.contains("guard-rolled-back"), "{journal}");
}

#[test]
fn the_base_is_installed_and_a_lockout_is_rolled_back_by_the_host() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    assert!(
        KILN_TOML.contains(&format!("rollback_seconds = {ROLLBACK_S}\n")),
        "examples/lab-base/kiln.toml's rollback_seconds"
    );
    Repo::new(KILN_TOML, "base").run(scenario);
}
