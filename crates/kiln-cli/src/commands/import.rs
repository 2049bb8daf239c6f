//! `kiln import`: bring secrets from other tools into the vault. Today: ansible-vault
//! (inline `!vault |` values and whole-file vaults). Reads and decrypts every file first,
//! then writes: a problem in any file means nothing is stored. Prints the mapping
//! (variable → secret, file:line), never a value.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use kiln_secrets::Secret;
use kiln_secrets::ansible::{self, ImportedVar};

use crate::args::VaultArgs;
use crate::context::Context;
use crate::error::{CliError, CmdResult};

/// Import secrets from other tools (ansible-vault).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Import the `!vault` values (or every variable of a whole-file vault) of Ansible vars files.
    #[command(after_help = "Examples:
  kiln import ansible-vault group_vars/all/vault.yml --vault-password-file ~/.vault_pass
  kiln import ansible-vault host_vars/*.yml --env staging")]
    AnsibleVault(AnsibleArgs),
}

#[derive(Debug, clap::Args)]
pub struct AnsibleArgs {
    /// Ansible vars files (YAML with `!vault |` values, or whole-file encrypted).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// File holding the ansible-vault password (an executable file is run, as Ansible does).
    #[arg(long, value_name = "FILE")]
    pub vault_password_file: Option<PathBuf>,
    /// Replace secrets that already exist in the vault with a different value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub vault: VaultArgs,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    match args.command {
        Sub::AnsibleVault(a) => ansible_vault(ctx, a),
    }
}

fn ansible_vault(ctx: &Context, a: AnsibleArgs) -> CmdResult {
    // A typo must not create a new vault folder: the environment must be declared.
    let env = ctx.environment(a.vault.env.as_deref())?.name.clone();
    let password = vault_password(a.vault_password_file.as_deref())?;

    // 1. Read and decrypt everything (no vault access yet).
    let mut vars: Vec<ImportedVar> = vec![];
    for file in &a.files {
        let contents = fs::read_to_string(file)
            .map_err(|e| CliError::invalid(miette::miette!("{}: {e}", file.display())))?;
        let found = ansible::read_vars_file(file, &contents, &password)?;
        vars.extend(found);
    }
    let mut seen: BTreeMap<&str, &ImportedVar> = BTreeMap::new();
    for v in &vars {
        if let Some(first) = seen.insert(&v.name, v) {
            return Err(CliError::invalid(miette::miette!(
                help =
                    "keep one of them (or import the files separately into different environments)",
                "`{}` is defined twice: {} and {}",
                v.name,
                location(first),
                location(v)
            )));
        }
    }

    // 2. Compare with the vault; refuse to change values unless asked.
    let vault = ctx.open_or_create_vault(&env, &a.vault.unlock())?;
    let mut plan = vec![];
    let mut conflicts = vec![];
    for v in &vars {
        let status = if vault.contains(&v.name)? {
            let current = vault.get(&v.name)?;
            if current == v.value {
                "unchanged"
            } else if a.overwrite {
                "replaced"
            } else {
                conflicts.push(v);
                continue;
            }
        } else {
            "created"
        };
        plan.push((v, status));
    }
    if !conflicts.is_empty() {
        let list: Vec<String> = conflicts
            .iter()
            .map(|v| format!("`{}` ({})", v.name, location(v)))
            .collect();
        return Err(CliError::invalid(miette::miette!(
            help = "pass --overwrite to replace them; nothing was imported",
            "already in the vault of `{}` with a different value: {}",
            env,
            list.join(", ")
        )));
    }

    // 3. Write and report.
    let width = plan
        .iter()
        .map(|(v, _)| location(v).len())
        .max()
        .unwrap_or(0);
    for (v, status) in &plan {
        if *status != "unchanged" {
            vault.set(&v.name, &v.value)?;
        }
        ctx.printer.outln(format_args!(
            "{:width$}  {}  ->  secrets/{}/{}.age  ({status})",
            location(v),
            v.name,
            env,
            v.name
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn location(v: &ImportedVar) -> String {
    if v.whole_file {
        format!("{} (vault file, line {})", v.file.display(), v.line)
    } else {
        format!("{}:{}", v.file.display(), v.line)
    }
}

/// The ansible-vault password: from the file (run when executable, like Ansible), or a
/// prompt without echo.
fn vault_password(file: Option<&Path>) -> Result<Secret, CliError> {
    let text = match file {
        Some(f) => {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(f).map_err(|e| {
                CliError::invalid(miette::miette!("vault password file {}: {e}", f.display()))
            })?;
            if meta.permissions().mode() & 0o111 != 0 {
                let out = Command::new(f).output().map_err(|e| {
                    CliError::invalid(miette::miette!(
                        "cannot run the vault password script {}: {e}",
                        f.display()
                    ))
                })?;
                if !out.status.success() {
                    return Err(CliError::invalid(miette::miette!(
                        "the vault password script {} failed ({})",
                        f.display(),
                        out.status
                    )));
                }
                zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                zeroize::Zeroizing::new(fs::read_to_string(f).map_err(|e| {
                    CliError::invalid(miette::miette!("vault password file {}: {e}", f.display()))
                })?)
            }
        }
        None if io::stdin().is_terminal() => zeroize::Zeroizing::new(
            rpassword::prompt_password("ansible-vault password: ").map_err(|e| {
                CliError::failed(miette::miette!("reading the password failed: {e}"))
            })?,
        ),
        None => {
            return Err(CliError::invalid(miette::miette!(
                help = "pass --vault-password-file FILE",
                "no ansible-vault password: not on a terminal"
            )));
        }
    };
    // Ansible strips surrounding whitespace from password files.
    let p = text.trim();
    if p.is_empty() {
        return Err(CliError::invalid(miette::miette!(
            "the ansible-vault password is empty"
        )));
    }
    Ok(Secret::new(p))
}
