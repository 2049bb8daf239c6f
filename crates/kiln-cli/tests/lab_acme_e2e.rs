//! End-to-end: `kiln lab up` with a kiln.toml whose `lab` environment gets certificates from
//! an ACME directory starts the lab's ACME server, records its directory and listener CA as
//! that environment's `acme_ca` (comments kept, the file still loads), loads the
//! environment's DNS records (with the recorded addresses) into the lab DNS, and `kiln lab
//! status` shows the ACME server; `kiln lab down` stops it. Needs root and the lab's
//! prerequisites (.ci/install-lab.sh: pebble, dig).

mod common;
use common::text;

use std::path::Path;
use std::process::{Command, Output};

const KILN_TOML: &str = r#"[project]
name = "acmelab"
domain = "acme.test"
acme_email = "ops@acme.test"

[environments.lab]
domain = "acme.test"
# replaced by `kiln lab up`
acme_ca = { directory = "https://10.77.1.1:14000/dir", ca_root = "/nowhere/ca.pem" }
apex_host = "web"

[environments.lab.hosts.web]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"
"#;

fn kiln(config: &Path, args: &[&str]) -> Output {
    common::kiln()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn dig(dns: std::net::SocketAddr, name: &str) -> String {
    let out = Command::new("dig")
        .args(["+short", "+time=2", "+tries=1"])
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), name, "A"])
        .output()
        .expect("dig runs (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn lab_up_records_the_acme_directory_and_loads_the_dns_records() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let lab = format!("acmeup-{}", std::process::id() % 100_000);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("kiln.toml");
    std::fs::write(&config, KILN_TOML).unwrap();

    let result = std::panic::catch_unwind(|| {
        let up = kiln(&config, &["lab", "up", "--yes", "--lab", &lab]);
        assert!(up.status.success(), "kiln lab up: {}", text(&up));
        let state = kiln_lab::LabState::load(&kiln_lab::Roots::default(), &lab)
            .unwrap()
            .expect("lab state");
        let acme = state
            .acme
            .expect("the ACME server was started and recorded");
        let web = state.servers.iter().find(|s| s.name == "web").unwrap();

        // kiln.toml: the running lab's directory and listener CA, comment kept, loads.
        let toml = std::fs::read_to_string(&config).unwrap();
        assert!(
            toml.contains(&format!(
                "# replaced by `kiln lab up`\nacme_ca = {{ directory = \"{}\", ca_root = \"{}\" }}\n",
                acme.directory,
                acme.ca_root.display()
            )),
            "{toml}"
        );
        let model = kiln_model::load(&config).unwrap_or_else(|d| panic!("{d}"));
        let env = model.environment("lab").unwrap();
        assert_eq!(env.acme_ca.directory_url(), Some(acme.directory.as_str()));
        assert_eq!(env.acme_ca.ca_root(), Some(acme.ca_root.as_path()));
        assert!(acme.ca_root.is_file());

        // The lab DNS answers the environment's records with the recorded address.
        assert_eq!(dig(acme.dns, "web.acme.test"), web.address.to_string());
        assert_eq!(dig(acme.dns, "acme.test"), web.address.to_string());

        // lab up and lab status print the directory, the DNS and the issuing root.
        let out = String::from_utf8_lossy(&up.stdout);
        for line in [
            format!(
                "  acme:         {} (TLS from the CA in {})",
                acme.directory,
                acme.ca_root.display()
            ),
            format!("  dns:          {} (UDP and TCP)", acme.dns),
            format!("  issuing root: {} (", acme.issuing_root.display()),
        ] {
            assert!(out.contains(&line), "{line:?} not in:\n{}", text(&up));
        }
        assert!(
            String::from_utf8_lossy(&up.stderr).contains("and its 2 DNS records in the lab DNS"),
            "{}",
            text(&up)
        );
        let status = kiln(&config, &["lab", "status"]);
        let out = String::from_utf8_lossy(&status.stdout);
        assert!(
            out.contains(&format!("  acme          {} (", acme.directory))
                && out.contains(&format!("  dns           {} ", acme.dns)),
            "{}",
            text(&status)
        );
        assert!(acme.issuing_root.is_file());
    });
    let down = kiln(&config, &["lab", "down", "--lab", &lab]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(down.status.success(), "kiln lab down: {}", text(&down));
    let labs = kiln_lab::status(&kiln_lab::Roots::default()).unwrap();
    assert!(labs.iter().all(|l| l.name != lab), "lab {lab} is left");
}
