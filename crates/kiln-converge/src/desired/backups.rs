//! The backups feature: on every host of an environment with backups on, what the host's
//! backup mode needs ([`kiln_backup::plan`]):
//!
//! - its plan, `/etc/kiln/backup/plan.json` (no secret): the repository's location and,
//!   per service placed on the host, what is consistent to back up: for a PostgreSQL
//!   server, one `pg_dump -Fc` per database of the services using it, streamed from the
//!   container (Synapse's without the data of `e2e_one_time_keys_json`, as Synapse's
//!   docs advise); for every other service with data, its volumes, with the service
//!   stopped for the copy and started again right after (Nextcloud: in maintenance mode
//!   instead);
//! - its secrets, `/etc/kiln/backup/secrets.json` (0600 root): the servers' S3 credential
//!   and the repository password, never the admin or read-only ones;
//! - `kiln-backup.service` (the shipped kiln binary in its backup mode, whatever killed
//!   it undone by its `ExecStopPost`) and `kiln-backup.timer` at `[backups] schedule`.
//!
//! Must not: deploy services or their data directories (the services feature does).

use std::path::PathBuf;

use kiln_backup::plan::{
    Database, HostPlan, HostSecrets, Item, Kind, PLAN_PATH, PlanLocation, SECRETS_PATH,
    SERVICE_UNIT, STATE_PATH, Source, TIMER_UNIT,
};
use kiln_model::{Host, Service};

use super::services::{data_dir, deploys, unit_name};
use super::{DesiredError, EnvironmentContext};
use crate::host::AGENT_LINK;
use crate::resource::{Content, DesiredState, Directory, File, Unit};

/// The resources of the backups of `host`; nothing when the environment has no backups.
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let mut d = DesiredState::default();
    let Some(backups) = env
        .model
        .backups
        .as_ref()
        .filter(|_| env.env.backups_enabled)
    else {
        return Ok(d);
    };
    let plan = plan(env, host)?;
    if plan.items.is_empty() {
        return Ok(d);
    }
    let err = |message: String| DesiredError::Service {
        host: host.role.clone(),
        service: "backups".into(),
        message,
    };
    let secret = |name: &str| {
        env.secrets
            .secret(name)
            .map_err(|m| err(format!("secret {name}: {m}")))
    };
    let c = &backups.credentials;
    let secrets = HostSecrets {
        access_key_id: secret(&c.server.access_key())?.expose().to_owned(),
        secret_access_key: secret(&c.server.secret_key())?.expose().to_owned(),
        repository_password: secret(&c.repository_password)?.expose().to_owned(),
    };
    for dir in ["/etc/kiln/backup", "/var/lib/kiln/backup"] {
        d.directories.push(Directory {
            path: dir.into(),
            mode: 0o700,
            owner: "root".into(),
            group: "root".into(),
        });
    }
    let plan_json = serde_json::to_string_pretty(&plan).map_err(|e| err(e.to_string()))?;
    d.files.push(File::root(
        PLAN_PATH,
        Content::text(plan_json + "\n"),
        0o600,
    ));
    let secrets_json = serde_json::to_string(&secrets).map_err(|e| err(e.to_string()))?;
    let mut s = File::root(SECRETS_PATH, Content::text(secrets_json + "\n"), 0o600);
    s.sensitive = true;
    d.files.push(s);
    let mut service = Unit::file(
        SERVICE_UNIT,
        Content::text(format!(
            "# Managed by kiln: this host's backups to {url} (plan {PLAN_PATH}).\n\
             [Unit]\n\
             Description=kiln: back up this host's services\n\
             Wants=network-online.target\n\
             After=network-online.target\n\n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={AGENT_LINK} agent backup\n\
             # Whatever a killed run left (a service stopped, a maintenance mode on) is undone.\n\
             ExecStopPost={AGENT_LINK} agent backup --recover\n\
             Nice=10\n\
             IOSchedulingClass=idle\n",
            url = kiln_backup::Location::from(&plan.repository).restic_url(),
        )),
    );
    service.enabled = false;
    service.started = false;
    let timer = Unit::file(
        TIMER_UNIT,
        Content::text(format!(
            "# Managed by kiln: when this host backs up ([backups] schedule).\n\
             [Unit]\n\
             Description=kiln: back up this host's services at {schedule}\n\n\
             [Timer]\n\
             OnCalendar={schedule}\n\
             Persistent=true\n\
             RandomizedDelaySec=10min\n\n\
             [Install]\n\
             WantedBy=timers.target\n",
            schedule = backups.schedule
        )),
    );
    d.units.push(service);
    d.units.push(timer);
    Ok(d)
}

/// What `host` backs up: its services' items, in the model's order.
pub fn plan(env: &EnvironmentContext<'_>, host: &Host) -> Result<HostPlan, DesiredError> {
    let model = env.model;
    let backups = model.backups.as_ref();
    let location = backups
        .map(|b| kiln_backup::Location::for_environment(b, env.env))
        .map(|l| PlanLocation::from(&l))
        .unwrap_or(PlanLocation {
            endpoint: String::new(),
            region: String::new(),
            bucket: String::new(),
            prefix: String::new(),
        });
    let on_host: Vec<&Service> = model
        .services_on(&host.role)
        .filter(|s| deploys(s))
        .collect();
    let mut items = vec![];
    for svc in &on_host {
        let Some(recipe) = svc.recipe() else { continue };
        if recipe.kind == "postgres" {
            // One dump per database of the services using this server.
            for user in on_host
                .iter()
                .filter(|u| u.option_str("database") == Some(svc.name.as_str()))
            {
                let db = user.name.replace('-', "_");
                let mut argv: Vec<String> = [
                    "podman", "exec", &svc.name, "pg_dump", "-Fc", "-U", "postgres",
                ]
                .map(str::to_owned)
                .to_vec();
                if user.kind == "synapse" {
                    // Synapse's docs: these keys are useless after a restore.
                    argv.push("--exclude-table-data=e2e_one_time_keys_json".into());
                }
                argv.push(format!("--dbname={db}"));
                items.push(Item {
                    service: user.name.clone(),
                    kind: Kind::Dump,
                    source: Source::Command {
                        argv,
                        filename: format!("{db}.dump"),
                    },
                    description: format!(
                        "database {db} of service {} (pg_dump -Fc, PostgreSQL service {})",
                        user.name, svc.name
                    ),
                    stop_units: vec![],
                    before: vec![],
                    after: vec![],
                    unit: Some(unit_name(&user.name)),
                    database: Some(Database {
                        container: svc.name.clone(),
                        name: db.clone(),
                        owner: db.clone(),
                        c_locale: user.kind == "synapse",
                        key_tables: user
                            .recipe()
                            .map(|r| r.key_tables.iter().map(|t| (*t).to_owned()).collect())
                            .unwrap_or_default(),
                    }),
                });
            }
            continue;
        }
        let paths: Vec<PathBuf> = recipe
            .volumes
            .iter()
            .map(|v| data_dir(&svc.name, v.name))
            .collect();
        if paths.is_empty() {
            continue;
        }
        let names: Vec<&str> = recipe.volumes.iter().map(|v| v.name).collect();
        let (stop_units, before, after) = if svc.kind == "nextcloud" {
            let occ = |mode: &str| -> Vec<String> {
                [
                    "podman",
                    "exec",
                    "-u",
                    "www-data",
                    &svc.name,
                    "php",
                    "occ",
                    "maintenance:mode",
                    mode,
                ]
                .map(str::to_owned)
                .to_vec()
            };
            (vec![], vec![occ("--on")], vec![occ("--off")])
        } else {
            (vec![unit_name(&svc.name)], vec![], vec![])
        };
        items.push(Item {
            service: svc.name.clone(),
            kind: Kind::Files,
            source: Source::Paths { paths },
            description: format!("volumes {} of service {}", names.join(", "), svc.name),
            stop_units,
            before,
            after,
            unit: Some(unit_name(&svc.name)),
            database: None,
        });
    }
    let metrics_dir = host.base.node_exporter.then(|| {
        PathBuf::from(super::base::node_exporter::textfile_dir(
            host.os
                .map(super::os_family)
                .unwrap_or(crate::facts::OsFamily::Debian),
        ))
    });
    Ok(HostPlan {
        environment: env.env.name.clone(),
        host: host.role.clone(),
        repository: location,
        metrics_dir,
        state_path: STATE_PATH.into(),
        items,
    })
}
