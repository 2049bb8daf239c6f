//! From the model to a [`DesiredState`] per host: a role's `[roles.<role>]` resources
//! become typed resources; templates are rendered here, on the laptop, with minijinja and
//! the context of the contract (`project`, `env`, `host`, `vars`), plus `secret("name")`
//! which reads the vault through a [`SecretSource`] and marks the file sensitive (its
//! diffs are then redacted).
//!
//! Reads template and source files under the model's folder; talks to no host.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_model::{Content as ModelContent, Environment, Host, Model};
use kiln_secrets::Secret;

use crate::facts::OsFamily;
use crate::resource::{
    Command, Content, DesiredState, Directory, File, Group, Notify, Package, Symlink, Trigger,
    Unit, User,
};

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
    #[error("{0}")]
    Invalid(#[from] crate::resource::InvalidState),
}

fn os_family(os: kiln_model::OsFamily) -> OsFamily {
    if os.is_rhel() {
        OsFamily::Rhel
    } else {
        OsFamily::Debian
    }
}

fn toml_to_json(v: &kiln_model::toml::Value) -> serde_json::Value {
    use kiln_model::toml::Value as T;
    match v {
        T::String(s) => s.clone().into(),
        T::Integer(i) => (*i).into(),
        T::Float(f) => (*f).into(),
        T::Boolean(b) => (*b).into(),
        T::Datetime(d) => d.to_string().into(),
        T::Array(a) => a.iter().map(toml_to_json).collect(),
        T::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// The template context of the contract.
pub fn context(model: &Model, env: &Environment, host: &Host) -> serde_json::Value {
    let vars = model
        .roles
        .get(&host.role)
        .map(|r| {
            r.vars
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default();
    serde_json::json!({
        "project": { "name": model.project.name, "domain": model.project.domain },
        "env": { "name": env.name, "domain": env.domain },
        "host": {
            "role": host.role,
            "address": host.address.to_string(),
            "admin_user": host.admin_user,
            "os": host.os.map(|o| o.as_str()),
        },
        "vars": vars,
    })
}

/// Renders one template file. Returns the text and whether it used a secret.
pub fn render_template(
    base: &Path,
    rel: &Path,
    ctx: &serde_json::Value,
    secrets: Arc<dyn SecretSource>,
    what: &str,
    host: &str,
) -> Result<(String, bool), DesiredError> {
    let path = base.join(rel);
    let file = path.display().to_string();
    let source = std::fs::read_to_string(&path).map_err(|source| DesiredError::Read {
        file: file.clone(),
        what: what.to_owned(),
        source,
    })?;
    let used = Arc::new(Mutex::new(false));
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    let used_in = used.clone();
    env.add_function(
        "secret",
        move |name: String| -> Result<String, minijinja::Error> {
            if let Ok(mut u) = used_in.lock() {
                *u = true;
            }
            secrets
                .secret(&name)
                .map(|s| s.expose().to_owned())
                .map_err(|m| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m))
        },
    );
    let terr = |e: minijinja::Error| DesiredError::Template {
        file: file.clone(),
        line: e.line().unwrap_or(0),
        what: what.to_owned(),
        host: host.to_owned(),
        message: match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    env.add_template_owned(file.clone(), source).map_err(terr)?;
    let text = env
        .get_template(&file)
        .and_then(|t| t.render(minijinja::value::Serde(ctx)))
        .map_err(terr)?;
    let used = used.lock().map(|u| *u).unwrap_or(true);
    Ok((text, used))
}

fn content(
    base: &Path,
    c: &ModelContent,
    ctx: &serde_json::Value,
    secrets: &Arc<dyn SecretSource>,
    what: &str,
    host: &str,
) -> Result<(Content, bool), DesiredError> {
    match c {
        ModelContent::Inline(t) => Ok((Content::text(t.clone()), false)),
        ModelContent::Source(rel) => {
            let path: PathBuf = base.join(rel);
            std::fs::read(&path)
                .map(|b| (Content(b), false))
                .map_err(|source| DesiredError::Read {
                    file: path.display().to_string(),
                    what: what.to_owned(),
                    source,
                })
        }
        ModelContent::Template(rel) => render_template(base, rel, ctx, secrets.clone(), what, host)
            .map(|(t, s)| (Content::text(t), s)),
    }
}

/// The desired state of one host of an environment.
pub fn desired_for_host(
    model: &Model,
    env: &Environment,
    host: &Host,
    secrets: Arc<dyn SecretSource>,
) -> Result<DesiredState, DesiredError> {
    let base = model.base_dir();
    let ctx = context(model, env, host);
    let mut d = DesiredState {
        host: host.role.clone(),
        os: host.os.map(os_family),
        ..Default::default()
    };
    let Some(role) = model.roles.get(&host.role) else {
        return Ok(d);
    };
    let name = host.role.as_str();
    d.packages = role
        .packages
        .iter()
        .map(|p| Package { name: p.clone() })
        .collect();
    d.groups = role
        .groups
        .iter()
        .map(|g| Group {
            name: g.name.clone(),
            system: g.system,
        })
        .collect();
    d.users = role
        .users
        .iter()
        .map(|u| User {
            name: u.name.clone(),
            system: u.system,
            home: u.home.clone(),
            shell: u.shell.clone(),
            groups: u.groups.clone(),
        })
        .collect();
    d.directories = role
        .directories
        .iter()
        .map(|x| Directory {
            path: x.path.clone(),
            mode: x.mode,
            owner: x.owner.clone(),
            group: x.group.clone(),
        })
        .collect();
    for f in &role.files {
        let what = format!("file {}", f.path.display());
        let (c, sensitive) = content(base, &f.content, &ctx, &secrets, &what, name)?;
        d.files.push(File {
            path: f.path.clone(),
            content: c,
            mode: f.mode,
            owner: f.owner.clone(),
            group: f.group.clone(),
            sensitive,
            notify: f
                .notify
                .iter()
                .map(|u| Notify {
                    unit: u.clone(),
                    action: Trigger::Restart,
                })
                .collect(),
            guard: None,
        });
    }
    d.symlinks = role
        .symlinks
        .iter()
        .map(|s| Symlink {
            path: s.path.clone(),
            target: s.target.clone(),
        })
        .collect();
    for u in &role.units {
        let what = format!("unit {}", u.name);
        let (c, sensitive) = content(base, &u.content, &ctx, &secrets, &what, name)?;
        d.units.push(Unit {
            name: u.name.clone(),
            content: c,
            enabled: u.enabled,
            started: u.started,
            sensitive,
            guard: None,
        });
    }
    d.commands = role
        .commands
        .iter()
        .map(|c| Command {
            name: c.name.clone(),
            run: c.run.clone(),
            unless: c.unless.clone(),
            triggered_by: c.triggered_by.clone(),
        })
        .collect();
    d.validate()?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Planted;
    impl SecretSource for Planted {
        fn secret(&self, name: &str) -> Result<Secret, String> {
            match name {
                "db_password" => Ok(Secret::new("hunter2-planted")),
                _ => Err(format!("no secret {name:?} in the vault")),
            }
        }
    }

    const TOML: &str = r#"
[project]
name = "demo"
domain = "kiln-demo.net"
acme_email = "admin@kiln-demo.net"

[environments.lab]
domain = "demo.lab"
acme_ca = "internal"

[environments.lab.hosts.web]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"

[roles.web]
packages = ["htop"]
vars = { greeting = "hello", port = 8080 }

[[roles.web.files]]
path = "/etc/app/app.conf"
template = "templates/app.conf.j2"
notify = ["app.service"]

[[roles.web.files]]
path = "/etc/app/db.env"
template = "templates/db.env.j2"
mode = "0600"

[[roles.web.units]]
name = "app.service"
content = "[Service]\nExecStart=/bin/true\n"
"#;

    fn model(db_template: &str) -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("kiln.toml"), TOML).unwrap();
        std::fs::write(
            dir.path().join("templates/app.conf.j2"),
            "# {{ project.name }} on {{ host.role }} ({{ env.name }}, {{ host.os }})\n{{ vars.greeting }} {{ vars.port }}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("templates/db.env.j2"), db_template).unwrap();
        let m = kiln_model::load(&dir.path().join("kiln.toml")).unwrap_or_else(|d| panic!("{d:?}"));
        (dir, m)
    }

    #[test]
    fn roles_map_to_typed_resources_with_rendered_templates() {
        let (_dir, m) = model("PASSWORD={{ secret(\"db_password\") }}\n");
        let env = m.environment("lab").unwrap();
        let host = env.host("web").unwrap();
        let d = desired_for_host(&m, env, host, Arc::new(Planted)).unwrap();
        assert_eq!(d.os, Some(OsFamily::Debian));
        assert_eq!(
            d.packages,
            [Package {
                name: "htop".into()
            }]
        );
        let app = &d.files[0];
        assert_eq!(
            std::str::from_utf8(app.content.bytes()).unwrap(),
            "# demo on web (lab, debian13)\nhello 8080\n"
        );
        assert!(!app.sensitive);
        assert_eq!(
            app.notify,
            [Notify {
                unit: "app.service".into(),
                action: Trigger::Restart
            }]
        );
        let db = &d.files[1];
        assert!(db.sensitive, "a template that calls secret() is sensitive");
        assert_eq!(db.mode, 0o600);
        assert_eq!(
            std::str::from_utf8(db.content.bytes()).unwrap(),
            "PASSWORD=hunter2-planted\n"
        );
        // Its plan on an empty host shows no secret.
        let p = crate::plan::plan(&d, &crate::observe::Observed::default()).unwrap();
        assert!(!serde_json::to_string(&p).unwrap().contains("hunter2"));
    }

    #[test]
    fn template_errors_name_the_file_and_line() {
        let (_dir, m) = model("A=1\nB={{ secret(\"nope\") }}\n");
        let env = m.environment("lab").unwrap();
        let err =
            desired_for_host(&m, env, env.host("web").unwrap(), Arc::new(Planted)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "templates/db.env.j2:2: template error (for file /etc/app/db.env on host web)"
            ),
            "{text}"
        );
        assert!(text.contains("no secret \"nope\" in the vault"), "{text}");
        let (_dir, m) = model("{{ vars.missing }}\n");
        let env = m.environment("lab").unwrap();
        let err =
            desired_for_host(&m, env, env.host("web").unwrap(), Arc::new(Planted)).unwrap_err();
        assert!(err.to_string().contains("db.env.j2:1:"), "{err}");
    }

    #[test]
    fn without_a_vault_secret_is_a_clear_error() {
        let (_dir, m) = model("{{ secret(\"db_password\") }}");
        let env = m.environment("lab").unwrap();
        let err = desired_for_host(
            &m,
            env,
            env.host("web").unwrap(),
            Arc::new(NoSecrets("no vault here".into())),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("secret(\"db_password\"): no vault here"),
            "{err}"
        );
    }
}
