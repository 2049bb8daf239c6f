//! `kiln show`: the resolved model per environment — hosts (with pinned host key
//! fingerprints), which services run where and at which URL, backups, alerts, and the
//! names of the secrets the environment needs. Secret values are never read here.

use std::process::ExitCode;

use kiln_model::{Environment, Host, Model};
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::CmdResult;
use crate::printer::Printer;
use crate::render::table::align;

/// Show the resolved model: what runs where, at which URL.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Secrets are never shown: only the names of those each environment needs \
(their values live encrypted in secrets/<env>/).

Examples:
  kiln show                          every environment
  kiln show --env staging            what runs where in staging, and at which URL
  kiln show --json | jq '.environments[].services[].url'"
)]
pub struct Args {
    /// Only this environment (default: all).
    #[arg(long, short, env = "KILN_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let model = ctx.model()?;
    let envs = ctx.environments(args.env.as_deref())?;
    let p = Printer::json_if(args.json);
    if p.is_json() {
        p.json(&to_json(model, &envs))?;
    } else {
        p.out(render(model, &envs));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ssh-keygen -l` style key type names.
fn key_kind(kind: &str) -> &str {
    match kind {
        "ssh-ed25519" => "ED25519",
        "ssh-rsa" => "RSA",
        "sk-ssh-ed25519@openssh.com" => "ED25519-SK",
        "sk-ecdsa-sha2-nistp256@openssh.com" => "ECDSA-SK",
        k if k.starts_with("ecdsa-") => "ECDSA",
        k => k,
    }
}

fn fingerprints(host: &Host) -> Vec<String> {
    host.host_key_fingerprints()
        .into_iter()
        .map(|(kind, fp)| format!("{fp} ({})", key_kind(&kind)))
        .collect()
}

fn address(host: &Host) -> String {
    match host.address6 {
        Some(v6) => format!("{}, {v6}", host.address),
        None => host.address.to_string(),
    }
}

fn render(model: &Model, envs: &[&Environment]) -> String {
    let mut out = format!(
        "{} — {} (ACME contact {})\n",
        model.project.name,
        model.config_path().display(),
        model.project.acme_email
    );
    for env in envs {
        out.push('\n');
        out.push_str(&render_env(model, env));
    }
    let overridden = kiln_converge::desired::services::overridden_templates(model);
    if !overridden.is_empty() {
        out.push_str("\ncatalog templates overridden by this repository:\n");
        for (service, name, path) in overridden {
            out.push_str(&format!(
                "  service {service}: {name} from {}\n",
                path.display()
            ));
        }
    }
    if let Some(m) = &model.monitoring {
        let mut to = Vec::new();
        if let Some(e) = &m.alert_email {
            to.push(format!("e-mail {e}"));
        }
        if let Some(w) = &m.alert_webhook {
            to.push(format!("webhook {w}"));
        }
        out.push_str(&format!(
            "\nalerts: from the `{}` host, to {}\n",
            m.host,
            to.join(" and ")
        ));
    }
    out
}

fn render_env(model: &Model, env: &Environment) -> String {
    let mut out = format!(
        "{} — {}, certificates from {}\n",
        env.name, env.domain, env.acme_ca
    );

    out.push_str("\n  hosts\n");
    let mut rows =
        vec![["ROLE", "ADDRESS", "ADMIN", "PORT", "OS", "PINNED HOST KEYS"].map(str::to_string)];
    for h in env.hosts.values() {
        let fps = fingerprints(h);
        let mut role = h.role.clone();
        if env.apex_host.as_deref() == Some(h.role.as_str()) {
            role.push_str(" (apex)");
        }
        rows.push([
            role,
            address(h),
            h.admin_user.clone(),
            h.ssh_port.to_string(),
            h.os.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
            fps.first()
                .cloned()
                .unwrap_or_else(|| "none: run `kiln trust`".into()),
        ]);
        for fp in fps.iter().skip(1) {
            let mut r: [String; 6] = Default::default();
            r[5] = fp.clone();
            rows.push(r);
        }
    }
    out.push_str(&indent(&align(&rows, "  "), "    "));

    out.push_str("\n  services\n");
    let mut rows = vec![row(["NAME", "KIND", "HOST", "VERSION", "URL"])];
    for s in &model.services {
        rows.push([
            s.name.clone(),
            s.kind.clone(),
            s.host.clone(),
            s.version.clone().unwrap_or_else(|| "-".into()),
            if s.recipe().is_some_and(|r| r.deprecated.is_some()) {
                "- (deprecated kind: deploys nothing, see kiln check)".into()
            } else {
                env.service_url(s).unwrap_or_else(|| "- (internal)".into())
            },
        ]);
    }
    out.push_str(&indent(&align(&rows, "  "), "    "));

    let roles: Vec<String> = env
        .hosts
        .keys()
        .filter_map(|r| {
            model
                .roles
                .get(r)
                .map(|role| format!("{r}: {}", role_summary(role)))
        })
        .collect();
    if !roles.is_empty() {
        out.push_str("\n  extra resources per role\n");
        for r in roles {
            out.push_str(&format!("    {r}\n"));
        }
    }

    out.push_str("\n  backups: ");
    match model.backups.as_ref().filter(|_| env.backups_enabled) {
        None => out.push_str("off\n"),
        Some(b) => {
            let r = &b.repository;
            out.push_str(&format!(
                "s3 bucket {} at {}, prefix {}\n           schedule {}, keep {} daily / {} weekly / {} monthly / {} yearly, {}\n",
                r.bucket,
                r.endpoint,
                r.prefix_for(&env.name),
                b.schedule,
                b.retention.daily,
                b.retention.weekly,
                b.retention.monthly,
                b.retention.yearly,
                match b.object_lock_days {
                    Some(d) => format!("Object Lock {d} days"),
                    None => "NO Object Lock (allow_unlocked)".to_string(),
                }
            ));
        }
    }

    let secrets = model.required_secrets_for(&env.name).unwrap_or_default();
    out.push_str(&format!(
        "\n  secrets needed (names only; values in secrets/{}/): {}\n",
        env.name,
        secrets.len()
    ));
    let names: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
    out.push_str(&wrap(&names, 92, "    "));
    out
}

/// "2 packages, 1 file, 1 unit" for a `[roles.<role>]` section.
fn role_summary(role: &kiln_model::Role) -> String {
    let counts = [
        (role.packages.len(), "package"),
        (role.directories.len(), "directory"),
        (role.files.len(), "file"),
        (role.symlinks.len(), "symlink"),
        (role.users.len(), "user"),
        (role.groups.len(), "group"),
        (role.units.len(), "unit"),
        (role.commands.len(), "command"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| match (*n, *what) {
            (1, w) => format!("1 {w}"),
            (n, "directory") => format!("{n} directories"),
            (n, w) => format!("{n} {w}s"),
        })
        .collect();
    if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join(", ")
    }
}

fn row(cells: [&str; 5]) -> [String; 5] {
    cells.map(str::to_string)
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// Comma-separated words wrapped at `width` columns.
fn wrap(words: &[String], width: usize, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(prefix);
    for (i, w) in words.iter().enumerate() {
        let item = if i + 1 < words.len() {
            format!("{w}, ")
        } else {
            w.clone()
        };
        if line.len() + item.trim_end().len() > width && !line.trim().is_empty() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(prefix);
        }
        line.push_str(&item);
    }
    if !line.trim().is_empty() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn to_json(model: &Model, envs: &[&Environment]) -> Value {
    let environments: Vec<Value> = envs
        .iter()
        .map(|env| {
            let hosts: Vec<Value> = env
                .hosts
                .values()
                .map(|h| {
                    json!({
                        "role": h.role,
                        "fqdn": env.host_fqdn(&h.role),
                        "address": h.address.to_string(),
                        "address6": h.address6.map(|a| a.to_string()),
                        "ssh_port": h.ssh_port,
                        "admin_user": h.admin_user,
                        "os": h.os.map(|o| o.to_string()),
                        "host_keys": h.host_key_fingerprints().into_iter()
                            .map(|(kind, fp)| json!({ "type": kind, "fingerprint": fp }))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            let services: Vec<Value> = model
                .services
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "kind": s.kind,
                        "host": s.host,
                        "version": s.version,
                        "image": s.image(),
                        "port": s.port(),
                        "url": env.service_url(s),
                        "options": s.options,
                    })
                })
                .collect();
            let backups = model
                .backups
                .as_ref()
                .filter(|_| env.backups_enabled)
                .map(|b| {
                    json!({
                        "endpoint": b.repository.endpoint,
                        "region": b.repository.region,
                        "bucket": b.repository.bucket,
                        "prefix": b.repository.prefix_for(&env.name),
                        "schedule": b.schedule,
                        "retention": b.retention,
                        "object_lock_days": b.object_lock_days,
                    })
                });
            let secrets: Vec<String> = model
                .required_secrets_for(&env.name)
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .collect();
            json!({
                "name": env.name,
                "domain": env.domain,
                "acme_ca": env.acme_ca,
                "apex_host": env.apex_host,
                "hosts": hosts,
                "services": services,
                "backups": backups,
                "roles": env.hosts.keys().filter_map(|r| model.roles.get(r)).collect::<Vec<_>>(),
                "secret_names": secrets,
            })
        })
        .collect();
    let overridden: Vec<Value> = kiln_converge::desired::services::overridden_templates(model)
        .into_iter()
        .map(|(service, template, path)| {
            json!({ "service": service, "template": template, "path": path })
        })
        .collect();
    json!({
        "project": model.project,
        "environments": environments,
        "monitoring": model.monitoring,
        "overridden_templates": overridden,
    })
}
