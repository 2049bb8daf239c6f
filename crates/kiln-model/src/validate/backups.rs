//! `[backups]` (schedule, Object Lock, retention, S3 repository, credential secret names)
//! and `[monitoring]` (host, alert destinations).

use std::collections::BTreeMap;
use std::ops::Range;

use super::services::role_in_every_environment;
use super::{Ctx, DUPLICATE, INVALID, MISSING};
use crate::checks;
use crate::model::*;
use crate::raw::*;

fn count(cx: &mut Ctx<'_>, v: &Option<S<i64>>, what: &str, max: i64) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(*v.get_ref()) {
        Ok(n) if i64::from(n) <= max => Some(n),
        _ => {
            let e = cx
                .at(
                    v.span(),
                    INVALID,
                    format!("{what} {} is out of range", v.get_ref()),
                )
                .label("out of range")
                .help(format!("use a number between 0 and {max}"));
            cx.push(e);
            None
        }
    }
}

/// Vault names the catalog and the hosts generate (name → who needs it); two owners of
/// one name are reported.
pub(super) fn generated_secrets(
    cx: &mut Ctx<'_>,
    services: &[(S<String>, RawService)],
    envs: &[(S<String>, RawEnvironment)],
) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (sname, svc) in services {
        let Some(recipe) = kiln_catalog::recipe(svc.kind.get_ref()) else {
            continue;
        };
        for t in recipe.secrets {
            let name = kiln_catalog::secret_name(sname.get_ref(), t.suffix);
            let mut all = vec![name.clone()];
            if matches!(t.rule, kiln_secrets::SecretRule::PasswordWithHash { .. }) {
                all.push(format!("{name}_hash"));
            }
            let owner = format!("service `{}`", sname.get_ref());
            for n in all {
                match names.get(&n) {
                    Some(other) if *other != owner => {
                        let e = cx
                            .at(
                                sname.span(),
                                DUPLICATE,
                                format!(
                                    "service `{}` needs secret `{n}`, which {other} needs too",
                                    sname.get_ref()
                                ),
                            )
                            .label("secret name clash")
                            .help(
                                "rename one of the services: secret names are `<service>_<secret>`",
                            );
                        cx.push(e);
                    }
                    _ => {
                        names.insert(n, owner.clone());
                    }
                }
            }
        }
    }
    for (_, env) in envs {
        for (role, _) in &env.hosts {
            let base = format!("wireguard_{}", role.get_ref().replace('-', "_"));
            for n in [base.clone(), format!("{base}_public")] {
                names
                    .entry(n)
                    .or_insert_with(|| format!("host `{}`", role.get_ref()));
            }
        }
    }
    names
}

/// The checks of an S3 location's keys, those given.
fn check_location(
    cx: &mut Ctx<'_>,
    endpoint: Option<&S<String>>,
    region: Option<&S<String>>,
    bucket: Option<&S<String>>,
    prefix: Option<&S<String>>,
) {
    if let Some(endpoint) = endpoint {
        cx.check(
            endpoint,
            "endpoint",
            checks::url,
            "give the S3 endpoint URL, like `https://s3.eu-west-1.amazonaws.com`",
        );
    }
    if let Some(bucket) = bucket {
        cx.check(
            bucket,
            "bucket",
            checks::bucket,
            "S3 bucket names are 3-63 characters of `a-z0-9.-`",
        );
    }
    if let Some(region) = region {
        cx.check(
            region,
            "region",
            |s| {
                if s.is_empty() || s.contains(char::is_whitespace) {
                    Err("is not a region name".into())
                } else {
                    Ok(())
                }
            },
            "like `eu-west-1` or `fr-par`",
        );
    }
    if let Some(prefix) = prefix {
        cx.check(
            prefix,
            "prefix",
            |s| {
                if s.starts_with('/') || s.contains(char::is_whitespace) {
                    Err("must not start with `/` or contain spaces".into())
                } else {
                    Ok(())
                }
            },
            "like `{env}` or `kiln/{env}`",
        );
    }
}

/// An environment's `backup_repository`, checked like `[backups.repository]`.
pub(super) fn repository_override(
    cx: &mut Ctx<'_>,
    raw: &RawRepositoryOverride,
) -> RepositoryOverride {
    check_location(
        cx,
        raw.endpoint.as_ref(),
        raw.region.as_ref(),
        raw.bucket.as_ref(),
        raw.prefix.as_ref(),
    );
    let get = |v: &Option<S<String>>| v.as_ref().map(|v| v.get_ref().clone());
    RepositoryOverride {
        endpoint: get(&raw.endpoint),
        region: get(&raw.region),
        bucket: get(&raw.bucket),
        prefix: get(&raw.prefix),
    }
}

pub(super) fn backups(
    cx: &mut Ctx<'_>,
    b: &S<RawBackups>,
    generated: &BTreeMap<String, String>,
) -> Option<Backups> {
    let raw = b.get_ref();
    let sched = &raw.schedule;
    let sched_ok = !sched.get_ref().trim().is_empty()
        && sched
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " *:,./~-".contains(c));
    if !sched_ok {
        let e = cx
            .at(
                sched.span(),
                INVALID,
                format!(
                    "schedule `{}` is not a systemd calendar expression",
                    sched.get_ref()
                ),
            )
            .label("invalid schedule")
            .help("use systemd OnCalendar syntax, e.g. `*-*-* 03:00:00` or `daily`");
        cx.push(e);
    }

    let lock = count(cx, &raw.object_lock_days, "object_lock_days", 36500);
    let unlocked = raw.allow_unlocked.as_ref().is_some_and(|u| *u.get_ref());
    if !unlocked {
        match (&raw.object_lock_days, lock) {
            (Some(v), Some(0)) => {
                let e = cx
                    .at(v.span(), INVALID, "object_lock_days = 0 leaves backups deletable by a compromised server")
                    .label("no Object Lock")
                    .help("lock backups for at least a few days (30 is a good start), or set `allow_unlocked = true` knowingly");
                cx.push(e);
            }
            (None, _) => {
                let e = cx
                    .at(b.span(), MISSING, "backups have no `object_lock_days`")
                    .label("backups without Object Lock")
                    .help("set `object_lock_days = 30` (the bucket must have Object Lock enabled), or `allow_unlocked = true` knowingly");
                cx.push(e);
            }
            _ => {}
        }
    }

    let r = raw.retention.get_ref();
    let retention = Retention {
        daily: count(cx, &r.daily, "daily", 10000).unwrap_or(0),
        weekly: count(cx, &r.weekly, "weekly", 10000).unwrap_or(0),
        monthly: count(cx, &r.monthly, "monthly", 10000).unwrap_or(0),
        yearly: count(cx, &r.yearly, "yearly", 10000).unwrap_or(0),
    };
    if retention.daily + retention.weekly + retention.monthly + retention.yearly == 0 {
        let e = cx
            .at(
                raw.retention.span(),
                INVALID,
                "retention keeps no snapshot at all",
            )
            .label("everything would be pruned")
            .help("keep at least some snapshots, e.g. `{ daily = 7, weekly = 4, monthly = 12 }`");
        cx.push(e);
    }

    let repo = raw.repository.get_ref();
    check_location(
        cx,
        Some(&repo.endpoint),
        repo.region.as_ref(),
        Some(&repo.bucket),
        repo.prefix.as_ref(),
    );

    let c = raw.credentials.get_ref();
    let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
    // Each S3 credential is two vault secrets; the password one.
    let names = [
        (&c.server, true),
        (&c.admin, true),
        (&c.readonly, true),
        (&c.repository_password, false),
    ];
    for (s, pair) in names {
        cx.check(
            s,
            "secret name",
            checks::secret_name,
            "name the vault secret in `a-z0-9_`, like `backup_server`",
        );
        let secrets = if pair {
            vec![
                format!("{}_access_key", s.get_ref()),
                format!("{}_secret_key", s.get_ref()),
            ]
        } else {
            vec![s.get_ref().clone()]
        };
        // One report per name in kiln.toml, not one per secret it stands for.
        let mut reported = false;
        for name in secrets {
            if reported {
                break;
            }
            if let Some(owner) = generated.get(&name) {
                reported = true;
                let e = cx
                    .at(
                        s.span(),
                        DUPLICATE,
                        format!("secret `{name}` is already the name of a secret of {owner}"),
                    )
                    .label("taken by a generated secret")
                    .help("name backup credentials `backup_...`, like `backup_server`");
                cx.push(e);
            }
            if let Some(first) = seen.get(&name) {
                reported = true;
                let e = cx
                    .at(
                        s.span(),
                        DUPLICATE,
                        format!("secret `{name}` is used for two different credentials"),
                    )
                    .label("same secret name")
                    .also("first use", first.clone())
                    .help("give each credential its own name: `server`, `admin` and `readonly` are three different S3 keys");
                cx.push(e);
            } else {
                seen.insert(name, s.span());
            }
        }
    }

    Some(Backups {
        schedule: sched.get_ref().clone(),
        object_lock_days: lock.filter(|n| *n > 0),
        retention,
        repository: Repository {
            endpoint: repo.endpoint.get_ref().clone(),
            region: repo.region.as_ref().map(|r| r.get_ref().clone()),
            bucket: repo.bucket.get_ref().clone(),
            prefix: repo
                .prefix
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_else(|| DEFAULT_BACKUP_PREFIX.to_string()),
        },
        credentials: BackupCredentials {
            server: S3Credential {
                name: c.server.get_ref().clone(),
            },
            admin: S3Credential {
                name: c.admin.get_ref().clone(),
            },
            readonly: S3Credential {
                name: c.readonly.get_ref().clone(),
            },
            repository_password: c.repository_password.get_ref().clone(),
        },
    })
}

pub(super) fn monitoring(
    cx: &mut Ctx<'_>,
    m: &S<RawMonitoring>,
    envs: &[(S<String>, RawEnvironment)],
    services: &[(S<String>, RawService)],
) -> Monitoring {
    let raw = m.get_ref();
    role_in_every_environment(cx, &raw.host, "monitoring", envs);
    if let Some((name, svc)) = services
        .iter()
        .find(|(_, s)| s.kind.get_ref() == "monitoring")
        && svc.host.get_ref() != raw.host.get_ref()
    {
        let e = cx
            .at(
                raw.host.span(),
                INVALID,
                format!(
                    "monitoring is on `{}` but service `{}` (the monitoring stack) is on `{}`",
                    raw.host.get_ref(),
                    name.get_ref(),
                    svc.host.get_ref()
                ),
            )
            .label("different host")
            .also("the monitoring service's host", svc.host.span())
            .help("use the same host role in both places");
        cx.push(e);
    }
    if raw.alert_email.is_none() && raw.alert_webhook.is_none() {
        let e = cx
            .at(m.span(), MISSING, "alerts go nowhere: `[monitoring]` has neither `alert_email` nor `alert_webhook`")
            .label("no alert destination")
            .help("add `alert_email = \"you@your-domain.org\"` and/or `alert_webhook = \"https://ntfy.sh/<topic>\"`");
        cx.push(e);
    }
    if let Some(e) = &raw.alert_email {
        cx.check(
            e,
            "e-mail address",
            checks::email,
            "give a mailbox you read",
        );
    }
    if let Some(w) = &raw.alert_webhook {
        cx.check(
            w,
            "webhook URL",
            checks::url,
            "give an https:// URL, e.g. an ntfy topic `https://ntfy.sh/<topic>`",
        );
    }
    Monitoring {
        host: raw.host.get_ref().clone(),
        alert_email: raw.alert_email.as_ref().map(|e| e.get_ref().clone()),
        alert_webhook: raw.alert_webhook.as_ref().map(|w| w.get_ref().clone()),
    }
}
