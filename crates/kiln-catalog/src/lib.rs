//! kiln's service catalog: one recipe per service kind (synapse, nextcloud, hedgedoc,
//! monitoring, postgres, custom containers, ...), as data: default subdomain, options,
//! secrets needed (with their generation rules), routes, volumes.
//!
//! This crate holds plain data and lookups only: no I/O, no validation of a user's
//! configuration (kiln-model does that, using the recipes as its reference).

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
}

/// One option of a recipe.
#[derive(Debug, Clone, Serialize)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    pub required: bool,
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
}

/// A secret a recipe needs: the vault name is `<service name>_<suffix>` (with `-` in the
/// service name turned into `_`).
#[derive(Debug, Clone, Serialize)]
pub struct SecretTemplate {
    pub suffix: &'static str,
    pub rule: SecretRule,
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
        description: "Synapse, the Matrix homeserver",
        default_subdomain: Some("matrix"),
        http: true,
        needs_version: true,
        options: &[
            opt(
                "server_name",
                OptionKind::Domain,
                true,
                "Matrix server name: the part after the colon in user IDs (@alice:server_name)",
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
        description: "Matrix sliding sync proxy (for Element X)",
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
        description: "Nextcloud file sync and share, with its own MariaDB",
        default_subdomain: Some("cloud"),
        http: true,
        needs_version: true,
        options: &[opt(
            "admin_user",
            OptionKind::String,
            false,
            "name of the first admin account (default admin)",
        )],
        secrets: &[
            secret(
                "db_root_password",
                DB_PASSWORD,
                "Nextcloud MariaDB root password",
            ),
            secret(
                "db_password",
                DB_PASSWORD,
                "Nextcloud MariaDB user password",
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
        description: "HedgeDoc collaborative markdown editor",
        default_subdomain: Some("hdoc"),
        http: true,
        needs_version: true,
        options: &[
            opt(
                "database",
                OptionKind::ServiceOfKind("postgres"),
                false,
                "the postgres service holding HedgeDoc's database (default: SQLite)",
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
        ],
        secrets: &[],
    },
];

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
    fn secret_names_replace_dashes() {
        assert_eq!(secret_name("sliding-sync", "secret"), "sliding_sync_secret");
    }
}
