//! DNS records derived from the model: the reference docs' table for production, CAA per
//! CA, and a zone-file rendering that BIND's own checker accepts.

use std::path::Path;
use std::process::Command;

use kiln_model::dns::{self, RecordType};

fn load(rel: &str) -> kiln_model::Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)))
}

fn triples(model: &kiln_model::Model, env: &str) -> Vec<(String, &'static str, String)> {
    let env = model.environment(env).unwrap();
    dns::records(model, env)
        .into_iter()
        .map(|r| (r.name, r.rtype.as_str(), r.value))
        .collect()
}

fn t(name: &str, rtype: &'static str, value: &str) -> (String, &'static str, String) {
    (name.to_string(), rtype, value.to_string())
}

#[test]
fn production_has_the_reference_docs_table_plus_hosts_grafana_and_caa() {
    let m = load("examples/reference/kiln.toml");
    assert_eq!(
        triples(&m, "production"),
        vec![
            // The reference docs' table (get-ready-to-deploy.md): apex A/AAAA, CNAMEs to it.
            t("ergaster.org", "A", "203.0.113.10"),
            t("ergaster.org", "AAAA", "2001:db8:10::1"),
            // Hosts by role (BTreeMap order).
            t("monitoring.ergaster.org", "A", "198.51.100.20"),
            t("services.ergaster.org", "A", "203.0.113.10"),
            t("services.ergaster.org", "AAAA", "2001:db8:10::1"),
            t("matrix.ergaster.org", "CNAME", "ergaster.org"),
            t("cloud.ergaster.org", "CNAME", "ergaster.org"),
            t("hdoc.ergaster.org", "CNAME", "ergaster.org"),
            // Grafana is on the monitoring host, not the apex host.
            t("grafana.ergaster.org", "CNAME", "monitoring.ergaster.org"),
            t("ergaster.org", "CAA", "0 issue \"letsencrypt.org\""),
            t("ergaster.org", "CAA", "0 issuewild \";\""),
            t(
                "ergaster.org",
                "CAA",
                "0 iodef \"mailto:thib@ergaster.org\""
            ),
        ]
    );
}

#[test]
fn staging_lives_under_its_subdomain_and_only_the_internal_ca_forbids_public_cas() {
    let m = load("examples/reference/kiln.toml");
    let staging = triples(&m, "staging");
    assert!(staging.contains(&t("staging.ergaster.org", "A", "203.0.113.50")));
    assert!(staging.contains(&t(
        "cloud.staging.ergaster.org",
        "CNAME",
        "staging.ergaster.org"
    )));
    assert!(staging.contains(&t(
        "staging.ergaster.org",
        "CAA",
        "0 issue \"letsencrypt.org\""
    )));
    assert!(
        staging
            .iter()
            .all(|(n, _, _)| n.ends_with("staging.ergaster.org"))
    );
    // The lab's Pebble is a custom ACME directory: kiln cannot know which CAA identity it
    // checks, so no CAA record at all.
    let lab = triples(&m, "lab");
    assert!(lab.iter().all(|r| r.1 != "CAA"), "{lab:#?}");
    // The proxy's internal CA issues without ACME: no public CA may.
    let demo = load("examples/demo/kiln.toml");
    let env = &demo.environments[0];
    assert_eq!(env.acme_ca, kiln_model::AcmeCa::Internal);
    let caa: Vec<_> = triples(&demo, &env.name)
        .into_iter()
        .filter(|r| r.1 == "CAA")
        .collect();
    assert_eq!(caa, vec![t(&env.domain, "CAA", "0 issue \";\"")]);
}

#[test]
fn hosts_reached_by_name_get_a_cname_and_no_apex_means_no_apex_records() {
    let m = load("tests/config/valid/hostname-address-and-ipv6.toml");
    let recs = triples(&m, "production");
    assert!(
        recs.contains(&t(
            "web.kiln-demo.net",
            "CNAME",
            "web1.hosting-provider.net"
        )),
        "{recs:#?}"
    );
    // A CNAME owns its name: no AAAA beside it.
    assert!(
        !recs
            .iter()
            .any(|(n, ty, _)| n == "web.kiln-demo.net" && *ty == "AAAA")
    );
    let m = load("tests/config/valid/all-services.toml");
    let recs = dns::records(&m, m.environment("production").unwrap());
    assert!(
        recs.iter()
            .filter(|r| r.rtype == RecordType::CNAME)
            .all(|r| r.value == "kiln-demo.net" || r.value == "monitoring.kiln-demo.net")
    );
}

#[test]
fn zone_rendering_is_stable() {
    let m = load("examples/reference/kiln.toml");
    let env = m.environment("production").unwrap();
    insta::assert_snapshot!(dns::render_zone(env, &dns::records(&m, env), 3600));
}

/// Every environment's zone, with an SOA and NS added, passes `named-checkzone`
/// (Debian package bind9-utils). Required on CI; skipped with a notice elsewhere when
/// the tool is missing.
#[test]
fn zones_pass_named_checkzone() {
    let tool = Command::new("named-checkzone").arg("-v").output();
    if tool.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "named-checkzone (bind9-utils) is required on CI"
        );
        eprintln!("SKIPPED: named-checkzone not installed (apt-get install bind9-utils)");
        return;
    }
    let dir = tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec!["examples/reference/kiln.toml".to_string()];
    for e in std::fs::read_dir(root.join("tests/config/valid")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            files.push(format!("tests/config/valid/{name}"));
        }
    }
    for rel in &files {
        let m = load(rel);
        for env in &m.environments {
            let zone = dns::render_zone(env, &dns::records(&m, env), 3600);
            let full = format!(
                "{zone}@ IN SOA ns1.{d}. hostmaster.{d}. 1 7200 3600 1209600 3600\n@ IN NS ns1.{d}.\nns1 IN A 192.0.2.53\n",
                d = env.domain
            );
            let file = dir.join(format!("{}.zone", env.name));
            std::fs::write(&file, &full).unwrap();
            let out = Command::new("named-checkzone")
                .arg("-i")
                .arg("full")
                .arg(&env.domain)
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{rel} {}: named-checkzone rejected the zone:\n{}\n{full}",
                env.name,
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-dns-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fuzz corpus found this: a value longer than std's largest format width (u16::MAX)
/// made the column padding panic. The zone renders, with the whole value.
#[test]
fn a_value_longer_than_any_format_width_renders_whole() {
    let m = load("examples/reference/kiln.toml");
    let env = m.environment("production").unwrap();
    let long = "x".repeat(70_000);
    let records = vec![dns::DnsRecord {
        environment: "production".to_string(),
        name: "ergaster.org".to_string(),
        rtype: RecordType::CAA,
        value: format!("0 iodef \"mailto:{long}@ergaster.org\""),
        purpose: "fuzz".to_string(),
    }];
    let zone = dns::render_zone(env, &records, 3600);
    assert!(zone.contains(&long), "the long value is cut");
}
