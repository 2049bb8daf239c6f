//! Environments and their hosts: domains, CAs, addresses, ports, admin users, pinned
//! host keys; an environment reusing another's server or domain.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;

use super::{Ctx, DUPLICATE, INVALID, MISSING, UNKNOWN_REF};
use crate::checks;
use crate::diagnostic::suggest;
use crate::model::*;
use crate::raw::*;

pub(super) fn environments(
    cx: &mut Ctx<'_>,
    raw: &[(S<String>, RawEnvironment)],
    default_proxy: ProxyKind,
) -> Vec<Environment> {
    let mut out = Vec::new();
    let mut domains: BTreeMap<&str, (&str, Range<usize>)> = BTreeMap::new();
    // address → (environment, role, span) of its first use.
    let mut addresses: BTreeMap<String, (&str, &str, Range<usize>)> = BTreeMap::new();
    let mut keys: BTreeMap<String, (&str, &str, Range<usize>)> = BTreeMap::new();

    if raw.is_empty() {
        let e = cx
            .at(0..0, MISSING, "no environment is declared")
            .label("expected `[environments.<name>]` in this file")
            .help(
                "add at least `[environments.production]` with a domain, an acme_ca and its hosts",
            );
        cx.push(e);
    }

    for (name, env) in raw {
        let ename = name.get_ref().as_str();
        cx.check(
            name,
            "environment name",
            checks::name,
            "use a short lower-case name like `production`",
        );
        let domain_ok = cx.check(
            &env.domain,
            "domain",
            checks::domain,
            "write the environment's domain in lower case, like `staging.example.org`",
        );
        if let Some((other, first)) = domains.get(env.domain.get_ref().as_str()) {
            let e = cx
                .at(
                    env.domain.span(),
                    DUPLICATE,
                    format!(
                        "environments `{other}` and `{ename}` use the same domain `{}`",
                        env.domain.get_ref()
                    ),
                )
                .label("same domain as another environment")
                .also(format!("domain of `{other}`"), first.clone())
                .help(format!(
                    "give `{ename}` its own domain, e.g. `{ename}.{}`",
                    env.domain.get_ref()
                ));
            cx.push(e);
        } else {
            domains.insert(env.domain.get_ref(), (ename, env.domain.span()));
        }

        let acme_ca = acme_ca(cx, &env.acme_ca);
        let proxy = env
            .proxy
            .as_ref()
            .map(|p| super::proxy_kind(cx, p))
            .unwrap_or(default_proxy);
        if proxy == ProxyKind::Traefik && acme_ca == AcmeCa::Internal {
            let e = cx
                .at(
                    env.acme_ca.span(),
                    INVALID,
                    format!("environment `{ename}` uses Traefik, which has no certificate authority of its own, with `acme_ca = \"internal\"`"),
                )
                .label("an internal CA is Caddy's")
                .help("use `proxy = \"caddy\"` for this environment, or an ACME directory of your own: `acme_ca = { directory = \"https://ca.example.org/acme/acme/directory\", ca_root = \"ca-root.pem\" }` (step-ca)");
            cx.push(e);
        }
        if domain_ok
            && acme_ca == AcmeCa::Letsencrypt
            && let Some(why) = checks::reserved_domain(env.domain.get_ref())
        {
            let e = cx
                .at(
                    env.domain.span(),
                    INVALID,
                    format!(
                        "domain `{}` {why}: Let's Encrypt will not issue certificates for it",
                        env.domain.get_ref()
                    ),
                )
                .label("reserved domain with acme_ca = \"letsencrypt\"")
                .help("use a domain you own, or `acme_ca = \"internal\"` for a test environment");
            cx.push(e);
        }

        let mut hosts = BTreeMap::new();
        if env.hosts.is_empty() {
            let e = cx
                .at(
                    name.span(),
                    MISSING,
                    format!("environment `{ename}` has no hosts"),
                )
                .label("no `hosts` in this environment")
                .help(format!(
                    "add `[environments.{ename}.hosts.<role>]` with an address and an admin_user"
                ));
            cx.push(e);
        }
        for (role, host) in &env.hosts {
            let Some(host) = host else { continue };
            if let Some(h) = self::host(cx, ename, role, host, &mut addresses, &mut keys) {
                hosts.insert(role.get_ref().clone(), h);
            }
        }
        if let Some(apex) = &env.apex_host
            && !hosts.contains_key(apex.get_ref())
            && !env.hosts.iter().any(|(r, _)| r.get_ref() == apex.get_ref())
        {
            let roles: Vec<&str> = env
                .hosts
                .iter()
                .map(|(r, _)| r.get_ref().as_str())
                .collect();
            let help = suggest(apex.get_ref(), "host roles", roles.iter().copied());
            let e = cx
                .at(
                    apex.span(),
                    UNKNOWN_REF,
                    format!(
                        "apex_host `{}` is not a host of environment `{ename}`",
                        apex.get_ref()
                    ),
                )
                .label("no host with this role")
                .help(help);
            cx.push(e);
        }
        if let Some(apex) = &env.apex_host
            && let Some(Host {
                address: HostAddress::Name(n),
                ..
            }) = hosts.get(apex.get_ref())
        {
            let e = cx
                .at(apex.span(), INVALID, format!("apex_host `{}` is reached by name (`{n}`), but the bare domain needs an IP address", apex.get_ref()))
                .label("the apex needs A/AAAA records")
                .help(format!("give host `{}` an IP `address` (a CNAME is not allowed on the bare domain), or remove apex_host", apex.get_ref()));
            cx.push(e);
        }
        out.push(Environment {
            name: ename.to_string(),
            domain: env.domain.get_ref().clone(),
            acme_ca,
            proxy,
            apex_host: env.apex_host.as_ref().map(|a| a.get_ref().clone()),
            backups_enabled: env.backups.as_ref().is_none_or(|b| *b.get_ref()),
            backup_repository: env
                .backup_repository
                .as_ref()
                .map(|r| super::backups::repository_override(cx, r.get_ref()))
                .unwrap_or_default(),
            hosts,
            wireguard_range: None,
        });
    }
    names_of_other_environments(cx, raw);
    out
}

/// A host reached by a DNS name that another environment owns (`services.example.org`
/// from staging) is that environment's server.
fn names_of_other_environments(cx: &mut Ctx<'_>, raw: &[(S<String>, RawEnvironment)]) {
    for (ename, env) in raw {
        for (role, host) in &env.hosts {
            let Some(host) = host else { continue };
            let address = host.get_ref().address.get_ref();
            for (other_name, other) in raw.iter().filter(|(n, _)| n.get_ref() != ename.get_ref()) {
                let domain = other.domain.get_ref();
                let owned = address == domain
                    || other
                        .hosts
                        .iter()
                        .any(|(r, _)| *address == format!("{}.{domain}", r.get_ref()));
                if owned {
                    let e = cx
                        .at(
                            host.get_ref().address.span(),
                            DUPLICATE,
                            format!(
                                "host `{}` of environment `{}` points at `{address}`, a name of environment `{}`",
                                role.get_ref(),
                                ename.get_ref(),
                                other_name.get_ref()
                            ),
                        )
                        .label(format!("a server of `{}`", other_name.get_ref()))
                        .help(format!(
                            "each environment needs its own servers: deploying `{}` there would overwrite `{}`",
                            ename.get_ref(),
                            other_name.get_ref()
                        ));
                    cx.push(e);
                    break;
                }
            }
        }
    }
}

fn host<'a>(
    cx: &mut Ctx<'_>,
    env: &'a str,
    role: &'a S<String>,
    host: &S<RawHost>,
    addresses: &mut BTreeMap<String, (&'a str, &'a str, Range<usize>)>,
    keys: &mut BTreeMap<String, (&'a str, &'a str, Range<usize>)>,
) -> Option<Host> {
    let h = host.get_ref();
    cx.check(
        role,
        "role name",
        checks::name,
        "use a short lower-case role name like `services`",
    );
    let rname = role.get_ref().as_str();

    let mut address_ok = true;
    let address = match h.address.get_ref().parse::<IpAddr>() {
        Ok(ip) => HostAddress::Ip(ip),
        Err(_) => {
            let looks_ip = h
                .address
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ':');
            if looks_ip {
                let e = cx
                    .at(h.address.span(), INVALID, format!("address `{}` is not a valid IP address", h.address.get_ref()))
                    .label("invalid IP address")
                    .help("write an IPv4 address like 203.0.113.10 or an IPv6 address like 2001:db8::1");
                cx.push(e);
                address_ok = false;
            } else {
                address_ok = cx.check(
                    &h.address,
                    "address",
                    checks::hostname,
                    "give an IP address or a DNS name that resolves to the host",
                );
            }
            HostAddress::Name(h.address.get_ref().clone())
        }
    };
    let addr_key = address.to_string();
    if let Some((other_env, other_role, first)) = addresses.get(&addr_key) {
        if *other_env != env {
            let e = cx
                .at(h.address.span(), DUPLICATE, format!("host `{rname}` of environment `{env}` has the same address as host `{other_role}` of environment `{other_env}`"))
                .label(format!("also used by `{other_env}`"))
                .also(format!("`{other_env}` host `{other_role}`"), first.clone())
                .help(format!("each environment needs its own servers: deploying `{env}` here would overwrite `{other_env}`"));
            cx.push(e);
        }
    } else {
        addresses.insert(addr_key, (env, rname, h.address.span()));
    }

    let address6 = match &h.address6 {
        None => None,
        Some(a) => match a.get_ref().parse::<Ipv6Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let e = cx
                    .at(
                        a.span(),
                        INVALID,
                        format!("address6 `{}` is not a valid IPv6 address", a.get_ref()),
                    )
                    .label("invalid IPv6 address")
                    .help("write an IPv6 address like 2001:db8::1 (or remove address6)");
                cx.push(e);
                None
            }
        },
    };

    let ssh_port = match &h.ssh_port {
        None => DEFAULT_SSH_PORT,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => port,
            _ => {
                let e = cx
                    .at(
                        p.span(),
                        INVALID,
                        format!("ssh_port {} is out of range", p.get_ref()),
                    )
                    .label("not a TCP port")
                    .help("a port is between 1 and 65535 (SSH's default is 22)");
                cx.push(e);
                DEFAULT_SSH_PORT
            }
        },
    };

    if cx.check(
        &h.admin_user,
        "admin_user",
        checks::unix_name,
        "give the name of the account you log in with",
    ) && h.admin_user.get_ref() == "root"
    {
        let e = cx
            .at(
                h.admin_user.span(),
                INVALID,
                "admin_user must not be `root`",
            )
            .label("root")
            .help("kiln disables root login over SSH: use an account with sudo rights");
        cx.push(e);
    }

    let mut host_keys = Vec::new();
    for k in &h.host_keys {
        match checks::ssh_key_fingerprint(k.get_ref()) {
            Ok(_) => {
                let canon = checks::ssh_key_canonical(k.get_ref());
                if let Some((other_env, other_role, first)) = keys.get(&canon) {
                    let e = cx
                        .at(k.span(), DUPLICATE, format!("host `{rname}` of environment `{env}` has the same host key as host `{other_role}` of environment `{other_env}`"))
                        .label("key already pinned elsewhere")
                        .also(format!("`{other_env}` host `{other_role}`"), first.clone())
                        .help("two hosts never share a host key: this is the same server, or a copied key");
                    cx.push(e);
                } else {
                    keys.insert(canon.clone(), (env, rname, k.span()));
                }
                host_keys.push(canon);
            }
            Err(reason) => {
                let e = cx
                    .at(k.span(), INVALID, format!("host key {reason}"))
                    .label("not an OpenSSH public key")
                    .help("paste a line of the server's /etc/ssh/ssh_host_*_key.pub, or delete this entry and run `kiln trust ROLE` to fetch and check it");
                cx.push(e);
            }
        }
    }

    let os = match &h.os {
        None => None,
        Some(o) => match OsFamily::parse(o.get_ref()) {
            Some(os) => Some(os),
            None => {
                let help = suggest(o.get_ref(), "systems", OsFamily::NAMES.iter().copied());
                let e = cx
                    .at(o.span(), INVALID, format!("unknown os `{}`", o.get_ref()))
                    .label("not a system kiln supports")
                    .help(help);
                cx.push(e);
                None
            }
        },
    };

    if !address_ok {
        // Reported above; checks that need the address (apex, DNS) would only repeat it.
        return None;
    }
    Some(Host {
        role: rname.to_string(),
        address,
        address6,
        ssh_port,
        admin_user: h.admin_user.get_ref().clone(),
        host_keys,
        os,
        // Resolved by `base::resolve` once the whole document is known.
        base: Base::unresolved(),
    })
}

/// `acme_ca`: a CA kiln knows by name, or `{ directory = "https://…", ca_root = "…" }`.
fn acme_ca(cx: &mut Ctx<'_>, value: &S<toml::Value>) -> AcmeCa {
    let span = value.span();
    match value.get_ref() {
        toml::Value::String(name) => match AcmeCa::parse(name) {
            Some(ca) => ca,
            None => {
                let help = format!(
                    "{}; another ACME directory is a table: `{{ directory = \"https://…\", ca_root = \"root.pem\" }}`",
                    suggest(name, "CAs", AcmeCa::NAMES.iter().copied())
                );
                let e = cx
                    .at(span, INVALID, format!("unknown ACME CA `{name}`"))
                    .label("not a CA kiln knows")
                    .help(help);
                cx.push(e);
                AcmeCa::Internal
            }
        },
        toml::Value::Table(t) => {
            let bad = |cx: &mut Ctx<'_>, message: String, help: &str| {
                let e = cx
                    .at(span.clone(), INVALID, message)
                    .label("this ACME directory")
                    .help(help.to_string());
                cx.push(e);
            };
            for key in t.keys() {
                if key != "directory" && key != "ca_root" {
                    bad(
                        cx,
                        format!("unknown key `{key}` in acme_ca"),
                        "an ACME directory has `directory` and, for a private CA, `ca_root`",
                    );
                }
            }
            let directory = match t.get("directory") {
                Some(toml::Value::String(d)) => d.clone(),
                Some(_) => {
                    bad(
                        cx,
                        "acme_ca's `directory` must be a string".into(),
                        "write the ACME directory URL, `https://…`",
                    );
                    String::new()
                }
                None => {
                    bad(
                        cx,
                        "acme_ca has no `directory`".into(),
                        "add `directory = \"https://…\"`: the ACME directory URL",
                    );
                    String::new()
                }
            };
            if !directory.is_empty()
                && (!directory.starts_with("https://") || checks::url(&directory).is_err())
            {
                bad(
                    cx,
                    format!("ACME directory `{directory}` is not an https:// URL"),
                    "ACME (RFC 8555) is spoken over HTTPS only: write `https://host[:port]/path`",
                );
            }
            let ca_root = match t.get("ca_root") {
                Some(toml::Value::String(p)) if !p.is_empty() => Some(cx.base_dir.join(p)),
                Some(_) => {
                    bad(
                        cx,
                        "acme_ca's `ca_root` must be a path".into(),
                        "the PEM file of the root that signs the directory's TLS certificate, relative to kiln.toml's folder",
                    );
                    None
                }
                None => None,
            };
            AcmeCa::Custom(CustomAcme { directory, ca_root })
        }
        _ => {
            let e = cx
                .at(span, INVALID, "acme_ca must be a CA name or an ACME directory table")
                .label("neither a string nor a table")
                .help("`acme_ca = \"letsencrypt\"` (or letsencrypt-staging, internal), or `acme_ca = { directory = \"https://…\", ca_root = \"root.pem\" }`");
            cx.push(e);
            AcmeCa::Internal
        }
    }
}
