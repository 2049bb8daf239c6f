//! `kiln dns --check` against a real DNS server: the lab's `pebble-challtestsrv` (Debian
//! package pebble) on loopback, its records set through its management API from the
//! records `kiln dns --format json` lists for the reference example's lab environment.
//! Every query goes to 127.0.0.1 (`--resolver` is always given: never the system's
//! resolver). Required on CI; skipped with a notice elsewhere when the tool is missing.

mod common;
use common::{stderr, stdout, words};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXAMPLE: &str = "examples/reference/kiln.toml";
const TOOL: &str = "pebble-challtestsrv";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn kiln(args: &[&str]) -> Output {
    common::kiln_plain()
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// A loopback port free for both UDP and TCP (the DNS server listens on both).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running pebble-challtestsrv, killed when dropped.
struct ChallTestSrv {
    child: Child,
    dns: SocketAddr,
    management: SocketAddr,
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChallTestSrv {
    /// Started and answering, or None (with a notice) when the tool is not installed
    /// outside CI.
    fn start() -> Option<ChallTestSrv> {
        if Command::new(TOOL).arg("-h").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{TOOL} (Debian package pebble) is required on CI"
            );
            eprintln!("SKIPPED: {TOOL} not installed (apt-get install pebble)");
            return None;
        }
        let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let management: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(TOOL)
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let srv = ChallTestSrv {
            child,
            dns,
            management,
        };
        srv.wait_ready();
        Some(srv)
    }

    /// The management port accepts connections and the DNS port answers a query.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.management, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{TOOL}: management port not open"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A query for ready.test. A, built by hand.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x05ready\x04test\x00\x00\x01\x00\x01");
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            let _ = sock.send_to(&q, self.dns);
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && n >= 2
                && buf[..2] == [0x12, 0x34]
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{TOOL}: DNS port does not answer"
            );
        }
    }

    /// POST a JSON body to the management API; panics unless it answers 200.
    fn post(&self, path: &str, body: &serde_json::Value) {
        let body = body.to_string();
        let mut s = TcpStream::connect(self.management).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.management,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{path} {body}: {answer}"
        );
    }

    fn add_a(&self, name: &str, addresses: &[&str]) {
        let path = if addresses.iter().any(|a| a.contains(':')) {
            "/add-aaaa"
        } else {
            "/add-a"
        };
        self.post(
            path,
            &serde_json::json!({ "host": format!("{name}."), "addresses": addresses }),
        );
    }

    fn set_cname(&self, name: &str, target: &str) {
        self.post(
            "/set-cname",
            &serde_json::json!({ "host": format!("{name}."), "target": format!("{target}.") }),
        );
    }

    /// `0 issue "letsencrypt.org"` as kiln writes CAA values (flags are always 0 there;
    /// the server has no way to set them).
    fn add_caa(&self, name: &str, value: &str) {
        let mut parts = value.splitn(3, ' ');
        assert_eq!(parts.next(), Some("0"), "{value}");
        let tag = parts.next().unwrap();
        let v = parts.next().unwrap().trim_matches('"');
        self.post(
            "/add-caa",
            &serde_json::json!({ "host": format!("{name}."), "policies": [{ "tag": tag, "value": v }] }),
        );
    }

    fn resolver(&self) -> String {
        self.dns.to_string()
    }
}

/// The records `kiln dns` says the lab environment needs: (name, type, value).
fn lab_records() -> Vec<(String, String, String)> {
    records("lab")
}

/// The records `kiln dns` says environment `env` needs.
fn records(env: &str) -> Vec<(String, String, String)> {
    let o = kiln(&["dns", "--config", EXAMPLE, "--env", env, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("name"), s("type"), s("value"))
        })
        .collect()
}

/// Publish `records` on the server, as each type is set there.
fn publish(srv: &ChallTestSrv, records: &[(String, String, String)]) {
    for (name, rtype, value) in records {
        match rtype.as_str() {
            "A" | "AAAA" => srv.add_a(name, &[value]),
            "CNAME" => srv.set_cname(name, value),
            "CAA" => srv.add_caa(name, value),
            other => panic!("unexpected record type {other}"),
        }
    }
}

fn check(srv: &ChallTestSrv, extra: &[&str]) -> Output {
    check_env(srv, "lab", extra)
}

fn check_env(srv: &ChallTestSrv, env: &str, extra: &[&str]) -> Output {
    let resolver = srv.resolver();
    let mut args = vec![
        "dns",
        "--check",
        "--config",
        EXAMPLE,
        "--env",
        env,
        "--resolver",
        &resolver,
    ];
    args.extend_from_slice(extra);
    kiln(&args)
}

#[test]
fn every_record_published_is_ok_and_exits_0() {
    let Some(srv) = ChallTestSrv::start() else {
        return;
    };
    // The reference staging: host A records, service CNAMEs, CAA records for Let's
    // Encrypt (the comparison must see each kind; the lab's Pebble gets no CAA).
    let records = records("staging");
    for t in ["A", "CNAME", "CAA"] {
        assert!(records.iter().any(|r| r.1 == t), "no {t} in {records:?}");
    }
    publish(&srv, &records);
    let o = check_env(&srv, "staging", &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "staging (staging.ergaster.org)");
    assert_eq!(lines.len(), records.len() + 2, "{out}");
    for (line, (name, rtype, value)) in lines[1..].iter().zip(&records) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[..3], ["ok", name.as_str(), rtype.as_str()], "{line}");
        assert!(line.ends_with(value.as_str()), "{line}");
    }
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "{n} records: {n} ok, 0 missing, 0 different, 0 errors (asked {})",
            srv.resolver(),
            n = records.len()
        )
    );
}

#[test]
fn missing_and_different_records_are_named_and_exit_3() {
    let Some(srv) = ChallTestSrv::start() else {
        return;
    };
    let records = lab_records();
    let find = |name: &str, rtype: &str| {
        records
            .iter()
            .find(|r| r.0 == name && r.1 == rtype)
            .unwrap_or_else(|| panic!("{name} {rtype} not in {records:?}"))
            .clone()
    };
    let hdoc = find("hdoc.ergaster.test", "CNAME");
    let monitoring = find("monitoring.ergaster.test", "A");
    let grafana = find("grafana.ergaster.test", "CNAME");
    let services = find("services.ergaster.test", "A");
    let untouched: Vec<_> = records
        .iter()
        .filter(|r| ![&hdoc, &monitoring, &grafana, &services].contains(r))
        .cloned()
        .collect();
    publish(&srv, &untouched);
    // hdoc: not published. monitoring: another address. services: the right address
    // and one more. grafana: flattened, an address where the CNAME should be.
    srv.add_a(&monitoring.0, &["10.77.0.99"]);
    srv.add_a(&services.0, &[&services.2, "10.77.0.98"]);
    srv.add_a(&grafana.0, &["10.77.0.12"]);

    let o = check(&srv, &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{}", stderr(&o));
    let line = |name: &str, rtype: &str| -> String {
        out.lines()
            .find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 3 && w[1] == name && w[2] == rtype
            })
            .unwrap_or_else(|| panic!("no line for {name} {rtype} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line(&hdoc.0, "CNAME"),
        "MISSING hdoc.ergaster.test CNAME ergaster.test"
    );
    assert_eq!(
        line(&monitoring.0, "A"),
        "DIFFERENT monitoring.ergaster.test A 10.77.0.12 (found 10.77.0.99)"
    );
    assert_eq!(
        line(&services.0, "A"),
        "DIFFERENT services.ergaster.test A 10.77.0.11 (found 10.77.0.11, 10.77.0.98)"
    );
    assert_eq!(
        line(&grafana.0, "CNAME"),
        "DIFFERENT grafana.ergaster.test CNAME monitoring.ergaster.test (found A 10.77.0.12)"
    );
    for (name, rtype, _) in &untouched {
        assert!(line(name, rtype).starts_with("ok "), "{out}");
    }
    let n = records.len();
    assert!(
        out.ends_with(&format!(
            "{n} records: {} ok, 1 missing, 3 different, 0 errors (asked {})\n",
            n - 4,
            srv.resolver()
        )),
        "{out}"
    );

    // The same as JSON: one object per record, with its status and what was found.
    let o = check(&srv, &["--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), n);
    let get = |name: &str| results.iter().find(|r| r["name"] == name).unwrap();
    assert_eq!(get(&hdoc.0)["status"], "missing");
    assert_eq!(get(&monitoring.0)["status"], "different");
    assert_eq!(
        get(&monitoring.0)["found"],
        serde_json::json!(["10.77.0.99"])
    );
    assert_eq!(
        get(&grafana.0)["found"],
        serde_json::json!(["A 10.77.0.12"])
    );
}

#[test]
fn a_servfail_is_an_error_naming_the_resolver_and_exits_1() {
    let Some(srv) = ChallTestSrv::start() else {
        return;
    };
    let records = lab_records();
    publish(&srv, &records);
    srv.post(
        "/set-servfail",
        &serde_json::json!({ "host": "hdoc.ergaster.test." }),
    );
    let o = check(&srv, &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let line = out
        .lines()
        .find(|l| l.contains("hdoc.ergaster.test"))
        .unwrap();
    assert!(line.starts_with("ERROR "), "{line}");
    assert!(
        line.ends_with(&format!("({} answered SERVFAIL)", srv.resolver())),
        "{line}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        records.len() - 1
    );
    assert!(
        words(&stderr(&o)).contains(&format!(
            "1 of {} records could not be checked with {}",
            records.len(),
            srv.resolver()
        )),
        "{}",
        stderr(&o)
    );
}

/// A resolver that never answers (a bound UDP socket nobody reads) gives an error naming
/// it after one query's 2 × 2 s, not one timeout per record. Needs no external tool.
#[test]
fn a_silent_resolver_is_an_error_within_seconds() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let start = Instant::now();
    let o = kiln(&[
        "dns",
        "--check",
        "--config",
        EXAMPLE,
        "--env",
        "lab",
        "--resolver",
        &addr,
    ]);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        took >= Duration::from_secs(4),
        "took {took:?}: did it wait?"
    );
    // miette wraps the message: compare words.
    let err = words(&stderr(&o));
    assert!(
        err.contains(&format!("no record could be checked with {addr}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("no answer from {addr} (2 attempts of 2 s)")),
        "{err}"
    );
    let out = stdout(&o);
    assert!(
        out.lines()
            .skip(1)
            .take_while(|l| !l.contains(" records: "))
            .all(|l| l.starts_with("ERROR ")),
        "{out}"
    );
    drop(silent);
}

#[test]
fn bad_resolver_addresses_and_misused_flags_are_bad_input() {
    for args in [
        &["--check", "--resolver", "dns.example"][..],
        &["--check", "--resolver", "127.0.0.1:70000"][..],
        &["--resolver", "127.0.0.1"][..],
        &["--check", "--format", "zone", "--resolver", "127.0.0.1:9"][..],
    ] {
        let mut all = vec!["dns", "--config", EXAMPLE, "--env", "lab"];
        all.extend_from_slice(args);
        let o = kiln(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    let o = kiln(&[
        "dns",
        "--config",
        EXAMPLE,
        "--check",
        "--resolver",
        "dns.example",
    ]);
    assert!(
        words(&stderr(&o))
            .contains("`dns.example` is not a resolver address: expected IP or IP:PORT"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_json_flag_is_format_json() {
    let flag = kiln(&["dns", "--config", EXAMPLE, "--json"]);
    let format = kiln(&["dns", "--config", EXAMPLE, "--format", "json"]);
    assert_eq!(flag.status.code(), Some(0), "{}", stderr(&flag));
    assert_eq!(stdout(&flag), stdout(&format));
    let both = kiln(&["dns", "--config", EXAMPLE, "--json", "--format", "table"]);
    assert_eq!(both.status.code(), Some(2));
}
