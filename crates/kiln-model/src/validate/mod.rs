//! Meaning checks on the decoded document, and its conversion into a [`Model`]: values
//! (domains, addresses, ports, modes, keys), references (service → host role, notify →
//! unit, option → service), and clashes (two names for one hostname, an environment
//! reusing another's server). Every error points at the span it concerns, with a hint.
//!
//! The only I/O here: checking that referenced template/source files exist.

use std::ops::Range;
use std::path::Path;

use crate::checks;
use crate::diagnostic::{ConfigError, Source, suggest};
use crate::model::*;
use crate::raw::*;

mod backups;
mod base;
mod environments;
mod roles;
mod services;

use backups::{backups, generated_secrets, monitoring};
use environments::environments;
use roles::roles;
use services::{names_clash, services};

const INVALID: &str = "kiln::config::invalid_value";
const UNKNOWN_REF: &str = "kiln::config::unknown_reference";
const DUPLICATE: &str = "kiln::config::duplicate";
const MISSING: &str = "kiln::config::missing_key";
const DEPRECATED: &str = "kiln::config::deprecated";
/// A warning: a setting that changes nothing where it applies.
const NO_EFFECT: &str = "kiln::config::no_effect";

struct Ctx<'a> {
    src: &'a Source,
    base_dir: &'a Path,
    errors: Vec<ConfigError>,
    /// Not errors: what kiln check explains (deprecations).
    warnings: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    fn warn(&mut self, e: ConfigError) {
        self.warnings.push(e);
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
        warnings: Vec::new(),
    };

    let email_span = doc.project.as_ref().map(|p| p.acme_email.span());
    let project = match doc.project {
        Some(p) => project(&mut cx, p),
        None => Project {
            name: String::new(),
            domain: String::new(),
            acme_email: String::new(),
            proxy: ProxyKind::default(),
        },
    };

    let mut environments = environments(&mut cx, &doc.environments, project.proxy);
    let services = services(&mut cx, &doc.services, &doc.environments);
    base::base(
        &mut cx,
        doc.base.as_ref(),
        &doc.environments,
        &mut environments,
        &services,
    );
    names_clash(&mut cx, &doc.environments, &doc.services, &services);
    let generated = generated_secrets(&mut cx, &doc.services, &doc.environments);
    let backups = doc
        .backups
        .as_ref()
        .and_then(|b| backups(&mut cx, b, &generated));
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
        warnings: std::mem::take(&mut cx.warnings),
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
    let proxy = p
        .proxy
        .as_ref()
        .map(|v| proxy_kind(cx, v))
        .unwrap_or_default();
    Project {
        name: p.name.into_inner(),
        domain: p.domain.into_inner(),
        acme_email: p.acme_email.into_inner(),
        proxy,
    }
}

/// A `proxy = "…"` value (project or environment); an unknown one is reported.
fn proxy_kind(cx: &mut Ctx<'_>, value: &S<String>) -> ProxyKind {
    match ProxyKind::parse(value.get_ref()) {
        Some(p) => p,
        None => {
            let help = suggest(value.get_ref(), "proxies", ProxyKind::NAMES.iter().copied());
            let e = cx
                .at(
                    value.span(),
                    INVALID,
                    format!("unknown reverse proxy `{}`", value.get_ref()),
                )
                .label("not a proxy kiln deploys")
                .help(help);
            cx.push(e);
            ProxyKind::default()
        }
    }
}
