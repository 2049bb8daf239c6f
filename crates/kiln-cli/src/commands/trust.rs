//! `kiln trust ROLE`: asks the host for its SSH host keys (ssh-keyscan), shows their
//! SHA256 fingerprints as `ssh-keygen -l` does, explains how to check them on the
//! provider's console, and after confirmation (or `--yes`) pins them into kiln.toml under
//! `[environments.<env>.hosts.<role>] host_keys`, keeping the file's comments and layout.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use kiln_converge::host::keys::HostKey;
use kiln_converge::host::ssh::keyscan;
use toml_edit::{DocumentMut, Item};

use crate::context::Context;
use crate::error::{self, CliError, CmdResult};
use crate::printer::Printer;

/// Check and pin a host's SSH host keys.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host's role (e.g. services).
    role: String,
    /// Environment (default: the only one, if there is only one).
    #[arg(long, short, env = "KILN_ENV")]
    env: Option<String>,
    /// Pin without asking (only after checking the fingerprints another way).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Where a role's host is, read from the document.
#[derive(Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub env: String,
    pub address: String,
    pub port: u16,
    pub pinned: Vec<String>,
}

/// Finds `[environments.<env>.hosts.<role>]` in a kiln.toml document.
pub fn find_host(
    doc: &DocumentMut,
    file: &Path,
    env: Option<&str>,
    role: &str,
) -> Result<HostEntry, String> {
    let envs = doc
        .get("environments")
        .and_then(Item::as_table_like)
        .ok_or_else(|| format!("{}: no [environments] table", file.display()))?;
    let names: Vec<String> = envs.iter().map(|(k, _)| k.to_owned()).collect();
    let env = match env {
        Some(e) => e.to_owned(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(format!(
                "{}: several environments ({}): choose one with --env",
                file.display(),
                names.join(", ")
            ));
        }
    };
    let host = envs
        .get(&env)
        .and_then(|e| e.get("hosts"))
        .and_then(|h| h.get(role))
        .ok_or_else(|| format!("{}: no [environments.{env}.hosts.{role}]", file.display()))?;
    let address = host
        .get("address")
        .and_then(Item::as_str)
        .ok_or_else(|| {
            format!(
                "{}: environments.{env}.hosts.{role} has no address",
                file.display()
            )
        })?
        .to_owned();
    let port = match host.get("ssh_port").and_then(Item::as_integer) {
        None => 22,
        Some(p) => u16::try_from(p).map_err(|_| {
            format!(
                "{}: environments.{env}.hosts.{role}.ssh_port {p} is not a port",
                file.display()
            )
        })?,
    };
    let pinned = host
        .get("host_keys")
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(HostEntry {
        env,
        address,
        port,
        pinned,
    })
}

fn confirm(p: &Printer, question: &str) -> Result<bool, CliError> {
    p.prompt(format_args!("{question} [y/N] "));
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(miette::miette!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    let path = ctx.config_path()?.to_owned();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::invalid(miette::miette!("cannot read {}: {e}", path.display())))?;
    let doc: DocumentMut = text
        .parse()
        .map_err(|e| CliError::invalid(miette::miette!("{}: {e}", path.display())))?;
    let entry = find_host(&doc, &path, args.env.as_deref(), &args.role)
        .map_err(|m| CliError::invalid(miette::miette!("{m}")))?;
    let keys = keyscan(&args.role, &entry.address, entry.port, 10)
        .map_err(|e| CliError::failed(miette::miette!("{e}")))?;

    p.outln(format_args!(
        "Host keys presented by {} ({} port {}, environment {}):",
        args.role, entry.address, entry.port, entry.env
    ));
    for k in &keys {
        p.outln(format_args!("  {}", k.describe()));
    }
    let pinned: Vec<HostKey> = entry
        .pinned
        .iter()
        .filter_map(|l| HostKey::parse(l).ok())
        .collect();
    let same = !pinned.is_empty() && pinned.iter().all(|p| keys.contains(p));
    if same {
        p.outln(format_args!(
            "\nThese keys are already pinned in {}. Nothing to do.",
            path.display()
        ));
        return Ok(ExitCode::from(error::SUCCESS));
    }
    if !pinned.is_empty() {
        p.outln("\nWARNING: kiln.toml pins different keys for this host:");
        for k in &pinned {
            p.outln(format_args!("  {}", k.describe()));
        }
        p.outln("A reinstalled server gets new keys; otherwise this may be an attack.");
    }
    p.outln(format_args!(
        "\nCheck these fingerprints through a channel nobody can tamper with before trusting them:\n\
         open your provider's web console (VNC or serial console) for this server, log in, and run\n\
         \n    for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf \"$f\"; done\n\n\
         The SHA256:… values must be exactly the ones above. Some providers also print them in\n\
         the server's first-boot log (\"console output\")."
    ));
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::invalid(miette::miette!(
                "not on a terminal: nothing pinned. Check the fingerprints, then run again with --yes"
            )));
        }
        if !confirm(p, &format!("Pin these keys in {}?", path.display()))? {
            p.outln("Nothing pinned.");
            return Ok(ExitCode::from(error::FAILURE));
        }
    }
    let lines: Vec<String> = keys.iter().map(HostKey::line).collect();
    kiln_model::edit::set_host_keys(&path, &entry.env, &args.role, &lines)
        .map_err(|e| CliError::failed(miette::miette!("{e}")))?;
    p.outln(format_args!(
        "Pinned {} key(s) for {} in {}.",
        keys.len(),
        args.role,
        path.display()
    ));
    Ok(ExitCode::from(error::SUCCESS))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn finds_the_host_and_needs_env_when_ambiguous() {
        let doc: DocumentMut = DOC.parse().unwrap();
        let e = find_host(&doc, Path::new("kiln.toml"), Some("lab"), "services").unwrap();
        assert_eq!(
            e,
            HostEntry {
                env: "lab".into(),
                address: "10.77.0.11".into(),
                port: 2222,
                pinned: vec![]
            }
        );
        let err = find_host(&doc, Path::new("kiln.toml"), None, "services").unwrap_err();
        assert_eq!(
            err,
            "kiln.toml: several environments (lab, prod): choose one with --env"
        );
        let err = find_host(&doc, Path::new("kiln.toml"), Some("lab"), "db").unwrap_err();
        assert_eq!(err, "kiln.toml: no [environments.lab.hosts.db]");
    }
}
