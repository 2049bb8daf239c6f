//! Template rendering for every feature: the context of the contract (`project`, `env`,
//! `host`, `vars`) and minijinja with `secret("name")`, which reads the vault through a
//! [`SecretSource`] and marks the result sensitive (its diffs are then redacted).
//!
//! Reads the template and source files it is given; nothing else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_model::{Content as ModelContent, Environment, Host, Model};

use super::{DesiredError, SecretSource};
use crate::resource::Content;

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
    render_str(&file, source, ctx, secrets, what, host)
}

/// Renders the catalog template `name` of `kind`: the repository's override
/// (`catalog/<kind>/<name>` next to kiln.toml) when there is one, else the one embedded in
/// the binary. Returns the text and whether it used a secret.
pub fn render_catalog(
    base: &Path,
    kind: &str,
    name: &str,
    ctx: &serde_json::Value,
    secrets: Arc<dyn SecretSource>,
    what: &str,
    host: &str,
) -> Result<(String, bool), DesiredError> {
    let rel = catalog_override(kind, name);
    if base.join(&rel).is_file() {
        return render_template(base, &rel, ctx, secrets, what, host);
    }
    let source = kiln_catalog::template(kind, name).ok_or_else(|| DesiredError::Template {
        file: format!("catalog:{kind}/{name}"),
        line: 0,
        what: what.to_owned(),
        host: host.to_owned(),
        message: format!("the catalog has no template {name} for {kind}"),
    })?;
    render_str(
        &format!("catalog:{kind}/{name}"),
        source.to_owned(),
        ctx,
        secrets,
        what,
        host,
    )
}

/// Where a repository overrides the catalog template `name` of `kind`.
pub fn catalog_override(kind: &str, name: &str) -> PathBuf {
    Path::new("catalog").join(kind).join(name)
}

/// Renders template text; `file` names it in errors (a path, or the catalog's
/// `catalog:<kind>/<name>` for an embedded template). Returns the text and whether it
/// used a secret.
pub fn render_str(
    file: &str,
    source: String,
    ctx: &serde_json::Value,
    secrets: Arc<dyn SecretSource>,
    what: &str,
    host: &str,
) -> Result<(String, bool), DesiredError> {
    let file = file.to_owned();
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

/// A file's or unit's content from the model: inline, copied, or rendered. Returns the
/// bytes and whether a secret went into them.
pub fn content(
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
