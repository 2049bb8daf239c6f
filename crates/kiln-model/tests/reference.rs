//! The bundled reference infrastructure (examples/reference/kiln.toml) loads, and
//! resolves to what the reference documents describe.

use std::path::Path;

use kiln_model::{AcmeCa, HostAddress, OsFamily};
use kiln_secrets::SecretRule;

fn reference() -> kiln_model::Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference/kiln.toml");
    match kiln_model::load(&path) {
        Ok(m) => m,
        Err(d) => panic!("reference example invalid:\n{}", d.render(100, false)),
    }
}

#[test]
fn environments_keep_file_order_and_their_settings() {
    let m = reference();
    let names: Vec<_> = m.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["production", "staging", "lab"]);
    let prod = m.environment("production").unwrap();
    assert_eq!(prod.domain, "ergaster.org");
    assert_eq!(prod.acme_ca, AcmeCa::Letsencrypt);
    assert_eq!(prod.apex_host.as_deref(), Some("services"));
    assert!(prod.backups_enabled);
    let staging = m.environment("staging").unwrap();
    assert_eq!(staging.acme_ca, AcmeCa::LetsencryptStaging);
    assert!(!staging.backups_enabled, "staging sets backups = false");
    // The lab's Pebble (`kiln lab up` records its root beside the directory).
    assert_eq!(
        m.environment("lab").unwrap().acme_ca,
        AcmeCa::Custom(kiln_model::CustomAcme {
            directory: "https://10.77.0.1:14000/dir".into(),
            ca_root: None,
        })
    );
    assert!(m.environment("nope").is_none());
}

#[test]
fn each_environment_backs_up_to_its_repository_the_lab_to_its_own_s3() {
    let m = reference();
    let b = m.backups.as_ref().unwrap();
    let prod = b.repository_for(m.environment("production").unwrap());
    assert_eq!(prod.endpoint, "https://s3.fr-par.scw.cloud");
    assert_eq!(prod.region.as_deref(), Some("fr-par"));
    assert_eq!(prod.bucket, "ergaster-backups");
    assert_eq!(prod.prefix_for("production"), "production");
    // The lab's `backup_repository` replaces endpoint and bucket, keeps the rest.
    let lab = b.repository_for(m.environment("lab").unwrap());
    assert_eq!(lab.endpoint, "http://10.77.0.1:9000");
    assert_eq!(lab.bucket, "kiln-backups");
    assert_eq!(lab.region.as_deref(), Some("fr-par"));
    assert_eq!(lab.prefix_for("lab"), "lab");
}

#[test]
fn hosts_are_typed() {
    let m = reference();
    let prod = m.environment("production").unwrap();
    let services = prod.host("services").unwrap();
    assert_eq!(
        services.address,
        HostAddress::Ip("203.0.113.10".parse().unwrap())
    );
    assert_eq!(services.address6, Some("2001:db8:10::1".parse().unwrap()));
    assert_eq!(services.ssh_port, 22);
    assert_eq!(services.os, Some(OsFamily::Rhel9));
    assert_eq!(services.host_keys.len(), 1);
    let fps = services.host_key_fingerprints();
    // As printed by `ssh-keygen -lf` for that key line.
    assert_eq!(
        fps,
        vec![(
            "ssh-ed25519".to_string(),
            "SHA256:Qc7EggqBggRLGeCuG7adwg84SvzKzLw7DyySS94vH84".to_string()
        )]
    );
    assert_eq!(
        m.environment("lab")
            .unwrap()
            .host("monitoring")
            .unwrap()
            .admin_user,
        "kiln"
    );
}

#[test]
fn services_resolve_to_the_reference_urls() {
    let m = reference();
    let prod = m.environment("production").unwrap();
    let urls: Vec<_> = m
        .services
        .iter()
        .filter_map(|s| prod.service_url(s).map(|u| (s.name.as_str(), u)))
        .collect();
    assert_eq!(
        urls,
        [
            ("synapse", "https://matrix.ergaster.org".to_string()),
            ("nextcloud", "https://cloud.ergaster.org".to_string()),
            ("hedgedoc", "https://hdoc.ergaster.org".to_string()),
            ("monitoring", "https://grafana.ergaster.org".to_string()),
        ]
    );
    let staging = m.environment("staging").unwrap();
    assert_eq!(
        staging
            .service_url(m.service("nextcloud").unwrap())
            .unwrap(),
        "https://cloud.staging.ergaster.org"
    );
    assert!(m.service("postgres").unwrap().subdomain.is_none());
    // The server name defaults to the environment's domain (set by the services feature).
    assert_eq!(
        m.service("synapse").unwrap().option_str("server_name"),
        None
    );
    assert_eq!(
        m.services_on("monitoring")
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["monitoring"]
    );
}

#[test]
fn required_secrets_follow_the_catalog_backups_and_hosts() {
    let m = reference();
    let all = m.required_secrets();
    let rule = |name: &str| all.iter().find(|s| s.name == name).map(|s| s.rule.clone());
    assert_eq!(
        rule("synapse_signing_key"),
        Some(SecretRule::Ed25519SigningKey)
    );
    assert!(matches!(
        rule("synapse_form_secret"),
        Some(SecretRule::Random { length: 50, .. })
    ));
    assert!(matches!(
        rule("hedgedoc_session_secret"),
        Some(SecretRule::Random { length: 64, .. })
    ));
    assert!(matches!(
        rule("monitoring_grafana_admin_password"),
        Some(SecretRule::PasswordWithHash { .. })
    ));
    assert!(rule("synapse_db_password").is_some());
    assert!(rule("nextcloud_db_password").is_some());
    assert!(
        rule("nextcloud_db_root_password").is_none(),
        "one PostgreSQL, no MariaDB"
    );
    for cred in ["backup_server", "backup_admin", "backup_readonly"] {
        for half in ["access_key", "secret_key"] {
            assert_eq!(
                rule(&format!("{cred}_{half}")),
                Some(SecretRule::Provided),
                "{cred}_{half}"
            );
        }
    }
    assert_eq!(
        rule("wireguard_services"),
        Some(SecretRule::WireguardKeyPair)
    );
    for s in &all {
        assert!(
            s.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            s.name
        );
    }
    let mut names: Vec<_> = all.iter().map(|s| s.name.clone()).collect();
    names.dedup();
    assert_eq!(names.len(), all.len(), "each secret once");
    // Staging has backups disabled: no backup credentials in its vault.
    let staging = m.required_secrets_for("staging").unwrap();
    assert!(!staging.iter().any(|s| s.name.starts_with("backup_")));
    assert!(
        staging
            .iter()
            .any(|s| s.name == "synapse_macaroon_secret_key")
    );
    assert!(
        m.required_secrets_for("production")
            .unwrap()
            .iter()
            .any(|s| s.name == "backup_repository_password")
    );
}

#[test]
fn roles_backups_and_monitoring_are_typed() {
    let m = reference();
    let services = &m.roles["services"];
    assert_eq!(services.packages, ["htop", "rsync"]);
    assert_eq!(services.files[0].mode, 0o644);
    assert_eq!(services.files[0].owner, "root");
    assert!(m.base_dir().join("templates/motd.j2").is_file());
    let b = m.backups.as_ref().unwrap();
    assert_eq!(b.object_lock_days, Some(30));
    assert_eq!(b.repository.prefix_for("production"), "production");
    assert_eq!(b.retention.daily, 7);
    let mon = m.monitoring.as_ref().unwrap();
    assert_eq!(mon.host, "monitoring");
    assert!(mon.alert_email.is_some() && mon.alert_webhook.is_some());
}

#[test]
fn find_config_walks_up_from_a_subfolder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference/templates");
    let found = kiln_model::find_config(&dir).unwrap();
    assert!(
        found.ends_with("examples/reference/kiln.toml"),
        "{}",
        found.display()
    );
}

#[test]
fn every_host_gets_the_hardened_base_and_each_environment_its_mesh() {
    use kiln_model::{Reboot, RebootWindow};
    let m = reference();
    assert!(m.warnings.is_empty(), "{:#?}", m.warnings);
    let ranges: Vec<_> = m
        .environments
        .iter()
        .map(|e| e.wireguard_range.map(|r| r.to_string()))
        .collect();
    assert_eq!(
        ranges,
        [
            Some("10.101.0.0/24".to_string()),
            Some("10.102.0.0/24".to_string()),
            Some("10.103.0.0/24".to_string())
        ]
    );
    let lab = m.environment("lab").unwrap();
    assert_eq!(
        lab.wireguard_address("monitoring"),
        Some("10.103.0.1".parse().unwrap())
    );
    assert_eq!(
        lab.wireguard_address("services"),
        Some("10.103.0.2".parse().unwrap())
    );
    for env in &m.environments {
        for host in env.hosts.values() {
            let b = &host.base;
            assert!(b.sshd.is_some() && b.firewall.is_some() && b.time && b.node_exporter);
            let updates = b.updates.as_ref().unwrap();
            assert_eq!(updates.reboot, Reboot::WhenNeeded);
            assert_eq!(updates.reboot_window, RebootWindow::parse("04:00-05:00"));
            assert_eq!(
                b.wireguard.map(|w| (w.port, w.keepalive)),
                Some((51820, 25))
            );
            assert_eq!(b.rollback_seconds, 60);
        }
    }
}
