//! Meaning checks on the decoded document, and its conversion into a [`Model`]: values
//! (domains, addresses, ports, modes, keys), references (service → host role, notify →
//! unit, option → service), and clashes (two names for one hostname, an environment
//! reusing another's server). Every error points at the span it concerns, with a hint.
//!
//! The only I/O here: checking that referenced template/source files exist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use kiln_catalog::OptionKind;

use crate::checks;
use crate::diagnostic::{ConfigError, Source, did_you_mean, suggest};
use crate::model::*;
use crate::raw::*;

const INVALID: &str = "kiln::config::invalid_value";
const UNKNOWN_REF: &str = "kiln::config::unknown_reference";
const DUPLICATE: &str = "kiln::config::duplicate";
const MISSING: &str = "kiln::config::missing_key";

struct Ctx<'a> {
    src: &'a Source,
    base_dir: &'a Path,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    fn at(
        &self,
        span: Range<usize>,
        code: &'static str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.src, span, code, message)
    }

    /// Runs a single-value check, reporting failure as "`what` `value` <reason>".
    fn check(
        &mut self,
        value: &S<String>,
        what: &str,
        f: impl Fn(&str) -> Result<(), String>,
        help: &str,
    ) -> bool {
        match f(value.get_ref()) {
            Ok(()) => true,
            Err(reason) => {
                let e = self
                    .at(
                        value.span(),
                        INVALID,
                        format!("{what} `{}` {reason}", value.get_ref()),
                    )
                    .label(format!("invalid {what}"))
                    .help(help);
                self.push(e);
                false
            }
        }
    }
}

/// Validates `doc` and builds the model; the model is meaningful only when the returned
/// error list is empty.
pub(crate) fn validate(
    src: &Source,
    doc: RawDocument,
    base_dir: &Path,
    config_path: &Path,
) -> (Model, Vec<ConfigError>) {
    let mut cx = Ctx {
        src,
        base_dir,
        errors: Vec::new(),
    };

    let email_span = doc.project.as_ref().map(|p| p.acme_email.span());
    let project = match doc.project {
        Some(p) => project(&mut cx, p),
        None => Project {
            name: String::new(),
            domain: String::new(),
            acme_email: String::new(),
        },
    };

    let environments = environments(&mut cx, &doc.environments);
    let services = services(&mut cx, &doc.services, &doc.environments);
    names_clash(&mut cx, &doc.environments, &doc.services, &services);
    let backups = doc.backups.as_ref().and_then(|b| backups(&mut cx, b));
    if doc.backups.is_none() {
        for (name, env) in &doc.environments {
            if let Some(b) = env.backups.as_ref().filter(|b| *b.get_ref()) {
                let e = cx
                    .at(
                        b.span(),
                        MISSING,
                        format!(
                            "environment `{}` enables backups but there is no `[backups]` section",
                            name.get_ref()
                        ),
                    )
                    .label("backups enabled here")
                    .help(
                        "add a `[backups]` section (repository, schedule, retention, credentials)",
                    );
                cx.push(e);
            }
        }
    }
    let monitoring = doc
        .monitoring
        .as_ref()
        .map(|m| monitoring(&mut cx, m, &doc.environments, &doc.services));
    let roles = roles(&mut cx, &doc.roles, &doc.environments);

    let model = Model {
        project,
        environments: environments
            .into_iter()
            .map(|mut e| {
                e.backups_enabled = e.backups_enabled && backups.is_some();
                e
            })
            .collect(),
        services,
        backups,
        monitoring,
        roles,
        base_dir: base_dir.to_path_buf(),
        config_path: config_path.to_path_buf(),
    };
    // Let's Encrypt production refuses reserved contact domains too.
    if let Some(p) = &email_span {
        let dom = checks::email_domain(&model.project.acme_email);
        if let Some(why) = checks::reserved_domain(dom)
            && let Some(env) = model
                .environments
                .iter()
                .find(|e| e.acme_ca == AcmeCa::Letsencrypt)
        {
            let e = cx
                .at(p.clone(), INVALID, format!("ACME contact `{}` {why}: Let's Encrypt refuses it", model.project.acme_email))
                .label("reserved e-mail domain")
                .help(format!(
                    "environment `{}` uses Let's Encrypt production; give an address at a domain you own",
                    env.name
                ));
            cx.push(e);
        }
    }
    (model, cx.errors)
}

fn project(cx: &mut Ctx<'_>, p: RawProject) -> Project {
    cx.check(
        &p.name,
        "project name",
        checks::name,
        "use a short lower-case name like `ergaster`",
    );
    cx.check(
        &p.domain,
        "domain",
        checks::domain,
        "write the domain you own, like `example.org`, in lower case",
    );
    cx.check(
        &p.acme_email,
        "e-mail address",
        checks::email,
        "give a mailbox you read, like `you@your-domain.org`",
    );
    Project {
        name: p.name.into_inner(),
        domain: p.domain.into_inner(),
        acme_email: p.acme_email.into_inner(),
    }
}

fn environments(cx: &mut Ctx<'_>, raw: &[(S<String>, RawEnvironment)]) -> Vec<Environment> {
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

        let acme_ca = match AcmeCa::parse(env.acme_ca.get_ref()) {
            Some(ca) => ca,
            None => {
                let help = suggest(env.acme_ca.get_ref(), "CAs", AcmeCa::NAMES.iter().copied());
                let e = cx
                    .at(
                        env.acme_ca.span(),
                        INVALID,
                        format!("unknown ACME CA `{}`", env.acme_ca.get_ref()),
                    )
                    .label("not a CA kiln knows")
                    .help(help);
                cx.push(e);
                AcmeCa::Internal
            }
        };
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
            apex_host: env.apex_host.as_ref().map(|a| a.get_ref().clone()),
            backups_enabled: env.backups.as_ref().is_none_or(|b| *b.get_ref()),
            hosts,
        });
    }
    out
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
        None => 22,
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
                22
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
                    .help("paste a line of the server's /etc/ssh/ssh_host_*_key.pub, or run `kiln trust` to fetch and check it");
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
    })
}

/// Reports a role that some environments lack. Returns false when reported.
fn role_in_every_environment(
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

fn services(
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
            Some(v) => {
                cx.check(
                    v,
                    "version",
                    checks::version,
                    "pin the image tag, like `1.9.9`",
                );
            }
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
fn names_clash(
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

fn backups(cx: &mut Ctx<'_>, b: &S<RawBackups>) -> Option<Backups> {
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
    cx.check(
        &repo.endpoint,
        "endpoint",
        checks::url,
        "give the S3 endpoint URL, like `https://s3.eu-west-1.amazonaws.com`",
    );
    cx.check(
        &repo.bucket,
        "bucket",
        checks::bucket,
        "S3 bucket names are 3-63 characters of `a-z0-9.-`",
    );
    if let Some(region) = &repo.region {
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
    if let Some(prefix) = &repo.prefix {
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

    let c = raw.credentials.get_ref();
    let mut seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
    for s in [&c.access_key, &c.secret_key, &c.repository_password] {
        cx.check(
            s,
            "secret name",
            checks::secret_name,
            "name the vault secret in `a-z0-9_`, like `backup_s3_access_key`",
        );
        if let Some(first) = seen.get(s.get_ref().as_str()) {
            let e = cx
                .at(
                    s.span(),
                    DUPLICATE,
                    format!(
                        "secret `{}` is used for two different credentials",
                        s.get_ref()
                    ),
                )
                .label("same secret name")
                .also("first use", first.clone())
                .help("give each credential its own secret");
            cx.push(e);
        } else {
            seen.insert(s.get_ref(), s.span());
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
                .unwrap_or_else(|| "{env}".to_string()),
        },
        credentials: BackupCredentials {
            access_key: c.access_key.get_ref().clone(),
            secret_key: c.secret_key.get_ref().clone(),
            repository_password: c.repository_password.get_ref().clone(),
        },
    })
}

fn monitoring(
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

fn mode(cx: &mut Ctx<'_>, m: &Option<S<String>>, default: u32) -> u32 {
    let Some(m) = m else { return default };
    match checks::mode(m.get_ref()) {
        Ok(v) => v,
        Err(reason) => {
            let e = cx
                .at(m.span(), INVALID, format!("mode {reason}"))
                .label("invalid mode")
                .help("write the mode as an octal string, like `mode = \"0640\"`");
            cx.push(e);
            default
        }
    }
}

fn owner(cx: &mut Ctx<'_>, o: &Option<S<String>>) -> String {
    match o {
        None => "root".to_string(),
        Some(o) => {
            cx.check(
                o,
                "owner/group",
                checks::unix_name,
                "give a user or group name like `root` or `www-data`",
            );
            o.get_ref().clone()
        }
    }
}

fn abs_path(cx: &mut Ctx<'_>, p: &S<String>) -> PathBuf {
    cx.check(
        p,
        "path",
        checks::absolute_path,
        "paths on the host are absolute, like `/etc/app/app.conf`",
    );
    PathBuf::from(p.get_ref())
}

/// Exactly one of template / content / source, the referenced file existing.
fn content(
    cx: &mut Ctx<'_>,
    item_span: Range<usize>,
    what: &str,
    template: &Option<S<String>>,
    inline: &Option<S<String>>,
    source: &Option<S<String>>,
) -> Content {
    let given: Vec<(&str, &S<String>)> = [
        ("template", template),
        ("content", inline),
        ("source", source),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    match given.as_slice() {
        [] => {
            let e = cx
                .at(item_span, MISSING, format!("{what} has no content"))
                .label("no template, content or source")
                .help("give exactly one of `template = \"templates/x.j2\"`, `content = \"...\"` or `source = \"files/x\"`");
            cx.push(e);
            Content::Inline(String::new())
        }
        [(kind, value)] => match *kind {
            "content" => Content::Inline(value.get_ref().clone()),
            kind => {
                let path = PathBuf::from(value.get_ref());
                if cx.check(
                    value,
                    kind,
                    checks::relative_path,
                    "paths are relative to kiln.toml's folder, like `templates/app.conf.j2`",
                ) {
                    let full = cx.base_dir.join(&path);
                    if !full.is_file() {
                        let e = cx
                            .at(
                                value.span(),
                                "kiln::config::missing_file",
                                format!("{kind} file `{}` does not exist", value.get_ref()),
                            )
                            .label("no such file")
                            .help("create it, or fix the path (relative to kiln.toml's folder)");
                        cx.push(e);
                    }
                }
                if kind == "template" {
                    Content::Template(path)
                } else {
                    Content::Source(path)
                }
            }
        },
        [(first, _), (second, value), ..] => {
            let e = cx
                .at(
                    value.span(),
                    INVALID,
                    format!("{what} has both `{first}` and `{second}`"),
                )
                .label("second content source")
                .help("give exactly one of `template`, `content` or `source`");
            cx.push(e);
            Content::Inline(String::new())
        }
    }
}

fn roles(
    cx: &mut Ctx<'_>,
    raw: &[(S<String>, RawRole)],
    envs: &[(S<String>, RawEnvironment)],
) -> BTreeMap<String, Role> {
    let all_roles: BTreeSet<&str> = envs
        .iter()
        .flat_map(|(_, e)| e.hosts.iter().map(|(r, _)| r.get_ref().as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let rname = name.get_ref().as_str();
        if !all_roles.contains(rname) && !envs.is_empty() {
            let help = suggest(rname, "host roles", all_roles.iter().copied());
            let e = cx
                .at(
                    name.span(),
                    UNKNOWN_REF,
                    format!("role `{rname}` is not the role of any host"),
                )
                .label("no host plays this role")
                .help(help);
            cx.push(e);
        }
        let mut role = Role {
            name: rname.to_string(),
            ..Role::default()
        };
        for p in &r.packages {
            cx.check(
                p,
                "package name",
                |s| {
                    let ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+._@-".contains(c));
                    if ok {
                        Ok(())
                    } else {
                        Err("is not a package name".into())
                    }
                },
                "give the distribution's package name, like `htop`",
            );
            role.packages.push(p.get_ref().clone());
        }
        role.vars = r.vars.clone().unwrap_or_default();

        let mut paths: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let mut claim_path = |cx: &mut Ctx<'_>, p: &S<String>| {
            if let Some(first) = paths.get(p.get_ref()) {
                let e = cx
                    .at(
                        p.span(),
                        DUPLICATE,
                        format!("path `{}` is managed twice in role `{rname}`", p.get_ref()),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("keep one declaration per path");
                cx.push(e);
            } else {
                paths.insert(p.get_ref().clone(), p.span());
            }
        };

        let mut units_seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for u in &r.units {
            let raw_u = u.get_ref();
            cx.check(
                &raw_u.name,
                "unit name",
                checks::unit_name,
                "name the systemd unit, like `app.service`",
            );
            if let Some(first) = units_seen.get(raw_u.name.get_ref().as_str()) {
                let e = cx
                    .at(
                        raw_u.name.span(),
                        DUPLICATE,
                        format!(
                            "unit `{}` is declared twice in role `{rname}`",
                            raw_u.name.get_ref()
                        ),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("keep one declaration per unit");
                cx.push(e);
            } else {
                units_seen.insert(raw_u.name.get_ref(), raw_u.name.span());
            }
            let c = content(
                cx,
                u.span(),
                &format!("unit `{}`", raw_u.name.get_ref()),
                &raw_u.template,
                &raw_u.content,
                &raw_u.source,
            );
            role.units.push(Unit {
                name: raw_u.name.get_ref().clone(),
                content: c,
                enabled: raw_u.enabled.unwrap_or(true),
                started: raw_u.started.unwrap_or(true),
            });
        }

        for d in &r.directories {
            let d = d.get_ref();
            claim_path(cx, &d.path);
            role.directories.push(Directory {
                path: abs_path(cx, &d.path),
                mode: mode(cx, &d.mode, 0o755),
                owner: owner(cx, &d.owner),
                group: owner(cx, &d.group),
            });
        }
        for f in &r.files {
            let raw_f = f.get_ref();
            claim_path(cx, &raw_f.path);
            let c = content(
                cx,
                f.span(),
                &format!("file `{}`", raw_f.path.get_ref()),
                &raw_f.template,
                &raw_f.content,
                &raw_f.source,
            );
            for n in &raw_f.notify {
                if !units_seen.contains_key(n.get_ref().as_str()) {
                    let help = if units_seen.is_empty() {
                        format!(
                            "declare it with `[[roles.{rname}.units]]`, name = \"{}\"",
                            n.get_ref()
                        )
                    } else {
                        suggest(
                            n.get_ref(),
                            "units of this role",
                            units_seen.keys().copied(),
                        )
                    };
                    let e = cx
                        .at(n.span(), UNKNOWN_REF, format!("file `{}` notifies unit `{}`, which role `{rname}` does not declare", raw_f.path.get_ref(), n.get_ref()))
                        .label("undeclared unit")
                        .help(help);
                    cx.push(e);
                }
            }
            role.files.push(File {
                path: abs_path(cx, &raw_f.path),
                content: c,
                mode: mode(cx, &raw_f.mode, 0o644),
                owner: owner(cx, &raw_f.owner),
                group: owner(cx, &raw_f.group),
                notify: raw_f.notify.iter().map(|n| n.get_ref().clone()).collect(),
            });
        }
        for s in &r.symlinks {
            let s = s.get_ref();
            claim_path(cx, &s.path);
            cx.check(
                &s.target,
                "symlink target",
                |t| {
                    if t.is_empty() {
                        Err("is empty".into())
                    } else {
                        Ok(())
                    }
                },
                "give the path the link points to",
            );
            role.symlinks.push(Symlink {
                path: abs_path(cx, &s.path),
                target: PathBuf::from(s.target.get_ref()),
            });
        }
        for g in &r.groups {
            let g = g.get_ref();
            cx.check(&g.name, "group name", checks::unix_name, "like `app`");
            role.groups.push(Group {
                name: g.name.get_ref().clone(),
                system: g.system,
            });
        }
        for u in &r.users {
            let u = u.get_ref();
            cx.check(&u.name, "user name", checks::unix_name, "like `app`");
            for g in &u.groups {
                cx.check(g, "group name", checks::unix_name, "like `app`");
            }
            role.users.push(User {
                name: u.name.get_ref().clone(),
                system: u.system,
                home: u.home.as_ref().map(|h| abs_path(cx, h)),
                shell: u.shell.as_ref().map(|s| abs_path(cx, s)),
                groups: u.groups.iter().map(|g| g.get_ref().clone()).collect(),
            });
        }
        let file_paths: BTreeSet<&str> = r
            .files
            .iter()
            .map(|f| f.get_ref().path.get_ref().as_str())
            .collect();
        let mut command_names: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for c in &r.commands {
            let c = c.get_ref();
            cx.check(
                &c.name,
                "command name",
                |s| {
                    if s.is_empty() || s.contains(char::is_whitespace) {
                        Err("must be a non-empty word".into())
                    } else {
                        Ok(())
                    }
                },
                "like `init-app-db`",
            );
            if let Some(first) = command_names.get(c.name.get_ref().as_str()) {
                let e = cx
                    .at(
                        c.name.span(),
                        DUPLICATE,
                        format!(
                            "command `{}` is declared twice in role `{rname}`",
                            c.name.get_ref()
                        ),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("command names are unique within a role");
                cx.push(e);
            } else {
                command_names.insert(c.name.get_ref(), c.name.span());
            }
            cx.check(
                &c.run,
                "command",
                |s| {
                    if s.trim().is_empty() {
                        Err("is empty".into())
                    } else {
                        Ok(())
                    }
                },
                "give the shell command to run",
            );
            for t in &c.triggered_by {
                if !file_paths.contains(t.get_ref().as_str()) {
                    let help = if file_paths.is_empty() {
                        format!(
                            "declare the file with `[[roles.{rname}.files]]`, or remove it from `triggered_by`"
                        )
                    } else {
                        suggest(t.get_ref(), "managed files", file_paths.iter().copied())
                    };
                    let e = cx
                        .at(t.span(), UNKNOWN_REF, format!("command `{}` is triggered by `{}`, which role `{rname}` does not manage", c.name.get_ref(), t.get_ref()))
                        .label("not a managed file")
                        .help(help);
                    cx.push(e);
                }
            }
            role.commands.push(Command {
                name: c.name.get_ref().clone(),
                run: c.run.get_ref().clone(),
                unless: c.unless.as_ref().map(|u| u.get_ref().clone()),
                triggered_by: c
                    .triggered_by
                    .iter()
                    .map(|t| PathBuf::from(t.get_ref()))
                    .collect(),
            });
        }
        out.insert(rname.to_string(), role);
    }
    out
}
