//! The parse layer: kiln.toml as written, every value with its byte span, unknown keys
//! rejected. Decoding goes item by item (project, each environment, host, service, role
//! resource...) so one mistake does not hide the next: every unknown key and the first
//! type error of each item are reported together.
//!
//! No meaning is checked here (that is `validate`): only shape and types.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::{ConfigError, Source, suggest};

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    pub name: S<String>,
    pub domain: S<String>,
    pub acme_email: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvironment {
    pub domain: S<String>,
    pub acme_ca: S<String>,
    pub apex_host: Option<S<String>>,
    pub backups: Option<S<bool>>,
    /// Decoded host by host (see [`decode_document`]); `None` for a host that failed to
    /// decode (its errors are already reported).
    #[serde(default, skip_deserializing)]
    pub hosts: Vec<(S<String>, Option<S<RawHost>>)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub address: S<String>,
    pub address6: Option<S<String>>,
    pub ssh_port: Option<S<i64>>,
    pub admin_user: S<String>,
    #[serde(default)]
    pub host_keys: Vec<S<String>>,
    pub os: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub kind: S<String>,
    pub host: S<String>,
    pub subdomain: Option<S<String>>,
    pub version: Option<S<String>>,
    #[serde(default)]
    pub options: BTreeMap<S<String>, S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackups {
    pub schedule: S<String>,
    pub object_lock_days: Option<S<i64>>,
    pub allow_unlocked: Option<S<bool>>,
    pub retention: S<RawRetention>,
    pub repository: S<RawRepository>,
    pub credentials: S<RawCredentials>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub daily: Option<S<i64>>,
    pub weekly: Option<S<i64>>,
    pub monthly: Option<S<i64>>,
    pub yearly: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    pub endpoint: S<String>,
    pub region: Option<S<String>>,
    pub bucket: S<String>,
    pub prefix: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub access_key: S<String>,
    pub secret_key: S<String>,
    pub repository_password: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitoring {
    pub host: S<String>,
    pub alert_email: Option<S<String>>,
    pub alert_webhook: Option<S<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRole {
    pub packages: Vec<S<String>>,
    pub vars: Option<toml::Table>,
    pub directories: Vec<S<RawDirectory>>,
    pub files: Vec<S<RawFile>>,
    pub symlinks: Vec<S<RawSymlink>>,
    pub users: Vec<S<RawUser>>,
    pub groups: Vec<S<RawGroup>>,
    pub units: Vec<S<RawUnit>>,
    pub commands: Vec<S<RawCommand>>,
}

const ROLE_KEYS: &[&str] = &[
    "packages",
    "vars",
    "directories",
    "files",
    "symlinks",
    "users",
    "groups",
    "units",
    "commands",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDirectory {
    pub path: S<String>,
    pub mode: Option<S<String>>,
    pub owner: Option<S<String>>,
    pub group: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub path: S<String>,
    pub template: Option<S<String>>,
    pub content: Option<S<String>>,
    pub source: Option<S<String>>,
    pub mode: Option<S<String>>,
    pub owner: Option<S<String>>,
    pub group: Option<S<String>>,
    #[serde(default)]
    pub notify: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSymlink {
    pub path: S<String>,
    pub target: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: S<String>,
    #[serde(default)]
    pub system: bool,
    pub home: Option<S<String>>,
    pub shell: Option<S<String>>,
    #[serde(default)]
    pub groups: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub name: S<String>,
    #[serde(default)]
    pub system: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnit {
    pub name: S<String>,
    pub template: Option<S<String>>,
    pub content: Option<S<String>>,
    pub source: Option<S<String>>,
    pub enabled: Option<bool>,
    pub started: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    pub name: S<String>,
    pub run: S<String>,
    pub unless: Option<S<String>>,
    #[serde(default)]
    pub triggered_by: Vec<S<String>>,
}

/// kiln.toml as written. Lists keep the file's order.
#[derive(Debug, Default)]
pub(crate) struct RawDocument {
    pub project: Option<RawProject>,
    pub environments: Vec<(S<String>, RawEnvironment)>,
    pub services: Vec<(S<String>, RawService)>,
    pub backups: Option<S<RawBackups>>,
    pub monitoring: Option<S<RawMonitoring>>,
    pub roles: Vec<(S<String>, RawRole)>,
}

const TOP_KEYS: &[&str] = &[
    "project",
    "environments",
    "services",
    "backups",
    "monitoring",
    "roles",
];

type Entry<'i> = (Spanned<std::borrow::Cow<'i, str>>, Spanned<DeValue<'i>>);

/// Parses and decodes `source`. Returns what could be decoded plus every error found;
/// the document is usable only when the error list is empty.
pub(crate) fn decode_document(source: &Source) -> (RawDocument, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut doc = RawDocument::default();
    let (root, syntax) = DeTable::parse_recoverable(source.text());
    if !syntax.is_empty() {
        // One mistake can derail the parser into many follow-up errors: report distinct
        // ones, and only the first few.
        const MAX_SYNTAX_ERRORS: usize = 10;
        let mut seen = std::collections::BTreeSet::new();
        for e in syntax {
            if seen.insert((e.message().to_string(), e.span().map(|s| (s.start, s.end))))
                && seen.len() <= MAX_SYNTAX_ERRORS
            {
                errors.push(toml_error(source, &e, 0..0));
            }
        }
        return (doc, errors);
    }
    let root = root.into_inner();
    let mut project_seen = false;
    for (key, value) in sorted(&root) {
        match key.get_ref().as_ref() {
            "project" => {
                project_seen = true;
                doc.project = decode(source, &value, &mut errors);
            }
            "environments" => {
                for (name, env) in table_entries(source, &value, "environments", &mut errors) {
                    if let Some(e) = decode_environment(source, &name, env, &mut errors) {
                        doc.environments.push((owned_key(&name), e));
                    }
                }
            }
            "services" => {
                for (name, svc) in table_entries(source, &value, "services", &mut errors) {
                    if let Some(s) = decode(source, &svc, &mut errors) {
                        doc.services.push((owned_key(&name), s));
                    }
                }
            }
            "backups" => doc.backups = decode_spanned(source, &value, &mut errors),
            "monitoring" => doc.monitoring = decode_spanned(source, &value, &mut errors),
            "roles" => {
                for (name, role) in table_entries(source, &value, "roles", &mut errors) {
                    let r = decode_role(source, role, &mut errors);
                    doc.roles.push((owned_key(&name), r));
                }
            }
            other => errors.push(unknown_key(
                source,
                other,
                key.span(),
                TOP_KEYS,
                "top-level tables",
            )),
        }
    }
    if !project_seen {
        errors.push(
            ConfigError::at(
                source,
                0..0,
                "kiln::config::missing_key",
                "missing `[project]` table",
            )
            .label("expected `[project]` in this file")
            .help("add `[project]` with `name`, `domain` and `acme_email`"),
        );
    }
    (doc, errors)
}

fn owned_key(key: &Spanned<std::borrow::Cow<'_, str>>) -> S<String> {
    Spanned::new(key.span(), key.get_ref().to_string())
}

/// Table entries in file order (the parser's map is sorted by key).
fn sorted<'i>(table: &DeTable<'i>) -> Vec<Entry<'i>> {
    let mut v: Vec<Entry<'i>> = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn table_entries<'i>(
    source: &Source,
    value: &Spanned<DeValue<'i>>,
    what: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Entry<'i>> {
    match value.get_ref() {
        DeValue::Table(t) => sorted(t),
        other => {
            errors.push(
                ConfigError::at(
                    source,
                    value.span(),
                    "kiln::config::wrong_type",
                    format!("`{what}` must be a table, found {}", other.type_str()),
                )
                .label("not a table")
                .help(format!("write `[{what}.<name>]` sections")),
            );
            Vec::new()
        }
    }
}

fn decode_environment(
    source: &Source,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<RawEnvironment> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        errors.push(
            ConfigError::at(
                source,
                span,
                "kiln::config::wrong_type",
                format!("environment `{}` must be a table", name.get_ref()),
            )
            .label("not a table"),
        );
        return None;
    };
    let hosts = table.remove("hosts");
    let mut env: Option<RawEnvironment> = decode(
        source,
        &Spanned::new(span.clone(), DeValue::Table(table)),
        errors,
    );
    let mut decoded_hosts = Vec::new();
    if let Some(hosts) = hosts {
        for (role, host) in table_entries(source, &hosts, "hosts", errors) {
            // The role is kept even when the host is invalid, so that references to it
            // are not reported as well.
            let h = decode_spanned(source, &host, errors);
            decoded_hosts.push((owned_key(&role), h));
        }
    }
    if let Some(env) = env.as_mut() {
        env.hosts = decoded_hosts;
    }
    env
}

fn decode_role(
    source: &Source,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> RawRole {
    let mut role = RawRole::default();
    let DeValue::Table(table) = value.get_ref() else {
        errors.push(
            ConfigError::at(
                source,
                value.span(),
                "kiln::config::wrong_type",
                "a role must be a table",
            )
            .label("not a table")
            .help("write `[roles.<role>]` with packages, files, units, ..."),
        );
        return role;
    };
    for (key, v) in sorted(table) {
        match key.get_ref().as_ref() {
            "packages" => role.packages = decode(source, &v, errors).unwrap_or_default(),
            "vars" => role.vars = decode(source, &v, errors),
            "directories" => role.directories = decode_list(source, &v, errors),
            "files" => role.files = decode_list(source, &v, errors),
            "symlinks" => role.symlinks = decode_list(source, &v, errors),
            "users" => role.users = decode_list(source, &v, errors),
            "groups" => role.groups = decode_list(source, &v, errors),
            "units" => role.units = decode_list(source, &v, errors),
            "commands" => role.commands = decode_list(source, &v, errors),
            other => errors.push(unknown_key(
                source,
                other,
                key.span(),
                ROLE_KEYS,
                "role keys",
            )),
        }
    }
    role
}

/// An array of tables, element by element.
fn decode_list<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<S<T>> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| decode_spanned(source, item, errors))
            .collect(),
        other => {
            errors.push(
                ConfigError::at(
                    source,
                    value.span(),
                    "kiln::config::wrong_type",
                    format!("expected an array of tables, found {}", other.type_str()),
                )
                .label("not an array")
                .help("use `[[roles.<role>.<kind>]]` sections, one per item"),
            );
            Vec::new()
        }
    }
}

fn decode_spanned<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<S<T>> {
    decode(source, value, errors).map(|t| Spanned::new(value.span(), t))
}

/// Deserializes one item. Every unknown key is reported (each one is removed and the
/// item decoded again); the first other error ends the attempt.
fn decode<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut value = value.clone();
    // Keys suggested for unknown keys: a "missing key" for one of them says nothing new.
    let mut suggested: Vec<String> = Vec::new();
    for _ in 0..256 {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return Some(t),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                if let Some((field, expected)) = parse_unknown(e.message()) {
                    let closest =
                        crate::diagnostic::closest(&field, expected.iter().map(String::as_str))
                            .map(str::to_string);
                    if let Some(c) = &closest {
                        suggested.push(c.clone());
                    }
                    errors.push(unknown_key(source, &field, span.clone(), &expected, "keys"));
                    // Decode on as if the suggestion had been written, so that a typo
                    // does not also show up as a missing key or a missing default.
                    if rename_key_at(&mut value, &span, closest.as_deref()) {
                        continue;
                    }
                } else if !missing_field(e.message())
                    .is_some_and(|f| suggested.iter().any(|s| s == f))
                {
                    errors.push(toml_error(source, &e, value.span()));
                }
                return None;
            }
        }
    }
    None
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
}

/// Removes the table entry whose key or value spans `span`, re-inserting its value under
/// `rename` when given and free; true when the entry was found.
fn rename_key_at(
    value: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    rename: Option<&str>,
) -> bool {
    match value.get_mut() {
        DeValue::Table(t) => {
            let found = t
                .iter()
                .find(|(k, v)| k.span() == *span || v.span() == *span)
                .map(|(k, _)| (k.get_ref().to_string(), k.span()));
            if let Some((key, key_span)) = found {
                let removed = t.remove(key.as_str());
                if let (Some(new), Some(v)) = (rename, removed)
                    && !t.contains_key(new)
                {
                    t.insert(
                        Spanned::new(key_span, std::borrow::Cow::Owned(new.to_string())),
                        v,
                    );
                }
                return true;
            }
            t.iter_mut().any(|(_, v)| rename_key_at(v, span, rename))
        }
        DeValue::Array(a) => a.iter_mut().any(|v| rename_key_at(v, span, rename)),
        _ => false,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" → (x, [a, b]).
fn parse_unknown(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

fn unknown_key<S: AsRef<str>>(
    source: &Source,
    key: &str,
    span: Range<usize>,
    expected: &[S],
    what: &str,
) -> ConfigError {
    let help = suggest(key, what, expected.iter().map(AsRef::as_ref));
    ConfigError::at(
        source,
        span,
        "kiln::config::unknown_key",
        format!("unknown key `{key}`"),
    )
    .label("not a key kiln knows here")
    .help(help)
}

/// A toml/serde error as a [`ConfigError`]; `fallback` when the error carries no span.
fn toml_error(source: &Source, e: &toml::de::Error, fallback: Range<usize>) -> ConfigError {
    let span = e.span().unwrap_or(fallback);
    let message = e.message().trim().to_string();
    if let Some(field) = missing_field(&message) {
        return ConfigError::at(
            source,
            span,
            "kiln::config::missing_key",
            format!("missing key `{field}`"),
        )
        .label(format!("`{field}` is required in this table"))
        .help(format!("add `{field} = ...`"));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let found = found.split_whitespace().next().unwrap_or(found);
        let (expected, help) = describe_expected(expected);
        return ConfigError::at(
            source,
            span,
            "kiln::config::wrong_type",
            format!("expected {expected}, found {}", article(found)),
        )
        .label(format!("this is {}", article(found)))
        .help(help);
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return ConfigError::at(
            source,
            span,
            "kiln::config::wrong_type",
            format!("invalid value: {rest}"),
        )
        .label("invalid value")
        .help("check the value's type and range");
    }
    ConfigError::at(
        source,
        span,
        "kiln::config::syntax",
        format!("invalid TOML: {message}"),
    )
    .label("here")
    .help("see https://toml.io for the syntax")
}

/// serde's expected-type wording → (what kiln calls it, how to write one).
fn describe_expected(expected: &str) -> (&'static str, &'static str) {
    let e = expected.trim();
    if e.starts_with('i') || e.starts_with('u') || e.contains("integer") {
        ("an integer", "write the number without quotes, like `22`")
    } else if e.contains("bool") {
        ("true or false", "write `true` or `false`, without quotes")
    } else if e.contains("string") || e == "a str" {
        (
            "a string",
            "put the value in double quotes, like `\"value\"`",
        )
    } else if e.contains("sequence") || e.contains("array") {
        (
            "an array",
            "write a list in brackets, like `[\"a\", \"b\"]`",
        )
    } else {
        (
            "a table",
            "write a `[section]` or an inline table `{ key = \"value\" }`",
        )
    }
}

/// "string" → "a string", "integer" → "an integer", serde wording aside.
fn article(found: &str) -> String {
    let word = match found {
        "map" => "table",
        "sequence" => "array",
        "boolean" | "bool" => "boolean",
        other => other,
    };
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_unknown_reads_serde_messages() {
        let (f, e) =
            parse_unknown("unknown field `adress`, expected one of `address`, `os`").unwrap();
        assert_eq!(f, "adress");
        assert_eq!(e, vec!["address", "os"]);
        let (f, e) = parse_unknown("unknown field `x`, expected `name`").unwrap();
        assert_eq!((f.as_str(), e), ("x", vec!["name".to_string()]));
        assert!(parse_unknown("missing field `a`").is_none());
    }

    #[test]
    fn all_unknown_keys_of_a_table_are_reported() {
        let src = Source::new(
            "k.toml",
            "[project]\nname = \"a\"\ndomian = \"x\"\ndomain = \"a.org\"\nacme_email = \"a@a.org\"\nfoo = 1\n",
        );
        let (doc, errors) = decode_document(&src);
        let msgs: Vec<_> = errors
            .iter()
            .map(|e| (e.message.clone(), e.location()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (
                    "unknown key `domian`".to_string(),
                    Some("k.toml:3:1".to_string())
                ),
                (
                    "unknown key `foo`".to_string(),
                    Some("k.toml:6:1".to_string())
                ),
            ]
        );
        assert!(
            errors[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("did you mean `domain`?")
        );
        assert_eq!(
            doc.project.map(|p| p.domain.into_inner()),
            Some("a.org".to_string())
        );
    }
}
