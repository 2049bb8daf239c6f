//! The `[roles.<role>]` feature: a role's plain resources (packages, groups, users,
//! directories, files, symlinks, units, commands) become typed resources; file and unit
//! templates are rendered with [`super::template`].
//!
//! Owns nothing else: services, proxy, firewall and WireGuard resources come from their
//! own modules, and the merge with the duplicate check is in [`super`].

use kiln_model::Host;

use super::template::content;
use super::{DesiredError, EnvironmentContext};
use crate::resource::{
    Command, DesiredState, Directory, File, Group, Notify, Package, Symlink, Trigger, Unit,
    UnitKind, User,
};

/// The resources of `host`'s role.
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let model = env.model;
    let secrets = &env.secrets;
    let base = model.base_dir();
    let ctx = super::context(model, env.env, host);
    let mut d = DesiredState::default();
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
        let (c, sensitive) = content(base, &f.content, &ctx, secrets, &what, name)?;
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
            validate: None,
            note: None,
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
        let (c, sensitive) = content(base, &u.content, &ctx, secrets, &what, name)?;
        d.units.push(Unit {
            name: u.name.clone(),
            content: c,
            enabled: u.enabled,
            started: u.started,
            sensitive,
            kind: UnitKind::File,
            guard: None,
            health: None,
            stage: Default::default(),
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
            stage: Default::default(),
        })
        .collect();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::super::{NoSecrets, SecretSource, desired_for_host};
    use super::*;
    use crate::facts::OsFamily;
    use kiln_model::Model;
    use kiln_secrets::Secret;
    use std::sync::Arc;

    struct Planted;
    impl SecretSource for Planted {
        fn secret(&self, name: &str) -> Result<Secret, String> {
            match name {
                "db_password" => Ok(Secret::new("hunter2-planted")),
                n if n.starts_with("wireguard_") => {
                    Ok(Secret::new(crate::desired::test_wireguard_key("wg")))
                }
                _ => Err(format!("no secret {name:?} in the vault")),
            }
        }
    }

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
