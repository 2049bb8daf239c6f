//! What the service recipes expand into, on the reference infrastructure's `lab`
//! environment: rendered quadlets and files (snapshots), owners, stages, health checks,
//! images, the databases command, and that no secret reaches a unit, an argv or a
//! non-sensitive file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_secrets::Secret;

use super::super::{SecretSource, desired_for_host};
use super::*;
use crate::resource::{DesiredState, Stage, UnitKind};

/// Every secret is a recognisable poison value, so a leak is easy to find.
struct Poison;

const POISON: &str = "P0ISON";

impl SecretSource for Poison {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        if name.starts_with("wireguard_") {
            return Ok(Secret::new(crate::desired::test_wireguard_key(POISON)));
        }
        Ok(Secret::new(format!("{POISON}{name}")))
    }
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference")
}

fn load(path: &Path) -> Model {
    kiln_model::load(path).unwrap_or_else(|d| panic!("{}", d.render(100, false)))
}

fn desired(model: &Model, env: &str, role: &str) -> Result<DesiredState, DesiredError> {
    let env = model.environment(env).unwrap();
    desired_for_host(model, env, env.host(role).unwrap(), Arc::new(Poison))
}

fn lab_services() -> DesiredState {
    let m = load(&reference_dir().join("kiln.toml"));
    desired(&m, "lab", "services").unwrap()
}

fn unit<'a>(d: &'a DesiredState, name: &str) -> &'a Unit {
    d.units
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no unit {name}"))
}

fn text(c: &Content) -> &str {
    std::str::from_utf8(c.bytes()).unwrap()
}

fn file<'a>(d: &'a DesiredState, path: &str) -> &'a File {
    d.files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("no file {path}"))
}

#[test]
fn every_reference_service_becomes_a_quadlet_with_its_health_check_and_stage() {
    let d = lab_services();
    let quadlets: Vec<(&str, &str, Stage)> = d
        .units
        .iter()
        .filter_map(|u| match &u.kind {
            UnitKind::Quadlet { file } => Some((u.name.as_str(), file.as_str(), u.stage)),
            UnitKind::File | UnitKind::Packaged => None,
        })
        .collect();
    assert_eq!(
        quadlets,
        [
            ("kiln-network.service", "kiln.network", Stage(0)),
            ("postgres.service", "postgres.container", Stage(0)),
            ("synapse.service", "synapse.container", Stage(1)),
            ("nextcloud.service", "nextcloud.container", Stage(1)),
            ("hedgedoc.service", "hedgedoc.container", Stage(1)),
            // The reverse proxy in front of them (desired::proxy), once they run.
            ("kiln-proxy.service", "kiln-proxy.container", Stage(3)),
        ]
    );
    for (name, timeout) in [
        ("postgres", 120),
        ("synapse", 300),
        ("nextcloud", 600),
        ("hedgedoc", 180),
    ] {
        let u = unit(&d, &format!("{name}.service"));
        assert_eq!(
            u.health,
            Some(Health {
                container: name.into(),
                timeout_s: timeout
            }),
            "{name}"
        );
        let q = text(&u.content);
        assert!(
            q.contains("\nNotify=healthy\n"),
            "{name}: Debian 13 has Podman 5.4\n{q}"
        );
        let health = q.lines().find(|l| l.starts_with("HealthCmd=")).unwrap();
        // Quadlet re-quotes HealthCmd for podman and loses quotes inside it (seen on
        // Podman 5.4): a health command has none.
        assert!(!health.contains(['"', '\'']), "{name}: {health}");
        assert!(!q.contains("\nAutoUpdate="), "{name}: kiln pins versions");
        assert!(q.contains("\nNetwork=kiln.network\n"), "{name}");
    }
    assert!(unit(&d, "kiln-network.service").health.is_none());
    // The applications need their database server, which systemd starts first.
    for app in ["synapse", "nextcloud", "hedgedoc"] {
        let q = text(&unit(&d, &format!("{app}.service")).content);
        assert!(
            q.contains("Requires=postgres.service\nAfter=postgres.service\n"),
            "{app}"
        );
    }
    // Nextcloud's background jobs: a timer after the application, cron mode set once.
    let timer = unit(&d, "nextcloud-cron.timer");
    assert_eq!(timer.stage, Stage(2));
    assert!(text(&timer.content).contains("OnCalendar=*:0/5"));
    let job = unit(&d, "nextcloud-cron.service");
    assert!(!job.started && !job.enabled);
    assert!(text(&job.content).contains(
        "ExecStart=/usr/bin/podman exec -u www-data nextcloud php -f /var/www/html/cron.php"
    ));
    let cron = d
        .commands
        .iter()
        .find(|c| c.name == "nextcloud-background-cron")
        .unwrap();
    assert_eq!(cron.stage, Stage(2));
}

#[test]
fn images_keep_the_upstream_names_and_pinned_tags() {
    let d = lab_services();
    let images: Vec<(&str, Option<&str>)> = d
        .images
        .iter()
        .map(|i| (i.reference.as_str(), i.container.as_deref()))
        .collect();
    assert_eq!(
        images,
        [
            ("docker.io/library/postgres:17", Some("postgres")),
            ("docker.io/matrixdotorg/synapse:v1.162.0", Some("synapse")),
            ("docker.io/library/nextcloud:31", Some("nextcloud")),
            ("quay.io/hedgedoc/hedgedoc:1.10.3", Some("hedgedoc")),
            ("docker.io/library/caddy:2.10", Some("kiln-proxy")),
        ]
    );
    for i in &d.images {
        let q = text(&unit(&d, &format!("{}.service", i.service.as_deref().unwrap())).content);
        assert!(q.contains(&format!("\nImage={}\n", i.reference)), "{q}");
    }
}

#[test]
fn data_directories_are_owned_by_the_users_the_images_run_as() {
    let d = lab_services();
    let owner = |p: &str| {
        let dir = d
            .directories
            .iter()
            .find(|x| x.path == Path::new(p))
            .unwrap_or_else(|| panic!("no directory {p}"));
        (dir.owner.as_str(), dir.group.as_str(), dir.mode)
    };
    assert_eq!(owner("/srv/kiln/postgres/data"), ("999", "999", 0o700));
    assert_eq!(owner("/srv/kiln/synapse/data"), ("991", "991", 0o750));
    assert_eq!(
        owner("/srv/kiln/hedgedoc/uploads"),
        ("10000", "10000", 0o750)
    );
    assert_eq!(owner("/srv/kiln/nextcloud/html"), ("33", "33", 0o750));
    assert_eq!(owner("/srv/kiln/nextcloud/data"), ("33", "33", 0o750));
    assert_eq!(owner("/srv/kiln"), ("root", "root", 0o755));
}

#[test]
fn no_secret_reaches_a_unit_an_argv_or_a_plain_file() {
    let d = lab_services();
    for u in &d.units {
        assert!(
            !text(&u.content).contains(POISON),
            "unit {} holds a secret",
            u.name
        );
        assert!(!u.sensitive, "unit {}", u.name);
    }
    for c in &d.commands {
        assert!(!c.run.contains(POISON), "command {}", c.name);
        assert!(
            !c.unless.as_deref().unwrap_or("").contains(POISON),
            "guard {}",
            c.name
        );
    }
    let mut secret_files = 0;
    for f in &d.files {
        if text(&f.content).contains(POISON) {
            secret_files += 1;
            assert!(
                f.sensitive,
                "{} holds a secret but is not sensitive",
                f.path.display()
            );
            assert_eq!(f.mode, 0o600, "{}", f.path.display());
        }
    }
    // postgres password + databases.sql, synapse homeserver.yaml + signing key, hedgedoc
    // dbURL + session secret, nextcloud db + admin passwords; the base's wg0.conf; and
    // the backups' secrets file (the servers' S3 credential, the repository password).
    assert_eq!(secret_files, 10);
    assert!(text(&file(&d, "/etc/kiln/backup/secrets.json").content).contains(POISON));
    assert!(
        !text(&file(&d, "/etc/kiln/backup/plan.json").content).contains(POISON),
        "the backup plan holds no secret"
    );
    // Secrets reach containers as mounted files, and the variables name files.
    let nc = text(&unit(&d, "nextcloud.service").content);
    assert!(nc.contains("Environment=POSTGRES_PASSWORD_FILE=/run/secrets/db_password\n"));
    assert!(nc.contains("Environment=NEXTCLOUD_ADMIN_PASSWORD_FILE=/run/secrets/admin_password\n"));
    assert!(nc.contains("Volume=/etc/kiln/services/nextcloud/secrets:/run/secrets:ro,Z\n"));
    let hd = text(&unit(&d, "hedgedoc.service").content);
    assert!(hd.contains("Volume=/etc/kiln/services/hedgedoc/secrets:/run/secrets:ro,Z\n"));
    assert_eq!(
        text(&file(&d, "/etc/kiln/services/hedgedoc/secrets/dbURL").content),
        format!("postgres://hedgedoc:{POISON}hedgedoc_db_password@postgres:5432/hedgedoc")
    );
    assert_eq!(
        file(&d, "/etc/kiln/services/hedgedoc/secrets/dbURL").owner,
        "10000"
    );
}

#[test]
fn postgres_creates_one_role_and_database_per_service_with_a_real_check() {
    let d = lab_services();
    let c = d
        .commands
        .iter()
        .find(|c| c.name == "postgres-databases")
        .unwrap();
    assert_eq!(
        c.stage,
        Stage(1),
        "after the server is healthy, before the apps"
    );
    assert_eq!(
        c.triggered_by,
        [PathBuf::from("/etc/kiln/services/postgres/databases.sql")]
    );
    assert_eq!(
        c.run,
        "podman exec -i postgres psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres < /etc/kiln/services/postgres/databases.sql"
    );
    let unless = c.unless.as_deref().unwrap();
    assert!(
        unless.contains(
            "IN (('synapse','synapse'),('nextcloud','nextcloud'),('hedgedoc','hedgedoc'))"
        ),
        "{unless}"
    );
    assert!(unless.ends_with("= 3"), "{unless}");
    let sql = text(&file(&d, "/etc/kiln/services/postgres/databases.sql").content);
    // Synapse needs the C collation; the others take the server's default.
    assert!(sql.contains("CREATE DATABASE synapse OWNER synapse ENCODING ''UTF8'' LC_COLLATE ''C'' LC_CTYPE ''C'' TEMPLATE template0"), "{sql}");
    assert!(
        sql.contains(
            "CREATE DATABASE hedgedoc OWNER hedgedoc ENCODING ''UTF8'' TEMPLATE template0"
        ),
        "{sql}"
    );
    assert!(sql.contains(&format!("ALTER ROLE nextcloud WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{POISON}nextcloud_db_password';")));
    assert_eq!(
        d.preconditions,
        [Precondition {
            path: "/srv/kiln/postgres/data/PG_VERSION".into(),
            expect: "17".into(),
            refusal: d.preconditions[0].refusal.clone(),
        }]
    );
    assert!(d.preconditions[0].refusal.contains("dump and a restore"));
}

#[test]
fn synapse_serves_the_environments_domain_with_native_sliding_sync() {
    let d = lab_services();
    let hs = text(&file(&d, "/etc/kiln/services/synapse/homeserver.yaml").content);
    assert!(hs.contains("server_name: \"ergaster.test\"\n"), "{hs}");
    assert!(hs.contains("public_baseurl: \"https://matrix.ergaster.test/\"\n"));
    assert!(hs.contains("experimental_features:\n  msc3575_enabled: true\n"));
    assert!(hs.contains("enable_registration: false\n"));
    assert!(hs.contains("    host: \"postgres\"\n"));
    assert!(hs.contains("type: metrics"));
    let hsf = file(&d, "/etc/kiln/services/synapse/homeserver.yaml");
    assert_eq!((hsf.owner.as_str(), hsf.mode), ("991", 0o600));
    assert_eq!(
        hsf.notify[0].unit, "synapse.service",
        "a configuration change restarts Synapse"
    );
    let key = file(&d, "/etc/kiln/services/synapse/signing.key");
    assert_eq!(text(&key.content), format!("{POISON}synapse_signing_key\n"));
}

#[test]
fn rendered_quadlets_and_files_are_stable() {
    let d = lab_services();
    let base = [
        crate::desired::base::updates::METRICS_SERVICE,
        crate::desired::base::updates::METRICS_TIMER,
    ];
    for u in d
        .units
        .iter()
        .filter(|u| u.kind != UnitKind::Packaged && !base.contains(&u.name.as_str()))
    {
        insta::assert_snapshot!(format!("unit-{}", u.name), text(&u.content));
    }
    for path in [
        "/etc/kiln/services/synapse/homeserver.yaml",
        "/etc/kiln/services/synapse/log.config",
        "/etc/kiln/services/postgres/databases.sql",
    ] {
        let name = path.rsplit('/').next().unwrap();
        insta::assert_snapshot!(format!("file-{name}"), text(&file(&d, path).content));
    }
}

fn repo_with(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(reference_dir().join("kiln.toml")).unwrap();
    let text = text.replace(
        "[environments.lab.hosts.services]\naddress = \"10.77.0.11\"\nadmin_user = \"kiln\"\nos = \"debian13\"",
        &format!("[environments.lab.hosts.services]\naddress = \"10.77.0.11\"\nadmin_user = \"kiln\"\n{extra}"),
    );
    std::fs::write(dir.path().join("kiln.toml"), text).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::copy(
        reference_dir().join("templates/motd.j2"),
        dir.path().join("templates/motd.j2"),
    )
    .unwrap();
    let path = dir.path().join("kiln.toml");
    (dir, path)
}

#[test]
fn a_repository_template_overrides_the_catalogs_and_errors_name_it() {
    let (dir, path) = repo_with("os = \"debian13\"");
    let over = dir.path().join("catalog/synapse");
    std::fs::create_dir_all(&over).unwrap();
    std::fs::write(
        over.join("homeserver.yaml.j2"),
        "# mine\nserver_name: \"{{ synapse.server_name }}\"\n",
    )
    .unwrap();
    let m = load(&path);
    assert_eq!(
        overridden_templates(&m),
        [(
            "synapse".to_string(),
            "homeserver.yaml.j2".to_string(),
            PathBuf::from("catalog/synapse/homeserver.yaml.j2")
        )]
    );
    let d = desired(&m, "lab", "services").unwrap();
    assert_eq!(
        text(&file(&d, "/etc/kiln/services/synapse/homeserver.yaml").content),
        "# mine\nserver_name: \"ergaster.test\"\n"
    );
    std::fs::write(
        over.join("homeserver.yaml.j2"),
        "line one\n{{ synapse.nope }}\n",
    )
    .unwrap();
    let err = desired(&m, "lab", "services").unwrap_err().to_string();
    assert!(
        err.contains("catalog/synapse/homeserver.yaml.j2:2: template error (for service synapse on host services)"),
        "{err}"
    );
}

#[test]
fn podman_features_follow_the_hosts_os() {
    // Unknown OS: no Notify=healthy (kiln waits for the health check itself). The base
    // needs the OS: off here.
    let (_dir, path) = repo_with(
        "base = { sshd = false, firewall = false, updates = false, time = false, node_exporter = false, wireguard = false }",
    );
    let d = desired(&load(&path), "lab", "services").unwrap();
    assert!(!text(&unit(&d, "synapse.service").content).contains("Notify=healthy"));
    // Debian 12's Podman has no quadlets: an error naming the host and the service.
    let (_dir, path) = repo_with("os = \"debian12\"");
    let err = desired(&load(&path), "lab", "services")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "host services: service postgres: Debian 12's Podman (4.3) has no quadlets"
        ),
        "{err}"
    );
}

#[test]
fn a_deprecated_sliding_sync_service_deploys_nothing_and_check_explains_it() {
    let (dir, path) = repo_with("os = \"debian13\"");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[services.sliding-sync]\nkind = \"sliding-sync\"\nhost = \"services\"\nversion = \"v0.99.11\"\noptions = { database = \"postgres\" }\n");
    std::fs::write(&path, text).unwrap();
    let m = load(&path);
    assert_eq!(m.warnings.len(), 1);
    assert!(
        m.warnings[0]
            .message
            .contains("kind `sliding-sync` is deprecated")
    );
    assert!(
        m.warnings[0]
            .help
            .as_deref()
            .unwrap()
            .contains("Synapse 1.114 and later serve simplified sliding sync")
    );
    let d = desired(&m, "lab", "services").unwrap();
    assert!(d.units.iter().all(|u| !u.name.contains("sliding")));
    assert!(!text_of_all(&d).contains("sliding_sync"));
    drop(dir);
}

fn text_of_all(d: &DesiredState) -> String {
    d.files
        .iter()
        .map(|f| text(&f.content).to_owned())
        .chain(d.commands.iter().map(|c| c.run.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn major_versions_of_image_tags() {
    assert_eq!(major_version("17"), Some(17));
    assert_eq!(major_version("17.2-alpine"), Some(17));
    assert_eq!(
        major_version("16@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        Some(16)
    );
    assert_eq!(major_version("latest"), None);
}

#[test]
fn a_custom_container_gets_its_image_port_env_and_volumes() {
    let (_dir, path) = repo_with("os = \"debian13\"");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[services.blog]\nkind = \"container\"\nhost = \"services\"\nsubdomain = \"blog\"\nversion = \"1.27\"\noptions = { image = \"docker.io/library/nginx\", port = 80, env = { TZ = \"Europe/Paris\" }, volumes = [\"html:/usr/share/nginx/html\"] }\n");
    std::fs::write(&path, text).unwrap();
    let d = desired(&load(&path), "lab", "services").unwrap();
    let q = self::text(&unit(&d, "blog.service").content);
    assert!(q.contains("\nImage=docker.io/library/nginx:1.27\n"), "{q}");
    assert!(q.contains("\nEnvironment=TZ=Europe/Paris\n"), "{q}");
    assert!(
        q.contains("\nVolume=/srv/kiln/blog/html:/usr/share/nginx/html:Z\n"),
        "{q}"
    );
    assert_eq!(unit(&d, "blog.service").stage, Stage(1));
    assert!(
        d.directories
            .iter()
            .any(|x| x.path == Path::new("/srv/kiln/blog/html"))
    );
    // A bad volume or variable is the model's error, located.
    let mut bad = std::fs::read_to_string(&path).unwrap();
    bad = bad.replace(
        "volumes = [\"html:/usr/share/nginx/html\"]",
        "volumes = [\"html\"]",
    );
    std::fs::write(&path, bad).unwrap();
    let err = kiln_model::load(&path).unwrap_err().render(100, false);
    assert!(
        err.contains("option `volumes`: \"html\" is not a new `name:/path/in/container`"),
        "{err}"
    );
}

#[test]
fn containers_sharing_an_image_declare_it_once() {
    let (_dir, path) = repo_with("os = \"debian13\"");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for name in ["blog", "www"] {
        text.push_str(&format!("\n[services.{name}]\nkind = \"container\"\nhost = \"services\"\nsubdomain = \"{name}\"\nversion = \"2.10\"\noptions = {{ image = \"docker.io/library/caddy\", port = 80 }}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let d = desired(&load(&path), "lab", "services").unwrap();
    let caddy: Vec<_> = d
        .images
        .iter()
        .filter(|i| i.reference == "docker.io/library/caddy:2.10")
        .collect();
    // Both services and the reverse proxy run it: one pull.
    assert_eq!(caddy.len(), 1, "{:?}", d.images);
    assert!(d.units.iter().any(|u| u.name == "blog.service"));
    assert!(d.units.iter().any(|u| u.name == "www.service"));
}

#[test]
fn the_backup_plan_dumps_each_database_and_copies_each_volume_consistently() {
    use kiln_backup::plan::{HostPlan, Kind, Source};
    let d = lab_services();
    let plan: HostPlan =
        serde_json::from_str(text(&file(&d, "/etc/kiln/backup/plan.json").content)).unwrap();
    assert_eq!(
        (plan.environment.as_str(), plan.host.as_str()),
        ("lab", "services")
    );
    // The lab's own S3 (kiln.toml's `backup_repository`), the top level's prefix.
    assert_eq!(plan.repository.endpoint, "http://10.77.0.1:9000");
    assert_eq!(plan.repository.bucket, "kiln-backups");
    assert_eq!(plan.repository.prefix, "lab");
    let items: Vec<(&str, Kind)> = plan
        .items
        .iter()
        .map(|i| (i.service.as_str(), i.kind))
        .collect();
    // PostgreSQL's data goes as dumps (one per database), never as files.
    assert!(!items.contains(&("postgres", Kind::Files)), "{items:?}");
    for s in ["synapse", "hedgedoc", "nextcloud"] {
        assert!(items.contains(&(s, Kind::Dump)), "{s}: {items:?}");
        assert!(items.contains(&(s, Kind::Files)), "{s}: {items:?}");
    }
    let get = |service: &str, kind: Kind| {
        plan.items
            .iter()
            .find(|i| i.service == service && i.kind == kind)
            .unwrap()
    };
    let Source::Command { argv, filename } = &get("synapse", Kind::Dump).source else {
        panic!("synapse's dump is a command");
    };
    assert_eq!(filename, "synapse.dump");
    assert_eq!(
        argv.join(" "),
        "podman exec postgres pg_dump -Fc -U postgres --exclude-table-data=e2e_one_time_keys_json --dbname=synapse"
    );
    // The catalog's key tables, whose rows the dump records and a restore verifies.
    let db = get("synapse", Kind::Dump).database.as_ref().unwrap();
    assert!(db.c_locale);
    assert_eq!(
        db.key_tables,
        ["events", "rooms", "users", "local_media_repository"]
    );
    let Source::Command { argv, .. } = &get("hedgedoc", Kind::Dump).source else {
        panic!("hedgedoc's dump is a command");
    };
    assert!(
        !argv.iter().any(|a| a.contains("e2e_one_time_keys")),
        "{argv:?}"
    );
    // Files: Synapse stopped for its copy; Nextcloud in maintenance mode instead.
    let files = get("synapse", Kind::Files);
    assert_eq!(files.stop_units, ["synapse.service"]);
    let Source::Paths { paths } = &files.source else {
        panic!("synapse's files are paths");
    };
    assert!(
        paths.iter().all(|p| p.starts_with("/srv/kiln/synapse")),
        "{paths:?}"
    );
    let nc = get("nextcloud", Kind::Files);
    assert!(nc.stop_units.is_empty());
    assert_eq!(
        nc.before[0].join(" "),
        "podman exec -u www-data nextcloud php occ maintenance:mode --on"
    );
    assert_eq!(
        nc.after[0].join(" "),
        "podman exec -u www-data nextcloud php occ maintenance:mode --off"
    );
    // Metrics go to node-exporter's textfile collector; the timer runs the schedule.
    assert_eq!(
        plan.metrics_dir.as_deref(),
        Some(Path::new("/var/lib/prometheus/node-exporter"))
    );
    let secrets = file(&d, "/etc/kiln/backup/secrets.json");
    assert!(secrets.sensitive && secrets.mode == 0o600 && secrets.owner == "root");
    // Only the servers' credential reaches the host.
    let s = text(&secrets.content);
    assert!(s.contains("backup_server_access_key") && s.contains("backup_server_secret_key"));
    assert!(
        !s.contains("backup_admin") && !s.contains("backup_readonly"),
        "{s}"
    );
    let timer = unit(&d, "kiln-backup.timer");
    assert!(timer.enabled && timer.started);
    let service = unit(&d, "kiln-backup.service");
    assert!(!service.enabled && !service.started);
}

#[test]
fn an_environment_without_backups_gets_no_backup_resources() {
    let m = load(&reference_dir().join("kiln.toml"));
    // staging has `backups = false`.
    let d = desired(&m, "staging", "services").unwrap();
    assert!(
        d.files
            .iter()
            .all(|f| !f.path.starts_with("/etc/kiln/backup"))
    );
    assert!(d.units.iter().all(|u| !u.name.starts_with("kiln-backup")));
}
