//! The hosts a plan or apply works on: one [`Job`] per host, with its desired state and
//! how to reach it (SSH target, privilege), built from the model's environment or from the
//! hidden `--state FILE` JSON used in development.
//!
//! Owns: turning library [`JobOptions`] (environment, roles, identity, sudo password) into
//! jobs; the default SSH identity for a lab environment (the running lab's operator key,
//! see [`crate::lab::operator_identity`]).
//! Must not: parse arguments, prompt (a sudo password arrives as a value), open the vault
//! itself (templates get their secrets from the [`SecretSource`] passed in), or print.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_converge::DesiredState;
use kiln_converge::desired::{DesiredError, EnvironmentContext, SecretSource};
use kiln_converge::host::Privilege;
use kiln_converge::host::ssh::SshTarget;
use kiln_converge::run::{Connect, Job};
use kiln_model::Model;
use kiln_secrets::Secret;
use serde::Deserialize;

use crate::target::{self, TargetError};

/// How long an SSH connection may take to establish (a loaded machine's lab servers need
/// more than 10 s).
pub const CONNECT_TIMEOUT_S: u32 = 20;

/// What to work on, as a library call states it (the CLI fills it from its arguments).
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// The environment (`None`: the rule of [`target::environment`]).
    pub env: Option<String>,
    /// Only the hosts playing these roles (all when empty).
    pub roles: Vec<String>,
    /// Private key for SSH. `None`: the running lab's operator key when the environment's
    /// hosts are that lab's servers, else whatever the user's ssh configuration uses.
    pub identity: Option<PathBuf>,
    /// The admin user's sudo password, when sudo needs one.
    pub sudo_password: Option<Secret>,
    /// Where labs live on this machine (for the default identity of a lab environment).
    pub lab_roots: kiln_lab::Roots,
}

/// The jobs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("host {host} of environment {env}: {source}")]
    Desired {
        env: String,
        host: String,
        #[source]
        source: Box<DesiredError>,
    },
    #[error("environment {env}: {source}")]
    Environment {
        env: String,
        #[source]
        source: Box<DesiredError>,
    },
    #[error("cannot read {}: {source}", .path.display())]
    StateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", .path.display())]
    StateSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: host {host}: needs `address` or `local_root`", .path.display())]
    StateHostUnreachable { path: PathBuf, host: String },
    #[error("no host plays role {wanted:?} (known: {})", .known.join(", "))]
    UnknownRole { wanted: String, known: Vec<String> },
    #[error("no host to work on")]
    NoHost,
    /// Looking for the running lab that serves the environment failed.
    #[error("finding the lab's operator key: {0}")]
    Lab(#[from] kiln_lab::LabError),
}

impl JobsError {
    /// Whether the user gave something kiln cannot use (rather than an operation failing).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, JobsError::StateRead { .. } | JobsError::Lab(_))
    }
}

/// How kiln gets root on a host logged into as `user`.
pub fn privilege(user: &str, password: &Option<Secret>) -> Privilege {
    if user == "root" {
        Privilege::Root
    } else if let Some(p) = password {
        Privilege::SudoPassword(p.clone())
    } else {
        Privilege::Sudo
    }
}

/// One job per host of the environment (filtered by role), desired states rendered with
/// `secrets`. Hosts come in the model's order (by role).
pub fn from_config(
    model: &Model,
    opts: &JobOptions,
    secrets: Arc<dyn SecretSource>,
) -> Result<Vec<Job>, JobsError> {
    let env = target::environment(model, opts.env.as_deref())?;
    let hosts = target::hosts(env, &opts.roles)?;
    let identity = match &opts.identity {
        Some(i) => Some(i.clone()),
        None => crate::lab::operator_identity(&opts.lab_roots, env)?,
    };
    // One environment-wide pass (the WireGuard mesh, the proxy's routes see every host),
    // then each selected host's share.
    let context =
        EnvironmentContext::new(model, env, secrets).map_err(|source| JobsError::Environment {
            env: env.name.clone(),
            source: Box::new(source),
        })?;
    let mut jobs = vec![];
    for host in hosts {
        let desired = context
            .desired_for(host)
            .map_err(|source| JobsError::Desired {
                env: env.name.clone(),
                host: host.role.clone(),
                source: Box::new(source),
            })?;
        jobs.push(Job {
            name: host.role.clone(),
            connect: Connect::Ssh(SshTarget {
                name: host.role.clone(),
                address: host.address.to_string(),
                port: host.ssh_port,
                user: host.admin_user.clone(),
                host_keys: host.host_keys.clone(),
                identity_file: identity.clone(),
                connect_timeout_s: CONNECT_TIMEOUT_S,
                test_paths: None,
                env: Some(env.name.clone()),
            }),
            privilege: privilege(&host.admin_user, &opts.sudo_password),
            desired,
        });
    }
    finish(jobs, &opts.roles)
}

/// The `--state` file: hosts with their connection and desired state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    hosts: Vec<StateHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateHost {
    name: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default = "ssh_port")]
    port: u16,
    #[serde(default = "root")]
    user: String,
    #[serde(default)]
    host_keys: Vec<String>,
    #[serde(default)]
    identity_file: Option<PathBuf>,
    /// Converge this folder on the local machine instead of an SSH host.
    #[serde(default)]
    local_root: Option<PathBuf>,
    desired: DesiredState,
}

fn ssh_port() -> u16 {
    22
}
fn root() -> String {
    "root".into()
}

/// Jobs from a hand-written JSON state file (development): `opts.env` is not used,
/// `opts.identity` overrides each host's `identity_file`, `opts.roles` filters by name.
pub fn from_state_file(path: &Path, opts: &JobOptions) -> Result<Vec<Job>, JobsError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobsError::StateRead {
        path: path.into(),
        source,
    })?;
    let file: StateFile = serde_json::from_str(&text).map_err(|e| JobsError::StateSyntax {
        path: path.into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut jobs = vec![];
    for h in file.hosts {
        let connect = match (&h.local_root, &h.address) {
            (Some(root), _) => Connect::Local {
                root: Some(root.clone()),
            },
            (None, Some(address)) => Connect::Ssh(SshTarget {
                name: h.name.clone(),
                address: address.clone(),
                port: h.port,
                user: h.user.clone(),
                host_keys: h.host_keys.clone(),
                identity_file: opts.identity.clone().or(h.identity_file.clone()),
                connect_timeout_s: CONNECT_TIMEOUT_S,
                test_paths: None,
                env: None,
            }),
            (None, None) => {
                return Err(JobsError::StateHostUnreachable {
                    path: path.into(),
                    host: h.name,
                });
            }
        };
        let mut desired = h.desired;
        if desired.host.is_empty() {
            desired.host = h.name.clone();
        }
        jobs.push(Job {
            name: h.name.clone(),
            connect,
            privilege: privilege(&h.user, &opts.sudo_password),
            desired,
        });
    }
    finish(jobs, &opts.roles)
}

/// Keeps the jobs of `roles` (each must exist), and refuses an empty selection.
fn finish(mut jobs: Vec<Job>, roles: &[String]) -> Result<Vec<Job>, JobsError> {
    if !roles.is_empty() {
        for want in roles {
            if !jobs.iter().any(|j| &j.name == want) {
                return Err(JobsError::UnknownRole {
                    wanted: want.clone(),
                    known: jobs.iter().map(|j| j.name.clone()).collect(),
                });
            }
        }
        jobs.retain(|j| roles.contains(&j.name));
    }
    if jobs.is_empty() {
        return Err(JobsError::NoHost);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::desired::NoSecrets;

    // Moved from kiln-cli's plan.rs with `jobs_from_state`.
    #[test]
    fn state_file_needs_an_address_or_a_local_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"hosts":[{"name":"web","desired":{}}]}"#).unwrap();
        let t = JobOptions::default();
        let err = from_state_file(&path, &t).unwrap_err();
        assert!(
            err.to_string()
                .contains("host web: needs `address` or `local_root`")
        );
        std::fs::write(
            &path,
            r#"{"hosts":[{"name":"web","desired":{},"bogus":1}]}"#,
        )
        .unwrap();
        let err = from_state_file(&path, &t).unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"));
    }

    #[test]
    fn state_file_hosts_filtered_by_role_and_root_needs_no_sudo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"hosts":[{"name":"a","local_root":"/tmp/x","desired":{}},{"name":"b","address":"127.0.0.1","user":"admin","desired":{}}]}"#,
        )
        .unwrap();
        let mut t = JobOptions {
            roles: vec!["b".into()],
            ..Default::default()
        };
        let jobs = from_state_file(&path, &t).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].desired.host, "b");
        assert!(matches!(jobs[0].privilege, Privilege::Sudo));
        t.roles = vec!["c".into()];
        assert_eq!(
            from_state_file(&path, &t).unwrap_err().to_string(),
            "no host plays role \"c\" (known: a, b)"
        );
        t.roles = vec![];
        let jobs = from_state_file(&path, &t).unwrap();
        assert!(matches!(jobs[0].privilege, Privilege::Root));
        std::fs::write(&path, r#"{"hosts":[]}"#).unwrap();
        assert!(matches!(from_state_file(&path, &t), Err(JobsError::NoHost)));
    }

    fn model(text: &str) -> Model {
        kiln_model::parse_str("kiln.toml", text, Path::new("."))
            .unwrap_or_else(|d| panic!("{text}\n{}", d.render(100, false)))
    }

    const TWO_ENVS: &str = "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n\
        [base]\nsshd = false\nfirewall = false\nupdates = false\ntime = false\nnode_exporter = false\nwireguard = false\n\
        [environments.production]\ndomain = \"example.org\"\nacme_ca = \"internal\"\n\
        [environments.production.hosts.web]\naddress = \"192.0.2.1\"\nadmin_user = \"admin\"\nssh_port = 2222\n\
        [environments.production.hosts.db]\naddress = \"192.0.2.2\"\nadmin_user = \"admin\"\n\
        [environments.staging]\ndomain = \"staging.example.org\"\nacme_ca = \"internal\"\n\
        [environments.staging.hosts.web]\naddress = \"192.0.2.3\"\nadmin_user = \"admin\"\n";

    #[test]
    fn config_jobs_follow_the_one_environment_rule_and_roles() {
        let m = model(TWO_ENVS);
        let lab_roots = kiln_lab::Roots {
            state: tempfile::tempdir().unwrap().path().join("none"),
            cache: "/nonexistent".into(),
        };
        let opts = JobOptions {
            lab_roots,
            ..Default::default()
        };
        let jobs = from_config(&m, &opts, Arc::new(NoSecrets("t".into()))).unwrap();
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["db", "web"], "production by default, hosts by role");
        let Connect::Ssh(t) = &jobs[1].connect else {
            panic!("ssh expected")
        };
        assert_eq!((t.address.as_str(), t.port), ("192.0.2.1", 2222));
        assert_eq!(t.env.as_deref(), Some("production"));
        assert_eq!(t.identity_file, None);
        let opts = JobOptions {
            env: Some("staging".into()),
            roles: vec!["db".into()],
            ..opts
        };
        let err = from_config(&m, &opts, Arc::new(NoSecrets("t".into()))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment staging has no host playing role `db`"
        );
    }
}
