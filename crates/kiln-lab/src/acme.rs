//! ACME for the lab: Pebble (Debian's `pebble`, a test-only ACME server) and its
//! `pebble-challtestsrv` as the lab's DNS, both started in the lab's cgroup on the host side
//! of the bridge, like the S3 server. The lab makes the listener CA and certificate Pebble's
//! HTTPS needs (the CA's PEM is what kiln.toml's `ca_root` points at), fetches Pebble's
//! issuing root (new at every start), and sets the DNS answers Pebble validates against.
//! What the lab records is [`AcmeState`] in `layout.rs`; teardown kills both with the lab's
//! cgroup.
//!
//! Must not: print, or know kiln's model (callers hand over [`LabDnsRecord`]s).
//!
//! CNAMEs: challtestsrv answers an A query for a name it holds a CNAME for with the CNAME
//! and the target's A records, and Pebble's validation follows it (checked by a real
//! ACME client, see docs/lab-acme.md), so the records go in as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::error::{LabError, Result, io};
pub use crate::layout::AcmeState;
use crate::layout::{self, ACME_MANAGEMENT_PORT, ACME_PORT, DNS_MANAGEMENT_PORT, DNS_PORT, Roots};
use crate::process::{self, Restart};

/// cgroup units of the two processes: with a '_', never a server's name.
const PEBBLE_UNIT: &str = "acme_pebble";
const DNS_UNIT: &str = "acme_dns";
/// Seconds a lab certificate is valid (7 days, as the proxies' configs expect).
pub const CERTIFICATE_VALIDITY_SECONDS: u64 = 604_800;
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Pebble program: `KILN_LAB_PEBBLE`, else PATH (Debian package `pebble`).
pub fn pebble_binary() -> Option<PathBuf> {
    std::env::var_os("KILN_LAB_PEBBLE")
        .map(PathBuf::from)
        .or_else(|| crate::cmd::which("pebble"))
}

/// The challenge test server (the lab's DNS): `KILN_LAB_CHALLTESTSRV`, else PATH.
pub fn challtestsrv_binary() -> Option<PathBuf> {
    std::env::var_os("KILN_LAB_CHALLTESTSRV")
        .map(PathBuf::from)
        .or_else(|| crate::cmd::which("pebble-challtestsrv"))
}

/// The lab's ACME folder.
pub fn folder(roots: &Roots, lab: &str) -> PathBuf {
    roots.lab_dir(lab).join("acme")
}

/// A DNS record type the lab DNS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LabRecordType {
    A,
    AAAA,
    CNAME,
    CAA,
}

impl fmt::Display for LabRecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabRecordType::A => "A",
            LabRecordType::AAAA => "AAAA",
            LabRecordType::CNAME => "CNAME",
            LabRecordType::CAA => "CAA",
        })
    }
}

/// One answer of the lab DNS. `name` is fully qualified (a trailing dot is optional);
/// `value` an address, a target name, or CAA's `flags tag "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDnsRecord {
    pub name: String,
    pub rtype: LabRecordType,
    pub value: String,
}

/// The PEMs of the listener CA and of Pebble's listener certificate and key.
struct ListenerCerts {
    ca: String,
    cert: String,
    key: String,
}

fn cert_error(e: rcgen::Error) -> LabError {
    LabError::Acme {
        operation: "making the listener certificate".into(),
        target: "Pebble".into(),
        message: e.to_string(),
    }
}

/// A CA of the lab's own and a certificate for `host` (an IP SAN) signed by it.
fn listener_certs(lab: &str, host: IpAddr) -> Result<ListenerCerts> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("kiln lab {lab} ACME listener CA"),
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(cert_error)?)
        .map_err(cert_error)?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("kiln lab {lab} Pebble"));
    leaf.subject_alt_names = vec![SanType::IpAddress(host)];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Python 3.13's default context (VERIFY_X509_STRICT) refuses a leaf without it.
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(cert_error)?;
    Ok(ListenerCerts {
        ca: issuer.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Pebble's config file for a lab whose host side is `host`.
fn pebble_config(host: IpAddr, cert: &Path, key: &Path) -> String {
    let v = serde_json::json!({
        "pebble": {
            "listenAddress": SocketAddr::new(host, ACME_PORT).to_string(),
            "managementListenAddress": SocketAddr::new(host, ACME_MANAGEMENT_PORT).to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": CERTIFICATE_VALIDITY_SECONDS,
        }
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Environment for fast, deterministic runs: no validation sleep, no rejected nonces,
/// authorizations reused.
const PEBBLE_ENV: [(&str, &str); 3] = [
    ("PEBBLE_VA_NOSLEEP", "1"),
    ("PEBBLE_WFE_NONCEREJECT", "0"),
    ("PEBBLE_AUTHZREUSE", "100"),
];

fn pebble_argv(bin: &Path, config: &Path, host: IpAddr) -> Vec<String> {
    vec![
        bin.display().to_string(),
        "-config".into(),
        config.display().to_string(),
        "-dnsserver".into(),
        SocketAddr::new(host, DNS_PORT).to_string(),
    ]
}

fn challtestsrv_argv(bin: &Path, host: IpAddr) -> Vec<String> {
    let mut argv = vec![
        bin.display().to_string(),
        "-dns01".into(),
        SocketAddr::new(host, DNS_PORT).to_string(),
        "-management".into(),
        SocketAddr::new(host, DNS_MANAGEMENT_PORT).to_string(),
    ];
    // No challenge servers of its own, and no default answer for unknown names.
    for flag in [
        "-http01",
        "-https01",
        "-tlsalpn01",
        "-defaultIPv4",
        "-defaultIPv6",
    ] {
        argv.push(flag.into());
        argv.push(String::new());
    }
    argv
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    // Mode before content (the listener key).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io("writing", path))?;
    f.write_all(text.as_bytes()).map_err(io("writing", path))
}

/// Waits until `sock` accepts TCP connections; fails early when `child` exits.
fn wait_port(child: &mut Child, argv: &[String], sock: SocketAddr, log: &Path) -> Result<()> {
    process::wait_listening(child, argv, sock, log, START_TIMEOUT, &argv[0])
}

/// Starts challtestsrv and Pebble for the lab on `host` (its host-side address), after
/// writing the listener CA, certificate and Pebble's config into the lab's ACME folder;
/// returns once both listen and Pebble's issuing root is fetched.
pub fn start(roots: &Roots, lab: &str, host: IpAddr) -> Result<AcmeState> {
    let missing: Vec<String> = [
        (
            pebble_binary(),
            "pebble (Debian package pebble): the lab's ACME server",
        ),
        (
            challtestsrv_binary(),
            "pebble-challtestsrv (Debian package pebble): the lab's DNS",
        ),
    ]
    .into_iter()
    .filter(|(b, _)| b.is_none())
    .map(|(_, what)| what.to_string())
    .collect();
    let (Some(pebble), Some(dns_bin)) = (pebble_binary(), challtestsrv_binary()) else {
        return Err(LabError::MissingPrerequisites {
            missing,
            hint: "apt-get install pebble (or run .ci/install-lab.sh), or set KILN_LAB_PEBBLE and KILN_LAB_CHALLTESTSRV".into(),
        });
    };
    let dir = folder(roots, lab);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let certs = listener_certs(lab, host)?;
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("listener.pem"),
        dir.join("listener-key.pem"),
    );
    write_file(&key, &certs.key, 0o600)?;
    write_file(&cert, &certs.cert, 0o644)?;
    write_file(&ca, &certs.ca, 0o644)?;
    let config = dir.join("pebble-config.json");
    write_file(&config, &pebble_config(host, &cert, &key), 0o644)?;

    let dns = SocketAddr::new(host, DNS_PORT);
    let dns_management = SocketAddr::new(host, DNS_MANAGEMENT_PORT);
    let dns_log = dir.join("dns.log");
    let argv = challtestsrv_argv(&dns_bin, host);
    let mut child = process::spawn_in_cgroups(
        &layout::cgroup_dirs(lab, DNS_UNIT),
        &argv,
        &[],
        &dns_log,
        Restart::Never,
    )?;
    wait_port(&mut child, &argv, dns_management, &dns_log)?;
    wait_port(&mut child, &argv, dns, &dns_log)?;
    // The launcher is in the lab's cgroup; teardown kills it.
    drop(child);

    let log = dir.join("pebble.log");
    let argv = pebble_argv(&pebble, &config, host);
    let mut child = process::spawn_in_cgroups(
        &layout::cgroup_dirs(lab, PEBBLE_UNIT),
        &argv,
        &PEBBLE_ENV,
        &log,
        Restart::Never,
    )?;
    let management = SocketAddr::new(host, ACME_MANAGEMENT_PORT);
    wait_port(&mut child, &argv, SocketAddr::new(host, ACME_PORT), &log)?;
    wait_port(&mut child, &argv, management, &log)?;
    drop(child);

    let state = AcmeState {
        directory: format!("https://{}/dir", SocketAddr::new(host, ACME_PORT)),
        ca_root: ca,
        issuing_root: dir.join("issuing-root.pem"),
        management: format!("https://{management}"),
        dns,
        dns_management: format!("http://{dns_management}"),
        folder: dir,
    };
    // Verify the effect: the directory answers over TLS trusting the listener CA.
    let directory: serde_json::Value = serde_json::from_str(&get(&state, &state.directory)?)
        .map_err(|e| LabError::Acme {
            operation: "reading the directory".into(),
            target: state.directory.clone(),
            message: e.to_string(),
        })?;
    if directory.get("newOrder").is_none() {
        return Err(LabError::Acme {
            operation: "reading the directory".into(),
            target: state.directory.clone(),
            message: format!("no newOrder in {directory}"),
        });
    }
    issuing_root(&state)?;
    Ok(state)
}

fn http_error(operation: &str, target: &str) -> impl FnOnce(ureq::Error) -> LabError {
    let (operation, target) = (operation.to_string(), target.to_string());
    move |e| LabError::Acme {
        operation,
        target,
        message: e.to_string(),
    }
}

/// An HTTPS agent trusting only the lab's listener CA.
fn tls_agent(state: &AcmeState) -> Result<ureq::Agent> {
    let pem = std::fs::read(&state.ca_root).map_err(io("reading", &state.ca_root))?;
    let cert = ureq::tls::Certificate::from_pem(&pem).map_err(|e| LabError::Acme {
        operation: "reading the listener CA".into(),
        target: state.ca_root.display().to_string(),
        message: e.to_string(),
    })?;
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into())
}

/// GET `url` from Pebble, trusting the listener CA.
fn get(state: &AcmeState, url: &str) -> Result<String> {
    tls_agent(state)?
        .get(url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .map_err(http_error("GET", url))
}

/// The PEM of Pebble's current issuing root (`GET <management>/roots/0`; Pebble makes a new
/// one at every start), also written to [`AcmeState::issuing_root`] so that `curl --cacert`
/// and tests can trust the certificates Pebble issues.
pub fn issuing_root(state: &AcmeState) -> Result<String> {
    let url = format!("{}/roots/0", state.management);
    let pem = get(state, &url)?;
    if !pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
        return Err(LabError::Acme {
            operation: "GET".into(),
            target: url,
            message: format!("not a PEM certificate: {:.200}", pem),
        });
    }
    write_file(&state.issuing_root, &pem, 0o644)?;
    Ok(pem)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A CAA value `flags tag "value"` as challtestsrv takes it.
fn caa_policy(value: &str) -> Option<serde_json::Value> {
    let mut parts = value.trim().splitn(3, ' ');
    let flags: u8 = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    let v = parts.next()?.trim();
    let v = v.strip_prefix('"')?.strip_suffix('"')?;
    if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(serde_json::json!({ "flags": flags, "tag": tag, "value": v }))
}

/// challtestsrv calls that set `records`, after checking every one. Pure.
fn record_calls(records: &[LabDnsRecord]) -> Result<Vec<(&'static str, serde_json::Value)>> {
    let bad = |r: &LabDnsRecord, why: &str| LabError::Acme {
        operation: "setting DNS records".into(),
        target: format!("{} {} {}", r.name, r.rtype, r.value),
        message: why.into(),
    };
    let mut a: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut aaaa: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut caa: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut cname: BTreeMap<String, String> = BTreeMap::new();
    for r in records {
        let name = r.name.trim_end_matches('.');
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad(r, "the name must be a domain name"));
        }
        let name = fqdn(name);
        match r.rtype {
            LabRecordType::A => {
                let ip: Ipv4Addr = r
                    .value
                    .parse()
                    .map_err(|_| bad(r, "an A record's value must be an IPv4 address"))?;
                a.entry(name).or_default().push(ip.to_string());
            }
            LabRecordType::AAAA => {
                let ip: Ipv6Addr = r
                    .value
                    .parse()
                    .map_err(|_| bad(r, "an AAAA record's value must be an IPv6 address"))?;
                aaaa.entry(name).or_default().push(ip.to_string());
            }
            LabRecordType::CNAME => {
                let target = r.value.trim_end_matches('.');
                if target.is_empty() || target.contains(char::is_whitespace) {
                    return Err(bad(r, "a CNAME's value must be a domain name"));
                }
                if cname.insert(name, fqdn(target)).is_some() {
                    return Err(bad(r, "a name has at most one CNAME"));
                }
            }
            LabRecordType::CAA => {
                let policy = caa_policy(&r.value)
                    .ok_or_else(|| bad(r, "a CAA value is `flags tag \"value\"`"))?;
                caa.entry(name).or_default().push(policy);
            }
        }
    }
    let mut calls = Vec::new();
    for (host, addresses) in a {
        calls.push((
            "/add-a",
            serde_json::json!({"host": host, "addresses": addresses}),
        ));
    }
    for (host, addresses) in aaaa {
        calls.push((
            "/add-aaaa",
            serde_json::json!({"host": host, "addresses": addresses}),
        ));
    }
    for (host, target) in cname {
        calls.push((
            "/set-cname",
            serde_json::json!({"host": host, "target": target}),
        ));
    }
    for (host, policies) in caa {
        calls.push((
            "/add-caa",
            serde_json::json!({"host": host, "policies": policies}),
        ));
    }
    Ok(calls)
}

/// The file holding the names the lab DNS answers for (to clear them on the next set).
fn names_file(state: &AcmeState) -> PathBuf {
    state.folder.join("dns-names.json")
}

/// Replaces the lab DNS's answers with `records` (every name set before is cleared first).
/// Nothing is changed when a record is malformed (the error names it).
pub fn set_records(state: &AcmeState, records: &[LabDnsRecord]) -> Result<()> {
    let calls = record_calls(records)?;
    let path = names_file(state);
    let before: Vec<String> = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| LabError::Acme {
            operation: "reading the names set in the lab DNS".into(),
            target: path.display().to_string(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let now: BTreeSet<String> = calls
        .iter()
        .filter_map(|(_, b)| b["host"].as_str().map(str::to_string))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let post = |endpoint: &str, body: &serde_json::Value| -> Result<()> {
        let url = format!("{}{endpoint}", state.dns_management);
        agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .map(|_| ())
            .map_err(http_error("POST", &url))
    };
    let all: BTreeSet<&String> = before.iter().chain(now.iter()).collect();
    for host in all {
        let body = serde_json::json!({ "host": host });
        for endpoint in ["/clear-a", "/clear-aaaa", "/clear-cname", "/clear-caa"] {
            post(endpoint, &body)?;
        }
    }
    // Recorded before adding: a failure half-way still lets the next set clear them.
    let names: Vec<&String> = now.iter().collect();
    write_file(
        &path,
        &serde_json::to_string(&names).unwrap_or_default(),
        0o644,
    )?;
    for (endpoint, body) in &calls {
        post(endpoint, body)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: LabRecordType, value: &str) -> LabDnsRecord {
        LabDnsRecord {
            name: name.into(),
            rtype,
            value: value.into(),
        }
    }

    #[test]
    fn records_become_challtestsrv_calls_with_fully_qualified_names() {
        let calls = record_calls(&[
            rec("x.test", LabRecordType::A, "10.77.1.11"),
            rec("x.test.", LabRecordType::A, "10.77.1.12"),
            rec("chat.x.test", LabRecordType::CNAME, "x.test"),
            rec("x.test", LabRecordType::AAAA, "fd00::11"),
            rec("x.test", LabRecordType::CAA, "0 issue \";\""),
        ])
        .unwrap();
        let rendered: Vec<String> = calls.iter().map(|(e, b)| format!("{e} {b}")).collect();
        assert_eq!(
            rendered,
            [
                r#"/add-a {"addresses":["10.77.1.11","10.77.1.12"],"host":"x.test."}"#,
                r#"/add-aaaa {"addresses":["fd00::11"],"host":"x.test."}"#,
                r#"/set-cname {"host":"chat.x.test.","target":"x.test."}"#,
                r#"/add-caa {"host":"x.test.","policies":[{"flags":0,"tag":"issue","value":";"}]}"#,
            ]
        );
    }

    #[test]
    fn a_malformed_record_is_refused_naming_it() {
        for (r, why) in [
            (rec("x.test", LabRecordType::A, "fd00::1"), "IPv4"),
            (rec("x.test", LabRecordType::AAAA, "10.0.0.1"), "IPv6"),
            (rec("", LabRecordType::A, "10.0.0.1"), "domain name"),
            (rec("x.test", LabRecordType::CNAME, "a b"), "domain name"),
            (
                rec("x.test", LabRecordType::CAA, "issue pebble"),
                "flags tag",
            ),
        ] {
            let err = record_calls(std::slice::from_ref(&r))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
            assert!(err.contains(&format!("{} {}", r.rtype, r.value)), "{err}");
        }
        let two = [
            rec("a.test", LabRecordType::CNAME, "b.test"),
            rec("a.test", LabRecordType::CNAME, "c.test"),
        ];
        assert!(record_calls(&two).is_err());
    }

    #[test]
    fn pebble_listens_on_the_host_side_only() {
        let host: IpAddr = "10.77.4.1".parse().unwrap();
        let c: serde_json::Value =
            serde_json::from_str(&pebble_config(host, Path::new("/c"), Path::new("/k"))).unwrap();
        assert_eq!(c["pebble"]["listenAddress"], "10.77.4.1:14000");
        assert_eq!(c["pebble"]["managementListenAddress"], "10.77.4.1:15000");
        assert_eq!(c["pebble"]["certificateValidityPeriod"], 604_800);
        assert_eq!(c["pebble"]["httpPort"], 80);
        let argv = pebble_argv(Path::new("/usr/bin/pebble"), Path::new("/p.json"), host);
        assert_eq!(argv[3..], ["-dnsserver", "10.77.4.1:8053"]);
        let argv = challtestsrv_argv(Path::new("/usr/bin/pebble-challtestsrv"), host);
        assert_eq!(
            argv[1..5],
            ["-dns01", "10.77.4.1:8053", "-management", "10.77.4.1:8055"]
        );
        assert_eq!(argv.len(), 15, "{argv:?}");
    }

    #[test]
    fn listener_certificate_is_for_the_host_side_address_and_signed_by_the_ca() {
        let c = listener_certs("t", "10.77.4.1".parse().unwrap()).unwrap();
        assert!(c.key.contains("PRIVATE KEY"));
        // Read back by an independent tool.
        let dir = std::env::temp_dir().join(format!("kiln-lab-acme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &c.ca).unwrap();
        std::fs::write(dir.join("cert.pem"), &c.cert).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        };
        let san = openssl(&[
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ]);
        assert!(san.contains("IP Address:10.77.4.1"), "{san}");
        let aki = openssl(&[
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-ext",
            "authorityKeyIdentifier",
        ]);
        assert!(aki.contains("Authority Key Identifier"), "{aki}");
        let verify = openssl(&[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.pem",
            "cert.pem",
        ]);
        assert!(verify.contains("cert.pem: OK"), "{verify}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
