//! The parse layer: kiln.toml as written, every value with its byte span, unknown keys
//! rejected. Decoding goes item by item (project, each environment, host, service, role
//! resource...) so one mistake does not hide the next: every unknown key and the first
//! type error of each item are reported together.
//!
//! No meaning is checked here (that is `validate`): only shape and types.

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::{ConfigError, Source, suggest};
use crate::model::{AcmeCa, OsFamily, ProxyKind};

pub(crate) type S<T> = Spanned<T>;

// The doc comments of the types and fields below are the kiln.toml reference: they become
// the JSON Schema's descriptions (`crate::reference`), from which docs/config-reference.md
// is rendered. `Spanned` has no schema of its own: each spanned field says what it holds
// with `#[schemars(with = ...)]`. Defaults applied later by validation are documented with
// `extend("default" = ...)`, from the constants validation uses.

/// SSH port when a host declares none.
pub(crate) const DEFAULT_SSH_PORT: u16 = 22;
/// Permissions of a directory that declares no `mode`.
pub(crate) const DEFAULT_DIRECTORY_MODE: u32 = 0o755;
/// Permissions of a file that declares no `mode`.
pub(crate) const DEFAULT_FILE_MODE: u32 = 0o644;
/// Owner and group of a directory or file that declares none.
pub(crate) const DEFAULT_OWNER: &str = "root";
/// Key prefix of the backup repository when none is given.
pub(crate) const DEFAULT_BACKUP_PREFIX: &str = "{env}";
/// UDP port WireGuard listens on when `[base.wireguard] port` is not given.
pub(crate) const DEFAULT_WIREGUARD_PORT: u16 = 51820;
/// WireGuard `PersistentKeepalive` in seconds when `[base.wireguard] keepalive` is not given.
pub(crate) const DEFAULT_WIREGUARD_KEEPALIVE: u16 = 25;
/// Second octet of the first environment's default WireGuard range: the environment at
/// 0-based index `i` in the file gets `10.(101 + i).0.0/24`.
pub(crate) const WIREGUARD_RANGE_FIRST_OCTET: u8 = 101;
/// Deadline of the lockout guard when `[base] rollback_seconds` is not given.
pub(crate) const DEFAULT_ROLLBACK_SECONDS: u64 = 60;
/// Shortest lockout guard deadline: kiln must have time to open a fresh SSH connection.
pub(crate) const MIN_ROLLBACK_SECONDS: u64 = 20;
/// Longest lockout guard deadline: a locked-out owner gets back in within minutes.
pub(crate) const MAX_ROLLBACK_SECONDS: u64 = 600;
/// `[base.updates] reboot` when not given.
pub(crate) const DEFAULT_REBOOT: &str = "never";

/// Who and what the infrastructure is for.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Project")]
pub(crate) struct RawProject {
    /// Short name of the infrastructure (`[a-z][a-z0-9-]*`), used in resource names.
    #[schemars(with = "String")]
    pub name: S<String>,
    /// Base domain you own: services live on its subdomains.
    #[schemars(with = "String")]
    pub domain: S<String>,
    /// ACME account contact: the certificate authority warns here before a certificate
    /// expires.
    #[schemars(with = "String")]
    pub acme_email: S<String>,
    /// The reverse proxy in front of every environment's services: `caddy` (default) or
    /// `traefik`. An environment may override it.
    #[schemars(with = "Option<String>", extend("enum" = ProxyKind::NAMES, "default" = "caddy"))]
    pub proxy: Option<S<String>>,
}

/// One environment (`production`, `staging`, `lab`, ...): the same roles on its own
/// hosts, domain and certificate authority.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Environment")]
pub(crate) struct RawEnvironment {
    /// Domain of the environment: services live on `<subdomain>.<domain>`, hosts on
    /// `<role>.<domain>`. Two environments never share a domain.
    #[schemars(with = "String")]
    pub domain: S<String>,
    /// Certificate authority of the environment's reverse proxy: `letsencrypt` (trusted
    /// certificates, strict rate limits), `letsencrypt-staging` (untrusted, for rehearsals),
    /// `internal` (a private CA run by Caddy itself), or another ACME directory
    /// `{ directory = "https://…", ca_root = "path/to/root.pem" }` (step-ca, another public
    /// CA, the lab's Pebble; `ca_root` when the directory's TLS certificate is not signed by
    /// a system root).
    #[schemars(with = "RawAcmeCaSchema")]
    pub acme_ca: S<toml::Value>,
    /// The reverse proxy of this environment (default: `[project] proxy`).
    #[schemars(with = "Option<String>", extend("enum" = ProxyKind::NAMES))]
    pub proxy: Option<S<String>>,
    /// Role of the host the bare domain points to, if any.
    #[schemars(with = "Option<String>")]
    pub apex_host: Option<S<String>>,
    /// Whether backups run in this environment (needs a `[backups]` section).
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub backups: Option<S<bool>>,
    /// Where this environment's backups go instead, over `[backups.repository]`: each key
    /// set here replaces that table's (the lab's S3 server, which `kiln lab up --s3`
    /// records here; a staging bucket).
    #[schemars(with = "Option<RawRepositoryOverride>")]
    pub backup_repository: Option<S<RawRepositoryOverride>>,
    /// The hardened base of this environment's hosts, over the top-level `[base]`: the
    /// same keys, each one set here replacing the top level's. The WireGuard `range` is
    /// set here (or at the top level), not per host.
    // Decoded by hand (see `decode_base`).
    #[serde(default, skip_deserializing)]
    #[schemars(!default, !skip_deserializing, with = "Option<RawBase>")]
    #[schemars(extend("x-kiln-same-as" = "base"))]
    pub base: Option<S<RawBase>>,
    /// The environment's servers, one per role (`[environments.<env>.hosts.<role>]`).
    /// Every environment has the same roles.
    // Decoded host by host (see `decode_document`); `None` for a host that failed to
    // decode (its errors are already reported).
    #[serde(default, skip_deserializing)]
    #[schemars(!default, !skip_deserializing, with = "BTreeMap<String, RawHost>")]
    #[schemars(extend("x-kiln-key" = "role"))]
    pub hosts: Vec<(S<String>, Option<S<RawHost>>)>,
}

/// The shapes `acme_ca` takes, for the schema only (decoded from a `toml::Value` by
/// `validate::environments`, which keeps the spans).
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "AcmeCa")]
enum RawAcmeCaSchema {
    /// A CA kiln knows by name.
    #[schemars(extend("enum" = AcmeCa::NAMES))]
    Named(String),
    /// Another ACME directory.
    Custom {
        /// The ACME directory URL (`https://…/directory`).
        directory: String,
        /// PEM root of the directory's TLS certificate, relative to kiln.toml's folder.
        ca_root: Option<String>,
    },
}

/// One server, playing one role in its environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Host")]
pub(crate) struct RawHost {
    /// Where SSH connects: an IPv4 or IPv6 address, or a DNS name.
    #[schemars(with = "String")]
    pub address: S<String>,
    /// The host's IPv6 address, for AAAA records.
    #[schemars(with = "Option<String>")]
    pub address6: Option<S<String>>,
    /// SSH port.
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    #[schemars(extend("default" = DEFAULT_SSH_PORT))]
    pub ssh_port: Option<S<i64>>,
    /// Account kiln logs in with over SSH; it needs sudo, and is never `root`.
    #[schemars(with = "String")]
    pub admin_user: S<String>,
    /// Pinned OpenSSH host public keys (`type base64`, as in
    /// `/etc/ssh/ssh_host_*_key.pub`). `kiln trust` fetches them and shows their
    /// fingerprints; until then kiln refuses to connect.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub host_keys: Vec<S<String>>,
    /// Operating system of the host, when declared.
    #[schemars(with = "Option<String>", extend("enum" = OsFamily::NAMES))]
    pub os: Option<S<String>>,
    /// The hardened base of this host, over its environment's and the top-level `[base]`:
    /// the same keys (except the WireGuard `range`, an environment's), each one set here
    /// replacing theirs.
    // Decoded by hand (see `decode_base`).
    #[serde(default, skip_deserializing)]
    #[schemars(!default, !skip_deserializing, with = "Option<RawBase>")]
    #[schemars(extend("x-kiln-same-as" = "base"))]
    pub base: Option<S<RawBase>>,
}

/// A service from the catalog, placed on a role. Its options depend on its `kind` (see
/// the catalog below).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Service")]
pub(crate) struct RawService {
    /// Catalog kind of the service.
    #[schemars(with = "String")]
    pub kind: S<String>,
    /// Role of the host it runs on, in every environment.
    #[schemars(with = "String")]
    pub host: S<String>,
    /// Subdomain it is served on, `<subdomain>.<environment domain>` (default: the kind's
    /// default subdomain; services not reachable over HTTP have none).
    #[schemars(with = "Option<String>")]
    pub subdomain: Option<S<String>>,
    /// Pinned version: the container image's tag (each kind below says whether it is
    /// required).
    #[schemars(with = "Option<String>")]
    pub version: Option<S<String>>,
    /// Options of the kind (each kind below lists its own), e.g.
    /// `options = { server_name = "example.org", database = "postgres" }`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub options: BTreeMap<S<String>, S<toml::Value>>,
}

/// Off-site backups of every environment that has `backups` on, to an S3 bucket with
/// Object Lock.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Backups")]
pub(crate) struct RawBackups {
    /// When backups run: a systemd `OnCalendar=` expression, like `*-*-* 03:00:00`.
    #[schemars(with = "String")]
    pub schedule: S<String>,
    /// Object Lock retention in days (1 to 36500): a compromised server cannot delete
    /// backups younger than this. Required unless `allow_unlocked = true`.
    #[schemars(with = "Option<i64>", range(min = 1, max = 36500))]
    pub object_lock_days: Option<S<i64>>,
    /// Accept backups without Object Lock, knowingly (deletable by a compromised server).
    #[schemars(with = "Option<bool>", extend("default" = false))]
    pub allow_unlocked: Option<S<bool>>,
    /// Which snapshots to keep, e.g. `{ daily = 7, weekly = 4, monthly = 12 }`.
    #[schemars(with = "RawRetention")]
    pub retention: S<RawRetention>,
    /// Where the backup repository lives.
    #[schemars(with = "RawRepository")]
    pub repository: S<RawRepository>,
    /// Names of the vault secrets holding the credentials (never the values).
    #[schemars(with = "RawCredentials")]
    pub credentials: S<RawCredentials>,
}

/// How many snapshots to keep per period (restic `forget --keep-*`); at least one is
/// more than 0.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retention")]
pub(crate) struct RawRetention {
    /// Last N daily snapshots.
    #[schemars(with = "Option<i64>", range(min = 0, max = 10000), extend("default" = 0))]
    pub daily: Option<S<i64>>,
    /// Last N weekly snapshots.
    #[schemars(with = "Option<i64>", range(min = 0, max = 10000), extend("default" = 0))]
    pub weekly: Option<S<i64>>,
    /// Last N monthly snapshots.
    #[schemars(with = "Option<i64>", range(min = 0, max = 10000), extend("default" = 0))]
    pub monthly: Option<S<i64>>,
    /// Last N yearly snapshots.
    #[schemars(with = "Option<i64>", range(min = 0, max = 10000), extend("default" = 0))]
    pub yearly: Option<S<i64>>,
}

/// The S3 location of the backup repository.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Repository")]
pub(crate) struct RawRepository {
    /// S3 endpoint URL, like `https://s3.fr-par.scw.cloud`.
    #[schemars(with = "String")]
    pub endpoint: S<String>,
    /// S3 region, when the provider needs one.
    #[schemars(with = "Option<String>")]
    pub region: Option<S<String>>,
    /// Bucket name; it must have Object Lock enabled unless `allow_unlocked = true`.
    #[schemars(with = "String")]
    pub bucket: S<String>,
    /// Key prefix of the repository in the bucket; `{env}` is replaced by the
    /// environment's name (one repository per environment).
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_BACKUP_PREFIX))]
    pub prefix: Option<S<String>>,
}

/// An environment's own backup repository: the keys of `[backups.repository]`, each
/// optional, each one set replacing the top level's.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RepositoryOverride")]
pub(crate) struct RawRepositoryOverride {
    /// S3 endpoint URL.
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<S<String>>,
    /// S3 region.
    #[schemars(with = "Option<String>")]
    pub region: Option<S<String>>,
    /// Bucket name.
    #[schemars(with = "Option<String>")]
    pub bucket: Option<S<String>>,
    /// Key prefix; `{env}` is replaced by the environment's name.
    #[schemars(with = "Option<String>")]
    pub prefix: Option<S<String>>,
}

/// Names of vault secrets (`kiln secrets set NAME`), never their values. Each of the
/// three S3 credentials `server`, `admin` and `readonly` is a name `N` whose access key id
/// and secret key are the vault secrets `N_access_key` and `N_secret_key`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Credentials")]
pub(crate) struct RawCredentials {
    /// The servers' S3 credential: write and read, never delete an object version nor
    /// change the bucket's lock, versioning or lifecycle (`kiln backup init` proves it).
    /// The only one sent to the servers.
    #[schemars(with = "String")]
    pub server: S<String>,
    /// The owner's admin S3 credential, used from the laptop only: creating the
    /// repository, `kiln backup forget`, the bucket's lifecycle rule.
    #[schemars(with = "String")]
    pub admin: S<String>,
    /// A read-only S3 credential, for drills and the runbook's paper page.
    #[schemars(with = "String")]
    pub readonly: S<String>,
    /// Secret holding the backup repository's encryption password.
    #[schemars(with = "String")]
    pub repository_password: S<String>,
}

/// Where the monitoring stack runs and where its alerts go (at least one of
/// `alert_email` and `alert_webhook`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Monitoring")]
pub(crate) struct RawMonitoring {
    /// Role of the host running the `monitoring` service.
    #[schemars(with = "String")]
    pub host: S<String>,
    /// E-mail address alerts are sent to.
    #[schemars(with = "Option<String>")]
    pub alert_email: Option<S<String>>,
    /// Webhook URL alerts are posted to (e.g. `https://ntfy.sh/<topic>`).
    #[schemars(with = "Option<String>")]
    pub alert_webhook: Option<S<String>>,
}

/// Plain resources for the hosts playing a role, in every environment, on top of the
/// services.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Role", deny_unknown_fields)]
pub(crate) struct RawRole {
    /// Distribution packages to install (apt or dnf names).
    #[schemars(with = "Option<Vec<String>>", extend("default" = []))]
    pub packages: Vec<S<String>>,
    /// Free-form variables for this role's templates (`{{ vars.<name> }}`).
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub vars: Option<toml::Table>,
    /// Directories to create.
    #[schemars(with = "Option<Vec<RawDirectory>>", extend("default" = []))]
    pub directories: Vec<S<RawDirectory>>,
    /// Files to write.
    #[schemars(with = "Option<Vec<RawFile>>", extend("default" = []))]
    pub files: Vec<S<RawFile>>,
    /// Symbolic links to create.
    #[schemars(with = "Option<Vec<RawSymlink>>", extend("default" = []))]
    pub symlinks: Vec<S<RawSymlink>>,
    /// User accounts to create.
    #[schemars(with = "Option<Vec<RawUser>>", extend("default" = []))]
    pub users: Vec<S<RawUser>>,
    /// Groups to create.
    #[schemars(with = "Option<Vec<RawGroup>>", extend("default" = []))]
    pub groups: Vec<S<RawGroup>>,
    /// systemd units to install, enable and start.
    #[schemars(with = "Option<Vec<RawUnit>>", extend("default" = []))]
    pub units: Vec<S<RawUnit>>,
    /// Commands to run, guarded by `unless` or triggered by file changes.
    #[schemars(with = "Option<Vec<RawCommand>>", extend("default" = []))]
    pub commands: Vec<S<RawCommand>>,
}

pub(crate) const ROLE_KEYS: &[&str] = &[
    "packages",
    "vars",
    "directories",
    "files",
    "symlinks",
    "users",
    "groups",
    "units",
    "commands",
];

/// A directory on the host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Directory")]
pub(crate) struct RawDirectory {
    /// Absolute path.
    #[schemars(with = "String")]
    pub path: S<String>,
    /// Permissions, as an octal string like `"0750"`.
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = format!("{DEFAULT_DIRECTORY_MODE:04o}")))]
    pub mode: Option<S<String>>,
    /// Owning user.
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_OWNER))]
    pub owner: Option<S<String>>,
    /// Owning group.
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_OWNER))]
    pub group: Option<S<String>>,
}

/// A file on the host; its content comes from exactly one of `template`, `content` and
/// `source`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "File")]
pub(crate) struct RawFile {
    /// Absolute path.
    #[schemars(with = "String")]
    pub path: S<String>,
    /// A minijinja template rendered for each host, path relative to kiln.toml's folder.
    #[schemars(with = "Option<String>")]
    pub template: Option<S<String>>,
    /// The content, inline.
    #[schemars(with = "Option<String>")]
    pub content: Option<S<String>>,
    /// A file copied verbatim, path relative to kiln.toml's folder (inside the
    /// repository).
    #[schemars(with = "Option<String>")]
    pub source: Option<S<String>>,
    /// Permissions, as an octal string like `"0640"`.
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = format!("{DEFAULT_FILE_MODE:04o}")))]
    pub mode: Option<S<String>>,
    /// Owning user.
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_OWNER))]
    pub owner: Option<S<String>>,
    /// Owning group.
    #[schemars(with = "Option<String>", extend("default" = DEFAULT_OWNER))]
    pub group: Option<S<String>>,
    /// Units restarted when this file changes (declared in the same role).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub notify: Vec<S<String>>,
}

/// A symbolic link on the host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Symlink")]
pub(crate) struct RawSymlink {
    /// The link's absolute path.
    #[schemars(with = "String")]
    pub path: S<String>,
    /// What it points to.
    #[schemars(with = "String")]
    pub target: S<String>,
}

/// A user account on the host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "User")]
pub(crate) struct RawUser {
    /// Login name.
    #[schemars(with = "String")]
    pub name: S<String>,
    /// A system account (low uid, no password aging).
    #[serde(default)]
    pub system: bool,
    /// Home directory.
    #[schemars(with = "Option<String>")]
    pub home: Option<S<String>>,
    /// Login shell.
    #[schemars(with = "Option<String>")]
    pub shell: Option<S<String>>,
    /// Supplementary groups.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub groups: Vec<S<String>>,
}

/// A group on the host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Group")]
pub(crate) struct RawGroup {
    /// Group name.
    #[schemars(with = "String")]
    pub name: S<String>,
    /// A system group (low gid).
    #[serde(default)]
    pub system: bool,
}

/// A systemd unit on the host; its unit file comes from exactly one of `template`,
/// `content` and `source`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Unit")]
pub(crate) struct RawUnit {
    /// Unit name with its type suffix, like `app.service`.
    #[schemars(with = "String")]
    pub name: S<String>,
    /// A minijinja template, path relative to kiln.toml's folder.
    #[schemars(with = "Option<String>")]
    pub template: Option<S<String>>,
    /// The unit file, inline.
    #[schemars(with = "Option<String>")]
    pub content: Option<S<String>>,
    /// A unit file copied verbatim, path relative to kiln.toml's folder.
    #[schemars(with = "Option<String>")]
    pub source: Option<S<String>>,
    /// Enabled at boot.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// Running.
    #[schemars(extend("default" = true))]
    pub started: Option<bool>,
}

/// A command run on the host by `/bin/sh -c`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Command")]
pub(crate) struct RawCommand {
    /// Unique name within the role.
    #[schemars(with = "String")]
    pub name: S<String>,
    /// The shell command.
    #[schemars(with = "String")]
    pub run: S<String>,
    /// Guard: the command is skipped when this shell command exits 0.
    #[schemars(with = "Option<String>")]
    pub unless: Option<S<String>>,
    /// Paths of files declared in the same role whose change also runs the command.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub triggered_by: Vec<S<String>>,
}

/// The hardened base every host gets: hardened sshd, a firewall, automatic security
/// updates, time sync, node exporter, a WireGuard mesh between the environment's hosts,
/// and the lockout guard that rolls a change back when it would cut you off. Every part
/// is on unless turned off here; a part that is a table is tuned by its keys.
/// `[environments.<env>.base]` and `[environments.<env>.hosts.<role>.base]` take the same
/// keys: the host's override the environment's, which override these, which override the
/// defaults. A table at a lower level changes only the keys it sets (a list replaces the
/// upper level's list); `sshd = false` turns a part off, `sshd = true` back on.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "Base", deny_unknown_fields)]
pub(crate) struct RawBase {
    /// sshd, hardened by an early drop-in (`/etc/ssh/sshd_config.d/00-kiln.conf`): login
    /// with a key only (password and keyboard-interactive login are always off: that is
    /// not configurable), no root login, only the admin user (and `allow_groups`),
    /// `LogLevel VERBOSE`. `false` leaves sshd's configuration alone.
    #[schemars(with = "Option<SwitchSchema<RawSshd>>", extend("default" = true))]
    pub sshd: Option<S<Switch<RawSshd>>>,
    /// firewalld: the public zone allows SSH (on the host's `ssh_port`), 80/443 on hosts
    /// that run the reverse proxy, the WireGuard port, and `extra_ports`; `wg0` is in a
    /// trusted zone; everything else is refused. `false` leaves the firewall alone.
    #[schemars(with = "Option<SwitchSchema<RawFirewall>>", extend("default" = true))]
    pub firewall: Option<S<Switch<RawFirewall>>>,
    /// Automatic security updates: dnf-automatic on RHEL, unattended-upgrades on Debian,
    /// and a metric of pending updates and required reboots for monitoring.
    #[schemars(with = "Option<SwitchSchema<RawUpdates>>", extend("default" = true))]
    pub updates: Option<S<Switch<RawUpdates>>>,
    /// Time sync (chrony) and the host name (its role): certificates, backups
    /// and RPO figures depend on a correct clock.
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub time: Option<S<bool>>,
    /// Prometheus node exporter, listening on the host's WireGuard address only, with a
    /// textfile collector directory the base and the backups write metrics into.
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub node_exporter: Option<S<bool>>,
    /// The WireGuard mesh: `wg0` on every host of the environment, every other host a
    /// peer; internal traffic (monitoring scrapes) goes over it only.
    #[schemars(with = "Option<SwitchSchema<RawWireguard>>", extend("default" = true))]
    pub wireguard: Option<S<Switch<RawWireguard>>>,
    /// Deadline of the lockout guard, in seconds: a change to sshd, the firewall or
    /// WireGuard is rolled back by the host itself unless kiln proves, on a fresh SSH
    /// connection, that you can still log in within this time.
    #[schemars(with = "Option<i64>", range(min = MIN_ROLLBACK_SECONDS, max = MAX_ROLLBACK_SECONDS))]
    #[schemars(extend("default" = DEFAULT_ROLLBACK_SECONDS))]
    pub rollback_seconds: Option<S<i64>>,
}

pub(crate) const BASE_KEYS: &[&str] = &[
    "sshd",
    "firewall",
    "updates",
    "time",
    "node_exporter",
    "wireguard",
    "rollback_seconds",
];

/// A part of the base as written: `true`/`false`, or a table tuning it.
#[derive(Debug)]
pub(crate) enum Switch<T> {
    /// `part = true` (on, with the upper level's settings) or `part = false` (off).
    Bool(bool),
    /// `[base.<part>]` or `part = { … }`.
    Table(T),
}

/// The schema of a [`Switch`]: `true`, `false` or the part's table.
pub(crate) struct SwitchSchema<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for SwitchSchema<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{}Switch", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [{ "type": "boolean" }, generator.subschema_for::<T>()]
        })
    }
}

/// Tunes the hardened sshd; `sshd = true` or `sshd = false` only turns it on or off.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BaseSshd")]
pub(crate) struct RawSshd {
    /// Whether kiln hardens sshd (`sshd = false` says the same).
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub enabled: Option<S<bool>>,
    /// Groups whose members may log in besides the admin user (`AllowGroups`), e.g.
    /// `["ops"]`; the admin user always may.
    #[schemars(with = "Option<Vec<String>>", extend("default" = []))]
    pub allow_groups: Option<S<Vec<S<String>>>>,
    /// Addresses or CIDR ranges exempt from OpenSSH's `PerSourcePenalties` (OpenSSH 9.8
    /// and later), e.g. `["203.0.113.7", "2001:db8:7::/48"]`: your own address, so that a
    /// few failed attempts do not lock you out for a while.
    #[schemars(with = "Option<Vec<String>>", extend("default" = []))]
    pub penalties_exempt: Option<S<Vec<S<String>>>>,
}

/// Tunes the firewall; `firewall = true` or `firewall = false` only turns it on or off.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BaseFirewall")]
pub(crate) struct RawFirewall {
    /// Whether kiln manages the firewall (`firewall = false` says the same).
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub enabled: Option<S<bool>>,
    /// Ports opened on the public zone besides those kiln derives (SSH, 80/443 for the
    /// reverse proxy, WireGuard), as `port/protocol`: `["8448/tcp", "3478/udp"]`.
    #[schemars(with = "Option<Vec<String>>", extend("default" = []))]
    pub extra_ports: Option<S<Vec<S<String>>>>,
}

/// Tunes automatic security updates; `updates = true` or `updates = false` only turns it on or off.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BaseUpdates")]
pub(crate) struct RawUpdates {
    /// Whether kiln sets up automatic security updates (`updates = false` says the same).
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub enabled: Option<S<bool>>,
    /// Whether the host reboots by itself after an update that needs it: `never` (the
    /// metric tells monitoring a reboot is pending) or `when-needed`.
    #[schemars(with = "Option<String>", extend("enum" = crate::model::Reboot::NAMES))]
    #[schemars(extend("default" = DEFAULT_REBOOT))]
    pub reboot: Option<S<String>>,
    /// When the host may reboot with `reboot = "when-needed"`, host's local time,
    /// `"HH:MM-HH:MM"` (may cross midnight: `"23:30-01:00"`); any time when not given.
    #[schemars(with = "Option<String>")]
    pub reboot_window: Option<S<String>>,
}

/// Tunes the WireGuard mesh; `wireguard = true` or `wireguard = false` only turns it on or off.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BaseWireguard")]
pub(crate) struct RawWireguard {
    /// Whether the host joins the mesh (`wireguard = false` says the same).
    #[schemars(with = "Option<bool>", extend("default" = true))]
    pub enabled: Option<S<bool>>,
    /// The environment's private IPv4 range, like `"10.50.0.0/24"` (prefix at most /30,
    /// room for every host). Default: `10.<101 + i>.0.0/24` for the environment at 0-based
    /// position `i` in kiln.toml (production first: `10.101.0.0/24`), so set it when you
    /// reorder environments. Hosts get `.1`, `.2`, … in the order of their roles' names.
    /// Two environments never share addresses. An environment's setting, not a host's.
    #[schemars(with = "Option<String>")]
    pub range: Option<S<String>>,
    /// UDP port WireGuard listens on.
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    #[schemars(extend("default" = DEFAULT_WIREGUARD_PORT))]
    pub port: Option<S<i64>>,
    /// `PersistentKeepalive` towards every peer, in seconds (`0`: none).
    #[schemars(with = "Option<i64>", range(min = 0, max = 65535))]
    #[schemars(extend("default" = DEFAULT_WIREGUARD_KEEPALIVE))]
    pub keepalive: Option<S<i64>>,
}

/// kiln.toml: your whole infrastructure, described once.
// Lists keep the file's order.
#[derive(Debug, Default, JsonSchema)]
#[schemars(rename = "kiln.toml", deny_unknown_fields)]
pub(crate) struct RawDocument {
    /// Who and what the infrastructure is for.
    #[schemars(required)]
    pub project: Option<RawProject>,
    /// The hardened base of every host (overridable per environment and per host).
    #[schemars(with = "Option<RawBase>")]
    pub base: Option<S<RawBase>>,
    /// The environments, by name (`[environments.<env>]`): the same roles on different
    /// servers.
    #[schemars(with = "BTreeMap<String, RawEnvironment>", extend("x-kiln-key" = "env"))]
    pub environments: Vec<(S<String>, RawEnvironment)>,
    /// The services, by name (`[services.<name>]`, `[a-z][a-z0-9-]*`).
    #[schemars(with = "Option<BTreeMap<String, RawService>>", extend("x-kiln-key" = "name"))]
    pub services: Vec<(S<String>, RawService)>,
    /// Off-site backups.
    #[schemars(with = "Option<RawBackups>")]
    pub backups: Option<S<RawBackups>>,
    /// Where alerts go.
    #[schemars(with = "Option<RawMonitoring>")]
    pub monitoring: Option<S<RawMonitoring>>,
    /// Extra resources per host role (`[roles.<role>]`).
    #[schemars(with = "Option<BTreeMap<String, RawRole>>", extend("x-kiln-key" = "role"))]
    pub roles: Vec<(S<String>, RawRole)>,
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "project",
    "base",
    "environments",
    "services",
    "backups",
    "monitoring",
    "roles",
];

type Entry<'i> = (Spanned<std::borrow::Cow<'i, str>>, Spanned<DeValue<'i>>);

/// Parses and decodes `source`. Returns what could be decoded plus every error found;
/// the document is usable only when the error list is empty.
pub(crate) fn decode_document(source: &Source) -> (RawDocument, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut doc = RawDocument::default();
    let (root, syntax) = DeTable::parse_recoverable(source.text());
    if !syntax.is_empty() {
        // One mistake can derail the parser into many follow-up errors: report distinct
        // ones, and only the first few.
        const MAX_SYNTAX_ERRORS: usize = 10;
        let mut seen = std::collections::BTreeSet::new();
        for e in syntax {
            if seen.insert((e.message().to_string(), e.span().map(|s| (s.start, s.end))))
                && seen.len() <= MAX_SYNTAX_ERRORS
            {
                errors.push(toml_error(source, &e, 0..0));
            }
        }
        return (doc, errors);
    }
    let root = root.into_inner();
    let mut project_seen = false;
    for (key, value) in sorted(&root) {
        match key.get_ref().as_ref() {
            "project" => {
                project_seen = true;
                doc.project = decode(source, &value, &mut errors);
            }
            "environments" => {
                for (name, env) in table_entries(source, &value, "environments", &mut errors) {
                    if let Some(e) = decode_environment(source, &name, env, &mut errors) {
                        doc.environments.push((owned_key(&name), e));
                    }
                }
            }
            "services" => {
                for (name, svc) in table_entries(source, &value, "services", &mut errors) {
                    if let Some(s) = decode(source, &svc, &mut errors) {
                        doc.services.push((owned_key(&name), s));
                    }
                }
            }
            "base" => doc.base = decode_base(source, &value, &mut errors),
            "backups" => doc.backups = decode_spanned(source, &value, &mut errors),
            "monitoring" => doc.monitoring = decode_spanned(source, &value, &mut errors),
            "roles" => {
                for (name, role) in table_entries(source, &value, "roles", &mut errors) {
                    let r = decode_role(source, role, &mut errors);
                    doc.roles.push((owned_key(&name), r));
                }
            }
            other => errors.push(unknown_key(
                source,
                other,
                key.span(),
                TOP_KEYS,
                "top-level tables",
            )),
        }
    }
    if !project_seen {
        errors.push(
            ConfigError::at(
                source,
                0..0,
                "kiln::config::missing_key",
                "missing `[project]` table",
            )
            .label("expected `[project]` in this file")
            .help("add `[project]` with `name`, `domain` and `acme_email`"),
        );
    }
    (doc, errors)
}

fn owned_key(key: &Spanned<std::borrow::Cow<'_, str>>) -> S<String> {
    Spanned::new(key.span(), key.get_ref().to_string())
}

/// Table entries in file order (the parser's map is sorted by key).
fn sorted<'i>(table: &DeTable<'i>) -> Vec<Entry<'i>> {
    let mut v: Vec<Entry<'i>> = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn table_entries<'i>(
    source: &Source,
    value: &Spanned<DeValue<'i>>,
    what: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Entry<'i>> {
    match value.get_ref() {
        DeValue::Table(t) => sorted(t),
        other => {
            errors.push(
                ConfigError::at(
                    source,
                    value.span(),
                    "kiln::config::wrong_type",
                    format!("`{what}` must be a table, found {}", other.type_str()),
                )
                .label("not a table")
                .help(format!("write `[{what}.<name>]` sections")),
            );
            Vec::new()
        }
    }
}

fn decode_environment(
    source: &Source,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<RawEnvironment> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        errors.push(
            ConfigError::at(
                source,
                span,
                "kiln::config::wrong_type",
                format!("environment `{}` must be a table", name.get_ref()),
            )
            .label("not a table"),
        );
        return None;
    };
    let hosts = table.remove("hosts");
    let base = table
        .remove_entry("base")
        .and_then(|(_, b)| decode_base(source, &b, errors));
    let mut env: Option<RawEnvironment> = decode(
        source,
        &Spanned::new(span.clone(), DeValue::Table(table)),
        errors,
    );
    let mut decoded_hosts = Vec::new();
    if let Some(hosts) = hosts {
        for (role, host) in table_entries(source, &hosts, "hosts", errors) {
            // The role is kept even when the host is invalid, so that references to it
            // are not reported as well.
            let h = decode_host(source, host, errors);
            decoded_hosts.push((owned_key(&role), h));
        }
    }
    if let Some(env) = env.as_mut() {
        env.hosts = decoded_hosts;
        env.base = base;
    }
    env
}

/// A host: its `base` table by hand, the rest by serde.
fn decode_host(
    source: &Source,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<S<RawHost>> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        errors.push(
            ConfigError::at(
                source,
                span,
                "kiln::config::wrong_type",
                "a host must be a table",
            )
            .label("not a table")
            .help("write `[environments.<env>.hosts.<role>]` with an address and an admin_user"),
        );
        return None;
    };
    let base = table
        .remove_entry("base")
        .and_then(|(_, b)| decode_base(source, &b, errors));
    let mut host: Option<S<RawHost>> =
        decode_spanned(source, &Spanned::new(span, DeValue::Table(table)), errors);
    if let Some(h) = host.as_mut() {
        h.get_mut().base = base;
    }
    host
}

/// A `[base]` table (top level, environment or host), key by key: a part is `true`,
/// `false` or its own table.
fn decode_base(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<S<RawBase>> {
    let DeValue::Table(table) = value.get_ref() else {
        errors.push(
            ConfigError::at(
                source,
                value.span(),
                "kiln::config::wrong_type",
                format!("`base` must be a table, found {}", value.get_ref().type_str()),
            )
            .label("not a table")
            .help("write a `[base]` section with the parts to turn off or tune, like `updates = { reboot = \"when-needed\" }`"),
        );
        return None;
    };
    let mut base = RawBase::default();
    for (key, v) in sorted(table) {
        match key.get_ref().as_ref() {
            "sshd" => base.sshd = decode_switch(source, "sshd", v, errors),
            "firewall" => base.firewall = decode_switch(source, "firewall", v, errors),
            "updates" => base.updates = decode_switch(source, "updates", v, errors),
            "wireguard" => base.wireguard = decode_switch(source, "wireguard", v, errors),
            "time" => base.time = decode_spanned(source, &v, errors),
            "node_exporter" => base.node_exporter = decode_spanned(source, &v, errors),
            "rollback_seconds" => base.rollback_seconds = decode_spanned(source, &v, errors),
            other => errors.push(unknown_key(
                source,
                other,
                key.span(),
                BASE_KEYS,
                "keys of `[base]`",
            )),
        }
    }
    Some(Spanned::new(value.span(), base))
}

/// A part of the base: `true`, `false`, or its table.
fn decode_switch<T: DeserializeOwned>(
    source: &Source,
    part: &str,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<S<Switch<T>>> {
    let span = value.span();
    match value.get_ref() {
        DeValue::Boolean(on) => Some(Spanned::new(span, Switch::Bool(*on))),
        DeValue::Table(table) => {
            let mut value = value.clone();
            if part == "sshd"
                && let Some((key, _)) = table.get_key_value("password_login")
            {
                // Not an unknown key like any other: the point of the base is key-only login.
                errors.push(
                    ConfigError::at(
                        source,
                        key.span(),
                        "kiln::config::invalid_value",
                        "password login cannot be turned on: kiln's sshd accepts keys only",
                    )
                    .label("not configurable")
                    .help("remove `password_login`; to let someone in, give them an account with their public key in `~/.ssh/authorized_keys` and add its group to `allow_groups`"),
                );
                if let DeValue::Table(t) = value.get_mut() {
                    t.remove("password_login");
                }
            }
            decode(source, &value, errors).map(|t| Spanned::new(span, Switch::Table(t)))
        }
        other => {
            errors.push(
                ConfigError::at(
                    source,
                    span,
                    "kiln::config::wrong_type",
                    format!("`{part}` must be true, false or a table, found {}", other.type_str()),
                )
                .label("not a switch or a table")
                .help(format!("`{part} = false` turns this part of the base off, `{part} = true` on; a table tunes it, like `[base.{part}]` with its keys")),
            );
            None
        }
    }
}

fn decode_role(
    source: &Source,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> RawRole {
    let mut role = RawRole::default();
    let DeValue::Table(table) = value.get_ref() else {
        errors.push(
            ConfigError::at(
                source,
                value.span(),
                "kiln::config::wrong_type",
                "a role must be a table",
            )
            .label("not a table")
            .help("write `[roles.<role>]` with packages, files, units, ..."),
        );
        return role;
    };
    for (key, v) in sorted(table) {
        match key.get_ref().as_ref() {
            "packages" => role.packages = decode(source, &v, errors).unwrap_or_default(),
            "vars" => role.vars = decode(source, &v, errors),
            "directories" => role.directories = decode_list(source, &v, errors),
            "files" => role.files = decode_list(source, &v, errors),
            "symlinks" => role.symlinks = decode_list(source, &v, errors),
            "users" => role.users = decode_list(source, &v, errors),
            "groups" => role.groups = decode_list(source, &v, errors),
            "units" => role.units = decode_list(source, &v, errors),
            "commands" => role.commands = decode_list(source, &v, errors),
            other => errors.push(unknown_key(
                source,
                other,
                key.span(),
                ROLE_KEYS,
                "role keys",
            )),
        }
    }
    role
}

/// An array of tables, element by element.
fn decode_list<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<S<T>> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| decode_spanned(source, item, errors))
            .collect(),
        other => {
            errors.push(
                ConfigError::at(
                    source,
                    value.span(),
                    "kiln::config::wrong_type",
                    format!("expected an array of tables, found {}", other.type_str()),
                )
                .label("not an array")
                .help("use `[[roles.<role>.<kind>]]` sections, one per item"),
            );
            Vec::new()
        }
    }
}

fn decode_spanned<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<S<T>> {
    decode(source, value, errors).map(|t| Spanned::new(value.span(), t))
}

/// Deserializes one item. Every unknown key is reported (each one is removed and the
/// item decoded again); the first other error ends the attempt.
fn decode<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut value = value.clone();
    // Keys suggested for unknown keys: a "missing key" for one of them says nothing new.
    let mut suggested: Vec<String> = Vec::new();
    for _ in 0..256 {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return Some(t),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                if let Some((field, expected)) = parse_unknown(e.message()) {
                    let closest =
                        crate::diagnostic::closest(&field, expected.iter().map(String::as_str))
                            .map(str::to_string);
                    if let Some(c) = &closest {
                        suggested.push(c.clone());
                    }
                    errors.push(unknown_key(source, &field, span.clone(), &expected, "keys"));
                    // Decode on as if the suggestion had been written, so that a typo
                    // does not also show up as a missing key or a missing default.
                    if rename_key_at(&mut value, &span, closest.as_deref()) {
                        continue;
                    }
                } else if !missing_field(e.message())
                    .is_some_and(|f| suggested.iter().any(|s| s == f))
                {
                    errors.push(toml_error(source, &e, value.span()));
                }
                return None;
            }
        }
    }
    None
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
}

/// Removes the table entry whose key or value spans `span`, re-inserting its value under
/// `rename` when given and free; true when the entry was found.
fn rename_key_at(
    value: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    rename: Option<&str>,
) -> bool {
    match value.get_mut() {
        DeValue::Table(t) => {
            let found = t
                .iter()
                .find(|(k, v)| k.span() == *span || v.span() == *span)
                .map(|(k, _)| (k.get_ref().to_string(), k.span()));
            if let Some((key, key_span)) = found {
                let removed = t.remove(key.as_str());
                if let (Some(new), Some(v)) = (rename, removed)
                    && !t.contains_key(new)
                {
                    t.insert(
                        Spanned::new(key_span, std::borrow::Cow::Owned(new.to_string())),
                        v,
                    );
                }
                return true;
            }
            t.iter_mut().any(|(_, v)| rename_key_at(v, span, rename))
        }
        DeValue::Array(a) => a.iter_mut().any(|v| rename_key_at(v, span, rename)),
        _ => false,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" → (x, [a, b]).
fn parse_unknown(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

fn unknown_key<S: AsRef<str>>(
    source: &Source,
    key: &str,
    span: Range<usize>,
    expected: &[S],
    what: &str,
) -> ConfigError {
    let help = suggest(key, what, expected.iter().map(AsRef::as_ref));
    ConfigError::at(
        source,
        span,
        "kiln::config::unknown_key",
        format!("unknown key `{key}`"),
    )
    .label("not a key kiln knows here")
    .help(help)
}

/// A toml/serde error as a [`ConfigError`]; `fallback` when the error carries no span.
fn toml_error(source: &Source, e: &toml::de::Error, fallback: Range<usize>) -> ConfigError {
    let span = e.span().unwrap_or(fallback);
    let message = e.message().trim().to_string();
    if let Some(field) = missing_field(&message) {
        return ConfigError::at(
            source,
            span,
            "kiln::config::missing_key",
            format!("missing key `{field}`"),
        )
        .label(format!("`{field}` is required in this table"))
        .help(format!("add `{field} = ...`"));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let found = found.split_whitespace().next().unwrap_or(found);
        let (expected, help) = describe_expected(expected);
        return ConfigError::at(
            source,
            span,
            "kiln::config::wrong_type",
            format!("expected {expected}, found {}", article(found)),
        )
        .label(format!("this is {}", article(found)))
        .help(help);
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return ConfigError::at(
            source,
            span,
            "kiln::config::wrong_type",
            format!("invalid value: {rest}"),
        )
        .label("invalid value")
        .help("check the value's type and range");
    }
    ConfigError::at(
        source,
        span,
        "kiln::config::syntax",
        format!("invalid TOML: {message}"),
    )
    .label("here")
    .help("see https://toml.io for the syntax")
}

/// serde's expected-type wording → (what kiln calls it, how to write one).
fn describe_expected(expected: &str) -> (&'static str, &'static str) {
    let e = expected.trim();
    if e.starts_with('i') || e.starts_with('u') || e.contains("integer") {
        ("an integer", "write the number without quotes, like `22`")
    } else if e.contains("bool") {
        ("true or false", "write `true` or `false`, without quotes")
    } else if e.contains("string") || e == "a str" {
        (
            "a string",
            "put the value in double quotes, like `\"value\"`",
        )
    } else if e.contains("sequence") || e.contains("array") {
        (
            "an array",
            "write a list in brackets, like `[\"a\", \"b\"]`",
        )
    } else {
        (
            "a table",
            "write a `[section]` or an inline table `{ key = \"value\" }`",
        )
    }
}

/// "string" → "a string", "integer" → "an integer", serde wording aside.
fn article(found: &str) -> String {
    let word = match found {
        "map" => "table",
        "sequence" => "array",
        "boolean" | "bool" => "boolean",
        other => other,
    };
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_unknown_reads_serde_messages() {
        let (f, e) =
            parse_unknown("unknown field `adress`, expected one of `address`, `os`").unwrap();
        assert_eq!(f, "adress");
        assert_eq!(e, vec!["address", "os"]);
        let (f, e) = parse_unknown("unknown field `x`, expected `name`").unwrap();
        assert_eq!((f.as_str(), e), ("x", vec!["name".to_string()]));
        assert!(parse_unknown("missing field `a`").is_none());
    }

    #[test]
    fn all_unknown_keys_of_a_table_are_reported() {
        let src = Source::new(
            "k.toml",
            "[project]\nname = \"a\"\ndomian = \"x\"\ndomain = \"a.org\"\nacme_email = \"a@a.org\"\nfoo = 1\n",
        );
        let (doc, errors) = decode_document(&src);
        let msgs: Vec<_> = errors
            .iter()
            .map(|e| (e.message.clone(), e.location()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (
                    "unknown key `domian`".to_string(),
                    Some("k.toml:3:1".to_string())
                ),
                (
                    "unknown key `foo`".to_string(),
                    Some("k.toml:6:1".to_string())
                ),
            ]
        );
        assert!(
            errors[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("did you mean `domain`?")
        );
        assert_eq!(
            doc.project.map(|p| p.domain.into_inner()),
            Some("a.org".to_string())
        );
    }
}
