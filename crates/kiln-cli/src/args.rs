//! clap arguments that several commands share. Each converts into the library's own
//! options type: no clap type crosses into a library API.

use std::path::PathBuf;

use kiln_ops::vault::UnlockOptions;

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
