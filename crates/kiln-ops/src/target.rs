//! Which environment and which hosts a command works on: ONE rule for every command.
//!
//! Single-environment commands (plan, apply, trust, secrets, import, lab, status…):
//! the environment named by `--env`/`KILN_ENV`; without one, the only environment when
//! there is one; else `production` when it is declared; else an error listing the
//! choices. Listing commands (dns, show) take every environment when none is named.
//! A named environment or role that kiln.toml does not declare is always an error that
//! lists what is declared: a typo must never act on (or create a vault for) a new name.

use kiln_model::{Environment, Host, Model};

/// The environment used when several are declared and none is named.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// A target that kiln.toml does not declare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("environment `{wanted}` is not declared in {config}")]
    UnknownEnvironment {
        wanted: String,
        known: Vec<String>,
        config: String,
    },
    #[error(
        "several environments ({}) and none is named `{DEFAULT_ENVIRONMENT}`: choose one with --env",
        .known.join(", ")
    )]
    Ambiguous { known: Vec<String> },
    /// A listing command (dns, show) was asked for an environment kiln.toml lacks.
    #[error("no environment `{wanted}` in {config}")]
    NoSuchEnvironment {
        wanted: String,
        known: Vec<String>,
        config: String,
    },
    #[error("{config} declares no environment")]
    NoEnvironment { config: String },
    #[error("environment {env} has no host playing role `{wanted}`")]
    UnknownRole {
        env: String,
        wanted: String,
        known: Vec<String>,
    },
}

impl TargetError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            TargetError::UnknownEnvironment { known, config, .. }
            | TargetError::NoSuchEnvironment { known, config, .. } => {
                format!("environments in {config}: {}", known.join(", "))
            }
            TargetError::Ambiguous { .. } => "e.g. --env staging, or set KILN_ENV".into(),
            TargetError::NoEnvironment { .. } => {
                "add an [environments.<name>] table with its hosts".into()
            }
            TargetError::UnknownRole { known, .. } => {
                format!("roles with a host there: {}", known.join(", "))
            }
        }
    }
}

fn names(model: &Model) -> Vec<String> {
    model.environments.iter().map(|e| e.name.clone()).collect()
}

/// The one environment a command works on (see the module doc for the rule).
pub fn environment<'m>(
    model: &'m Model,
    wanted: Option<&str>,
) -> Result<&'m Environment, TargetError> {
    let config = model.config_path().display().to_string();
    match wanted {
        Some(name) => model
            .environment(name)
            .ok_or_else(|| TargetError::UnknownEnvironment {
                wanted: name.to_owned(),
                known: names(model),
                config,
            }),
        None => match model.environments.as_slice() {
            [] => Err(TargetError::NoEnvironment { config }),
            [only] => Ok(only),
            _ => model
                .environment(DEFAULT_ENVIRONMENT)
                .ok_or_else(|| TargetError::Ambiguous {
                    known: names(model),
                }),
        },
    }
}

/// The environments a listing command shows: the named one, or all of them.
pub fn environments<'m>(
    model: &'m Model,
    wanted: Option<&str>,
) -> Result<Vec<&'m Environment>, TargetError> {
    match wanted {
        Some(name) => {
            model
                .environment(name)
                .map(|e| vec![e])
                .ok_or_else(|| TargetError::NoSuchEnvironment {
                    wanted: name.to_owned(),
                    known: names(model),
                    config: model.config_path().display().to_string(),
                })
        }
        None => Ok(model.environments.iter().collect()),
    }
}

/// The hosts of `env` playing `roles` (all of them when `roles` is empty), in role order.
pub fn hosts<'e>(env: &'e Environment, roles: &[String]) -> Result<Vec<&'e Host>, TargetError> {
    for want in roles {
        if !env.hosts.contains_key(want) {
            return Err(TargetError::UnknownRole {
                env: env.name.clone(),
                wanted: want.clone(),
                known: env.hosts.keys().cloned().collect(),
            });
        }
    }
    Ok(env
        .hosts
        .values()
        .filter(|h| roles.is_empty() || roles.contains(&h.role))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn model(envs: &[&str]) -> Model {
        let mut text = String::from(
            "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n",
        );
        for (i, e) in envs.iter().enumerate() {
            text.push_str(&format!(
                "[environments.{e}]\ndomain = \"{e}.example.org\"\nacme_ca = \"internal\"\n[environments.{e}.hosts.web]\naddress = \"192.0.2.{}\"\nadmin_user = \"admin\"\n",
                i + 1
            ));
        }
        kiln_model::parse_str("kiln.toml", &text, Path::new("."))
            .unwrap_or_else(|d| panic!("{text}\n{}", d.render(100, false)))
    }

    #[test]
    fn the_only_environment_then_production_then_an_error() {
        assert_eq!(environment(&model(&["lab"]), None).unwrap().name, "lab");
        let m = model(&["production", "staging"]);
        assert_eq!(environment(&m, None).unwrap().name, "production");
        assert_eq!(environment(&m, Some("staging")).unwrap().name, "staging");
        let m = model(&["lab", "staging"]);
        let err = environment(&m, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "several environments (lab, staging) and none is named `production`: choose one with --env"
        );
        let err = environment(&m, Some("prod")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment `prod` is not declared in ./kiln.toml"
        );
        assert_eq!(err.hint(), "environments in ./kiln.toml: lab, staging");
    }

    #[test]
    fn listing_takes_all_and_roles_must_exist() {
        let m = model(&["lab", "staging"]);
        assert_eq!(environments(&m, None).unwrap().len(), 2);
        assert_eq!(environments(&m, Some("lab")).unwrap().len(), 1);
        let err = environments(&m, Some("prod")).unwrap_err();
        assert_eq!(err.to_string(), "no environment `prod` in ./kiln.toml");
        let env = environment(&m, Some("lab")).unwrap();
        assert_eq!(hosts(env, &[]).unwrap().len(), 1);
        let err = hosts(env, &["db".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment lab has no host playing role `db`"
        );
        assert_eq!(err.hint(), "roles with a host there: web");
    }
}
