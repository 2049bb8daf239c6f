//! The generated references of kiln.toml: the JSON Schema editors validate and complete
//! with (taplo / Even Better TOML, through a `#:schema` first line), and the Markdown
//! reference (docs/config-reference.md), rendered from that same schema.
//!
//! Both come from the code: the raw serde types of `raw.rs` (their doc comments are the
//! descriptions, `deny_unknown_fields` becomes `additionalProperties: false`) and the
//! catalog's recipes (service kinds, their options, secrets and volumes).
//!
//! Pure functions returning text: nothing is printed or written here. `kiln util
//! generate-docs` writes them into docs/, and `kiln init` writes the schema into a new
//! repository.

use std::fmt::Write as _;

use kiln_catalog::{OptionKind, OptionSpec, Recipe};
use kiln_secrets::{Alphabet, HashScheme, SecretRule};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::raw::{RawDocument, TOP_KEYS};

/// Where `kiln init` writes the schema in a new repository, relative to kiln.toml (and
/// so what its `#:schema` line names; taplo resolves it relative to the TOML file).
pub const REPOSITORY_SCHEMA_PATH: &str = ".kiln/kiln.schema.json";

/// The first line `kiln init` writes in kiln.toml, pointing editors at the schema.
pub fn schema_directive() -> String {
    format!("#:schema ./{REPOSITORY_SCHEMA_PATH}")
}

/// The JSON Schema (draft 7, what taplo and most editors read) of kiln.toml.
pub fn config_schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RawDocument>().to_value();
    // TOML has no null: an absent key is how a value is left out.
    strip_null(&mut schema);
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "$comment".into(),
            Value::String(
                "Generated from kiln's code (`kiln util config-schema` prints it): do not edit."
                    .into(),
            ),
        );
    }
    if let Some(service) = schema.pointer_mut("/definitions/Service") {
        add_catalog(service);
    }
    schema
}

/// Removes the `null` that schemars allows for `Option` fields.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Array(types)) = obj.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    obj.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(values)) = obj.get_mut("enum") {
                values.retain(|e| !e.is_null());
            }
            if let Some(Value::Array(any)) = obj.get_mut("anyOf") {
                any.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
                if any.len() == 1 {
                    let only = any.remove(0);
                    obj.remove("anyOf");
                    match only {
                        // In draft 7 a `$ref` hides its siblings (the description).
                        Value::Object(inner) if inner.contains_key("$ref") && !obj.is_empty() => {
                            obj.insert("allOf".into(), json!([inner]));
                        }
                        Value::Object(inner) => {
                            for (k, val) in inner {
                                obj.entry(k).or_insert(val);
                            }
                        }
                        _ => {}
                    }
                }
            }
            obj.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// [`config_schema`] as the text of a `.json` file (pretty, ending with a newline).
pub fn config_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The catalog into the service schema: `kind` is one of the catalog's kinds, and each
/// kind constrains `options` (its own, typed), `version` and `subdomain`.
fn add_catalog(service: &mut Value) {
    let kinds: Vec<&str> = kiln_catalog::kinds().collect();
    if let Some(kind) = service.pointer_mut("/properties/kind") {
        kind["enum"] = json!(kinds);
    }
    let rules: Vec<Value> = kiln_catalog::recipes().iter().map(kind_rule).collect();
    if let Some(obj) = service.as_object_mut() {
        obj.insert("allOf".into(), Value::Array(rules));
    }
}

/// `if kind = <kind> then ...` for one recipe.
fn kind_rule(r: &Recipe) -> Value {
    let mut options = Map::new();
    for o in r.options {
        options.insert(o.name.into(), option_schema(o));
    }
    let required_options: Vec<&str> = r
        .options
        .iter()
        .filter(|o| o.required)
        .map(|o| o.name)
        .collect();
    let mut options_schema = json!({
        "type": "object",
        "properties": options,
        "additionalProperties": false,
    });
    if !required_options.is_empty() {
        options_schema["required"] = json!(required_options);
    }
    let mut then = json!({ "properties": { "options": options_schema } });
    let mut required: Vec<&str> = Vec::new();
    if r.needs_version {
        required.push("version");
    }
    if !required_options.is_empty() {
        required.push("options");
    }
    if !r.http {
        then["properties"]["subdomain"] = json!(false);
    } else if r.default_subdomain.is_none() {
        required.push("subdomain");
    }
    if !required.is_empty() {
        then["required"] = json!(required);
    }
    json!({
        "if": { "properties": { "kind": { "const": r.kind } }, "required": ["kind"] },
        "then": then,
    })
}

fn option_schema(o: &OptionSpec) -> Value {
    let description = match o.kind {
        OptionKind::ServiceOfKind(k) => format!("{} (the name of a `{k}` service)", o.description),
        _ => o.description.to_string(),
    };
    match o.kind {
        OptionKind::Bool => json!({ "type": "boolean", "description": description }),
        OptionKind::Port => json!({
            "type": "integer", "minimum": 1, "maximum": 65535, "description": description,
        }),
        OptionKind::PositiveInteger => {
            json!({ "type": "integer", "minimum": 1, "description": description })
        }
        OptionKind::String
        | OptionKind::Domain
        | OptionKind::Image
        | OptionKind::ServiceOfKind(_) => {
            json!({ "type": "string", "description": description })
        }
        OptionKind::EnvTable => json!({
            "type": "object",
            "propertyNames": { "pattern": "^[A-Z_][A-Z0-9_]*$" },
            "additionalProperties": { "type": "string" },
            "description": description,
        }),
        OptionKind::VolumeList => json!({
            "type": "array",
            "items": { "type": "string", "pattern": "^[a-z][a-z0-9-]*:/" },
            "description": description,
        }),
    }
}

/// How the reference names an option's type.
fn option_type(kind: OptionKind) -> String {
    match kind {
        OptionKind::String => "string".into(),
        OptionKind::Domain => "domain name".into(),
        OptionKind::Port => "TCP port, 1 to 65535".into(),
        OptionKind::Bool => "boolean".into(),
        OptionKind::PositiveInteger => "integer, 1 or more".into(),
        OptionKind::ServiceOfKind(k) => format!("name of a `{k}` service"),
        OptionKind::Image => "image reference without tag".into(),
        OptionKind::EnvTable => "table of environment variables".into(),
        OptionKind::VolumeList => "list of `name:/path`".into(),
    }
}

fn secret_rule(rule: &SecretRule) -> String {
    let alphabet = |a: &Alphabet| match a {
        Alphabet::Alphanumeric => "letters and digits",
        Alphabet::Hex => "hexadecimal digits",
        Alphabet::UrlSafe => "URL-safe characters",
    };
    let hash = |h: &HashScheme| match h {
        HashScheme::Bcrypt => "bcrypt",
        HashScheme::Argon2id => "Argon2id",
    };
    match rule {
        SecretRule::Random {
            length,
            alphabet: a,
        } => format!("{length} random {}", alphabet(a)),
        SecretRule::Base64 { bytes } => format!("{bytes} random bytes, base64"),
        SecretRule::Ed25519SigningKey => "an Ed25519 signing key".into(),
        SecretRule::WireguardKeyPair => "a WireGuard key pair (`_public` beside it)".into(),
        SecretRule::PasswordWithHash { length, hash: h } => {
            format!(
                "a {length}-character password and its {} hash (`_hash` beside it)",
                hash(h)
            )
        }
        SecretRule::Provided => "given by you (`kiln secrets set`)".into(),
    }
}

/// docs/config-reference.md: every table and key of kiln.toml (type, whether required,
/// default, description), then the catalog's service kinds, rendered from
/// [`config_schema`] and the catalog.
pub fn config_reference_markdown() -> String {
    let schema = config_schema();
    let mut out = String::new();
    out.push_str(
        "<!-- Generated by `kiln util generate-docs` from the doc comments of \
         crates/kiln-model/src/raw.rs and the recipes of crates/kiln-catalog: do not edit. -->\n\n",
    );
    out.push_str("# kiln.toml reference\n\n");
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_paragraph(d));
    }
    let _ = write!(
        out,
        "Unknown keys are errors everywhere (`kiln check` names the closest known key). \
         Paths like `<env>` or `<role>` are names you choose.\n\n\
         **Editors.** The same reference is a JSON Schema, [`kiln.schema.json`](kiln.schema.json). \
         `kiln init` writes it into a new repository as `{REPOSITORY_SCHEMA_PATH}` and makes \
         `{}` the first line of kiln.toml, so that taplo and Even Better TOML (VS Code) \
         validate and complete keys as you type. In an older repository, add that line, write \
         the schema with `kiln util config-schema > {REPOSITORY_SCHEMA_PATH}` (again after \
         upgrading kiln), and commit it: in .gitignore, `/.kiln/*` and \
         `!/{REPOSITORY_SCHEMA_PATH}` instead of `/.kiln/`.\n\n",
        schema_directive()
    );
    let renderer = Renderer { root: &schema };
    renderer.table(&mut out, "", &schema, SectionKind::Root);
    catalog_markdown(&mut out);
    out
}

struct Renderer<'a> {
    root: &'a Value,
}

#[derive(Clone, Copy, PartialEq)]
enum SectionKind {
    Root,
    Table,
    ArrayItem,
}

impl<'a> Renderer<'a> {
    /// Follows a local `$ref` (also as the only member of an `allOf`, as schemars writes a
    /// reference that has a description).
    fn resolve(&self, s: &'a Value) -> &'a Value {
        if let Some([only]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            return self.resolve(only);
        }
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
                .unwrap_or(s),
            None => s,
        }
    }

    /// Where a property's value leads to another section: `(path, schema, kind)`.
    fn child_section(&self, path: &str, key: &str, prop: &'a Value) -> Option<Child<'a>> {
        if prop.get("x-kiln-same-as").is_some() {
            // Another level of a table documented once (`[base]`).
            return None;
        }
        let s = self.resolve(prop);
        let joined = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        // `true`, `false` or a table (a part of `[base]`).
        if is_switch(s)
            && let Some(table) = s.get("anyOf").and_then(Value::as_array).and_then(|any| {
                any.iter()
                    .map(|a| self.resolve(a))
                    .find(|a| a.get("properties").is_some())
            })
        {
            return Some(Child {
                path: joined,
                schema: table,
                kind: SectionKind::Table,
            });
        }
        if s.get("properties").is_some() {
            return Some(Child {
                path: joined,
                schema: s,
                kind: SectionKind::Table,
            });
        }
        if let Some(items) = s.get("items").map(|i| self.resolve(i))
            && items.get("properties").is_some()
        {
            return Some(Child {
                path: joined,
                schema: items,
                kind: SectionKind::ArrayItem,
            });
        }
        if let Some(values) = s.get("additionalProperties").map(|v| self.resolve(v))
            && values.get("properties").is_some()
        {
            let name = prop
                .get("x-kiln-key")
                .and_then(Value::as_str)
                .unwrap_or("name");
            return Some(Child {
                path: format!("{joined}.<{name}>"),
                schema: values,
                kind: SectionKind::Table,
            });
        }
        None
    }

    fn table(&self, out: &mut String, path: &str, schema: &'a Value, kind: SectionKind) {
        let empty = Map::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Top-level tables in the order kiln.toml is usually written; keys within a table
        // alphabetically.
        let mut keys: Vec<&String> = props.keys().collect();
        if kind == SectionKind::Root {
            keys.sort_by_key(|k| TOP_KEYS.iter().position(|t| t == k).unwrap_or(usize::MAX));
        }
        match kind {
            SectionKind::Root => out.push_str("## Top-level tables\n\n"),
            SectionKind::Table => {
                let _ = writeln!(out, "## `[{path}]`\n");
            }
            SectionKind::ArrayItem => {
                let _ = writeln!(out, "## `[[{path}]]`\n");
            }
        }
        if kind != SectionKind::Root
            && let Some(d) = schema.get("description").and_then(Value::as_str)
        {
            let _ = writeln!(out, "{}\n", one_paragraph(d));
        }
        out.push_str("| Key | Type | Required | Default | Description |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        let mut children = Vec::new();
        for key in &keys {
            let Some(prop) = props.get(key.as_str()) else {
                continue;
            };
            let child = self.child_section(path, key, prop);
            let switch = is_switch(self.resolve(prop));
            let ty = match (&child, prop.get("x-kiln-same-as").and_then(Value::as_str)) {
                (_, Some(same)) => format!("table, the keys of `[{same}]`"),
                (Some(c), _) if c.kind == SectionKind::ArrayItem => {
                    format!("array of tables, see `[[{}]]`", c.path)
                }
                (Some(c), _) if switch => format!("boolean or table, see `[{}]`", c.path),
                (Some(c), _) => format!("table, see `[{}]`", c.path),
                (None, _) => self.type_name(prop),
            };
            let description = prop
                .get("description")
                .or_else(|| self.resolve(prop).get("description"))
                .and_then(Value::as_str)
                .map(one_paragraph)
                .unwrap_or_default();
            let default = prop.get("default").map(toml_value).unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{key}` | {} | {} | {} | {} |",
                cell(&ty),
                if required.contains(&key.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                cell(&default),
                cell(&description)
            );
            if let Some(c) = child {
                children.push(c);
            }
        }
        out.push('\n');
        for c in children {
            self.table(out, &c.path, c.schema, c.kind);
        }
    }

    fn type_name(&self, prop: &Value) -> String {
        let s = self.resolve(prop);
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            let list: Vec<String> = values.iter().map(toml_value).collect();
            return format!("one of {}", list.join(", "));
        }
        let range = match (
            s.get("minimum").and_then(Value::as_i64),
            s.get("maximum").and_then(Value::as_i64),
        ) {
            (Some(a), Some(b)) => format!(", {a} to {b}"),
            (Some(a), None) => format!(", {a} or more"),
            _ => String::new(),
        };
        match s.get("type").and_then(Value::as_str) {
            Some("string") => "string".into(),
            Some("integer") => format!("integer{range}"),
            Some("boolean") => "boolean".into(),
            Some("array") => match s.get("items") {
                Some(items) => format!("array of {}s", self.type_name(items)),
                None => "array".into(),
            },
            Some("object") => match s.get("additionalProperties") {
                Some(v) if v.is_object() && v.as_object().is_some_and(|o| !o.is_empty()) => {
                    format!("table of {}s", self.type_name(v))
                }
                _ => "table".into(),
            },
            Some(other) => other.into(),
            None => "any".into(),
        }
    }
}

/// A value that is `true`, `false` or a table (a part of `[base]`).
fn is_switch(s: &Value) -> bool {
    s.get("anyOf")
        .and_then(Value::as_array)
        .is_some_and(|any| any.iter().any(|a| a["type"] == "boolean"))
}

struct Child<'a> {
    path: String,
    schema: &'a Value,
    kind: SectionKind,
}

fn catalog_markdown(out: &mut String) {
    out.push_str(
        "## Service kinds\n\n\
         What `kind = \"...\"` of a `[services.<name>]` can be, from kiln's catalog. Each \
         kind's options go in the service's `options` table; the secrets it needs are \
         generated into the vault by `kiln secrets generate`, named \
         `<service>_<suffix>` (with `-` in the service name turned into `_`).\n\n\
         | Kind | Description | Default subdomain |\n| --- | --- | --- |\n",
    );
    for r in kiln_catalog::recipes() {
        let sub = match (r.http, r.default_subdomain) {
            (false, _) => "none: not served over HTTP".to_string(),
            (true, Some(s)) => format!("`{s}`"),
            (true, None) => "none: `subdomain` is required".to_string(),
        };
        let _ = writeln!(out, "| `{}` | {} | {} |", r.kind, cell(r.description), sub);
    }
    out.push('\n');
    for r in kiln_catalog::recipes() {
        let _ = writeln!(out, "### `{}`\n\n{}.\n", r.kind, capitalize(r.description));
        let mut facts = Vec::new();
        if let Some(image) = r.image {
            facts.push(format!("image `{image}:<version>`"));
        } else {
            facts.push("image from the `image` option, tagged `<version>`".into());
        }
        if r.needs_version {
            facts.push("`version` required".into());
        }
        if let Some(p) = r.port {
            facts.push(format!("listens on port {p}"));
        }
        if let Some(h) = r.health_path {
            facts.push(format!("health check `{h}`"));
        }
        let _ = writeln!(out, "{}.\n", capitalize(&facts.join("; ")));
        if r.options.is_empty() {
            out.push_str("No options.\n\n");
        } else {
            out.push_str("| Option | Type | Required | Description |\n| --- | --- | --- | --- |\n");
            for o in r.options {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    o.name,
                    cell(&option_type(o.kind)),
                    if o.required { "yes" } else { "no" },
                    cell(o.description)
                );
            }
            out.push('\n');
        }
        if !r.secrets.is_empty() {
            out.push_str(
                "| Secret | Generated as | Needed | Description |\n| --- | --- | --- | --- |\n",
            );
            for s in r.secrets {
                let when = match s.when_option {
                    Some(o) => format!("when `{o}` is set"),
                    None => "always".into(),
                };
                let _ = writeln!(
                    out,
                    "| `<service>_{}` | {} | {} | {} |",
                    s.suffix,
                    cell(&secret_rule(&s.rule)),
                    when,
                    cell(s.description)
                );
            }
            out.push('\n');
        }
        if !r.volumes.is_empty() {
            out.push_str("| Volume | Mounted at | Holds |\n| --- | --- | --- |\n");
            for v in r.volumes {
                let _ = writeln!(
                    out,
                    "| `{}` | `{}` | {} |",
                    v.name,
                    v.container_path,
                    cell(v.description)
                );
            }
            out.push('\n');
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A doc comment's paragraphs on one line (Markdown tables hold no line breaks).
fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    one_paragraph(text).replace('|', "\\|")
}

/// A JSON default or enum value as it is written in kiln.toml.
fn toml_value(v: &Value) -> String {
    let inner = match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(toml_value)
                .map(|s| s.trim_matches('`').to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    };
    format!("`{inner}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{BASE_KEYS, ROLE_KEYS};

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    }

    fn sorted(k: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    /// The top level and roles are decoded by hand (key by key): their schema must list
    /// exactly the keys the decoder accepts.
    #[test]
    fn hand_decoded_tables_and_their_schema_agree() {
        let schema = config_schema();
        assert_eq!(keys(&schema), sorted(TOP_KEYS));
        let role = schema
            .pointer("/definitions/Role")
            .cloned()
            .unwrap_or_default();
        assert_eq!(keys(&role), sorted(ROLE_KEYS));
        let base = schema
            .pointer("/definitions/Base")
            .cloned()
            .unwrap_or_default();
        assert_eq!(keys(&base), sorted(BASE_KEYS));
        assert_eq!(base["additionalProperties"], json!(false));
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(role["additionalProperties"], json!(false));
    }

    #[test]
    fn doc_comments_defaults_and_catalog_reach_the_schema() {
        let schema = config_schema();
        let host = &schema["definitions"]["Host"];
        assert_eq!(host["properties"]["ssh_port"]["default"], json!(22));
        assert!(
            host["properties"]["admin_user"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("sudo"))
        );
        assert_eq!(
            schema["definitions"]["Directory"]["properties"]["mode"]["default"],
            json!("0755")
        );
        let kinds = &schema["definitions"]["Service"]["properties"]["kind"]["enum"];
        assert_eq!(
            kinds.as_array().map(Vec::len),
            Some(kiln_catalog::recipes().len())
        );
        assert_eq!(schema["required"], json!(["project", "environments"]));
    }

    #[test]
    fn markdown_names_every_section_and_kind() {
        let md = config_reference_markdown();
        for section in [
            "## `[project]`",
            "## `[environments.<env>]`",
            "## `[environments.<env>.hosts.<role>]`",
            "## `[services.<name>]`",
            "## `[backups.retention]`",
            "## `[roles.<role>]`",
            "## `[[roles.<role>.files]]`",
            "## `[base]`",
            "## `[base.sshd]`",
            "## `[base.wireguard]`",
            "| `sshd` | boolean or table, see `[base.sshd]` | no | `true` |",
            "| `base` | table, the keys of `[base]` |",
            "| `rollback_seconds` | integer, 20 to 600 | no | `60` |",
            "| `ssh_port` | integer, 1 to 65535 | no | `22` |",
        ] {
            assert!(md.contains(section), "{section} missing from:\n{md}");
        }
        for r in kiln_catalog::recipes() {
            assert!(md.contains(&format!("### `{}`", r.kind)), "{}", r.kind);
        }
    }
}
