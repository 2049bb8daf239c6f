//! clap arguments that several commands share. Each converts into the library's own
//! options type: no clap type crosses into a library API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_converge::desired::SecretSource;
use kiln_converge::run::Job;
use kiln_ops::jobs::JobOptions;
use kiln_ops::vault::UnlockOptions;
use kiln_secrets::Secret;

use crate::error::CliError;

/// How to find and unlock the vault (`kiln secrets`, `kiln import`).
#[derive(Debug, clap::Args)]
pub struct VaultArgs {
    /// Environment whose secrets to use (default: the only environment, else production).
    #[arg(long, global = true, env = "KILN_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// Read the vault passphrase from this file (its content, final newline removed).
    #[arg(long, global = true, env = "KILN_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run this command (with sh) and use its output as the vault passphrase,
    /// e.g. "pass show kiln/vault".
    #[arg(
        long,
        global = true,
        value_name = "COMMAND",
        conflicts_with = "passphrase_file"
    )]
    pub passphrase_command: Option<String>,
    /// Unlock with an age identity file instead of the passphrase: a recovery key or the
    /// private key of a recipient listed in secrets/recipients.txt. Takes precedence over
    /// the passphrase options.
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
}

impl VaultArgs {
    pub fn unlock(&self) -> UnlockOptions {
        UnlockOptions {
            passphrase_file: self.passphrase_file.clone(),
            passphrase_command: self.passphrase_command.clone(),
            identities: self.identity.clone(),
        }
    }
}

/// Which hosts, and how to reach them (plan and apply).
#[derive(Debug, Clone, clap::Args)]
pub struct Targeting {
    /// Environment to work on (production, staging, lab…).
    #[arg(long, short, env = "KILN_ENV")]
    pub env: Option<String>,
    /// Only the host playing this role (repeatable).
    #[arg(long = "host", value_name = "ROLE")]
    pub hosts: Vec<String>,
    /// Private key for SSH (default: for a lab environment, the running lab's operator key;
    /// otherwise whatever your ssh configuration uses).
    #[arg(long, env = "KILN_SSH_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Ask once for the sudo password of the admin user (sent on stdin, never in argv).
    #[arg(long)]
    pub ask_sudo_password: bool,
    /// Desired states and connections from a JSON file instead of kiln.toml (development).
    #[arg(long, value_name = "FILE", hide = true)]
    pub state: Option<PathBuf>,
    /// Hosts converged in parallel.
    #[arg(long, short = 'j', default_value_t = 8, value_name = "N")]
    pub jobs: usize,
    /// Vault passphrase file, for templates and services that use secrets.
    #[arg(long, env = "KILN_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run this command (with sh) and use its output as the vault passphrase.
    #[arg(long, value_name = "COMMAND", conflicts_with = "passphrase_file")]
    pub passphrase_command: Option<String>,
    /// Unlock the vault with an age identity file (a recovery key, or the private key of
    /// a recipient in secrets/recipients.txt) instead of the passphrase: no scrypt, so
    /// repeated runs stay fast. Takes precedence over the passphrase options.
    #[arg(long, env = "KILN_VAULT_IDENTITY", value_name = "FILE")]
    pub vault_identity: Vec<PathBuf>,
}

impl Targeting {
    /// The library's options for these arguments (asks for the sudo password when told to).
    pub fn job_options(&self) -> Result<JobOptions, CliError> {
        Ok(JobOptions {
            env: self.env.clone(),
            roles: self.hosts.clone(),
            identity: self.identity.clone(),
            sudo_password: ask_password(self.ask_sudo_password)?,
            lab_roots: kiln_lab::Roots::default(),
        })
    }
}

fn ask_password(ask: bool) -> Result<Option<Secret>, CliError> {
    if !ask {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::invalid(miette::miette!(
            "--ask-sudo-password needs a terminal to ask on"
        )));
    }
    let p = rpassword::prompt_password("sudo password for the admin user: ")
        .map_err(|e| CliError::failed(miette::miette!("cannot read the password: {e}")))?;
    Ok(Some(Secret::new(p)))
}

impl Targeting {
    /// The hosts to work on, each with its desired state: from kiln.toml (templates get
    /// their secrets from the environment's vault, opened on first use), or from `--state`.
    pub fn jobs(&self, ctx: &crate::context::Context) -> Result<Vec<Job>, CliError> {
        let opts = self.job_options()?;
        if let Some(path) = &self.state {
            return Ok(kiln_ops::jobs::from_state_file(path, &opts)?);
        }
        let model = ctx.model()?;
        let env = ctx.environment(opts.env.as_deref())?;
        let secrets: Arc<dyn SecretSource> = Arc::new(kiln_ops::vault::LazyVault::new(
            model.base_dir(),
            &env.name,
            UnlockOptions {
                passphrase_file: self.passphrase_file.clone(),
                passphrase_command: self.passphrase_command.clone(),
                identities: self.vault_identity.clone(),
            },
            Box::new(crate::context::Terminal),
        ));
        Ok(kiln_ops::jobs::from_config(model, &opts, secrets)?)
    }
}
