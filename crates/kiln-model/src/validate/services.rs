//! Services: catalog kind, host role present in every environment, subdomain, version,
//! options (typed, references to other services); hostname and secret-name clashes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use kiln_catalog::OptionKind;

use super::{Ctx, DEPRECATED, DUPLICATE, INVALID, MISSING, UNKNOWN_REF};
use crate::checks;
use crate::diagnostic::{did_you_mean, suggest};
use crate::model::*;
use crate::raw::*;

/// Reports a role that some environments lack. Returns false when reported.
pub(super) fn role_in_every_environment(
    cx: &mut Ctx<'_>,
    role: &S<String>,
    who: &str,
    envs: &[(S<String>, RawEnvironment)],
) -> bool {
    // An environment without any host is reported once, on its own.
    let missing: Vec<&str> = envs
        .iter()
        .filter(|(_, e)| !e.hosts.is_empty())
        .filter(|(_, e)| !e.hosts.iter().any(|(r, _)| r.get_ref() == role.get_ref()))
        .map(|(n, _)| n.get_ref().as_str())
        .collect();
    if missing.is_empty() || envs.is_empty() {
        return true;
    }
    let all_roles: BTreeSet<&str> = envs
        .iter()
        .flat_map(|(_, e)| e.hosts.iter().map(|(r, _)| r.get_ref().as_str()))
        .collect();
    let list = missing
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let others = || all_roles.iter().copied().filter(|r| r != role.get_ref());
    let help = if all_roles.contains(role.get_ref().as_str()) {
        format!(
            "every environment needs the same roles: add `[environments.{}.hosts.{}]`",
            missing[0],
            role.get_ref()
        )
    } else if let Some(d) = did_you_mean(role.get_ref(), others()) {
        d
    } else {
        format!(
            "add `[environments.{}.hosts.{}]`, or use one of the roles: {}",
            missing[0],
            role.get_ref(),
            others()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let plural = if missing.len() > 1 { "s" } else { "" };
    let e = cx
        .at(
            role.span(),
            UNKNOWN_REF,
            format!(
                "{who} runs on host `{}`, which environment{plural} {list} do{} not have",
                role.get_ref(),
                if missing.len() > 1 { "" } else { "es" }
            ),
        )
        .label(format!("no `{}` host in {list}", role.get_ref()))
        .help(help);
    cx.push(e);
    false
}

pub(super) fn services(
    cx: &mut Ctx<'_>,
    raw: &[(S<String>, RawService)],
    envs: &[(S<String>, RawEnvironment)],
) -> Vec<Service> {
    let mut out = Vec::new();
    let by_name: BTreeMap<&str, &RawService> =
        raw.iter().map(|(n, s)| (n.get_ref().as_str(), s)).collect();
    let mut monitoring_seen: Option<(&str, Range<usize>)> = None;
    for (name, svc) in raw {
        let sname = name.get_ref().as_str();
        cx.check(
            name,
            "service name",
            checks::name,
            "use a short lower-case name like `nextcloud`",
        );
        role_in_every_environment(cx, &svc.host, &format!("service `{sname}`"), envs);

        let recipe = kiln_catalog::recipe(svc.kind.get_ref());
        if recipe.is_none() {
            let help = suggest(
                svc.kind.get_ref(),
                "kinds",
                kiln_catalog::kinds().collect::<Vec<_>>(),
            );
            let e = cx
                .at(
                    svc.kind.span(),
                    UNKNOWN_REF,
                    format!("unknown service kind `{}`", svc.kind.get_ref()),
                )
                .label("not in kiln's catalog")
                .help(help);
            cx.push(e);
        }
        if let Some(why) = recipe.and_then(|r| r.deprecated) {
            let w = cx
                .at(
                    svc.kind.span(),
                    DEPRECATED,
                    format!(
                        "service `{sname}`: kind `{}` is deprecated",
                        svc.kind.get_ref()
                    ),
                )
                .label("deprecated kind")
                .help(why);
            cx.warn(w);
        }
        if svc.kind.get_ref() == "monitoring" {
            if let Some((first, span)) = &monitoring_seen {
                let e = cx
                    .at(
                        svc.kind.span(),
                        DUPLICATE,
                        format!("services `{first}` and `{sname}` are both of kind `monitoring`"),
                    )
                    .label("second monitoring stack")
                    .also("first one", span.clone())
                    .help("one monitoring stack watches every environment's hosts: keep one");
                cx.push(e);
            } else {
                monitoring_seen = Some((sname, svc.kind.span()));
            }
        }

        let mut subdomain = svc.subdomain.as_ref().map(|s| s.get_ref().clone());
        if let Some(s) = &svc.subdomain {
            cx.check(
                s,
                "subdomain",
                checks::subdomain,
                "write DNS labels like `cloud` or `sliding.matrix`",
            );
            if let Some(r) = recipe.filter(|r| !r.http) {
                let e = cx
                    .at(s.span(), INVALID, format!("service `{sname}` of kind `{}` is not reachable over HTTP and takes no subdomain", r.kind))
                    .label("no web interface to route here")
                    .help("remove `subdomain`");
                cx.push(e);
                subdomain = None;
            }
        } else if let Some(r) = recipe {
            subdomain = r.default_subdomain.map(str::to_string);
            if r.http && subdomain.is_none() {
                let e = cx
                    .at(name.span(), MISSING, format!("service `{sname}` needs a `subdomain`"))
                    .label(format!("kind `{}` has no default subdomain", r.kind))
                    .help(format!("add `subdomain = \"{sname}\"` (it is served at https://<subdomain>.<environment domain>)"));
                cx.push(e);
            }
        }

        match &svc.version {
            Some(v)
                if cx.check(
                    v,
                    "version",
                    checks::version,
                    "pin the image tag, like `1.9.9`",
                ) =>
            {
                kind_version(cx, sname, svc.kind.get_ref(), v);
            }
            Some(_) => {}
            None if recipe.is_some_and(|r| r.needs_version) => {
                let e = cx
                    .at(
                        name.span(),
                        MISSING,
                        format!("service `{sname}` has no pinned `version`"),
                    )
                    .label("no version")
                    .help("add `version = \"...\"` (the image tag): kiln never deploys `latest`");
                cx.push(e);
            }
            None => {}
        }

        let mut options = toml::Table::new();
        if let Some(r) = recipe {
            for (key, value) in &svc.options {
                let Some(spec) = r.option(key.get_ref()) else {
                    let help = suggest(key.get_ref(), "options", r.options.iter().map(|o| o.name));
                    let e = cx
                        .at(
                            key.span(),
                            UNKNOWN_REF,
                            format!(
                                "unknown option `{}` for a `{}` service",
                                key.get_ref(),
                                r.kind
                            ),
                        )
                        .label("not an option of this kind")
                        .help(help);
                    cx.push(e);
                    continue;
                };
                option_value(cx, sname, svc, spec, value, &by_name);
                options.insert(key.get_ref().clone(), value.get_ref().clone());
            }
            for spec in r.options.iter().filter(|o| o.required) {
                if !svc.options.keys().any(|k| k.get_ref() == spec.name) {
                    let e = cx
                        .at(
                            name.span(),
                            MISSING,
                            format!("service `{sname}` needs option `{}`", spec.name),
                        )
                        .label(format!("no `{}` option", spec.name))
                        .help(format!(
                            "add `{}` to `options`: {}",
                            spec.name, spec.description
                        ));
                    cx.push(e);
                }
            }
        }
        out.push(Service {
            name: sname.to_string(),
            kind: svc.kind.get_ref().clone(),
            host: svc.host.get_ref().clone(),
            subdomain,
            version: svc.version.as_ref().map(|v| v.get_ref().clone()),
            options,
        });
    }
    out
}

/// Synapse serves sliding sync natively from this release on.
pub const SYNAPSE_NATIVE_SLIDING_SYNC: (u64, u64) = (1, 114);

/// `major.minor` of a release tag (`v1.118.0`, `1.118.0rc1`, `v1.118.0@sha256:…`).
pub fn release(tag: &str) -> Option<(u64, u64)> {
    let tag = tag.split('@').next()?.trim_start_matches('v');
    let mut parts = tag.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// What a kind requires of its pinned version.
fn kind_version(cx: &mut Ctx<'_>, sname: &str, kind: &str, v: &S<String>) {
    let tag = v.get_ref();
    match kind {
        "synapse" => {
            let (want_major, want_minor) = SYNAPSE_NATIVE_SLIDING_SYNC;
            match release(tag) {
                None => {
                    let e = cx
                        .at(
                            v.span(),
                            INVALID,
                            format!(
                                "service `{sname}`: version `{tag}` is not a Synapse release tag"
                            ),
                        )
                        .label("not like v1.162.0")
                        .help("pin a release tag of the image, like `v1.162.0`");
                    cx.push(e);
                }
                Some((major, minor)) if (major, minor) < (want_major, want_minor) => {
                    let e = cx
                        .at(v.span(), INVALID, format!("service `{sname}`: Synapse {tag} is older than {want_major}.{want_minor}, which kiln needs for native sliding sync"))
                        .label(format!("older than v{want_major}.{want_minor}.0"))
                        .help(format!("kiln deploys sliding sync (for Element X) inside Synapse, which serves it from v{want_major}.{want_minor}.0 on; the separate proxy is retired: pin `version = \"v{want_major}.{want_minor}.0\"` or a later release"));
                    cx.push(e);
                }
                Some(_) => {}
            }
        }
        "postgres" if !tag.starts_with(|c: char| c.is_ascii_digit()) => {
            let e = cx
                .at(v.span(), INVALID, format!("service `{sname}`: version `{tag}` does not name a PostgreSQL major version"))
                .label("no major version")
                .help("pin a tag starting with the major version, like `17` or `17.2`: kiln refuses to change a major version over existing data");
            cx.push(e);
        }
        _ => {}
    }
}

fn option_value(
    cx: &mut Ctx<'_>,
    sname: &str,
    svc: &RawService,
    spec: &kiln_catalog::OptionSpec,
    value: &S<toml::Value>,
    services: &BTreeMap<&str, &RawService>,
) {
    let v = value.get_ref();
    let wrong = |cx: &mut Ctx<'_>, expected: &str| {
        let e = cx
            .at(
                value.span(),
                INVALID,
                format!("option `{}` must be {expected}", spec.name),
            )
            .label(format!("found {}", v.type_str()))
            .help(spec.description.to_string());
        cx.push(e);
    };
    match spec.kind {
        OptionKind::EnvTable => match v.as_table() {
            None => wrong(cx, "a table of NAME = \"value\""),
            Some(t) => {
                for (k, val) in t {
                    let name_ok = k.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                        && k.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if !name_ok || !val.is_str() {
                        let e = cx
                            .at(value.span(), INVALID, format!("option `{}`: `{k}` must be an upper-case variable name with a string value", spec.name))
                            .label("invalid variable")
                            .help(spec.description.to_string());
                        cx.push(e);
                    }
                }
            }
        },
        OptionKind::VolumeList => {
            match v.as_array() {
                None => wrong(cx, "a list of \"name:/path\" strings"),
                Some(items) => {
                    let mut names = std::collections::BTreeSet::new();
                    for item in items {
                        let ok =
                            item.as_str()
                                .and_then(|s| s.split_once(':'))
                                .is_some_and(|(n, p)| {
                                    checks::name(n).is_ok()
                                        && p.starts_with('/')
                                        && names.insert(n.to_owned())
                                });
                        if !ok {
                            let e = cx
                            .at(value.span(), INVALID, format!("option `{}`: {item} is not a new `name:/path/in/container`", spec.name))
                            .label("invalid volume")
                            .help(spec.description.to_string());
                            cx.push(e);
                        }
                    }
                }
            }
        }
        OptionKind::Bool if !v.is_bool() => wrong(cx, "true or false"),
        OptionKind::String if !v.is_str() => wrong(cx, "a string"),
        OptionKind::Port | OptionKind::PositiveInteger => match v.as_integer() {
            None => wrong(cx, "an integer"),
            Some(n) if spec.kind == OptionKind::Port && !(1..=65535).contains(&n) => {
                let e = cx
                    .at(
                        value.span(),
                        INVALID,
                        format!("option `{}`: port {n} is out of range", spec.name),
                    )
                    .label("not a TCP port")
                    .help("a port is between 1 and 65535");
                cx.push(e);
            }
            Some(n) if n < 1 => wrong(cx, "a positive integer"),
            Some(_) => {}
        },
        OptionKind::Domain => match v.as_str() {
            None => wrong(cx, "a domain name string"),
            Some(s) => {
                if let Err(reason) = checks::domain(s) {
                    let e = cx
                        .at(
                            value.span(),
                            INVALID,
                            format!("option `{}`: domain `{s}` {reason}", spec.name),
                        )
                        .label("invalid domain")
                        .help(spec.description.to_string());
                    cx.push(e);
                }
            }
        },
        OptionKind::Image => match v.as_str() {
            None => wrong(cx, "an image name string"),
            Some(s) => {
                if let Err(reason) = checks::image(s) {
                    let e = cx
                        .at(
                            value.span(),
                            INVALID,
                            format!("option `{}`: image `{s}` {reason}", spec.name),
                        )
                        .label("invalid image")
                        .help(spec.description.to_string());
                    cx.push(e);
                }
            }
        },
        OptionKind::ServiceOfKind(kind) => match v.as_str() {
            None => wrong(cx, &format!("the name of a `{kind}` service")),
            Some(target) => match services.get(target) {
                None => {
                    let candidates: Vec<&str> = services
                        .iter()
                        .filter(|(_, s)| s.kind.get_ref() == kind)
                        .map(|(n, _)| *n)
                        .collect();
                    let help = if candidates.is_empty() {
                        format!(
                            "declare a service with `kind = \"{kind}\"` (e.g. `[services.{kind}]`)"
                        )
                    } else {
                        suggest(
                            target,
                            &format!("`{kind}` services"),
                            candidates.iter().copied(),
                        )
                    };
                    let e = cx
                        .at(value.span(), UNKNOWN_REF, format!("service `{sname}` uses `{target}` as its {}, but there is no service `{target}`", spec.name))
                        .label("no such service")
                        .help(help);
                    cx.push(e);
                }
                Some(t) if t.kind.get_ref() != kind => {
                    let e = cx
                        .at(value.span(), INVALID, format!("option `{}` of `{sname}` must name a `{kind}` service; `{target}` is a `{}`", spec.name, t.kind.get_ref()))
                        .label(format!("not a `{kind}` service"))
                        .help(spec.description.to_string());
                    cx.push(e);
                }
                Some(t) if t.host.get_ref() != svc.host.get_ref() => {
                    let e = cx
                        .at(value.span(), INVALID, format!("service `{sname}` runs on `{}` but its {} `{target}` runs on `{}`", svc.host.get_ref(), spec.name, t.host.get_ref()))
                        .label("on another host")
                        .help(format!("run `{target}` on `{}` too, or give `{sname}` a database on its own host", svc.host.get_ref()));
                    cx.push(e);
                }
                Some(_) => {}
            },
        },
        _ => {}
    }
}

/// Every DNS name the configuration claims, across environments: the environment's domain,
/// `<role>.<domain>` per host, `<subdomain>.<domain>` per service. Two claims on one name
/// are an error.
pub(super) fn names_clash(
    cx: &mut Ctx<'_>,
    envs: &[(S<String>, RawEnvironment)],
    raw: &[(S<String>, RawService)],
    services: &[Service],
) {
    let mut claimed: BTreeMap<String, (String, Range<usize>)> = BTreeMap::new();
    let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut domains: BTreeSet<&str> = BTreeSet::new();
    for (ename, env) in envs {
        let domain = env.domain.get_ref();
        // Two environments on one domain are reported once, by `environments`.
        if !domains.insert(domain) {
            continue;
        }
        let mut claims: Vec<(String, String, Range<usize>)> = Vec::new();
        claims.push((
            domain.clone(),
            format!("environment `{}`", ename.get_ref()),
            env.domain.span(),
        ));
        for (role, _) in &env.hosts {
            claims.push((
                format!("{}.{domain}", role.get_ref()),
                format!("host `{}` of `{}`", role.get_ref(), ename.get_ref()),
                role.span(),
            ));
        }
        for ((sname, svc), model) in raw.iter().zip(services) {
            if let Some(sub) = &model.subdomain {
                let span = svc
                    .subdomain
                    .as_ref()
                    .map(|s| s.span())
                    .unwrap_or_else(|| sname.span());
                claims.push((
                    format!("{sub}.{domain}"),
                    format!("service `{}` in `{}`", sname.get_ref(), ename.get_ref()),
                    span,
                ));
            }
        }
        for (fqdn, who, span) in claims {
            if let Some((first_who, first_span)) = claimed.get(&fqdn) {
                if reported.insert((first_span.start, span.start)) && first_span != &span {
                    let e = cx
                        .at(span.clone(), DUPLICATE, format!("`{fqdn}` is claimed twice: by {first_who} and by {who}"))
                        .label(format!("also claims {fqdn}"))
                        .also(format!("{first_who} claims it first"), first_span.clone())
                        .help("each hostname points to one thing: change the subdomain (or the role name)");
                    cx.push(e);
                }
            } else {
                claimed.insert(fqdn, (who, span));
            }
        }
    }
}
