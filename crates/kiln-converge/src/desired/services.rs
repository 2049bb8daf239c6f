//! The services feature: each `[services.<name>]` placed on a host becomes its catalog
//! recipe's resources there, in the one desired state the planner knows:
//!
//! - the container as a Podman quadlet (`/etc/containers/systemd/<service>.container`,
//!   [`crate::resource::UnitKind::Quadlet`]), rendered from the catalog's `container.j2`,
//!   with the container's health check waited for after every start or restart
//!   ([`crate::resource::Health`]), and its image ([`crate::resource::Image`], pulled when
//!   absent);
//! - one Podman network per host ([`NETWORK_FILE`]) the services talk over by name;
//! - its data directories under [`DATA_ROOT`], owned by the user the image runs as;
//! - its configuration files and secrets under [`CONFIG_ROOT`] (0600, owned by the
//!   container's user, mounted read-only: a secret is never in a unit file, an environment
//!   variable or an argv);
//! - for PostgreSQL, one role and one database per service using it, created by a command
//!   with a real check once the server is healthy ([`crate::resource::Stage`] 1), and a
//!   refusal to run another major version on existing data
//!   ([`crate::resource::Precondition`]).
//!
//! Ordering: databases (stage 0), then their roles and databases (stage-1 command), then
//! the applications (stage 1), then what needs a running application (stage 2: Nextcloud's
//! background jobs).
//!
//! Templates are the catalog's, embedded in the binary; a repository overrides one with
//! `catalog/<kind>/<name>` next to kiln.toml ([`overridden_templates`]).
//!
//! Must not declare the proxy's routes, firewall openings or WireGuard peers: those come
//! from [`super::proxy`], [`super::firewall`] and [`super::wireguard`].

use std::path::{Path, PathBuf};

use kiln_catalog::{CONTAINER_TEMPLATE, Recipe, secret_name};
use kiln_model::{Host, Model, OsFamily, Service};
use serde_json::{Value, json};

use super::template::{catalog_override, render_catalog};
use super::{DesiredError, EnvironmentContext};
use crate::resource::{
    Command, Content, DesiredState, Directory, File, Health, Image, Notify, Package, Precondition,
    Stage, Trigger, Unit,
};

/// The Podman network of a host's services (quadlet file, and the network's name).
pub const NETWORK_FILE: &str = "kiln.network";
pub const NETWORK_NAME: &str = "kiln";
/// Its subnet: fixed, so that applications can trust the reverse proxy's address range.
pub const NETWORK_SUBNET: &str = "10.89.77.0/24";
/// Where services keep their data (one folder per service and volume).
pub const DATA_ROOT: &str = "/srv/kiln";
/// Where services' configuration files and secrets are written.
pub const CONFIG_ROOT: &str = "/etc/kiln/services";

/// Stage of database servers, of the commands creating their databases and of the
/// applications, and of what needs a running application.
const SERVERS: Stage = Stage(0);
const APPS: Stage = Stage(1);
const AFTER_APPS: Stage = Stage(2);

/// Where volume `volume` of `service` lives on the host.
pub fn data_dir(service: &str, volume: &str) -> PathBuf {
    Path::new(DATA_ROOT).join(service).join(volume)
}

/// Where the configuration of `service` lives on the host.
pub fn config_dir(service: &str) -> PathBuf {
    Path::new(CONFIG_ROOT).join(service)
}

/// The systemd unit running `service`'s container.
pub fn unit_name(service: &str) -> String {
    format!("{service}.service")
}

/// Whether kiln deploys anything for this service (a deprecated kind deploys nothing;
/// the monitoring stack is its own feature).
pub fn deploys(service: &Service) -> bool {
    service
        .recipe()
        .is_some_and(|r| r.deprecated.is_none() && r.kind != "monitoring")
}

/// Catalog templates that the repository overrides: (service, template name, path).
pub fn overridden_templates(model: &Model) -> Vec<(String, String, PathBuf)> {
    let mut out = vec![];
    for s in &model.services {
        let Some(r) = s.recipe() else { continue };
        for name in std::iter::once(&CONTAINER_TEMPLATE).chain(r.templates) {
            let rel = catalog_override(&s.kind, name);
            if model.base_dir().join(&rel).is_file() {
                out.push((s.name.clone(), name.to_string(), rel));
            }
        }
    }
    out
}

/// What the host's Podman supports, from the host's declared OS: quadlets need Podman
/// 4.4 or later, `Notify=healthy` 5.0 (Debian 13: 5.4, RHEL 9.5: 5.2, RHEL 10: 5.4).
fn notify_healthy(host: &Host, service: &str) -> Result<bool, DesiredError> {
    match host.os {
        Some(OsFamily::Debian12) => Err(DesiredError::Service {
            host: host.role.clone(),
            service: service.to_owned(),
            message: "Debian 12's Podman (4.3) has no quadlets, which kiln runs services with\n  hint: run services on Debian 13 or RHEL 9.5 and later (`os = \"debian13\"`)".into(),
        }),
        Some(OsFamily::Debian13 | OsFamily::Rhel9 | OsFamily::Rhel10) => Ok(true),
        // Unknown: wait for the health check without systemd's help.
        None => Ok(false),
    }
}

/// The resources of the services placed on `host`.
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let mut d = DesiredState::default();
    let services: Vec<&Service> = env
        .model
        .services_on(&host.role)
        .filter(|s| deploys(s))
        .collect();
    if services.is_empty() {
        return Ok(d);
    }
    // netavark needs nft to set the network up (kiln installs without recommends).
    d.packages = ["podman", "aardvark-dns", "nftables"]
        .into_iter()
        .map(|name| Package { name: name.into() })
        .collect();
    for dir in [DATA_ROOT, "/etc/kiln", CONFIG_ROOT] {
        d.directories.push(dir_root(dir, 0o755));
    }
    if let Some(network) = Unit::quadlet(
        NETWORK_FILE,
        Content::text(format!(
            "# Managed by kiln: the network the services of this host talk over (they reach\n# each other by container name).\n[Network]\nNetworkName={NETWORK_NAME}\nSubnet={NETWORK_SUBNET}\n"
        )),
    ) {
        d.units.push(network);
    }
    for svc in services {
        let Some(recipe) = svc.recipe() else { continue };
        let mut s = ServiceBuild {
            env,
            host,
            svc,
            recipe,
            d: &mut d,
        };
        match recipe.kind {
            "postgres" => s.postgres()?,
            "synapse" => s.synapse()?,
            "hedgedoc" => s.hedgedoc()?,
            "nextcloud" => s.nextcloud()?,
            _ => s.custom()?,
        }
    }
    Ok(d)
}

/// A root-owned directory.
pub(super) fn dir_root(path: &str, mode: u32) -> Directory {
    Directory {
        path: path.into(),
        mode,
        owner: "root".into(),
        group: "root".into(),
    }
}

fn dir_owned(path: PathBuf, mode: u32, uid: Option<u32>) -> Directory {
    let id = uid.map_or("root".to_owned(), |u| u.to_string());
    Directory {
        path,
        mode,
        owner: id.clone(),
        group: id,
    }
}

/// A mount of the container.
pub(super) struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub options: &'static str,
}

/// What the container quadlet says beyond the recipe's data.
#[derive(Default)]
pub(super) struct ContainerSpec {
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub requires: Vec<String>,
    /// `host:container[/proto]` published on the host (only the reverse proxy's: services
    /// are reached through it).
    pub ports: Vec<&'static str>,
    /// `ExecReload=`: how the container applies a new configuration without a restart.
    pub reload: Option<String>,
    pub stage: Stage,
}

/// Who a container quadlet belongs to: the template context's `service`.
pub(super) struct Owner<'a> {
    /// The service's name: also its container's, its unit's (`<name>.service`) and its
    /// quadlet file's (`<name>.container`).
    pub name: &'a str,
    /// The catalog kind: where the repository overrides `container.j2`.
    pub kind: &'a str,
    pub description: &'a str,
    pub version: &'a str,
    /// The vault names of its secrets, by suffix.
    pub secrets: serde_json::Map<String, Value>,
    /// Its health check, run in the container, and how long a start may take to pass it.
    pub health_cmd: Option<&'a str>,
    pub health_timeout_s: u32,
}

impl Owner<'_> {
    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "version": self.version,
            "secrets": self.secrets,
        })
    }

    fn err(&self, host: &Host, message: impl Into<String>) -> DesiredError {
        DesiredError::Service {
            host: host.role.clone(),
            service: self.name.to_owned(),
            message: message.into(),
        }
    }
}

/// Adds to `d` the container quadlet of `owner` running `image` (the catalog's
/// `container.j2`, or the repository's override for its kind), with its health check
/// waited for after each start, and the image. The one way a container is declared: the
/// services and the reverse proxy both come here.
pub(super) fn add_container(
    d: &mut DesiredState,
    env: &EnvironmentContext<'_>,
    host: &Host,
    owner: &Owner<'_>,
    image: String,
    spec: ContainerSpec,
) -> Result<(), DesiredError> {
    let name = owner.name;
    let mut ctx = super::context(env.model, env.env, host);
    ctx["service"] = owner.json();
    ctx["container"] = json!({
        "name": name,
        "image": image,
        "network": NETWORK_FILE,
        "requires": spec.requires,
        "volumes": spec.mounts.iter().map(|m| json!({
            "host": m.host.display().to_string(),
            "container": m.container,
            "options": m.options,
        })).collect::<Vec<_>>(),
        "env": spec.env.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "ports": spec.ports,
        "reload": spec.reload,
        "health_cmd": owner.health_cmd,
        "notify_healthy": notify_healthy(host, name)?,
        "start_timeout_s": owner.health_timeout_s + 30,
    });
    let (text, sensitive) = render_catalog(
        env.model.base_dir(),
        owner.kind,
        CONTAINER_TEMPLATE,
        &ctx,
        env.secrets.clone(),
        &format!("service {name}"),
        &host.role,
    )?;
    if sensitive {
        return Err(owner.err(
            host,
            "its container quadlet uses a secret: secrets go into files mounted into the container, never into the unit",
        ));
    }
    let file = format!("{name}.container");
    let mut unit = Unit::quadlet(&file, Content::text(text))
        .ok_or_else(|| owner.err(host, format!("{file:?} is not a quadlet file name")))?;
    unit.stage = spec.stage;
    unit.health = owner.health_cmd.map(|_| Health {
        container: name.to_owned(),
        timeout_s: owner.health_timeout_s,
    });
    d.units.push(unit);
    d.add_image(Image {
        reference: image,
        service: Some(name.to_owned()),
        container: Some(name.to_owned()),
    });
    Ok(())
}

/// A database a service uses: its role and database on a postgres service.
struct Database {
    /// The postgres service (also its container's name, as the host name to reach it).
    server: String,
    role: String,
    name: String,
    password_secret: String,
}

impl Database {
    fn of(svc: &Service) -> Option<Database> {
        let server = svc.option_str("database")?.to_owned();
        let ident = svc.name.replace('-', "_");
        Some(Database {
            server,
            role: ident.clone(),
            name: ident,
            password_secret: secret_name(&svc.name, "db_password"),
        })
    }

    fn json(&self) -> Value {
        json!({
            "host": self.server,
            "role": self.role,
            "name": self.name,
            "password_secret": self.password_secret,
        })
    }
}

struct ServiceBuild<'a, 'b> {
    env: &'a EnvironmentContext<'a>,
    host: &'a Host,
    svc: &'a Service,
    recipe: &'static Recipe,
    d: &'b mut DesiredState,
}

impl<'a> ServiceBuild<'a, '_> {
    fn err(&self, message: impl Into<String>) -> DesiredError {
        DesiredError::Service {
            host: self.host.role.clone(),
            service: self.svc.name.clone(),
            message: message.into(),
        }
    }

    fn version(&self) -> &str {
        self.svc.version.as_deref().unwrap_or("latest")
    }

    fn image(&self) -> Result<String, DesiredError> {
        self.svc
            .image()
            .ok_or_else(|| self.err("no image to run (the `image` option is missing)"))
    }

    fn fqdn(&self) -> Result<String, DesiredError> {
        self.env
            .env
            .service_fqdn(self.svc)
            .ok_or_else(|| self.err("has no subdomain"))
    }

    fn uid(&self) -> Option<u32> {
        self.recipe.uid
    }

    fn owner(&self) -> String {
        self.uid().map_or("root".to_owned(), |u| u.to_string())
    }

    /// The template context every recipe template sees.
    fn context(&self, extra: Value) -> Value {
        let mut ctx = super::context(self.env.model, self.env.env, self.host);
        ctx["service"] = self.owner_of_container().json();
        if let (Value::Object(c), Value::Object(e)) = (&mut ctx, extra) {
            c.extend(e);
        }
        ctx
    }

    /// The vault names of the recipe's secrets, by suffix (`form_secret` →
    /// `synapse_form_secret`).
    fn secret_names(&self) -> serde_json::Map<String, Value> {
        self.recipe
            .secrets
            .iter()
            .map(|t| {
                (
                    t.suffix.to_owned(),
                    secret_name(&self.svc.name, t.suffix).into(),
                )
            })
            .collect()
    }

    /// Renders one of the recipe's templates: the repository's override when there is
    /// one, else the catalog's. Returns the text and whether a secret went into it.
    fn render(&self, name: &str, ctx: &Value) -> Result<(String, bool), DesiredError> {
        render_catalog(
            self.env.model.base_dir(),
            &self.svc.kind,
            name,
            ctx,
            self.env.secrets.clone(),
            &format!("service {}", self.svc.name),
            &self.host.role,
        )
    }

    /// The vault secret `vault` as the content of a file (0600, the container user's),
    /// with a final newline unless `bare`.
    fn secret_file(&mut self, vault: &str, path: PathBuf, bare: bool) -> Result<(), DesiredError> {
        let value = self.secret(vault)?;
        let mut text = value.expose().to_owned();
        if !bare {
            text.push('\n');
        }
        self.file(path, text, 0o600, true);
        Ok(())
    }

    /// The vault secret `vault`, or an error naming the service and the secret.
    fn secret(&self, vault: &str) -> Result<kiln_secrets::Secret, DesiredError> {
        self.env
            .secrets
            .secret(vault)
            .map_err(|m| self.err(format!("secret {vault}: {m}")))
    }

    /// The folder of the service's secret files, mounted read-only at `/run/secrets` (the
    /// Docker-secrets convention HedgeDoc and the `_FILE` variables of Nextcloud read).
    fn secrets_folder(&mut self, conf: &Path, spec: &mut ContainerSpec) -> PathBuf {
        let secrets = conf.join("secrets");
        self.d
            .directories
            .push(dir_root(&secrets.display().to_string(), 0o755));
        spec.mounts.push(Mount {
            host: secrets.clone(),
            container: "/run/secrets".into(),
            options: "ro,Z",
        });
        secrets
    }

    /// The vault name of the recipe secret `suffix` of this service.
    fn secret_name(&self, suffix: &str) -> String {
        secret_name(&self.svc.name, suffix)
    }

    /// A file of the service, owned by the container's user, restarting the service when
    /// it changes.
    fn file(&mut self, path: PathBuf, text: String, mode: u32, sensitive: bool) {
        let owner = self.owner();
        let unit = unit_name(&self.svc.name);
        self.d.files.push(File {
            path,
            content: Content::text(text),
            mode,
            owner: owner.clone(),
            group: owner,
            sensitive,
            notify: vec![Notify {
                unit,
                action: Trigger::Restart,
            }],
            guard: None,
            validate: None,
            note: None,
        });
    }

    /// The service's data directories (one per recipe volume), its configuration folder,
    /// and their mounts.
    fn volumes(&mut self, spec: &mut ContainerSpec, mode: u32) {
        let name = self.svc.name.clone();
        self.d
            .directories
            .push(dir_root(&format!("{DATA_ROOT}/{name}"), 0o755));
        for v in self.recipe.volumes {
            let dir = data_dir(&name, v.name);
            self.d
                .directories
                .push(dir_owned(dir.clone(), mode, self.uid()));
            spec.mounts.push(Mount {
                host: dir,
                container: v.container_path.to_owned(),
                options: "Z",
            });
        }
    }

    fn config_folder(&mut self) -> PathBuf {
        let dir = config_dir(&self.svc.name);
        self.d
            .directories
            .push(dir_root(&dir.display().to_string(), 0o755));
        dir
    }

    /// The container quadlet, its image, and its health check.
    fn container(&mut self, spec: ContainerSpec) -> Result<(), DesiredError> {
        let image = self.image()?;
        let owner = self.owner_of_container();
        add_container(self.d, self.env, self.host, &owner, image, spec)
    }

    fn owner_of_container(&self) -> Owner<'a> {
        let svc: &'a Service = self.svc;
        Owner {
            name: &svc.name,
            kind: &svc.kind,
            description: self.recipe.description,
            version: svc.version.as_deref().unwrap_or("latest"),
            secrets: self.secret_names(),
            health_cmd: self.recipe.health_cmd,
            health_timeout_s: self.recipe.health_timeout_s,
        }
    }

    /// The database of a service using PostgreSQL: the server's unit to require, and the
    /// connection details for templates.
    fn database(&self, spec: &mut ContainerSpec) -> Option<Database> {
        let db = Database::of(self.svc)?;
        spec.requires.push(unit_name(&db.server));
        Some(db)
    }

    fn postgres(&mut self) -> Result<(), DesiredError> {
        let name = self.svc.name.clone();
        let mut spec = ContainerSpec {
            stage: SERVERS,
            ..Default::default()
        };
        self.volumes(&mut spec, 0o700);
        let conf = self.config_folder();
        let password = conf.join("superuser_password");
        let vault = self.secret_name("superuser_password");
        self.secret_file(&vault, password.clone(), true)?;
        spec.mounts.push(Mount {
            host: password,
            container: "/run/secrets/postgres_password".into(),
            options: "ro,Z",
        });
        spec.env = vec![
            ("PGDATA".into(), "/var/lib/postgresql/data".into()),
            (
                "POSTGRES_PASSWORD_FILE".into(),
                "/run/secrets/postgres_password".into(),
            ),
        ];
        // A major version reads only the data of its own major version.
        let major = major_version(self.version())
            .ok_or_else(|| self.err(format!("version {:?} does not start with PostgreSQL's major version (like \"17\" or \"17.2\")", self.version())))?;
        let data = data_dir(&name, "data");
        self.d.preconditions.push(Precondition {
            path: data.join("PG_VERSION"),
            expect: major.to_string(),
            refusal: format!(
                "service {name}: the data in {} belongs to another PostgreSQL major version than {major} (version = {:?}); a major upgrade needs a dump and a restore, which kiln does not do in place\n  hint: keep the version of the data's major in kiln.toml; upgrading a major version goes through a backup and a restore into a fresh {name}",
                data.display(),
                self.version()
            ),
        });
        // One role and one database per service using this server.
        let users: Vec<(&Service, Database)> = self
            .env
            .model
            .services_on(&self.host.role)
            .filter(|s| deploys(s))
            .filter_map(|s| Database::of(s).filter(|d| d.server == name).map(|d| (s, d)))
            .collect();
        if !users.is_empty() {
            let ctx = self.context(json!({
                "databases": users.iter().map(|(s, d)| json!({
                    "service": s.name,
                    "role": d.role,
                    "name": d.name,
                    "password_secret": d.password_secret,
                    // Synapse refuses a database whose collation is not C.
                    "c_locale": s.kind == "synapse",
                })).collect::<Vec<_>>(),
            }));
            let (sql, _) = self.render("databases.sql.j2", &ctx)?;
            let path = conf.join("databases.sql");
            self.d.files.push(File {
                path: path.clone(),
                content: Content::text(sql),
                mode: 0o600,
                owner: "root".into(),
                group: "root".into(),
                sensitive: true,
                notify: vec![],
                guard: None,
                validate: None,
                note: None,
            });
            let pairs: Vec<String> = users
                .iter()
                .map(|(_, d)| format!("('{}','{}')", d.name, d.role))
                .collect();
            let query = format!(
                "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE (d.datname, r.rolname) IN ({})",
                pairs.join(",")
            );
            self.d.commands.push(Command {
                name: format!("{name}-databases"),
                run: format!(
                    "podman exec -i {} psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres < {}",
                    kiln_shell::quote(&name),
                    kiln_shell::quote(&path.display().to_string())
                ),
                unless: Some(databases_check(&name, major, &query, users.len())),
                triggered_by: vec![path],
                stage: APPS,
            });
        }
        self.container(spec)
    }

    fn synapse(&mut self) -> Result<(), DesiredError> {
        let mut spec = ContainerSpec {
            stage: APPS,
            ..Default::default()
        };
        self.volumes(&mut spec, 0o750);
        let db = self
            .database(&mut spec)
            .ok_or_else(|| self.err("needs the `database` option (a postgres service)"))?;
        let conf = self.config_folder();
        let fqdn = self.fqdn()?;
        let server_name = self
            .svc
            .option_str("server_name")
            .map_or_else(|| self.env.env.domain.clone(), str::to_owned);
        let registration = self
            .svc
            .options
            .get("enable_registration")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let ctx = self.context(json!({
            "database": db.json(),
            "synapse": {
                "server_name": server_name,
                "public_baseurl": format!("https://{fqdn}/"),
                "enable_registration": registration.to_string(),
                "secrets": self.secret_names(),
            },
        }));
        let (homeserver, _) = self.render("homeserver.yaml.j2", &ctx)?;
        self.file(conf.join("homeserver.yaml"), homeserver, 0o600, true);
        let (log, _) = self.render("log.config.j2", &ctx)?;
        self.file(conf.join("log.config"), log, 0o644, false);
        let vault = self.secret_name("signing_key");
        self.secret_file(&vault, conf.join("signing.key"), false)?;
        spec.mounts.push(Mount {
            host: conf,
            container: "/config".into(),
            options: "ro,Z",
        });
        let uid = self.owner();
        spec.env = vec![
            (
                "SYNAPSE_CONFIG_PATH".into(),
                "/config/homeserver.yaml".into(),
            ),
            ("UID".into(), uid.clone()),
            ("GID".into(), uid),
        ];
        self.container(spec)
    }

    fn hedgedoc(&mut self) -> Result<(), DesiredError> {
        let mut spec = ContainerSpec {
            stage: APPS,
            ..Default::default()
        };
        self.volumes(&mut spec, 0o750);
        let db = self
            .database(&mut spec)
            .ok_or_else(|| self.err("needs the `database` option (a postgres service)"))?;
        let conf = self.config_folder();
        // HedgeDoc reads Docker secrets from /run/secrets: `dbURL` is CMD_DB_URL,
        // `sessionsecret` CMD_SESSION_SECRET, without putting them in the environment.
        let secrets = self.secrets_folder(&conf, &mut spec);
        let password = self.secret(&db.password_secret)?;
        let url = format!(
            "postgres://{}:{}@{}:5432/{}",
            db.role,
            password.expose(),
            db.server,
            db.name
        );
        self.file(secrets.join("dbURL"), url, 0o600, true);
        let vault = self.secret_name("session_secret");
        self.secret_file(&vault, secrets.join("sessionsecret"), true)?;
        // The health check's script (see the recipe's health_cmd).
        let check = conf.join("healthcheck.mjs");
        self.file(
            check.clone(),
            "// Managed by kiln: HedgeDoc's health check, run by Podman inside the container.\nfetch('http://127.0.0.1:3000/_health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1));\n".into(),
            0o644,
            false,
        );
        spec.mounts.push(Mount {
            host: check,
            container: "/kiln/healthcheck.mjs".into(),
            options: "ro,Z",
        });
        let anonymous = self
            .svc
            .options
            .get("allow_anonymous")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        spec.env = vec![
            ("CMD_DOMAIN".into(), self.fqdn()?),
            ("CMD_PROTOCOL_USESSL".into(), "true".into()),
            ("CMD_URL_ADDPORT".into(), "false".into()),
            ("CMD_ALLOW_ANONYMOUS".into(), anonymous.to_string()),
            ("CMD_ALLOW_ANONYMOUS_EDITS".into(), anonymous.to_string()),
            ("CMD_CSP_ENABLE".into(), "true".into()),
            ("CMD_CSP_ALLOW_FRAMING".into(), "false".into()),
        ];
        self.container(spec)
    }

    fn nextcloud(&mut self) -> Result<(), DesiredError> {
        let name = self.svc.name.clone();
        let mut spec = ContainerSpec {
            stage: APPS,
            ..Default::default()
        };
        self.volumes(&mut spec, 0o750);
        let db = self
            .database(&mut spec)
            .ok_or_else(|| self.err("needs the `database` option (a postgres service)"))?;
        let conf = self.config_folder();
        let secrets = self.secrets_folder(&conf, &mut spec);
        self.secret_file(&db.password_secret, secrets.join("db_password"), true)?;
        let vault = self.secret_name("admin_password");
        self.secret_file(&vault, secrets.join("admin_password"), true)?;
        let fqdn = self.fqdn()?;
        let admin = self.svc.option_str("admin_user").unwrap_or("admin");
        spec.env = vec![
            ("POSTGRES_HOST".into(), db.server.clone()),
            ("POSTGRES_DB".into(), db.name.clone()),
            ("POSTGRES_USER".into(), db.role.clone()),
            (
                "POSTGRES_PASSWORD_FILE".into(),
                "/run/secrets/db_password".into(),
            ),
            ("NEXTCLOUD_ADMIN_USER".into(), admin.into()),
            (
                "NEXTCLOUD_ADMIN_PASSWORD_FILE".into(),
                "/run/secrets/admin_password".into(),
            ),
            ("NEXTCLOUD_TRUSTED_DOMAINS".into(), fqdn.clone()),
            ("TRUSTED_PROXIES".into(), NETWORK_SUBNET.into()),
            ("OVERWRITEPROTOCOL".into(), "https".into()),
            ("OVERWRITEHOST".into(), fqdn.clone()),
            ("OVERWRITECLIURL".into(), format!("https://{fqdn}")),
        ];
        self.container(spec)?;
        // Background jobs: cron.php every 5 minutes as www-data, by a systemd timer (the
        // mode Nextcloud recommends), switched to cron once Nextcloud runs.
        let cron = format!("{name}-cron");
        let exec = format!(
            "/usr/bin/podman exec -u www-data {} php -f /var/www/html/cron.php",
            kiln_shell::quote(&name)
        );
        let mut service = Unit::file(
            format!("{cron}.service"),
            Content::text(format!(
                "# Managed by kiln: Nextcloud's background jobs (service {name}).\n[Unit]\nDescription=kiln: background jobs of {name}\nRequires={unit}\nAfter={unit}\n\n[Service]\nType=oneshot\nExecStart={exec}\n",
                unit = unit_name(&name)
            )),
        );
        service.enabled = false;
        service.started = false;
        let mut timer = Unit::file(
            format!("{cron}.timer"),
            Content::text(format!(
                "# Managed by kiln: Nextcloud's background jobs every 5 minutes (service {name}).\n[Unit]\nDescription=kiln: background jobs of {name} every 5 minutes\n\n[Timer]\nOnCalendar=*:0/5\nAccuracySec=30s\n\n[Install]\nWantedBy=timers.target\n"
            )),
        );
        timer.stage = AFTER_APPS;
        self.d.units.push(service);
        self.d.units.push(timer);
        self.d.commands.push(Command {
            name: format!("{name}-background-cron"),
            run: format!(
                "podman exec -u www-data {} php occ background:cron",
                kiln_shell::quote(&name)
            ),
            unless: None,
            triggered_by: vec![],
            stage: AFTER_APPS,
        });
        Ok(())
    }

    /// A custom container: its image and port, plus the `env` and `volumes` options.
    fn custom(&mut self) -> Result<(), DesiredError> {
        let mut spec = ContainerSpec {
            stage: APPS,
            ..Default::default()
        };
        if let Some(env) = self.svc.options.get("env").and_then(|v| v.as_table()) {
            spec.env = env
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
        }
        let volumes: Vec<(String, String)> = self
            .svc
            .options
            .get("volumes")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.split_once(':'))
            .map(|(n, p)| (n.to_owned(), p.to_owned()))
            .collect();
        if !volumes.is_empty() {
            let name = self.svc.name.clone();
            self.d
                .directories
                .push(dir_root(&format!("{DATA_ROOT}/{name}"), 0o755));
            for (volume, path) in volumes {
                let dir = data_dir(&name, &volume);
                self.d.directories.push(dir_owned(dir.clone(), 0o755, None));
                spec.mounts.push(Mount {
                    host: dir,
                    container: path,
                    options: "Z",
                });
            }
        }
        self.container(spec)
    }
}

/// The real check of the databases command: PostgreSQL itself says how many of the
/// (database, owner) pairs exist. It runs on every plan, so it takes the fast way when it
/// can: psql of the running container, entered with nsenter (≈ 50 ms; `podman exec` costs
/// ≈ 200 ms on a lab server), else `podman exec`. Names are `[a-z0-9_]` (the model's rule),
/// so the query needs no escaping inside double quotes.
fn databases_check(container: &str, major: u32, query: &str, expect: usize) -> String {
    let unit = kiln_shell::quote(&unit_name(container));
    let c = kiln_shell::quote(container);
    format!(
        "m=$(systemctl show -p MainPID --value {unit}); \
         {{ [ \"${{m:-0}}\" -gt 0 ] && pid=$(pgrep -o -P \"$m\") && \
         out=$(nsenter -t \"$pid\" -m -u -i -n -p -S 999 -G 999 -- env PATH=/usr/lib/postgresql/{major}/bin:/usr/local/bin:/usr/bin:/bin psql -U postgres -d postgres -tAc \"{query}\" 2>/dev/null); }} || \
         out=$(podman exec {c} psql -U postgres -d postgres -tAc \"{query}\" 2>/dev/null); \
         test \"$out\" = {expect}"
    )
}

/// The major version a PostgreSQL image tag stands for (`17`, `17.2`, `17-alpine`,
/// `17.2@sha256:…` → 17).
pub fn major_version(tag: &str) -> Option<u32> {
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests;
