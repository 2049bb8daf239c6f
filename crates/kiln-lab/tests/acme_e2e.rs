//! End-to-end: the lab's ACME server (Pebble) and DNS (pebble-challtestsrv). A server reaches
//! the directory over TLS trusting the listener CA; the lab DNS answers the records set; the
//! management ports stay closed to the servers; lab down leaves no Pebble process behind.

mod common;

use std::process::Command;
use std::time::Instant;

use kiln_lab::acme::{self, LabDnsRecord, LabRecordType};
use kiln_lab::{Lab, LabOptions};

fn dig(dns: std::net::SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "+short",
            "+time=2",
            "+tries=1",
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            name,
            rtype,
        ])
        .output()
        .expect("dig runs (bind9-dnsutils)");
    assert!(out.status.success(), "{out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Pebble or challtestsrv processes of a lab (their command lines name its folder or its
/// host-side address).
fn acme_processes(dir: &std::path::Path, host: std::net::IpAddr) -> Vec<String> {
    let (dir, host) = (dir.display().to_string(), host.to_string());
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("pebble") && (cmdline.contains(&dir) || cmdline.contains(&host)) {
            out.push(cmdline);
        }
    }
    out
}

#[test]
fn servers_reach_the_directory_and_dns_but_not_the_management_ports() {
    common::require_root();
    let started = Instant::now();
    let mut lab = Lab::start(LabOptions::unique("acme", 1)).expect("lab starts");
    eprintln!("lab up in {:.1} s", started.elapsed().as_secs_f64());
    let t = Instant::now();
    let state = lab.start_acme().expect("ACME server starts").clone();
    eprintln!("ACME server ready in {:.2} s", t.elapsed().as_secs_f64());
    let host = lab.host_address();
    assert_eq!(state.directory, format!("https://{host}:14000/dir"));
    assert_eq!(state.dns, std::net::SocketAddr::new(host, 8053));
    assert_eq!(lab.acme(), Some(&state));
    assert!(state.ca_root.starts_with(lab.dir()), "{state:?}");
    // Recorded for other processes.
    let recorded = kiln_lab::LabState::load(lab.roots(), lab.name())
        .unwrap()
        .unwrap();
    assert_eq!(recorded.acme.as_ref(), Some(&state));

    // The issuing root is written where the state says, and is Pebble's current one.
    let root = acme::issuing_root(&state).unwrap();
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    assert_eq!(std::fs::read_to_string(&state.issuing_root).unwrap(), root);

    // From the server, trusting only the listener CA: 200 and a newOrder URL.
    let ca = std::fs::read_to_string(&state.ca_root).unwrap();
    lab.exec_ok(
        "server1",
        &format!("printf %s {} > /tmp/lab-ca.pem", kiln_shell::quote(&ca)),
    )
    .unwrap();
    let t = Instant::now();
    let probe = format!(
        "python3 -c 'import json,ssl,urllib.request\nc=ssl.create_default_context(cafile=\"/tmp/lab-ca.pem\")\nr=urllib.request.urlopen(\"{}\",context=c,timeout=5)\nprint(r.status, json.load(r)[\"newOrder\"])'",
        state.directory
    );
    let out = lab.exec_ok("server1", &probe).unwrap();
    eprintln!(
        "directory fetched from the server in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.trim(),
        format!("200 https://{host}:14000/order-plz"),
        "{out}"
    );

    // The management ports are the host's only: refused from the server.
    for (port, what) in [(15000, "Pebble management"), (8055, "DNS management")] {
        let probe = format!(
            "python3 -c 'import socket\ntry:\n    socket.create_connection((\"{host}\",{port}),timeout=3)\n    print(\"open\")\nexcept OSError as e:\n    print(\"closed\", e)'"
        );
        let out = lab.exec_ok("server1", &probe).unwrap();
        assert!(
            out.starts_with("closed"),
            "{what} reachable from a server: {out}"
        );
    }

    // The lab DNS answers what was set; a second set replaces the first.
    let rec = |name: &str, rtype, value: &str| LabDnsRecord {
        name: name.into(),
        rtype,
        value: value.into(),
    };
    acme::set_records(
        &state,
        &[
            rec("x.test", LabRecordType::A, "10.77.1.11"),
            rec("x.test", LabRecordType::A, "10.77.1.12"),
            rec("web.x.test", LabRecordType::A, "10.77.1.13"),
            rec("chat.x.test", LabRecordType::CNAME, "x.test"),
        ],
    )
    .unwrap();
    assert_eq!(dig(state.dns, "x.test", "A"), ["10.77.1.11", "10.77.1.12"]);
    assert_eq!(
        dig(state.dns, "chat.x.test", "A"),
        ["10.77.1.11", "10.77.1.12", "x.test."],
        "an A query for a CNAME'd name gets the CNAME and the target's addresses"
    );
    acme::set_records(&state, &[rec("x.test", LabRecordType::A, "10.77.1.21")]).unwrap();
    assert_eq!(dig(state.dns, "x.test", "A"), ["10.77.1.21"]);
    assert_eq!(dig(state.dns, "web.x.test", "A"), Vec::<String>::new());
    assert_eq!(dig(state.dns, "chat.x.test", "CNAME"), Vec::<String>::new());
    // The servers reach the DNS too: one A query over UDP, its answer count and first address.
    let query = [
        "import socket",
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)",
        "s.settimeout(3)",
        &format!("s.sendto(bytes.fromhex(\"abcd01000001000000000000017804746573740000010001\"),(\"{host}\",8053))"),
        "r=s.recv(512)",
        "i=12",
        "while r[i]: i+=r[i]+1",
        "i+=5",
        "if r[i]&0xc0==0xc0: i+=2",
        "else:",
        "    while r[i]: i+=r[i]+1",
        "    i+=1",
        "i+=10",
        "print(int.from_bytes(r[6:8],\"big\"), \".\".join(str(b) for b in r[i:i+4]))",
    ]
    .join("\n");
    let probe = format!("python3 -c {}", kiln_shell::quote(&query));
    assert_eq!(
        lab.exec_ok("server1", &probe).unwrap().trim(),
        "1 10.77.1.21"
    );

    // Lab down stops both processes.
    let running = acme_processes(&lab.dir(), host);
    assert_eq!(running.len(), 2, "{running:?}");
    let pids = common::lab_pids(lab.name());
    let (roots, name, dir) = (lab.roots().clone(), lab.name().to_string(), lab.dir());
    lab.down().unwrap();
    common::assert_nothing_left(&roots, &name, &pids);
    let left = acme_processes(&dir, host);
    assert!(left.is_empty(), "pebble processes left: {left:?}");
}

/// Whether Pebble's http-01 validation follows a CNAME served by the lab DNS: Caddy (a real
/// ACME client, Debian's) on a server asks for a certificate for `chat.x.test`, a CNAME to
/// `x.test`, whose only A record is the server. The certificate it gets is Pebble's.
#[test]
fn pebble_validates_http01_for_a_cname_through_the_lab_dns() {
    common::require_root();
    let opts = LabOptions {
        acme: true,
        ..LabOptions::unique("acmecname", 1)
    };
    let lab = Lab::start(opts).expect("lab with ACME starts");
    let state = lab.acme().expect("ACME recorded").clone();
    let server = lab.server("server1").unwrap().address;
    acme::set_records(
        &state,
        &[
            LabDnsRecord {
                name: "x.test".into(),
                rtype: LabRecordType::A,
                value: server.to_string(),
            },
            LabDnsRecord {
                name: "chat.x.test".into(),
                rtype: LabRecordType::CNAME,
                value: "x.test".into(),
            },
        ],
    )
    .unwrap();
    let t = Instant::now();
    lab.apt_install("server1", &["caddy"]).unwrap();
    eprintln!("caddy installed in {:.1} s", t.elapsed().as_secs_f64());
    let ca = std::fs::read_to_string(&state.ca_root).unwrap();
    let caddyfile = format!(
        "{{\n  admin off\n}}\nchat.x.test {{\n  tls {{\n    issuer acme {{\n      dir {}\n      trusted_roots /etc/caddy/lab-ca.pem\n      disable_tlsalpn_challenge\n    }}\n  }}\n  respond \"through the cname\"\n}}\n",
        state.directory
    );
    lab.exec_ok(
        "server1",
        &format!(
            "printf %s {} | sudo tee /etc/caddy/lab-ca.pem >/dev/null && printf %s {} | sudo tee /etc/caddy/Caddyfile >/dev/null && sudo systemctl restart caddy",
            kiln_shell::quote(&ca),
            kiln_shell::quote(&caddyfile)
        ),
    )
    .unwrap();
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < std::time::Duration::from_secs(60) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3", "--cacert"])
            .arg(&state.issuing_root)
            .args([
                "--resolve",
                &format!("chat.x.test:443:{server}"),
                "https://chat.x.test/",
            ])
            .output()
            .unwrap();
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    eprintln!(
        "certificate for the CNAME'd name served after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let journal = lab
        .exec("server1", "sudo journalctl -u caddy --no-pager | tail -20")
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert_eq!(last, "through the cname", "caddy's journal:\n{journal}");
    let pebble_log = std::fs::read_to_string(state.folder.join("pebble.log")).unwrap();
    // Pebble validated the CNAME'd name itself (a task for it, then VALID), with http-01
    // (what Caddy says it solved).
    assert!(
        pebble_log
            .lines()
            .any(|l| l.contains("Pulled a task") && l.contains("\"chat.x.test\"")),
        "no validation task for chat.x.test:\n{pebble_log}"
    );
    let journal = lab
        .exec("server1", "sudo journalctl -u caddy --no-pager")
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    assert!(
        journal
            .lines()
            .any(|l| l.contains("trying to solve challenge")
                && l.contains("\"identifier\":\"chat.x.test\"")
                && l.contains("\"challenge_type\":\"http-01\"")),
        "{journal}"
    );
    assert!(
        pebble_log.contains("set VALID by completed challenge"),
        "{pebble_log}"
    );
    lab.down().unwrap();
}
