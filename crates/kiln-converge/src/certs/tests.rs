use std::path::Path;

use base64::Engine as _;

use super::*;
use crate::system::SystemRunner;

/// A certificate for `names` issued by a CA called `issuer`, expiring in `year`.
fn certificate(issuer: &str, names: &[&str], year: i32) -> String {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, issuer);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    leaf.not_after = rcgen::date_time_ymd(year, 1, 1);
    leaf.signed_by(&KeyPair::generate().unwrap(), &ca)
        .unwrap()
        .pem()
}

fn target(root: &Path) -> Target {
    Target {
        root: root.to_owned(),
        runner: Box::new(SystemRunner),
    }
}

fn watch(store: CertificateStore, ca: CaKind, names: &[&str]) -> Certificates {
    Certificates {
        container: "kiln-proxy".into(),
        store,
        ca,
        directory: None,
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

fn caddy_store() -> CertificateStore {
    CertificateStore::Caddy {
        dir: "/data/caddy/certificates".into(),
    }
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn caddy_storage_tells_issued_staging_expired_and_missing_names_apart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let base = "/data/caddy/certificates";
    let staging = "acme-staging-v02.api.letsencrypt.org-directory";
    let production = "acme-v02.api.letsencrypt.org-directory";
    put(
        root,
        &format!("{base}/{staging}/a.example/a.example.crt"),
        &certificate("(STAGING) Ersatz Edamame E1", &["a.example"], 2099),
    );
    // b: both CAs issued it; the production one is reported.
    put(
        root,
        &format!("{base}/{staging}/b.example/b.example.crt"),
        &certificate("(STAGING) Ersatz Edamame E1", &["b.example"], 2099),
    );
    put(
        root,
        &format!("{base}/{production}/b.example/b.example.crt"),
        &certificate("R11", &["b.example"], 2098),
    );
    put(
        root,
        &format!("{base}/local/old.example/old.example.crt"),
        &certificate("Caddy Local Authority", &["old.example"], 2020),
    );
    // Not a certificate: ignored, not fatal.
    put(root, &format!("{base}/local/junk/junk.crt"), "garbage");
    let w = watch(
        caddy_store(),
        CaKind::Letsencrypt,
        &["a.example", "b.example", "c.example", "old.example"],
    );
    let states = observe(&mut target(root), &w);
    let by = |n: &str| states.iter().find(|s| s.name == n).unwrap();
    let t = now();

    let a = by("a.example");
    assert!(a.staging_seen && a.valid_at(t));
    assert_eq!(
        a.issued.as_ref().unwrap().issuer,
        "(STAGING) Ersatz Edamame E1"
    );
    assert!(a.issued.as_ref().unwrap().staging);

    let b = by("b.example");
    assert!(b.staging_seen && b.valid_at(t));
    let issued = b.issued.as_ref().unwrap();
    assert_eq!((issued.issuer.as_str(), issued.staging), ("R11", false));
    assert_eq!(issued.not_after, 4_039_372_800, "2098-01-01T00:00:00Z");

    assert_eq!(by("c.example").issued, None);
    let old = by("old.example");
    assert!(old.issued.is_some() && !old.valid_at(t), "{old:?}");

    // Only c lacks a staging certificate and a valid production one... and old, whose
    // certificate came from another CA.
    let warning = staging_warning(&w, &states).unwrap();
    assert!(
        warning.contains("2 name(s) that its staging CA never issued: c.example, old.example"),
        "{warning}"
    );
    // Other CAs are not rate-limited like Let's Encrypt's production one.
    for ca in [CaKind::LetsencryptStaging, CaKind::Internal, CaKind::Custom] {
        assert_eq!(
            staging_warning(&watch(caddy_store(), ca, &[]), &states),
            None
        );
    }
}

#[test]
fn no_warning_once_every_name_is_proven() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "/data/caddy/certificates/acme-staging-v02.api.letsencrypt.org-directory/a.example/a.example.crt",
        &certificate("(STAGING) Pseudo Plum E5", &["a.example"], 2099),
    );
    let w = watch(caddy_store(), CaKind::Letsencrypt, &["a.example"]);
    let states = observe(&mut target(dir.path()), &w);
    assert_eq!(staging_warning(&w, &states), None);
}

#[test]
fn traefik_acme_json_certificates_are_read_with_their_sans() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = |pem: String| base64::engine::general_purpose::STANDARD.encode(pem);
    let json = serde_json::json!({
        "kiln": {
            "Account": { "Email": "ops@example.org" },
            "Certificates": [
                {
                    "domain": { "main": "example.org", "sans": ["www.example.org"] },
                    "certificate": b64(certificate("Pebble Intermediate CA 0a1b2c", &["example.org", "www.example.org"], 2099)),
                    "key": "",
                    "Store": "default"
                }
            ]
        },
        "other": { "Certificates": null }
    });
    put(dir.path(), "/data/acme.json", &json.to_string());
    let w = watch(
        CertificateStore::Traefik {
            acme_json: "/data/acme.json".into(),
        },
        CaKind::Custom,
        &["example.org", "www.example.org", "pad.example.org"],
    );
    let states = observe(&mut target(dir.path()), &w);
    let issuers: Vec<Option<&str>> = states
        .iter()
        .map(|s| s.issued.as_ref().map(|i| i.issuer.as_str()))
        .collect();
    assert_eq!(
        issuers,
        [
            Some("Pebble Intermediate CA 0a1b2c"),
            Some("Pebble Intermediate CA 0a1b2c"),
            None
        ]
    );
}

#[test]
fn settle_returns_at_once_when_nothing_is_missing_and_after_the_wait_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "/data/caddy/certificates/local/a.example/a.example.crt",
        &certificate(
            "Caddy Local Authority - ECC Intermediate",
            &["a.example"],
            2099,
        ),
    );
    let mut t = target(dir.path());
    let w = watch(caddy_store(), CaKind::Internal, &["a.example"]);
    let (states, waited) = settle(&mut t, &w, SystemTime::now(), Duration::from_secs(30));
    assert!(states[0].valid_at(now()) && waited < Duration::from_secs(1));
    let w = watch(caddy_store(), CaKind::Internal, &["a.example", "b.example"]);
    let (states, waited) = settle(&mut t, &w, SystemTime::now(), Duration::from_millis(600));
    assert!(states[1].issued.is_none() && states[1].error.is_none());
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
}

#[test]
fn the_proxys_last_error_line_about_a_name_is_kept_in_one_line() {
    // Lines as Caddy 2 and Traefik 3 print them.
    let log = r#"{"level":"info","ts":1764700000.1,"logger":"tls.obtain","msg":"acquiring lock","identifier":"pad.lab.example"}
{"level":"error","ts":1764700001.2,"logger":"tls.obtain","msg":"could not get certificate from issuer","identifier":"pad.lab.example","issuer":"10.77.0.1-14001-dir","error":"registering account [mailto:ops@example.org] with server: provisioning client: performing request: Get \"https://10.77.0.1:14001/dir\": dial tcp 10.77.0.1:14001: connect: connection refused"}
{"level":"info","ts":1764700002.0,"msg":"served","identifier":"www.lab.example"}
2026-12-02T19:00:00Z ERR Unable to obtain ACME certificate for domains error="unable to generate a certificate for the domains [matrix.lab.example]: error: one or more domains had a problem" ACME CA=https://10.77.0.1:14000/dir acmeCA=https://10.77.0.1:14000/dir domains=["matrix.lab.example"] providerName=kiln.acme routerName=matrix@file rule=Host(`matrix.lab.example`)
"#;
    let mut states: Vec<CertificateState> =
        ["pad.lab.example", "matrix.lab.example", "www.lab.example"]
            .iter()
            .map(|n| CertificateState {
                name: n.to_string(),
                issued: None,
                staging_seen: false,
                error: None,
            })
            .collect();
    attach_errors(&mut states, log, now());
    assert_eq!(
        states[0].error.as_deref(),
        Some(
            "could not get certificate from issuer: registering account [mailto:ops@example.org] with server: provisioning client: performing request: Get \"https://10.77.0.1:14001/dir\": dial tcp 10.77.0.1:14001: connect: connection refused"
        )
    );
    let traefik = states[1].error.as_deref().unwrap();
    assert!(
        traefik.starts_with("2026-12-02T19:00:00Z ERR Unable to obtain ACME certificate")
            && traefik.contains("matrix.lab.example"),
        "{traefik}"
    );
    // An order a reload stopped is not the name's problem.
    let canceled = r#"{"level":"error","ts":1764700003.0,"logger":"tls.obtain","msg":"job failed","error":"pad.lab.example: obtaining certificate: context canceled"}"#;
    let mut again = states.clone();
    attach_errors(&mut again, &format!("{log}{canceled}\n"), now());
    assert_eq!(again[0].error, states[0].error);
    // An info line about a name is not an error.
    assert_eq!(states[2].error, None);
    // Long lines are cut.
    let long = format!(
        "{{\"level\":\"error\",\"msg\":\"x\",\"error\":\"{}\",\"identifier\":\"a\"}}",
        "e".repeat(1000)
    );
    assert_eq!(error_text(&long).chars().count(), MAX_ERROR + 1);
}
