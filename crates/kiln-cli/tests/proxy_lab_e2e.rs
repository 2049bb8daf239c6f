//! End-to-end, as a user would: the reverse proxy in front of a service, with certificates
//! from a real ACME server. `kiln lab up` starts the lab's Pebble (Let's Encrypt's RFC 8555
//! test server) and its DNS, and records Pebble as the lab environment's `acme_ca`; `kiln
//! apply --env lab` runs the proxy (Caddy, then the same with `proxy = "traefik"`) and a
//! custom container behind it. From the lab host, with curl, openssl and testssl.sh:
//! HTTPS answers with a certificate Pebble issued for exactly the service's name, HTTP
//! redirects to HTTPS, HSTS is set, no old protocol or weak cipher is offered; a second
//! plan is empty; adding a service makes it reachable without cutting a download running
//! through the proxy. Needs root and the lab's prerequisites (.ci/install-lab.sh).

mod common;
use common::{all_output, certificate, text};

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "px.test";

fn kiln_toml(proxy: &str) -> String {
    format!(
        r#"[project]
name = "px"
domain = "px.example.org"
acme_email = "ops@px.example.org"
proxy = "{proxy}"

[base]                             # not this test's subject (base_lab_e2e.rs)
sshd = false
firewall = false
updates = false
time = false
node_exporter = false
wireguard = false

[environments.lab]
domain = "{DOMAIN}"
# `kiln lab up` starts the lab's ACME server and records it here.
acme_ca = {{ directory = "https://10.77.0.1:14000/dir" }}
apex_host = "web"

[environments.lab.hosts.web]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"

[services.www]
kind = "container"
host = "web"
subdomain = "www"
version = "2"
options = {{ image = "docker.io/library/caddy", port = 80, volumes = ["html:/usr/share/caddy"] }}
"#
    )
}

/// One more container service at `<name>.<lab domain>`, appended to kiln.toml.
fn extra_service(name: &str) -> String {
    format!(
        r#"
[services.{name}]
kind = "container"
host = "web"
subdomain = "{name}"
version = "2"
options = {{ image = "docker.io/library/caddy", port = 80 }}
"#
    )
}

/// The row of `name` in `kiln status`'s certificate table.
fn certificate_row<'a>(shown: &'a str, name: &str) -> &'a str {
    shown
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no certificate row for {name}:\n{shown}"))
}

struct Repo {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    lab: String,
}

impl Repo {
    fn new(lab: &str, proxy: &str) -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("kiln.toml");
        std::fs::write(&config, kiln_toml(proxy)).unwrap();
        Repo {
            _tmp: tmp,
            config,
            lab: lab.to_owned(),
        }
    }

    fn kiln(&self, args: &[&str]) -> Output {
        common::kiln()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn on_server_ok(&self, script: &str) -> String {
        let o = self.kiln(&[
            "lab", "ssh", "--lab", &self.lab, "web", "--", "sudo", "bash", "-c", script,
        ]);
        assert!(o.status.success(), "{script}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The server's address, as `kiln lab up` recorded it.
    fn address(&self) -> String {
        common::lab_address(&self.config, "web")
    }

    fn issuing_root(&self) -> PathBuf {
        common::issuing_root(&self.lab)
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = self.kiln(&["lab", "down", "--lab", &self.lab]);
    }
}

/// curl from the lab host, `name` resolved to the server.
fn curl(repo: &Repo, ip: &str, url: &str, extra: &[&str]) -> Output {
    let host = url.split('/').nth(2).unwrap();
    let port = if url.starts_with("https") { 443 } else { 80 };
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(repo.issuing_root())
        .args(["--resolve", &format!("{host}:{port}:{ip}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl (apt install curl)")
}

fn scenario(lab: &str, proxy: &str) {
    let repo = Repo::new(lab, proxy);
    let up = repo.kiln(&["lab", "up", "--lab", lab, "--yes"]);
    assert!(up.status.success(), "kiln lab up: {}", text(&up));
    let ip = repo.address();
    let toml = std::fs::read_to_string(&repo.config).unwrap();
    assert!(
        !toml.contains("https://10.77.0.1:14000/dir\" }"),
        "lab up records the lab's own ACME directory:\n{toml}"
    );

    let started = Instant::now();
    let apply = repo.kiln(&["apply", "--env", "lab", "--yes"]);
    assert!(apply.status.success(), "apply: {}", text(&apply));
    let out = all_output(&apply);
    assert!(out.contains("kiln-proxy.service is healthy"), "{out}");
    repo.on_server_ok(
        "echo kiln-www > /srv/kiln/www/html/index.html && head -c 40000000 /dev/zero > /srv/kiln/www/html/big",
    );

    // HTTPS with Pebble's certificate for exactly this name (the proxy may still be
    // finishing its order: give it a few seconds).
    let url = format!("https://www.{DOMAIN}/");
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let o = curl(&repo, &ip, &url, &["-D", "-"]);
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(page.status.success(), "{url}: {}", text(&page));
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    eprintln!(
        "{proxy}: first HTTPS answer {:.1} s after apply started",
        started.elapsed().as_secs_f64()
    );
    assert!(page.contains("kiln-www"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "HSTS: {page}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"), "{page}");
    let cert = certificate(&ip, &format!("www.{DOMAIN}"));
    assert!(cert.contains("Pebble"), "issued by Pebble: {cert}");
    assert!(
        cert.contains(&format!("DNS:www.{DOMAIN}")) && !cert.contains(", DNS:"),
        "exactly one name: {cert}"
    );

    // HTTP redirects to HTTPS.
    let http = curl(
        &repo,
        &ip,
        &format!("http://www.{DOMAIN}/x"),
        &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
    );
    let http = String::from_utf8_lossy(&http.stdout).into_owned();
    let (code, to) = http.split_once(' ').unwrap();
    assert!(["301", "308"].contains(&code), "{http}");
    assert_eq!(to, format!("https://www.{DOMAIN}/x"));

    // Nothing left to do.
    let plan = repo.kiln(&["plan", "--env", "lab"]);
    assert!(
        plan.status.success(),
        "a second plan is empty: {}",
        text(&plan)
    );

    // A new service: reachable over HTTPS after one apply, while a download that was
    // running through the proxy goes on to its end.
    let mut download = Command::new("curl")
        .args([
            "-sS",
            "--limit-rate",
            "5M",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "--cacert",
        ])
        .arg(repo.issuing_root())
        .args(["--resolve", &format!("www.{DOMAIN}:443:{ip}")])
        .arg(format!("https://www.{DOMAIN}/big"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut t = std::fs::read_to_string(&repo.config).unwrap();
    t.push_str(&extra_service("blog"));
    std::fs::write(&repo.config, t).unwrap();
    // Its name in the lab's DNS (in production: the record `kiln dns` lists).
    let dns = repo.kiln(&["lab", "dns", "--lab", lab]);
    assert!(dns.status.success(), "kiln lab dns: {}", text(&dns));
    assert!(
        String::from_utf8_lossy(&dns.stdout).contains(&format!("blog.{DOMAIN}")),
        "{}",
        text(&dns)
    );
    let apply = repo.kiln(&["apply", "--env", "lab", "--yes"]);
    assert!(apply.status.success(), "apply with blog: {}", text(&apply));
    let out = all_output(&apply);
    assert!(
        !out.contains("restart unit kiln-proxy.service"),
        "the proxy is not restarted for a new route: {out}"
    );
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download is still running across the change"
    );
    let done = download.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        "200 40000000",
        "the download survived the proxy's reload"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let blog = loop {
        let o = curl(
            &repo,
            &ip,
            &format!("https://blog.{DOMAIN}/"),
            &["-o", "/dev/null", "-w", "%{http_code}"],
        );
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        String::from_utf8_lossy(&blog.stdout),
        "200",
        "{}",
        text(&blog)
    );
    assert!(certificate(&ip, &format!("blog.{DOMAIN}")).contains(&format!("DNS:blog.{DOMAIN}")));

    // testssl.sh: no SSLv3, TLS 1.0 or 1.1, no weak or CBC cipher, HSTS.
    let json = repo._tmp.path().join("testssl.json");
    let o = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "-p",
            "-s",
            "-h",
            "--ip",
            &ip,
        ])
        .arg("--add-ca")
        .arg(repo.issuing_root())
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("https://www.{DOMAIN}/"))
        .output()
        .expect("testssl (apt install testssl.sh)");
    let findings: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("testssl wrote no JSON ({e}): {}", text(&o))),
    )
    .unwrap();
    let finding = |id: &str| -> String {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or_else(|| panic!("testssl has no {id}: {findings:?}"))
            .to_owned()
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(old), "not offered", "{old}");
    }
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        // CBC without AEAD ("obsoleted"): not offered either.
        "cipherlist_AVERAGE",
    ] {
        assert_eq!(finding(weak), "not offered", "{weak}");
    }
    assert!(
        finding("HSTS_time").starts_with("365 days"),
        "HSTS: {}",
        finding("HSTS_time")
    );
    // `kiln status` shows every name's certificate, from the proxy's own storage.
    let status = repo.kiln(&["status", "--env", "lab"]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "status: {}", text(&status));
    for name in [format!("www.{DOMAIN}"), format!("blog.{DOMAIN}")] {
        let row = certificate_row(&shown, &name);
        assert!(row.contains("issued by Pebble Intermediate CA"), "{row}");
    }

    pending_while_the_acme_server_is_unreachable(&repo, &ip);
    eprintln!("{proxy}: done in {:.1} s", started.elapsed().as_secs_f64());
}

/// A new name while the ACME server cannot be reached (the lab's directory moved to a
/// port nothing listens on): apply says the certificate is pending with the proxy's own
/// error line, `kiln status` shows it and exits 3; once the server is back, the next
/// apply reports it issued.
fn pending_while_the_acme_server_is_unreachable(repo: &Repo, ip: &str) {
    let good = std::fs::read_to_string(&repo.config).unwrap();
    assert!(good.contains(":14000/dir"), "{good}");
    // The directory moves first, alone: the proxy restarts on it before it learns the new
    // name. (Given both in one apply, Traefik, which watches its dynamic routes, may get
    // the new name's certificate from the old directory before its restart.)
    let moved = good.replace(":14000/dir", ":14099/dir");
    std::fs::write(&repo.config, &moved).unwrap();
    let apply = repo.kiln(&["apply", "--env", "lab", "--yes"]);
    assert!(
        apply.status.success(),
        "the directory moved: {}",
        all_output(&apply)
    );
    let mut t = moved.clone();
    t.push_str(&extra_service("late"));
    std::fs::write(&repo.config, &t).unwrap();
    let dns = repo.kiln(&["lab", "dns", "--lab", &repo.lab]);
    assert!(dns.status.success(), "kiln lab dns: {}", text(&dns));
    let apply = repo.kiln(&["apply", "--env", "lab", "--yes"]);
    let out = all_output(&apply);
    assert!(apply.status.success(), "pending is not a failure: {out}");
    let late = format!("late.{DOMAIN}");
    let line = out
        .lines()
        .find(|l| l.contains(&format!("  web: {late}: pending: ")))
        .unwrap_or_else(|| panic!("apply names the pending certificate:\n{out}"));
    // The proxy's own words: the port it could not reach.
    assert!(line.contains("14099"), "{line}");
    eprintln!("pending, as apply reports it:\n{line}");
    assert!(out.contains("1 certificate(s) pending"), "{out}");

    let status = repo.kiln(&["status", "--env", "lab"]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(3), "status: {}", text(&status));
    let row = certificate_row(&shown, &late);
    assert!(row.contains("pending: ") && row.contains("14099"), "{row}");
    let json = repo.kiln(&["status", "--env", "lab", "--json"]);
    let host: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    let cert = host["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == late.as_str())
        .unwrap()
        .clone();
    assert!(
        cert["issued"].is_null() && cert["error"].is_string(),
        "{cert}"
    );

    // The server is back: the next apply waits for the certificate and says so.
    let mut t = good.clone();
    t.push_str(&extra_service("late"));
    std::fs::write(&repo.config, &t).unwrap();
    let apply = repo.kiln(&["apply", "--env", "lab", "--yes"]);
    let out = all_output(&apply);
    assert!(apply.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "certificate {late}: issued by Pebble Intermediate CA"
        )),
        "{out}"
    );
    assert!(!out.contains("pending"), "{out}");
    // The proxy serves what it stored a moment later (Traefik reloads acme.json).
    let served = (0..40).find_map(|_| {
        let c = certificate(ip, &late);
        if c.contains(&format!("DNS:{late}")) {
            return Some(c);
        }
        std::thread::sleep(Duration::from_millis(250));
        None
    });
    assert!(served.is_some(), "{late} is not served within 10 s");
    let status = repo.kiln(&["status", "--env", "lab"]);
    assert!(status.status.success(), "status: {}", text(&status));
}

#[test]
fn caddy_serves_each_name_with_a_pebble_certificate_and_reloads_without_cutting() {
    scenario("proxy-caddy", "caddy");
}

#[test]
fn traefik_serves_each_name_with_a_pebble_certificate_and_applies_routes_without_cutting() {
    scenario("proxy-traefik", "traefik");
}
