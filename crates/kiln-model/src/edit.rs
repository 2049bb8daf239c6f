//! The one kiln.toml editor: the few changes kiln itself makes to the user's file (pinning a
//! host's SSH keys after `kiln trust`, recording the lab's servers and its ACME directory
//! after `kiln lab up`),
//! made with toml_edit so that comments, order and layout survive, and written atomically
//! (a temporary file in the same folder, then a rename).
//!
//! Owns: reading the document, changing those keys, writing it back; errors name the file.
//! Must not: validate (that is [`crate::load`]'s job, the caller reloads when it needs
//! the model), decide *what* to pin or record (kiln-ops does), or print.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value, value};

/// Why kiln.toml could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key kiln must set sits where kiln.toml does not expect it.
    #[error("{}: {message}", .path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The edited file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A lab server as kiln.toml's `lab` environment records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// The host's role (the lab names its servers after them).
    pub role: String,
    /// Its address on the lab network.
    pub address: String,
    /// SSH port.
    pub ssh_port: u16,
    /// The account kiln logs in with.
    pub admin_user: String,
    /// OpenSSH public key lines (`type base64`).
    pub host_keys: Vec<String>,
}

/// The environment the lab records its servers in.
pub const LAB_ENVIRONMENT: &str = "lab";

/// Sets `host_keys` of `[environments.<env>.hosts.<role>]` (which must exist), keeping the
/// rest of the file as it was.
pub fn set_host_keys(path: &Path, env: &str, role: &str, keys: &[String]) -> Result<(), EditError> {
    edit(path, |doc| pin_keys(doc, env, role, keys))
}

/// Sets address, ssh_port, admin_user and host_keys of each lab server's role in the `lab`
/// environment, creating the tables when missing; other keys and comments are kept.
pub fn record_lab_hosts(path: &Path, hosts: &[LabHost]) -> Result<(), EditError> {
    edit(path, |doc| record(doc, hosts))
}

/// Sets `acme_ca` of `[environments.<env>]` (which must exist) to the ACME directory
/// `{ directory = "…", ca_root = "…" }` (e.g. the lab's Pebble after `kiln lab up`), keeping
/// the comment beside an existing value, an `[environments.<env>.acme_ca]` table's form,
/// and the rest of the file. `ca_root` is written as given (kiln.toml resolves a relative
/// one against its folder).
pub fn set_acme_ca(
    path: &Path,
    env: &str,
    directory: &str,
    ca_root: &Path,
) -> Result<(), EditError> {
    let ca_root = ca_root.to_str().ok_or_else(|| EditError::Shape {
        path: path.into(),
        message: format!(
            "acme_ca's ca_root {} is not UTF-8, kiln.toml cannot hold it",
            ca_root.display()
        ),
    })?;
    edit(path, |doc| acme_ca(doc, env, directory, ca_root))
}

/// Sets `backup_repository` of `[environments.<env>]` (which must exist) to the S3
/// server's `endpoint`, `bucket` and `region` (e.g. the lab's S3 after `kiln lab up --s3`),
/// keeping its other keys (`prefix`), its form (inline or table), its comment and the rest
/// of the file.
pub fn set_backup_repository(
    path: &Path,
    env: &str,
    endpoint: &str,
    bucket: &str,
    region: &str,
) -> Result<(), EditError> {
    edit(path, |doc| {
        let environment = doc
            .get_mut("environments")
            .and_then(|e| e.get_mut(env))
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| format!("no [environments.{env}] table"))?;
        let keys = [
            ("endpoint", endpoint),
            ("bucket", bucket),
            ("region", region),
        ];
        match environment.get_mut("backup_repository") {
            Some(Item::Table(t)) => {
                for (k, v) in keys {
                    set(t, k, v.into());
                }
            }
            Some(Item::Value(Value::InlineTable(t))) => {
                for (k, v) in keys {
                    match t.get_mut(k) {
                        Some(old) => {
                            let decor = old.decor().clone();
                            *old = v.into();
                            *old.decor_mut() = decor;
                        }
                        None => {
                            t.insert(k, v.into());
                        }
                    }
                }
            }
            Some(_) => {
                return Err(format!(
                    "`environments.{env}.backup_repository` must be a table"
                ));
            }
            None => {
                let mut new = InlineTable::new();
                for (k, v) in keys {
                    new.insert(k, v.into());
                }
                environment.insert("backup_repository", value(new));
            }
        }
        Ok(())
    })
}

/// Reads `path`, applies `change`, writes the result atomically.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), String>,
) -> Result<(), EditError> {
    let text = std::fs::read_to_string(path).map_err(|source| EditError::Read {
        path: path.into(),
        source,
    })?;
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| EditError::Syntax {
                path: path.into(),
                message: e.to_string(),
            })?;
    change(&mut doc).map_err(|message| EditError::Shape {
        path: path.into(),
        message,
    })?;
    write_atomically(path, &doc.to_string())
}

/// Writes `text` to a temporary sibling of `path` (same mode), syncs it, renames it over.
fn write_atomically(path: &Path, text: &str) -> Result<(), EditError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| crate::CONFIG_FILE.into());
    let tmp = path.with_file_name(format!(".{name}.kiln-tmp.{}", std::process::id()));
    let werr = |source| EditError::Write {
        path: tmp.clone(),
        source,
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(werr)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions()).map_err(werr)?;
        }
        f.write_all(text.as_bytes()).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(|source| EditError::Write {
            path: path.into(),
            source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A key array, one key per line when there are several.
fn keys_array(keys: &[String], always_multiline: bool) -> Array {
    let mut arr = Array::new();
    for k in keys {
        arr.push(k.as_str());
    }
    if always_multiline || keys.len() > 1 {
        for v in arr.iter_mut() {
            v.decor_mut().set_prefix("\n  ");
            v.decor_mut().set_suffix("");
        }
        arr.set_trailing("\n");
        arr.set_trailing_comma(true);
    }
    arr
}

fn pin_keys(doc: &mut DocumentMut, env: &str, role: &str, keys: &[String]) -> Result<(), String> {
    let host = doc
        .get_mut("environments")
        .and_then(|e| e.get_mut(env))
        .and_then(|e| e.get_mut("hosts"))
        .and_then(|h| h.get_mut(role))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("no [environments.{env}.hosts.{role}] table"))?;
    host.insert("host_keys", value(keys_array(keys, false)));
    Ok(())
}

fn table<'a>(parent: &'a mut Table, key: &str, what: &str) -> Result<&'a mut Table, String> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if let Some(inline) = item.as_inline_table() {
        *item = Item::Table(inline.clone().into_table());
    }
    item.as_table_mut()
        .ok_or_else(|| format!("`{what}` must be a table"))
}

/// Sets `key` to `new`, keeping the comment and spacing around an existing value.
fn set(table: &mut Table, key: &str, mut new: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        None => {
            table.insert(key, Item::Value(new));
        }
    }
}

fn acme_ca(doc: &mut DocumentMut, env: &str, directory: &str, ca_root: &str) -> Result<(), String> {
    let environment = doc
        .get_mut("environments")
        .and_then(|e| e.get_mut(env))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("no [environments.{env}] table"))?;
    match environment.get_mut("acme_ca") {
        // `[environments.<env>.acme_ca]`: stays a table.
        Some(Item::Table(t)) => {
            t.retain(|k, _| k == "directory" || k == "ca_root");
            set(t, "directory", directory.into());
            set(t, "ca_root", ca_root.into());
        }
        Some(Item::Value(old)) => {
            let mut new = InlineTable::new();
            new.insert("directory", directory.into());
            new.insert("ca_root", ca_root.into());
            let mut new = Value::InlineTable(new);
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        Some(_) => return Err(format!("`environments.{env}.acme_ca` must be a value")),
        None => {
            let mut new = InlineTable::new();
            new.insert("directory", directory.into());
            new.insert("ca_root", ca_root.into());
            environment.insert("acme_ca", value(new));
        }
    }
    Ok(())
}

fn record(doc: &mut DocumentMut, hosts: &[LabHost]) -> Result<(), String> {
    let envs = table(doc.as_table_mut(), "environments", "environments")?;
    let lab = table(envs, LAB_ENVIRONMENT, "environments.lab")?;
    let tables = table(lab, "hosts", "environments.lab.hosts")?;
    tables.set_implicit(true);
    for h in hosts {
        let host = table(
            tables,
            &h.role,
            &format!("environments.lab.hosts.{}", h.role),
        )?;
        host.set_implicit(false);
        set(host, "address", h.address.clone().into());
        set(host, "ssh_port", i64::from(h.ssh_port).into());
        set(host, "admin_user", h.admin_user.clone().into());
        set(
            host,
            "host_keys",
            Value::Array(keys_array(&h.host_keys, true)),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    const DOC: &str = r#"# my infra
[environments.lab] # the lab
domain = "x.lab"

[environments.lab.hosts.services]
address = "10.77.0.11"   # first server
ssh_port = 2222
admin_user = "kiln"

[environments.prod.hosts.services]
address = "203.0.113.10"
host_keys = ["ssh-ed25519 OLD"]
"#;

    /// The `host_keys` of a host, read back from the document.
    fn pinned(doc: &DocumentMut, env: &str, role: &str) -> Vec<String> {
        doc["environments"][env]["hosts"][role]
            .get("host_keys")
            .and_then(Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    // Moved from kiln-cli's trust.rs with `pin`.
    #[test]
    fn pinning_keeps_comments_and_replaces_old_keys() {
        let mut doc: DocumentMut = DOC.parse().unwrap();
        let k = ED.to_owned();
        pin_keys(&mut doc, "lab", "services", std::slice::from_ref(&k)).unwrap();
        pin_keys(&mut doc, "prod", "services", &[k]).unwrap();
        let out = doc.to_string();
        assert!(
            out.contains("# my infra")
                && out.contains("# first server")
                && out.contains("# the lab"),
            "{out}"
        );
        assert!(!out.contains("OLD"), "{out}");
        let doc: DocumentMut = out.parse().unwrap();
        assert_eq!(pinned(&doc, "lab", "services"), [ED]);
        let err = pin_keys(&mut doc.clone(), "lab", "db", &[]).unwrap_err();
        assert_eq!(err, "no [environments.lab.hosts.db] table");
    }

    fn lab_host(name: &str, addr: &str) -> LabHost {
        LabHost {
            role: name.into(),
            address: addr.into(),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: vec![
                "ssh-ed25519 AAAAC3Nza".into(),
                "ecdsa-sha2-nistp256 AAAAE2V".into(),
            ],
        }
    }

    fn roles_of(doc: &DocumentMut) -> Vec<String> {
        doc.get("environments")
            .and_then(|e| e.get("lab"))
            .and_then(|l| l.get("hosts"))
            .and_then(|h| h.as_table_like())
            .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }

    // Moved from kiln-lab's config.rs with `record_hosts`.
    #[test]
    fn updates_existing_roles_and_keeps_comments_and_other_keys() {
        let text = "# my infra\n[project]\nname = \"x\" # inline comment\n\n[environments.lab]\ndomain = \"lab.test\"\n\n# the services host\n[environments.lab.hosts.services]\naddress = \"10.0.0.1\"\nos = \"debian\" # keep me\n";
        let mut doc: DocumentMut = text.parse().unwrap();
        assert_eq!(roles_of(&doc), vec!["services".to_string()]);
        record(
            &mut doc,
            &[
                lab_host("services", "10.77.1.11"),
                lab_host("monitoring", "10.77.1.12"),
            ],
        )
        .unwrap();
        let out = doc.to_string();
        assert!(out.contains("# my infra"), "{out}");
        assert!(out.contains("name = \"x\" # inline comment"), "{out}");
        assert!(
            out.contains("# the services host\n[environments.lab.hosts.services]"),
            "{out}"
        );
        assert!(out.contains("os = \"debian\" # keep me"), "{out}");
        assert!(out.contains("address = \"10.77.1.11\""), "{out}");
        // A value's own comment stays with the new value.
        let mut doc: DocumentMut =
            "[environments.lab.hosts.web]\naddress = \"10.0.0.1\"   # replaced\n"
                .parse()
                .unwrap();
        record(&mut doc, &[lab_host("web", "10.77.1.11")]).unwrap();
        assert!(
            doc.to_string()
                .contains("address = \"10.77.1.11\"   # replaced\n"),
            "{doc}"
        );
        assert!(
            out.contains("[environments.lab.hosts.monitoring]\naddress = \"10.77.1.12\""),
            "{out}"
        );
        assert!(
            out.contains(
                "host_keys = [\n  \"ssh-ed25519 AAAAC3Nza\",\n  \"ecdsa-sha2-nistp256 AAAAE2V\",\n]"
            ),
            "{out}"
        );
        // Parses back with the same roles.
        let again: DocumentMut = out.parse().unwrap();
        assert_eq!(
            roles_of(&again),
            vec!["services".to_string(), "monitoring".to_string()]
        );
    }

    #[test]
    fn the_acme_directory_replaces_a_named_ca_keeping_comments() {
        let text = "# infra\n[environments.lab] # the lab\ndomain = \"x.test\"\nacme_ca = \"internal\"   # kiln lab up records the real one\napex_host = \"web\"\n\n[environments.prod]\nacme_ca = \"letsencrypt\"\n";
        let mut doc: DocumentMut = text.parse().unwrap();
        acme_ca(
            &mut doc,
            "lab",
            "https://10.77.3.1:14000/dir",
            "/var/lib/kiln-lab/default/acme/ca.pem",
        )
        .unwrap();
        let out = doc.to_string();
        assert_eq!(
            out,
            "# infra\n[environments.lab] # the lab\ndomain = \"x.test\"\nacme_ca = { directory = \"https://10.77.3.1:14000/dir\", ca_root = \"/var/lib/kiln-lab/default/acme/ca.pem\" }   # kiln lab up records the real one\napex_host = \"web\"\n\n[environments.prod]\nacme_ca = \"letsencrypt\"\n"
        );
        // Again (a new lab, another subnet): replaced, not added.
        acme_ca(&mut doc, "lab", "https://10.77.4.1:14000/dir", "/ca.pem").unwrap();
        let out = doc.to_string();
        assert_eq!(out.matches("acme_ca = {").count(), 1, "{out}");
        assert!(
            out.contains("10.77.4.1") && !out.contains("10.77.3.1"),
            "{out}"
        );
        // Missing: added; a table stays a table.
        let mut doc: DocumentMut = "[environments.lab]\ndomain = \"x.test\"\n".parse().unwrap();
        acme_ca(&mut doc, "lab", "https://d/dir", "/r.pem").unwrap();
        assert!(
            doc.to_string()
                .contains("acme_ca = { directory = \"https://d/dir\", ca_root = \"/r.pem\" }"),
            "{doc}"
        );
        let mut doc: DocumentMut =
            "[environments.lab]\ndomain = \"x.test\"\n\n[environments.lab.acme_ca]\ndirectory = \"https://old/dir\" # old\n"
                .parse()
                .unwrap();
        acme_ca(&mut doc, "lab", "https://d/dir", "/r.pem").unwrap();
        assert!(
            doc.to_string().contains(
                "[environments.lab.acme_ca]\ndirectory = \"https://d/dir\" # old\nca_root = \"/r.pem\"\n"
            ),
            "{doc}"
        );
        let err = acme_ca(&mut doc, "staging", "https://d/dir", "/r.pem").unwrap_err();
        assert_eq!(err, "no [environments.staging] table");
    }

    #[test]
    fn a_non_table_environment_is_an_error_not_a_panic() {
        let mut doc: DocumentMut = "environments = 3\n".parse().unwrap();
        let err = record(&mut doc, &[lab_host("a", "10.77.1.11")]).unwrap_err();
        assert!(err.contains("`environments` must be a table"), "{err}");
    }

    #[test]
    fn writes_atomically_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("kiln-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kiln.toml");
        std::fs::write(&path, DOC).unwrap();
        set_host_keys(&path, "lab", "services", &[ED.to_owned()]).unwrap();
        let doc: DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(pinned(&doc, "lab", "services"), [ED]);
        // Nothing but kiln.toml is left in the folder.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["kiln.toml"]);
        let err = set_host_keys(&path, "lab", "db", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no [environments.lab.hosts.db] table", path.display())
        );
        std::fs::write(&path, "[[[").unwrap();
        let err = record_lab_hosts(&path, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{err}"
        );
        let missing = dir.join("missing.toml");
        let err = record_lab_hosts(&missing, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", missing.display()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
