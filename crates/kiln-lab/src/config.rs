//! Reads the host roles of kiln.toml's `lab` environment and records the lab servers' addresses
//! and host keys there (`[environments.lab.hosts.<role>]`), editing the file in place with
//! toml_edit so comments and layout survive.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::error::{LabError, Result, io};
use crate::server::Server;

fn parse(path: &Path) -> Result<DocumentMut> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    text.parse::<DocumentMut>().map_err(|e| LabError::Config {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The role names of `[environments.lab.hosts.*]`, in file order (empty when there is none).
pub fn lab_roles(path: &Path) -> Result<Vec<String>> {
    let doc = parse(path)?;
    Ok(roles_of(&doc))
}

fn roles_of(doc: &DocumentMut) -> Vec<String> {
    doc.get("environments")
        .and_then(|e| e.get("lab"))
        .and_then(|l| l.get("hosts"))
        .and_then(|h| h.as_table_like())
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// Sets address, ssh_port, admin_user and host_keys of each server's role in the `lab`
/// environment, creating the tables when missing; other keys and comments are kept.
pub fn record_hosts(path: &Path, servers: &[Server]) -> Result<()> {
    let mut doc = parse(path)?;
    update(&mut doc, servers).map_err(|message| LabError::Config {
        path: path.into(),
        message,
    })?;
    let tmp = path.with_extension("toml.kiln-lab.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replacing", path))
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

fn update(doc: &mut DocumentMut, servers: &[Server]) -> Result<(), String> {
    let envs = table(doc.as_table_mut(), "environments", "environments")?;
    let lab = table(envs, "lab", "environments.lab")?;
    let hosts = table(lab, "hosts", "environments.lab.hosts")?;
    hosts.set_implicit(true);
    for s in servers {
        let host = table(
            hosts,
            &s.name,
            &format!("environments.lab.hosts.{}", s.name),
        )?;
        host.set_implicit(false);
        host["address"] = value(s.address.to_string());
        host["ssh_port"] = value(i64::from(s.ssh_port));
        host["admin_user"] = value(s.admin_user.clone());
        let mut keys = Array::new();
        for k in &s.host_keys {
            keys.push_formatted(toml_edit::Value::from(k.clone()).decorated("\n  ", ""));
        }
        keys.set_trailing("\n");
        keys.set_trailing_comma(true);
        host["host_keys"] = value(keys);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, addr: &str) -> Server {
        Server {
            name: name.into(),
            address: addr.parse().unwrap(),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: vec![
                "ssh-ed25519 AAAAC3Nza".into(),
                "ecdsa-sha2-nistp256 AAAAE2V".into(),
            ],
            identity_file: "/k".into(),
            known_hosts: "/kh".into(),
        }
    }

    #[test]
    fn updates_existing_roles_and_keeps_comments_and_other_keys() {
        let text = "# my infra\n[project]\nname = \"x\" # inline comment\n\n[environments.lab]\ndomain = \"lab.test\"\n\n# the services host\n[environments.lab.hosts.services]\naddress = \"10.0.0.1\"\nos = \"debian\" # keep me\n";
        let mut doc: DocumentMut = text.parse().unwrap();
        assert_eq!(roles_of(&doc), vec!["services".to_string()]);
        update(
            &mut doc,
            &[
                server("services", "10.77.1.11"),
                server("monitoring", "10.77.1.12"),
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
    fn a_non_table_environment_is_an_error_not_a_panic() {
        let mut doc: DocumentMut = "environments = 3\n".parse().unwrap();
        let err = update(&mut doc, &[server("a", "10.77.1.11")]).unwrap_err();
        assert!(err.contains("`environments` must be a table"), "{err}");
    }
}
