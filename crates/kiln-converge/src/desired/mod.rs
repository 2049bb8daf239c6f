//! From the model to a [`DesiredState`] per host, built feature by feature.
//!
//! Each feature is a module that contributes its share of a host's resources: the
//! hardened base ([`base::feature`]: sshd, updates, time, node-exporter, rendered by
//! [`base`]), [`roles`] (`[roles.<role>]` resources), [`services`] (containers as
//! quadlets), [`proxy`] (the reverse proxy's routes), [`firewall`] and [`wireguard`] (the
//! mesh between the hosts) and [`backups`] (the host's backup plan, secrets and timer). Files under sshd's, firewalld's, WireGuard's and the network's
//! folders join their guarded group whoever declares them. The shares are merged
//! with one duplicate check: two features declaring the same resource is an error naming
//! both, one feature declaring it twice is [`crate::resource::InvalidState::Duplicate`].
//!
//! Features that need every host of the environment (WireGuard peers, proxy routes that
//! point at other hosts) read the [`EnvironmentContext`], built once per environment by
//! [`desired_for_environment`] (or for one host by [`desired_for_host`]).
//!
//! Reads template and source files under the model's folder; talks to no host, prints
//! nothing.

pub mod backups;
pub mod base;
pub mod firewall;
pub mod proxy;
pub mod roles;
pub mod services;
pub mod template;
pub mod wireguard;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_model::{Environment, Host, Model};
use kiln_secrets::Secret;

use crate::facts::OsFamily;
use crate::resource::{DesiredState, ResourceId};

pub use template::{context, render_template};

/// Where template secrets come from (the CLI opens the vault lazily, on first use).
pub trait SecretSource: Send + Sync {
    fn secret(&self, name: &str) -> Result<Secret, String>;
}

/// No vault available: every `secret()` call is a clear error.
pub struct NoSecrets(pub String);

impl SecretSource for NoSecrets {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        Err(format!("secret({name:?}): {}", self.0))
    }
}

/// Building a host's desired state failed.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("{file}: cannot read it (for {what}): {source}")]
    Read {
        file: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: template error (for {what} on host {host}): {message}")]
    Template {
        file: String,
        line: usize,
        what: String,
        host: String,
        message: String,
    },
    #[error(
        "host {host}: {id} is declared by both {first} and {second}\n  hint: declare it in one place only"
    )]
    Overlap {
        host: String,
        id: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("host {host}: service {service}: {message}")]
    Service {
        host: String,
        service: String,
        message: String,
    },
    #[error("host {host}: the base's {part}: {message}")]
    Base {
        host: String,
        part: &'static str,
        message: String,
    },
    #[error("environment {env} has no host {host}")]
    UnknownHost { env: String, host: String },
    #[error("{0}")]
    Invalid(#[from] crate::resource::InvalidState),
}

/// What every feature may read while building the desired state of a host: the model,
/// the environment with all of its hosts, the vault, and what the environment-wide pass
/// computed from every host (the WireGuard mesh, the proxy's route table).
pub struct EnvironmentContext<'a> {
    pub model: &'a Model,
    pub env: &'a Environment,
    pub secrets: Arc<dyn SecretSource>,
    /// Every host's WireGuard peers (see [`wireguard`]).
    pub mesh: wireguard::Mesh,
    /// Every public route of the environment (see [`proxy`]).
    pub routes: proxy::Routes,
}

impl<'a> EnvironmentContext<'a> {
    /// The environment-wide pass: what features need from every host, computed once.
    pub fn new(
        model: &'a Model,
        env: &'a Environment,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, DesiredError> {
        let mesh = wireguard::Mesh::for_environment(model, env)?;
        let routes = proxy::Routes::for_environment(model, env)?;
        Ok(EnvironmentContext {
            model,
            env,
            secrets,
            mesh,
            routes,
        })
    }

    /// Every host of the environment, by role.
    pub fn hosts(&self) -> impl Iterator<Item = &'a Host> + 'a {
        self.env.hosts.values()
    }

    /// The desired state of one host of this environment: every feature's share, merged.
    pub fn desired_for(&self, host: &Host) -> Result<DesiredState, DesiredError> {
        let mut d = DesiredState {
            host: host.role.clone(),
            os: host.os.map(os_family),
            ..Default::default()
        };
        let mut claims = BTreeMap::new();
        let parts: [(&'static str, Feature); 7] = [
            ("the base", base::feature::contribute),
            ("[roles]", roles::contribute),
            ("services", services::contribute),
            ("the reverse proxy", proxy::contribute),
            ("the firewall", firewall::contribute),
            ("wireguard", wireguard::contribute),
            ("backups", backups::contribute),
        ];
        for (feature, contribute) in parts {
            let part = contribute(self, host)?;
            merge(&mut d, part, feature, &mut claims)?;
        }
        for f in d.files.iter_mut().filter(|f| f.guard.is_none()) {
            // A file of sshd's, the firewall's, WireGuard's or the network's, whoever
            // declares it, is kept only once a fresh connection proved it harmless.
            f.guard = base::feature::guard_for_path(&f.path).map(str::to_owned);
        }
        if d.files.iter().any(|f| f.guard.is_some()) || d.units.iter().any(|u| u.guard.is_some()) {
            d.guard_timeout_s = u32::try_from(host.base.rollback_seconds).ok();
        }
        d.validate()?;
        Ok(d)
    }
}

/// A feature: its share of one host's desired state.
type Feature = fn(&EnvironmentContext<'_>, &Host) -> Result<DesiredState, DesiredError>;

/// What two resources compete for: the path for files, directories, symlinks and unit
/// files (a file and a directory at one path collide), else the resource itself.
fn claim(id: &ResourceId) -> String {
    match id {
        ResourceId::Directory(p) | ResourceId::File(p) | ResourceId::Symlink(p) => {
            format!("path {}", p.display())
        }
        other => other.to_string(),
    }
}

/// Adds one feature's share to `into`, refusing a resource another feature declared.
fn merge(
    into: &mut DesiredState,
    part: DesiredState,
    feature: &'static str,
    claims: &mut BTreeMap<String, &'static str>,
) -> Result<(), DesiredError> {
    for id in part.ids() {
        if matches!(id, ResourceId::Image(_)) {
            // One image may serve containers of several features: pulled once.
            continue;
        }
        let key = claim(&id);
        match claims.get(&key) {
            Some(first) if *first != feature => {
                return Err(DesiredError::Overlap {
                    host: into.host.clone(),
                    id: id.to_string(),
                    first,
                    second: feature,
                });
            }
            Some(_) => {}
            None => {
                claims.insert(key, feature);
            }
        }
    }
    into.extend(part);
    Ok(())
}

pub(crate) fn os_family(os: kiln_model::OsFamily) -> OsFamily {
    if os.is_rhel() {
        OsFamily::Rhel
    } else {
        OsFamily::Debian
    }
}

/// The desired state of one host of an environment.
pub fn desired_for_host(
    model: &Model,
    env: &Environment,
    host: &Host,
    secrets: Arc<dyn SecretSource>,
) -> Result<DesiredState, DesiredError> {
    EnvironmentContext::new(model, env, secrets)?.desired_for(host)
}

/// The desired state of every host of an environment, by role, from one
/// environment-wide pass.
pub fn desired_for_environment(
    model: &Model,
    env: &Environment,
    secrets: Arc<dyn SecretSource>,
) -> Result<BTreeMap<String, DesiredState>, DesiredError> {
    let ctx = EnvironmentContext::new(model, env, secrets)?;
    ctx.hosts()
        .map(|h| Ok((h.role.clone(), ctx.desired_for(h)?)))
        .collect()
}

/// The desired state of the hosts `roles` of an environment (the environment-wide pass
/// still sees every host).
pub fn desired_for_hosts(
    model: &Model,
    env: &Environment,
    roles: &[String],
    secrets: Arc<dyn SecretSource>,
) -> Result<BTreeMap<String, DesiredState>, DesiredError> {
    let ctx = EnvironmentContext::new(model, env, secrets)?;
    roles
        .iter()
        .map(|r| {
            let host = env.host(r).ok_or_else(|| DesiredError::UnknownHost {
                env: env.name.clone(),
                host: r.clone(),
            })?;
            Ok((r.clone(), ctx.desired_for(host)?))
        })
        .collect()
}

/// A valid WireGuard key (32 bytes in base64) that carries `tag` in its text, for test
/// vaults: `tag` must be base64 letters and digits (a poison value shows in the key).
#[cfg(test)]
pub(crate) fn test_wireguard_key(tag: &str) -> String {
    assert!(tag.len() < 40 && tag.chars().all(|c| c.is_ascii_alphanumeric()));
    format!("{tag}{}=", "A".repeat(43 - tag.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{File, Package};

    const TOML: &str = r#"
[project]
name = "demo"
domain = "kiln-demo.net"
acme_email = "admin@kiln-demo.net"

[base]                             # not this test's subject
sshd = false
firewall = false
updates = false
time = false
node_exporter = false
wireguard = false

[environments.lab]
domain = "demo.lab"
acme_ca = "internal"

[environments.lab.hosts.web]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"

[environments.lab.hosts.db]
address = "10.77.0.12"
admin_user = "kiln"
os = "debian13"

[roles.web]
packages = ["htop"]

[roles.db]
packages = ["postgresql"]
"#;

    fn model() -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kiln.toml"), TOML).unwrap();
        let m = kiln_model::load(&dir.path().join("kiln.toml")).unwrap_or_else(|d| panic!("{d:?}"));
        (dir, m)
    }

    fn no_vault() -> Arc<dyn SecretSource> {
        Arc::new(NoSecrets("no vault in this test".into()))
    }

    #[test]
    fn the_environment_pass_builds_every_host_as_the_per_host_call_does() {
        let (_dir, m) = model();
        let env = m.environment("lab").unwrap();
        let all = desired_for_environment(&m, env, no_vault()).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["db", "web"]);
        for (role, d) in &all {
            let one = desired_for_host(&m, env, env.host(role).unwrap(), no_vault()).unwrap();
            assert_eq!(*d, one, "{role}");
        }
        assert_eq!(
            all["db"].packages,
            [Package {
                name: "postgresql".into()
            }]
        );
        let some = desired_for_hosts(&m, env, &["web".into()], no_vault()).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["web"]);
        let err = desired_for_hosts(&m, env, &["nope".into()], no_vault()).unwrap_err();
        assert_eq!(err.to_string(), "environment lab has no host nope");
    }

    fn file(path: &str) -> File {
        File {
            path: path.into(),
            content: crate::resource::Content::text("x"),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }
    }

    #[test]
    fn two_features_declaring_one_path_is_an_error_naming_both() {
        let mut d = DesiredState {
            host: "web".into(),
            ..Default::default()
        };
        let mut claims = BTreeMap::new();
        let part = |files| DesiredState {
            files,
            ..Default::default()
        };
        merge(&mut d, part(vec![file("/etc/a")]), "[roles]", &mut claims).unwrap();
        // The same feature twice: left to the duplicate check of validate().
        merge(&mut d, part(vec![file("/etc/a")]), "[roles]", &mut claims).unwrap();
        assert_eq!(
            d.validate().unwrap_err().to_string(),
            "host web: file /etc/a is declared twice"
        );
        let dir = DesiredState {
            directories: vec![crate::resource::Directory {
                path: "/etc/a".into(),
                mode: 0o755,
                owner: "root".into(),
                group: "root".into(),
            }],
            ..Default::default()
        };
        let err = merge(&mut d, dir, "services", &mut claims).unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "host web: directory /etc/a is declared by both [roles] and services"
        );
    }
}
