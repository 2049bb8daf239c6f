//! The reverse proxy feature: the environment's route table ([`Routes::for_environment`]:
//! every public hostname → the host serving it and the container and port behind it, from
//! every service with a subdomain, plus the apex domain's Matrix delegation), and on every
//! host that serves a route, the proxy itself (Caddy by default, Traefik with
//! `proxy = "traefik"`, both rendered from the one route table) as a quadlet container on
//! the services' network, publishing 80 and 443, with the environment's ACME CA.
//!
//! - **Caddy**: one `Caddyfile` (catalog `caddy/Caddyfile.j2`), checked with `caddy
//!   validate` in a throw-away container of the same image before it is installed
//!   ([`crate::resource::File::validate`]) and applied with `caddy reload` (a
//!   [`Trigger::Reload`] of the unit: connections survive it). `.well-known/matrix/*` is
//!   answered by Caddy itself.
//! - **Traefik**: static `traefik.yml` (a change restarts it) and dynamic `dynamic/kiln.yml`
//!   (the routes: Traefik watches the folder and applies a change without a restart);
//!   `.well-known/matrix/*` is passed to Synapse (`serve_server_wellknown`), which must
//!   then run on the apex host.
//!
//! Certificates are kept in [`DATA_DIR`] (backed up with the host's data).
//!
//! Must not open firewall ports (that is [`super::firewall`]'s, which reads
//! [`Routes::proxy_hosts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kiln_catalog::RouteHints;
use kiln_model::{AcmeCa, Environment, Host, Model, ProxyKind};
use serde_json::{Value, json};

use super::services::{ContainerSpec, Mount, Owner, add_container, deploys, dir_root};
use super::template::render_catalog;
use super::{DesiredError, EnvironmentContext};
use crate::resource::{
    CaKind, CertificateStore, Certificates, Content, DesiredState, File, Notify, Stage, Trigger,
    Validate,
};

/// The proxy's container, and its unit (`kiln-proxy.service`).
pub const CONTAINER: &str = "kiln-proxy";
/// Where the proxy's configuration is written on the host.
pub const CONFIG_DIR: &str = "/etc/kiln/proxy";
/// Where the proxy keeps its certificates and ACME account (`/data` in the container).
pub const DATA_DIR: &str = "/srv/kiln/kiln-proxy/data";
/// The proxy starts after the applications (their containers must resolve by name).
const STAGE: Stage = Stage(3);
/// A private ACME directory's root, in the proxy's configuration folder.
const CA_ROOT_FILE: &str = "acme-ca-root.pem";
/// How long the proxy may take to answer its health check after a start.
const HEALTH_TIMEOUT_S: u32 = 60;

/// The image of a proxy (the catalog's pin).
pub fn image(kind: ProxyKind) -> &'static str {
    match kind {
        ProxyKind::Caddy => kiln_catalog::CADDY_IMAGE,
        ProxyKind::Traefik => kiln_catalog::TRAEFIK_IMAGE,
    }
}

/// One public hostname of the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `matrix.ergaster.org`.
    pub hostname: String,
    /// Role of the host whose proxy serves it (where the DNS name points).
    pub role: String,
    /// What it is for, for comments and plans (`service synapse`).
    pub purpose: String,
    /// The service behind it, if any.
    pub service: Option<String>,
    /// `container:port` requests are passed to (`None`: the proxy answers itself).
    pub upstream: Option<String>,
    /// Path prefixes answered 404, never passed on.
    pub hidden_paths: Vec<String>,
    /// Permanent redirects `(path, to)`.
    pub redirects: Vec<(String, String)>,
    /// Matrix delegation answered on this name (`.well-known/matrix/server|client`).
    pub matrix: Option<MatrixDelegation>,
}

/// The apex domain's delegation of a Matrix server name to Synapse's hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixDelegation {
    /// `matrix.ergaster.org:443`: where other servers federate.
    pub server: String,
    /// `https://matrix.ergaster.org`: where clients go.
    pub base_url: String,
    /// Synapse's `container:port` (Traefik passes the well-known paths to it).
    pub synapse: String,
    /// Role of the host running Synapse.
    pub synapse_role: String,
}

impl MatrixDelegation {
    fn server_json(&self) -> String {
        json!({ "m.server": self.server }).to_string()
    }
    fn client_json(&self) -> String {
        json!({ "m.homeserver": { "base_url": self.base_url } }).to_string()
    }
}

/// Every public route of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Sorted by hostname.
    pub sites: Vec<Site>,
}

impl Routes {
    /// The environment-wide pass: routes from every service of every host.
    pub fn for_environment(model: &Model, env: &Environment) -> Result<Routes, DesiredError> {
        let mut sites = BTreeMap::new();
        for svc in model.services.iter().filter(|s| deploys(s)) {
            let Some(recipe) = svc.recipe().filter(|r| r.http) else {
                continue;
            };
            let Some(hostname) = env.service_fqdn(svc) else {
                continue;
            };
            if env.host(&svc.host).is_none() {
                continue;
            }
            let port = svc.port().ok_or_else(|| DesiredError::Service {
                host: svc.host.clone(),
                service: svc.name.clone(),
                message: "has a subdomain but no port for the reverse proxy to reach".into(),
            })?;
            let RouteHints {
                hidden_paths,
                redirects,
            } = recipe.route;
            sites.insert(
                hostname.clone(),
                Site {
                    hostname,
                    role: svc.host.clone(),
                    purpose: format!("service {}", svc.name),
                    service: Some(svc.name.clone()),
                    upstream: Some(format!("{}:{port}", svc.name)),
                    hidden_paths: hidden_paths.iter().map(|p| p.to_string()).collect(),
                    redirects: redirects
                        .iter()
                        .map(|(f, t)| (f.to_string(), t.to_string()))
                        .collect(),
                    matrix: None,
                },
            );
        }
        if let Some(d) = matrix_delegation(model, env, &sites)? {
            sites.insert(env.domain.clone(), d);
        }
        Ok(Routes {
            sites: sites.into_values().collect(),
        })
    }

    /// The sites served by the proxy of host `role`.
    pub fn on_host<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Site> + 'a {
        self.sites.iter().filter(move |s| s.role == role)
    }

    /// Roles of the hosts that run a proxy, and so need 80 and 443 open.
    pub fn proxy_hosts(&self) -> BTreeSet<String> {
        self.sites.iter().map(|s| s.role.clone()).collect()
    }
}

/// The apex site delegating the Matrix server name (the environment's domain) to Synapse's
/// own hostname, when a Synapse runs in the environment and the apex has a host.
fn matrix_delegation(
    model: &Model,
    env: &Environment,
    sites: &BTreeMap<String, Site>,
) -> Result<Option<Site>, DesiredError> {
    let Some(apex) = env.apex_host.as_deref() else {
        return Ok(None);
    };
    let Some(synapse) = model
        .services
        .iter()
        .find(|s| s.kind == "synapse" && deploys(s) && env.host(&s.host).is_some())
    else {
        return Ok(None);
    };
    let Some(hostname) = env.service_fqdn(synapse) else {
        return Ok(None);
    };
    if let Some(taken) = sites.get(&env.domain) {
        return Err(DesiredError::Service {
            host: taken.role.clone(),
            service: synapse.name.clone(),
            message: format!(
                "the apex domain {} answers Matrix delegation (.well-known/matrix) for {}, but {} is also served there",
                env.domain, synapse.name, taken.purpose
            ),
        });
    }
    let port = synapse.port().unwrap_or(8008);
    Ok(Some(Site {
        hostname: env.domain.clone(),
        role: apex.to_owned(),
        purpose: format!(
            "Matrix delegation: the server name {} is served by {hostname}",
            env.domain
        ),
        service: None,
        upstream: None,
        hidden_paths: vec![],
        redirects: vec![],
        matrix: Some(MatrixDelegation {
            server: format!("{hostname}:443"),
            base_url: format!("https://{hostname}"),
            synapse: format!("{}:{port}", synapse.name),
            synapse_role: synapse.host.clone(),
        }),
    }))
}

/// The proxy's resources on `host` (none when the host serves no route).
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let sites: Vec<&Site> = env.routes.on_host(&host.role).collect();
    let mut d = DesiredState::default();
    if sites.is_empty() {
        return Ok(d);
    }
    let proxy = env.env.proxy;
    let err = |message: String| DesiredError::Service {
        host: host.role.clone(),
        service: format!("{CONTAINER} ({proxy})"),
        message,
    };
    // Every route's backend runs on this host: without WireGuard between hosts (the base
    // issue's mesh), a proxy cannot reach another host's containers.
    for s in &sites {
        if let Some(m) = &s.matrix
            && proxy == ProxyKind::Traefik
            && m.synapse_role != host.role
        {
            return Err(err(format!(
                "Traefik passes {}'s .well-known/matrix to Synapse, which runs on host {}, not on this apex host, and there is no WireGuard between them\n  hint: run Synapse on the apex host, or use proxy = \"caddy\" (which answers .well-known itself)",
                s.hostname, m.synapse_role
            )));
        }
    }
    let data = PathBuf::from(DATA_DIR);
    let conf = PathBuf::from(CONFIG_DIR);
    for (path, mode) in [
        ("/srv/kiln/kiln-proxy", 0o755),
        (DATA_DIR, 0o700),
        ("/srv/kiln/kiln-proxy/config", 0o700),
        (CONFIG_DIR, 0o755),
    ] {
        d.directories.push(dir_root(path, mode));
    }

    let acme = &env.env.acme_ca;
    let unit = format!("{CONTAINER}.service");
    // The proxy's configuration folder, mounted read-only at `/etc/<caddy|traefik>`.
    let kind_dir = conf.join(proxy.as_str());
    let in_container = format!("/etc/{}", proxy.as_str());
    d.directories
        .push(dir_root(&kind_dir.display().to_string(), 0o755));
    // A private ACME directory's root, installed in that folder before the configuration
    // that names it (the Caddyfile's check reads it).
    let ca_root = match acme.ca_root() {
        Some(local) => {
            let pem = std::fs::read(local).map_err(|e| DesiredError::Read {
                file: local.display().to_string(),
                what: format!(
                    "the ca_root of environment {}'s ACME directory",
                    env.env.name
                ),
                source: e,
            })?;
            d.files.push(File {
                content: Content(pem),
                ..plain_file(
                    kind_dir.join(CA_ROOT_FILE),
                    String::new(),
                    Some((&unit, Trigger::Restart)),
                )
            });
            Some(format!("{in_container}/{CA_ROOT_FILE}"))
        }
        None => None,
    };
    let ctx_base = || -> Value {
        let mut ctx = super::context(env.model, env.env, host);
        ctx["proxy"] = json!({
            "kind": proxy.as_str(),
            "unit": unit,
            "data_dir": DATA_DIR,
        });
        ctx["acme"] = json!({
            "email": env.model.project.acme_email,
            "internal": *acme == AcmeCa::Internal,
            "directory": acme.directory_url(),
            "ca_root": ca_root,
            "short_lived": matches!(acme, AcmeCa::Custom(_)),
        });
        ctx
    };
    let config_mount = (kind_dir.display().to_string(), in_container.clone(), "ro");
    let data_mount = (data.display().to_string(), "/data".to_string(), "Z");

    let (image, mounts, ports, health_cmd, reload) = match proxy {
        ProxyKind::Caddy => {
            let mut ctx = ctx_base();
            ctx["sites"] = sites.iter().map(|s| caddy_site(s)).collect();
            let text = render(env, host, "caddy", "Caddyfile.j2", &ctx)?;
            d.files.push(File {
                validate: Some(caddy_validate(image(proxy), &kind_dir)),
                ..plain_file(
                    kind_dir.join("Caddyfile"),
                    text,
                    Some((&unit, Trigger::Reload)),
                )
            });
            (
                image(proxy),
                vec![
                    config_mount,
                    data_mount,
                    (
                        "/srv/kiln/kiln-proxy/config".to_string(),
                        "/config".to_string(),
                        "Z",
                    ),
                ],
                vec!["80:80", "443:443", "443:443/udp"],
                // The admin API answers once Caddy runs its configuration.
                "wget -q -O /dev/null http://127.0.0.1:2019/config/",
                Some(format!(
                    "/usr/bin/podman exec {CONTAINER} caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile"
                )),
            )
        }
        ProxyKind::Traefik => {
            let dynamic = kind_dir.join("dynamic");
            d.directories
                .push(dir_root(&dynamic.display().to_string(), 0o755));
            let text = render(env, host, "traefik", "traefik.yml.j2", &ctx_base())?;
            d.files.push(plain_file(
                kind_dir.join("traefik.yml"),
                text,
                Some((&unit, Trigger::Restart)),
            ));
            let mut ctx = ctx_base();
            let (routers, backends) = traefik_routes(&sites);
            ctx["sites"] = routers;
            ctx["backends"] = backends;
            let text = render(env, host, "traefik", "dynamic.yml.j2", &ctx)?;
            // Watched by Traefik: applied without a restart or a reload.
            d.files
                .push(plain_file(dynamic.join("kiln.yml"), text, None));
            (
                image(proxy),
                vec![config_mount, data_mount],
                vec!["80:80", "443:443"],
                "traefik healthcheck --ping",
                None,
            )
        }
    };

    let version = image.rsplit_once(':').map_or("latest", |(_, t)| t);
    let owner = Owner {
        name: CONTAINER,
        kind: proxy.as_str(),
        description: "the reverse proxy",
        version,
        secrets: Default::default(),
        health_cmd: Some(health_cmd),
        health_timeout_s: HEALTH_TIMEOUT_S,
    };
    let spec = ContainerSpec {
        mounts: mounts
            .into_iter()
            .map(|(host, container, options)| Mount {
                host: host.into(),
                container,
                options,
            })
            .collect(),
        ports,
        reload,
        stage: STAGE,
        ..Default::default()
    };
    add_container(&mut d, env, host, &owner, image.to_owned(), spec)?;
    d.certificates = Some(Certificates {
        container: CONTAINER.to_owned(),
        store: match proxy {
            ProxyKind::Caddy => CertificateStore::Caddy {
                dir: format!("{DATA_DIR}/caddy/certificates"),
            },
            ProxyKind::Traefik => CertificateStore::Traefik {
                acme_json: format!("{DATA_DIR}/acme.json"),
            },
        },
        ca: match acme {
            AcmeCa::Letsencrypt => CaKind::Letsencrypt,
            AcmeCa::LetsencryptStaging => CaKind::LetsencryptStaging,
            AcmeCa::Internal => CaKind::Internal,
            AcmeCa::Custom(_) => CaKind::Custom,
        },
        directory: acme.directory_url().map(str::to_owned),
        names: sites.iter().map(|s| s.hostname.clone()).collect(),
    });
    Ok(d)
}

fn plain_file(path: PathBuf, text: String, notify: Option<(&str, Trigger)>) -> File {
    let mut f = File::root(path, Content::text(text), 0o644);
    f.notify = notify
        .map(|(unit, action)| Notify {
            unit: unit.to_owned(),
            action,
        })
        .into_iter()
        .collect();
    f
}

/// `caddy validate` of a candidate Caddyfile (`{}`) in a throw-away container of the
/// proxy's image, without network, with the configuration folder it will live in.
fn caddy_validate(image: &str, dir: &std::path::Path) -> Validate {
    let mut argv: Vec<String> = [
        "podman",
        "run",
        "--rm",
        "--network=none",
        "--security-opt=label=disable",
        "--pull=never",
    ]
    .map(String::from)
    .to_vec();
    argv.push(format!("--volume={}:/etc/caddy:ro", dir.display()));
    argv.push("--volume={}:/etc/caddy/Caddyfile:ro".into());
    argv.extend(
        [
            image,
            "caddy",
            "validate",
            "--config",
            "/etc/caddy/Caddyfile",
            "--adapter",
            "caddyfile",
        ]
        .map(String::from),
    );
    Validate {
        name: "caddy validate".into(),
        argv,
    }
}

fn caddy_site(s: &Site) -> Value {
    json!({
        "hostname": s.hostname,
        "purpose": s.purpose,
        "upstream": s.upstream,
        "hidden_paths": s.hidden_paths,
        "redirects": s.redirects.iter().map(|(f, t)| json!({"from": f, "to": t})).collect::<Vec<_>>(),
        "matrix": s.matrix.as_ref().map(|m| json!({
            "server_json": m.server_json(),
            "client_json": m.client_json(),
        })),
    })
}

/// Traefik's routers (one per site, plus the apex's well-known paths passed to Synapse)
/// and the backends they use.
fn traefik_routes(sites: &[&Site]) -> (Value, Value) {
    let mut routers = vec![];
    let mut backends = BTreeMap::new();
    for s in sites {
        let name = router_name(&s.hostname);
        let host = format!("Host(`{}`)", s.hostname);
        if let Some(m) = &s.matrix {
            let backend = router_name(&m.synapse);
            backends.insert(backend.clone(), m.synapse.clone());
            routers.push(json!({
                "name": name,
                "purpose": s.purpose,
                "hostname": s.hostname,
                "rule": format!("{host} && PathPrefix(`/.well-known/matrix/`)"),
                "service": backend,
                "redirects": [],
            }));
        }
        if let Some(up) = &s.upstream {
            let backend = router_name(up);
            backends.insert(backend.clone(), up.clone());
            let mut rule = host.clone();
            for p in &s.hidden_paths {
                rule.push_str(&format!(" && !PathPrefix(`{p}`)"));
            }
            routers.push(json!({
                "name": name,
                "purpose": s.purpose,
                "hostname": s.hostname,
                "rule": rule,
                "service": backend,
                "redirects": s.redirects.iter().map(|(f, t)| json!({"from": f, "to": t})).collect::<Vec<_>>(),
            }));
        }
    }
    let backends = backends
        .into_iter()
        .map(|(name, upstream)| json!({"name": name, "upstream": upstream}))
        .collect();
    (Value::Array(routers), backends)
}

/// A Traefik object name from a hostname or `container:port`.
fn router_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Renders the proxy template `name` of `kind` (the repository may override it), which
/// must use no secret.
fn render(
    env: &EnvironmentContext<'_>,
    host: &Host,
    kind: &str,
    name: &str,
    ctx: &Value,
) -> Result<String, DesiredError> {
    let (text, sensitive) = render_catalog(
        env.model.base_dir(),
        kind,
        name,
        ctx,
        env.secrets.clone(),
        &format!("the reverse proxy ({kind})"),
        &host.role,
    )?;
    if sensitive {
        return Err(DesiredError::Service {
            host: host.role.clone(),
            service: CONTAINER.into(),
            message: format!("{kind}/{name} uses a secret: the proxy's configuration holds none"),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
