//! Template secrets for plan and apply: the environment's vault, opened on first use (so
//! configurations without `secret()` never need the passphrase).
// Interim: replaced by kiln_ops::vault's lazily-opening SecretSource when the backbone lands.

use std::path::PathBuf;

use kiln_secrets::Secret;

/// Template secrets from the environment's vault, opened on first use (so configurations
/// without `secret()` never need the passphrase).
pub struct VaultSecrets {
    pub base: PathBuf,
    pub env: String,
    pub passphrase_file: Option<PathBuf>,
    pub vault: std::sync::Mutex<Option<kiln_secrets::vault::Vault>>,
}

impl kiln_converge::desired::SecretSource for VaultSecrets {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        let mut guard = self
            .vault
            .lock()
            .map_err(|_| "vault lock poisoned".to_owned())?;
        if guard.is_none() {
            let args = crate::commands::secrets::VaultArgs {
                env: self.env.clone(),
                passphrase_file: self.passphrase_file.clone(),
                passphrase_command: None,
                identity: vec![],
            };
            let v = crate::commands::secrets::open(&self.base, &args)
                .map_err(|e| format!("cannot open the vault of {}: {:?}", self.env, e.report))?;
            *guard = Some(v);
        }
        match guard.as_ref() {
            Some(v) => v.get(name).map_err(|e| e.to_string()),
            None => Err("vault not open".into()),
        }
    }
}
