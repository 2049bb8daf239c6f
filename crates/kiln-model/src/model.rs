//! The validated infrastructure model: plain typed values, no spans, no I/O. Built only by
//! [`crate::load`] / [`crate::parse_str`], so a [`Model`] in hand is always valid.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The whole of kiln.toml, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub project: Project,
    /// In the order of the file.
    pub environments: Vec<Environment>,
    /// In the order of the file.
    pub services: Vec<Service>,
    pub backups: Option<Backups>,
    pub monitoring: Option<Monitoring>,
    /// Extra resources per host role (`[roles.<role>]`).
    pub roles: BTreeMap<String, Role>,
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

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    /// Base domain.
    pub domain: String,
    /// ACME account contact (certificate expiry warnings).
    pub acme_email: String,
}

/// Which ACME certificate authority an environment's reverse proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeCa {
    /// Let's Encrypt production (trusted certificates, strict rate limits).
    Letsencrypt,
    /// Let's Encrypt staging (untrusted certificates, for rehearsals).
    LetsencryptStaging,
    /// A private CA run by the reverse proxy itself (the lab).
    Internal,
}

impl AcmeCa {
    pub const NAMES: &'static [&'static str] = &["letsencrypt", "letsencrypt-staging", "internal"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "letsencrypt" => Some(AcmeCa::Letsencrypt),
            "letsencrypt-staging" => Some(AcmeCa::LetsencryptStaging),
            "internal" => Some(AcmeCa::Internal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcmeCa::Letsencrypt => "letsencrypt",
            AcmeCa::LetsencryptStaging => "letsencrypt-staging",
            AcmeCa::Internal => "internal",
        }
    }

    /// The ACME directory URL, `None` for the internal CA.
    pub fn directory_url(self) -> Option<&'static str> {
        match self {
            AcmeCa::Letsencrypt => Some("https://acme-v02.api.letsencrypt.org/directory"),
            AcmeCa::LetsencryptStaging => {
                Some("https://acme-staging-v02.api.letsencrypt.org/directory")
            }
            AcmeCa::Internal => None,
        }
    }
}

impl fmt::Display for AcmeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment: the same roles on its own hosts, domain and CA.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    /// Services live on `<subdomain>.<domain>`, hosts on `<role>.<domain>`.
    pub domain: String,
    pub acme_ca: AcmeCa,
    /// Role of the host the bare domain points to, if any.
    pub apex_host: Option<String>,
    /// Whether backups run in this environment (default true when `[backups]` exists).
    pub backups_enabled: bool,
    /// Hosts by role.
    pub hosts: BTreeMap<String, Host>,
}

impl Environment {
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
}

/// Where a host is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HostAddress {
    Ip(IpAddr),
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
    Rhel9,
    Rhel10,
    Debian12,
    Debian13,
}

impl OsFamily {
    pub const NAMES: &'static [&'static str] = &["rhel9", "rhel10", "debian12", "debian13"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rhel9" => Some(OsFamily::Rhel9),
            "rhel10" => Some(OsFamily::Rhel10),
            "debian12" => Some(OsFamily::Debian12),
            "debian13" => Some(OsFamily::Debian13),
            _ => None,
        }
    }

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
    pub role: String,
    pub address: HostAddress,
    pub address6: Option<Ipv6Addr>,
    pub ssh_port: u16,
    pub admin_user: String,
    /// Pinned OpenSSH public keys, `type base64` (comments dropped).
    pub host_keys: Vec<String>,
    pub os: Option<OsFamily>,
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
    pub fn recipe(&self) -> Option<&'static kiln_catalog::Recipe> {
        kiln_catalog::recipe(&self.kind)
    }

    /// A string option's value.
    pub fn option_str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Backups {
    /// systemd `OnCalendar=` expression.
    pub schedule: String,
    /// Object Lock retention in days; `None` only with `allow_unlocked = true`.
    pub object_lock_days: Option<u32>,
    pub retention: Retention,
    pub repository: Repository,
    pub credentials: BackupCredentials,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    /// S3 endpoint URL.
    pub endpoint: String,
    pub region: Option<String>,
    pub bucket: String,
    /// Key prefix; `{env}` is replaced by the environment name.
    pub prefix: String,
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
    pub access_key: String,
    pub secret_key: String,
    pub repository_password: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Monitoring {
    /// Role of the host running the monitoring stack.
    pub host: String,
    pub alert_email: Option<String>,
    pub alert_webhook: Option<String>,
}

/// `[roles.<role>]`: plain resources for the hosts playing a role (contract 1).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Role {
    pub name: String,
    pub packages: Vec<String>,
    pub vars: toml::Table,
    pub directories: Vec<Directory>,
    pub files: Vec<File>,
    pub symlinks: Vec<Symlink>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub units: Vec<Unit>,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Directory {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct File {
    pub path: PathBuf,
    pub content: Content,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Units restarted when this file changes (all declared in the same role).
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Symlink {
    pub path: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub system: bool,
    pub home: Option<PathBuf>,
    pub shell: Option<PathBuf>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub system: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    pub name: String,
    pub content: Content,
    pub enabled: bool,
    pub started: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub name: String,
    pub run: String,
    pub unless: Option<String>,
    /// Managed file paths whose change also triggers the command.
    pub triggered_by: Vec<PathBuf>,
}
