//! End-to-end: real lab servers on this machine (root). Two servers reached over SSH with
//! pinned host keys, reaching each other and nothing outside the lab; apt through the proxy;
//! teardown by `down`, by `Drop` on panic, and after a crashed run leaves nothing; labs side by
//! side do not disturb each other's sessions.

mod common;

use std::process::Command;

use kiln_lab::{Lab, LabOptions};

use common::{assert_nothing_left, lab_pids, require_root};

/// Python snippet: TCP connect; prints "ok" or the errno name.
fn connect_probe(addr: &str, port: u16) -> String {
    format!(
        "python3 -c 'import socket,errno\ns=socket.socket(); s.settimeout(5)\ntry:\n    s.connect((\"{addr}\", {port})); print(\"ok\")\nexcept OSError as e:\n    print(errno.errorcode.get(e.errno, e))'"
    )
}

#[test]
fn two_servers_pinned_ssh_reach_each_other_not_outside_and_down_leaves_nothing() {
    require_root();
    let lab = Lab::start(LabOptions::unique("e2e", 2)).expect("lab starts");
    let name = lab.name().to_string();
    let roots = lab.roots().clone();
    let servers = lab.servers().to_vec();
    assert_eq!(servers.len(), 2);
    let recorded = kiln_lab::status(&roots).unwrap();
    let me = recorded.iter().find(|l| l.name == name).expect("listed");
    assert!(
        me.servers
            .iter()
            .all(|(s, running, _)| *running && s.kind == kiln_lab::ServerKind::Container),
        "{:?}",
        me.servers
    );

    // Another process finds the lab, its operator key and servers from the addresses alone.
    let addresses: Vec<_> = servers.iter().map(|s| s.address).collect();
    let found = kiln_lab::lab_for_addresses(&roots, &addresses)
        .unwrap()
        .expect("the running lab is found by its addresses");
    assert_eq!(found.name, name);
    assert_eq!(found.identity_file, lab.identity_file());
    assert_eq!(found.servers, servers);

    for s in &servers {
        // SSH with StrictHostKeyChecking=yes against the recorded keys, admin user with sudo.
        assert_eq!(
            s.exec_ok("sudo -n id -u").unwrap().trim(),
            "0",
            "{}: passwordless sudo",
            s.name
        );
        assert_eq!(s.exec_ok("hostname").unwrap().trim(), s.name);
        // The recorded host keys are the server's own.
        let ed = s.exec_ok("cat /etc/ssh/ssh_host_ed25519_key.pub").unwrap();
        let ed: Vec<&str> = ed.split_whitespace().take(2).collect();
        assert!(
            s.host_keys.contains(&ed.join(" ")),
            "{}: recorded keys {:?} lack {:?}",
            s.name,
            s.host_keys,
            ed
        );
        // Root's shell rc is minimal: a remote command adds no output and no slow init.
        let rc = s.exec_ok("sudo cat /root/.bashrc").unwrap();
        assert!(
            !rc.contains("pyenv")
                && rc
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                    .count()
                    < 15,
            "{rc}"
        );
    }
    // argv stays argv over SSH: `echo 'a b' 'c;d'` arrives as three words and runs no `d`
    // (the words were once joined and re-read by the server's shell).
    let argv = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = lab
        .exec_argv(&servers[0].name, &argv(&["echo", "a b", "c;d"]))
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b c;d\n");
    assert!(out.stderr.is_empty(), "{out:?}");
    let out = lab
        .exec_argv(
            &servers[0].name,
            &argv(&[
                "printf",
                "<%s>",
                "a b",
                "c;touch /tmp/kiln-argv-d",
                "$(id -u)",
            ]),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<a b><c;touch /tmp/kiln-argv-d><$(id -u)>"
    );
    assert_eq!(
        servers[0]
            .exec_ok("test -e /tmp/kiln-argv-d && echo ran || echo not-run")
            .unwrap()
            .trim(),
        "not-run"
    );

    // Each server has its own host keys.
    assert!(
        servers[0]
            .host_keys
            .iter()
            .all(|k| !servers[1].host_keys.contains(k))
    );

    // Pinning is real: server2's keys presented as server1's are refused.
    let wrong = lab.dir().join("wrong_known_hosts");
    let lines: String = servers[1]
        .host_keys
        .iter()
        .map(|k| format!("{} {k}\n", servers[0].address))
        .collect();
    std::fs::write(&wrong, lines).unwrap();
    let mut bad = servers[0].clone();
    bad.known_hosts = wrong;
    let out = bad.exec("true").unwrap();
    assert!(
        !out.status.success(),
        "ssh accepted a host key that is not pinned"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Host key verification failed")
            || err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );

    // The two servers reach each other (ICMP and SSH port).
    let (a, b) = (&servers[0], &servers[1]);
    a.exec_ok(&format!("ping -c1 -W2 {}", b.address)).unwrap();
    assert_eq!(
        a.exec_ok(&connect_probe(&b.address.to_string(), 22))
            .unwrap()
            .trim(),
        "ok"
    );
    assert_eq!(
        b.exec_ok(&connect_probe(&a.address.to_string(), 22))
            .unwrap()
            .trim(),
        "ok"
    );
    // By name, too (/etc/hosts).
    a.exec_ok(&format!("ping -c1 -W2 {}", b.name)).unwrap();

    // Nothing outside the lab: no default route, so a connect to a public address fails
    // with ENETUNREACH, decided locally before any packet leaves (a filtered packet would
    // time out instead).
    let routes = a.exec_ok("ip -4 route show; ip -6 route show").unwrap();
    assert!(!routes.contains("default"), "{routes}");
    for target in ["198.51.100.7", "1.1.1.1"] {
        assert_eq!(
            a.exec_ok(&connect_probe(target, 443)).unwrap().trim(),
            "ENETUNREACH",
            "{target}"
        );
    }
    // The host's own outside address is not routed either.
    let host_route = Command::new("ip")
        .args(["-4", "-o", "route", "get", "198.51.100.7"])
        .output()
        .unwrap();
    let host_route = String::from_utf8_lossy(&host_route.stdout).to_string();
    if let Some(src) = host_route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
    {
        assert_eq!(
            a.exec_ok(&connect_probe(src, 22)).unwrap().trim(),
            "ENETUNREACH",
            "host address {src}"
        );
    }
    // Host-side services other than the proxy are refused.
    assert_eq!(
        a.exec_ok(&connect_probe(&lab.host_address().to_string(), 22))
            .unwrap()
            .trim(),
        "ECONNREFUSED"
    );
    // No DNS.
    let resolv = a.exec_ok("cat /etc/resolv.conf").unwrap();
    assert!(!resolv.contains("nameserver"), "{resolv}");

    let pids = lab_pids(&name);
    assert!(
        pids.len() > 4,
        "servers' processes are in the lab cgroups: {pids:?}"
    );
    let cleaned = lab.down().expect("down");
    assert!(
        cleaned.processes > 0 && cleaned.mounts == 2 && cleaned.namespaces == 3,
        "{cleaned:?}"
    );
    assert_nothing_left(&roots, &name, &pids);
    // Idempotent.
    let again = kiln_lab::down(&roots, &name).expect("second down");
    assert!(
        again.processes == 0 && again.mounts == 0 && again.namespaces == 0 && again.links == 0,
        "{again:?}"
    );
}

/// Labs start and stop side by side (tests, a user's lab next to CI's): reloading the host
/// filter for one lab must not reset SSH sessions open to another lab's servers. An upload
/// over SSH to lab A streams while lab B starts and stops three times; every byte must
/// arrive and the session end cleanly.
#[test]
fn a_session_to_one_lab_survives_another_lab_starting_and_stopping() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    require_root();
    let a = Lab::start(LabOptions::unique("keep", 1)).expect("lab A starts");
    let mut child = a.servers()[0]
        .ssh_command()
        .arg("wc -c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh runs");
    let mut stdin = child.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let chunk = vec![b'k'; 256 * 1024];
            let mut sent: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                if stdin.write_all(&chunk).is_err() {
                    return (sent, false);
                }
                sent += chunk.len() as u64;
            }
            (sent, true)
        })
    };
    for _ in 0..3 {
        let b = Lab::start(LabOptions::unique("churn", 1)).expect("lab B starts");
        b.exec_ok("server1", "true").expect("lab B answers");
        drop(b);
        assert!(
            !writer.is_finished(),
            "the upload broke while lab B started or stopped"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, ok) = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        ok && out.status.success(),
        "the upload broke after {sent} bytes: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let received: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(received, sent);
    assert!(sent > 10_000_000, "{sent} bytes");
}

#[test]
fn apt_installs_through_the_proxy() {
    require_root();
    let lab = Lab::start(LabOptions::unique("apt", 1)).expect("lab starts");
    let s = &lab.servers()[0];
    let proxy = s.exec_ok("apt-config dump Acquire::http::Proxy").unwrap();
    assert!(proxy.contains(&lab.apt_proxy().to_string()), "{proxy}");
    s.exec_ok(
        "sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q tree",
    )
    .unwrap();
    assert!(
        s.exec_ok("tree -L 1 /etc/apt")
            .unwrap()
            .contains("sources.list.d")
    );
}

#[test]
fn drop_on_panic_tears_down() {
    require_root();
    let opts = LabOptions::unique("panic", 1);
    let name = opts.name.clone();
    let roots = opts.roots.clone();
    let pids = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::start(opts).expect("lab starts");
        lab.exec_ok("server1", "true").unwrap();
        *pids.lock().unwrap() = lab_pids(lab.name());
        panic!("test panic with a running lab");
    }));
    assert!(result.is_err());
    let pids = pids.into_inner().unwrap();
    assert!(!pids.is_empty());
    assert_nothing_left(&roots, &name, &pids);
}

#[test]
fn down_cleans_up_after_a_crashed_run() {
    require_root();
    let lab = Lab::start(LabOptions::unique("crash", 1)).expect("lab starts");
    let name = lab.name().to_string();
    let roots = lab.roots().clone();
    let pids = lab_pids(&name);
    // A crashed process never runs Drop: the servers keep running, the state stays on disk.
    std::mem::forget(lab);
    assert!(roots.state_file(&name).exists());
    let status = kiln_lab::status(&roots).unwrap();
    assert!(status.iter().any(|l| {
        l.name == name
            && l.servers
                .iter()
                .all(|(_, alive, mem)| *alive && *mem > 1024)
    }));
    // Lose the state file too: the scan alone must find everything.
    std::fs::remove_file(roots.state_file(&name)).unwrap();
    let cleaned = kiln_lab::down(&roots, &name).expect("down");
    assert!(
        cleaned.processes > 0
            && cleaned.mounts == 1
            && cleaned.namespaces == 2
            && cleaned.links == 1,
        "{cleaned:?}"
    );
    assert_nothing_left(&roots, &name, &pids);
}
