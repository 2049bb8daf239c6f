//! The validated infrastructure model: plain typed values, no spans, no I/O. Built only by
//! [`crate::load`] / [`crate::parse_str`], so a [`Model`] in hand is always valid.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

mod base;
pub use base::*;
pub use ipnet::{IpNet, Ipv4Net};

/// The whole of kiln.toml, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// `[project]`.
    pub project: Project,
    /// In the order of the file.
    pub environments: Vec<Environment>,
    /// In the order of the file.
    pub services: Vec<Service>,
    /// `[backups]`, if backups are configured.
    pub backups: Option<Backups>,
    /// `[monitoring]`: where alerts go.
    pub monitoring: Option<Monitoring>,
    /// Extra resources per host role (`[roles.<role>]`).
    pub roles: BTreeMap<String, Role>,
    /// What is not an error but deserves a word (a deprecated kind, ...), located.
    #[serde(skip)]
    pub warnings: Vec<crate::ConfigError>,
    #[serde(skip)]
    pub(crate) base_dir: PathBuf,
    #[serde(skip)]
    pub(crate) config_path: PathBuf,
}

impl Model {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The services running on hosts with role `role`.
    pub fn services_on<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| s.host == role)
    }

    /// Folder of kiln.toml: template and source paths are relative to it.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Path of the kiln.toml this model was read from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

/// `[project]`: who and what the infrastructure is for.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Short name (`[a-z][a-z0-9-]*`).
    pub name: String,
    /// Base domain.
    pub domain: String,
    /// ACME account contact (certificate expiry warnings).
    pub acme_email: String,
    /// The reverse proxy environments use unless they say otherwise.
    pub proxy: ProxyKind,
}

/// Which ACME certificate authority an environment's reverse proxy uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeCa {
    /// Let's Encrypt production (trusted certificates, strict rate limits).
    Letsencrypt,
    /// Let's Encrypt staging (untrusted certificates, for rehearsals).
    LetsencryptStaging,
    /// A private CA run by the reverse proxy itself.
    Internal,
    /// Another ACME directory: step-ca, another public CA, the lab's Pebble.
    Custom(CustomAcme),
}

/// `acme_ca = { directory = "https://…", ca_root = "path" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomAcme {
    /// The ACME directory URL (`https://…`).
    pub directory: String,
    /// PEM file of the root that signs the directory's own TLS certificate, when the
    /// system's roots do not (a private CA): resolved against kiln.toml's folder.
    pub ca_root: Option<PathBuf>,
}

impl AcmeCa {
    /// The spellings accepted in kiln.toml (besides a custom directory table).
    pub const NAMES: &'static [&'static str] = &["letsencrypt", "letsencrypt-staging", "internal"];

    /// Parses a kiln.toml spelling of a named CA.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "letsencrypt" => Some(AcmeCa::Letsencrypt),
            "letsencrypt-staging" => Some(AcmeCa::LetsencryptStaging),
            "internal" => Some(AcmeCa::Internal),
            _ => None,
        }
    }

    /// The kiln.toml spelling (`custom` for a directory table).
    pub fn as_str(&self) -> &'static str {
        match self {
            AcmeCa::Letsencrypt => "letsencrypt",
            AcmeCa::LetsencryptStaging => "letsencrypt-staging",
            AcmeCa::Internal => "internal",
            AcmeCa::Custom(_) => "custom",
        }
    }

    /// The ACME directory URL, `None` for the internal CA.
    pub fn directory_url(&self) -> Option<&str> {
        match self {
            AcmeCa::Letsencrypt => Some("https://acme-v02.api.letsencrypt.org/directory"),
            AcmeCa::LetsencryptStaging => {
                Some("https://acme-staging-v02.api.letsencrypt.org/directory")
            }
            AcmeCa::Internal => None,
            AcmeCa::Custom(c) => Some(&c.directory),
        }
    }

    /// The root the ACME directory's TLS certificate chains to, when not a system root.
    pub fn ca_root(&self) -> Option<&Path> {
        match self {
            AcmeCa::Custom(c) => c.ca_root.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for AcmeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcmeCa::Custom(c) => write!(f, "ACME directory {}", c.directory),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Which reverse proxy fronts an environment's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// Caddy (the default): automatic HTTPS, its own internal CA.
    #[default]
    Caddy,
    /// Traefik (the reference docs' choice): no CA of its own.
    Traefik,
}

impl ProxyKind {
    /// The spellings accepted in kiln.toml.
    pub const NAMES: &'static [&'static str] = &["caddy", "traefik"];

    /// Parses a kiln.toml spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "caddy" => Some(ProxyKind::Caddy),
            "traefik" => Some(ProxyKind::Traefik),
            _ => None,
        }
    }

    /// The kiln.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Caddy => "caddy",
            ProxyKind::Traefik => "traefik",
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment: the same roles on its own hosts, domain and CA.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// Name (`production`, `staging`, `lab`, ...).
    pub name: String,
    /// Services live on `<subdomain>.<domain>`, hosts on `<role>.<domain>`.
    pub domain: String,
    /// Certificate authority of the environment's reverse proxy.
    pub acme_ca: AcmeCa,
    /// The reverse proxy (`[project] proxy`, overridable per environment).
    pub proxy: ProxyKind,
    /// Role of the host the bare domain points to, if any.
    pub apex_host: Option<String>,
    /// Whether backups run in this environment (default true when `[backups]` exists).
    pub backups_enabled: bool,
    /// The environment's `backup_repository`: keys replacing `[backups.repository]`'s.
    pub backup_repository: RepositoryOverride,
    /// Hosts by role.
    pub hosts: BTreeMap<String, Host>,
    /// The private IPv4 range of the environment's WireGuard mesh, `None` when no host of
    /// the environment joins it. Set with `[base.wireguard] range` (top level or
    /// environment); by default `10.<101 + i>.0.0/24` for the environment at 0-based
    /// position `i` in kiln.toml. Never shared with another environment.
    pub wireguard_range: Option<Ipv4Net>,
}

impl Environment {
    /// The host playing `role`, if the environment has one.
    pub fn host(&self, role: &str) -> Option<&Host> {
        self.hosts.get(role)
    }

    /// `<role>.<domain>`: the DNS name of the host playing `role`.
    pub fn host_fqdn(&self, role: &str) -> String {
        format!("{role}.{}", self.domain)
    }

    /// `<subdomain>.<domain>` for a service with a subdomain.
    pub fn service_fqdn(&self, service: &Service) -> Option<String> {
        service
            .subdomain
            .as_ref()
            .map(|s| format!("{s}.{}", self.domain))
    }

    /// `https://<subdomain>.<domain>` for a service reachable over HTTP.
    pub fn service_url(&self, service: &Service) -> Option<String> {
        self.service_fqdn(service).map(|f| format!("https://{f}"))
    }

    /// The WireGuard address of the host playing `role`: with the environment's hosts
    /// sorted by role name, the first gets `.1` of [`Environment::wireguard_range`], the
    /// second `.2`, and so on (hosts with WireGuard turned off keep their place, so turning
    /// one off moves no other). Stable as long as the environment's roles do not change:
    /// a new role sorting before others moves theirs. `None` when the host does not exist
    /// or does not join the mesh.
    pub fn wireguard_address(&self, role: &str) -> Option<Ipv4Addr> {
        let range = self.wireguard_range?;
        self.hosts.get(role)?.base.wireguard.as_ref()?;
        let index = self.hosts.keys().position(|r| r == role)?;
        let address = u32::from(range.network()).checked_add(u32::try_from(index).ok()? + 1)?;
        (address < u32::from(range.broadcast())).then(|| Ipv4Addr::from(address))
    }
}

/// Where a host is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HostAddress {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name (or an alias from ~/.ssh/config).
    Name(String),
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddress::Ip(ip) => write!(f, "{ip}"),
            HostAddress::Name(n) => f.write_str(n),
        }
    }
}

/// Operating system of a host, when declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// RHEL 9 family (Rocky, Alma, CentOS Stream 9).
    Rhel9,
    /// RHEL 10 family.
    Rhel10,
    /// Debian 12 (bookworm).
    Debian12,
    /// Debian 13 (trixie).
    Debian13,
}

impl OsFamily {
    /// The spellings accepted in kiln.toml.
    pub const NAMES: &'static [&'static str] = &["rhel9", "rhel10", "debian12", "debian13"];

    /// Parses a kiln.toml spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rhel9" => Some(OsFamily::Rhel9),
            "rhel10" => Some(OsFamily::Rhel10),
            "debian12" => Some(OsFamily::Debian12),
            "debian13" => Some(OsFamily::Debian13),
            _ => None,
        }
    }

    /// The kiln.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OsFamily::Rhel9 => "rhel9",
            OsFamily::Rhel10 => "rhel10",
            OsFamily::Debian12 => "debian12",
            OsFamily::Debian13 => "debian13",
        }
    }

    /// RHEL family (Rocky, Alma, CentOS Stream) rather than Debian.
    pub fn is_rhel(self) -> bool {
        matches!(self, OsFamily::Rhel9 | OsFamily::Rhel10)
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Role shared across environments (`services`, `monitoring`, ...).
    pub role: String,
    /// Where SSH connects.
    pub address: HostAddress,
    /// IPv6 address, for AAAA records.
    pub address6: Option<Ipv6Addr>,
    /// SSH port (default 22).
    pub ssh_port: u16,
    /// Account kiln logs in with (uses sudo; never root).
    pub admin_user: String,
    /// Pinned OpenSSH public keys, `type base64` (comments dropped).
    pub host_keys: Vec<String>,
    /// Operating system, when declared.
    pub os: Option<OsFamily>,
    /// The hardened base of the host, resolved from the top-level, environment and host
    /// `base` tables over the defaults.
    pub base: Base,
}

impl Host {
    /// `SHA256:...` fingerprints of the pinned keys, as `ssh-keygen -l` prints them,
    /// with the key type: `(type, fingerprint)`.
    pub fn host_key_fingerprints(&self) -> Vec<(String, String)> {
        self.host_keys
            .iter()
            .filter_map(|k| crate::checks::ssh_key_fingerprint(k).ok())
            .collect()
    }
}

/// A service from the catalog, placed on a role.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// Name (`[a-z][a-z0-9-]*`), the key under `[services]`.
    pub name: String,
    /// Catalog kind (`synapse`, `postgres`, ...).
    pub kind: String,
    /// Role of the host it runs on, in every environment.
    pub host: String,
    /// Subdomain (the recipe's default when not given); `None` when not reachable over HTTP.
    pub subdomain: Option<String>,
    /// Pinned version (image tag).
    pub version: Option<String>,
    /// Recipe options, checked against the catalog.
    pub options: toml::Table,
}

impl Service {
    /// The catalog recipe of the service's kind.
    pub fn recipe(&self) -> Option<&'static kiln_catalog::Recipe> {
        kiln_catalog::recipe(&self.kind)
    }

    /// A string option's value.
    pub fn option_str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_str())
    }

    /// The image to run, `image:version` (the recipe's image, or the `image` option of a
    /// custom container).
    pub fn image(&self) -> Option<String> {
        let image = self.recipe()?.image.or_else(|| self.option_str("image"))?;
        Some(match &self.version {
            Some(v) => format!("{image}:{v}"),
            None => image.to_string(),
        })
    }

    /// The port the service's container listens on (the recipe's, or the `port` option).
    pub fn port(&self) -> Option<u16> {
        self.recipe()?.port.or_else(|| {
            self.options
                .get("port")
                .and_then(|p| p.as_integer())
                .and_then(|p| u16::try_from(p).ok())
        })
    }
}

/// `[backups]`: off-site backups to S3 with Object Lock.
#[derive(Debug, Clone, Serialize)]
pub struct Backups {
    /// systemd `OnCalendar=` expression.
    pub schedule: String,
    /// Object Lock retention in days; `None` only with `allow_unlocked = true`.
    pub object_lock_days: Option<u32>,
    /// Which snapshots to keep.
    pub retention: Retention,
    /// Where the backup repository lives.
    pub repository: Repository,
    /// Vault secret names of the credentials.
    pub credentials: BackupCredentials,
}

/// How many snapshots to keep per period (restic `forget --keep-*`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Retention {
    /// Last N daily snapshots.
    pub daily: u32,
    /// Last N weekly snapshots.
    pub weekly: u32,
    /// Last N monthly snapshots.
    pub monthly: u32,
    /// Last N yearly snapshots.
    pub yearly: u32,
}

/// `[backups.repository]`: the S3 location.
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    /// S3 endpoint URL.
    pub endpoint: String,
    /// S3 region, when the provider needs one.
    pub region: Option<String>,
    /// Bucket (must have Object Lock enabled unless `allow_unlocked`).
    pub bucket: String,
    /// Key prefix; `{env}` is replaced by the environment name.
    pub prefix: String,
}

/// An environment's `backup_repository`: each key set replaces `[backups.repository]`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepositoryOverride {
    /// S3 endpoint URL.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Bucket.
    pub bucket: Option<String>,
    /// Key prefix (with `{env}`).
    pub prefix: Option<String>,
}

impl Backups {
    /// The repository of environment `env`: `[backups.repository]` with the keys the
    /// environment's `backup_repository` sets replaced (the prefix's `{env}` not yet
    /// filled in: [`Repository::prefix_for`]).
    pub fn repository_for(&self, env: &Environment) -> Repository {
        let o = &env.backup_repository;
        let r = &self.repository;
        Repository {
            endpoint: o.endpoint.clone().unwrap_or_else(|| r.endpoint.clone()),
            region: o.region.clone().or_else(|| r.region.clone()),
            bucket: o.bucket.clone().unwrap_or_else(|| r.bucket.clone()),
            prefix: o.prefix.clone().unwrap_or_else(|| r.prefix.clone()),
        }
    }
}

impl Repository {
    /// The prefix for environment `env`.
    pub fn prefix_for(&self, env: &str) -> String {
        self.prefix.replace("{env}", env)
    }
}

/// Names of vault secrets (never values).
#[derive(Debug, Clone, Serialize)]
pub struct BackupCredentials {
    /// The servers' S3 credential (write and read, no delete).
    pub server: S3Credential,
    /// The owner's admin S3 credential (laptop only: init, forget, lifecycle).
    pub admin: S3Credential,
    /// The read-only S3 credential (drills, the runbook's paper page).
    pub readonly: S3Credential,
    /// Secret holding the repository encryption password.
    pub repository_password: String,
}

impl BackupCredentials {
    /// The three S3 credentials with what each is for, servers' first.
    pub fn s3(&self) -> [(&S3Credential, &'static str); 3] {
        [
            (&self.server, "the servers' (write and read, no delete)"),
            (&self.admin, "the owner's admin (init, forget, lifecycle)"),
            (&self.readonly, "the read-only (drills, runbook)"),
        ]
    }
}

/// An S3 credential as two vault secrets, `<name>_access_key` and `<name>_secret_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Credential {
    /// The name both secrets start with, as kiln.toml gives it.
    pub name: String,
}

impl S3Credential {
    /// The vault secret holding the access key id.
    pub fn access_key(&self) -> String {
        format!("{}_access_key", self.name)
    }

    /// The vault secret holding the secret access key.
    pub fn secret_key(&self) -> String {
        format!("{}_secret_key", self.name)
    }
}

/// `[monitoring]`: the monitoring host and where alerts go.
#[derive(Debug, Clone, Serialize)]
pub struct Monitoring {
    /// Role of the host running the monitoring stack.
    pub host: String,
    /// E-mail address alerts are sent to.
    pub alert_email: Option<String>,
    /// Webhook (e.g. ntfy) alerts are posted to.
    pub alert_webhook: Option<String>,
}

/// `[roles.<role>]`: plain resources for the hosts playing a role (contract 1).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Role {
    /// The role these resources apply to.
    pub name: String,
    /// Distribution packages to install.
    pub packages: Vec<String>,
    /// Free-form template variables (`vars` in templates).
    pub vars: toml::Table,
    /// Directories to create.
    pub directories: Vec<Directory>,
    /// Files to write.
    pub files: Vec<File>,
    /// Symbolic links to create.
    pub symlinks: Vec<Symlink>,
    /// Users to create.
    pub users: Vec<User>,
    /// Groups to create.
    pub groups: Vec<Group>,
    /// systemd units to install, enable and start.
    pub units: Vec<Unit>,
    /// Commands to run (guarded by `unless`, or triggered by file changes).
    pub commands: Vec<Command>,
}

/// A directory on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Directory {
    /// Absolute path.
    pub path: PathBuf,
    /// Permissions (default 0o755).
    pub mode: u32,
    /// Owner (default root).
    pub owner: String,
    /// Group (default root).
    pub group: String,
}

/// Where a file's (or unit's) content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// A minijinja template, path relative to kiln.toml's folder.
    Template(PathBuf),
    /// Inline text.
    Inline(String),
    /// A file copied verbatim, path relative to kiln.toml's folder.
    Source(PathBuf),
}

/// A file on the host.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    /// Absolute path.
    pub path: PathBuf,
    /// Where the content comes from.
    pub content: Content,
    /// Permissions (default 0o644).
    pub mode: u32,
    /// Owner (default root).
    pub owner: String,
    /// Group (default root).
    pub group: String,
    /// Units restarted when this file changes (all declared in the same role).
    pub notify: Vec<String>,
}

/// A symbolic link on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Symlink {
    /// The link's absolute path.
    pub path: PathBuf,
    /// What it points to.
    pub target: PathBuf,
}

/// A user account on the host.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// A system account (no aging, low uid).
    pub system: bool,
    /// Home directory.
    pub home: Option<PathBuf>,
    /// Login shell.
    pub shell: Option<PathBuf>,
    /// Supplementary groups.
    pub groups: Vec<String>,
}

/// A group on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// A system group (low gid).
    pub system: bool,
}

/// A systemd unit on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// Unit name, with its type suffix (`app.service`).
    pub name: String,
    /// Where the unit file's content comes from.
    pub content: Content,
    /// Enabled at boot (default true).
    pub enabled: bool,
    /// Running (default true).
    pub started: bool,
}

/// A command run on the host by `/bin/sh -c`.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    /// Unique name within the role.
    pub name: String,
    /// The shell command.
    pub run: String,
    /// Guard: the command is skipped when this exits 0.
    pub unless: Option<String>,
    /// Managed file paths whose change also triggers the command.
    pub triggered_by: Vec<PathBuf>,
}
