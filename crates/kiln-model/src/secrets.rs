//! Which vault secrets a configuration needs: the catalog recipes' secrets for each
//! service, the backup credentials, and one WireGuard key pair per host role. Names only
//! and generation rules; values live in the vault (kiln-secrets).

use std::collections::BTreeMap;

use kiln_secrets::{Alphabet, SecretRule, SecretSpec};

use crate::model::{Environment, Model};

impl Model {
    /// Every secret some environment needs, sorted by name, each name once.
    pub fn required_secrets(&self) -> Vec<SecretSpec> {
        let mut all = BTreeMap::new();
        for env in &self.environments {
            for spec in self.secrets_for(env) {
                all.entry(spec.name.clone()).or_insert(spec);
            }
        }
        all.into_values().collect()
    }

    /// The secrets environment `env` needs (its vault is `secrets/<env>/`), sorted by name;
    /// `None` when there is no such environment.
    pub fn required_secrets_for(&self, env: &str) -> Option<Vec<SecretSpec>> {
        self.environment(env).map(|e| self.secrets_for(e))
    }

    fn secrets_for(&self, env: &Environment) -> Vec<SecretSpec> {
        let mut out: BTreeMap<String, SecretSpec> = BTreeMap::new();
        let mut add = |name: String, rule: SecretRule, description: String| {
            out.entry(name.clone()).or_insert(SecretSpec {
                name,
                rule,
                description,
            });
        };
        for svc in &self.services {
            let Some(recipe) = svc.recipe() else { continue };
            for s in recipe.secrets {
                if s.when_option.is_some_and(|o| !svc.options.contains_key(o)) {
                    continue;
                }
                add(
                    kiln_catalog::secret_name(&svc.name, s.suffix),
                    s.rule.clone(),
                    format!("{} (service `{}`)", s.description, svc.name),
                );
            }
        }
        if let Some(b) = self.backups.as_ref().filter(|_| env.backups_enabled) {
            let c = &b.credentials;
            for (cred, what) in c.s3() {
                add(
                    cred.access_key(),
                    SecretRule::Provided,
                    format!("S3 access key id, {what} backup credential"),
                );
                add(
                    cred.secret_key(),
                    SecretRule::Provided,
                    format!("S3 secret access key, {what} backup credential"),
                );
            }
            add(
                c.repository_password.clone(),
                SecretRule::Random {
                    length: 40,
                    alphabet: Alphabet::Alphanumeric,
                },
                "backup repository encryption password".into(),
            );
        }
        for role in env.hosts.keys() {
            add(
                wireguard_secret(role),
                SecretRule::WireguardKeyPair,
                format!("WireGuard key pair of the `{role}` host"),
            );
        }
        out.into_values().collect()
    }
}

/// The vault secret holding the WireGuard private key of the host playing `role`; its
/// public key is the derived `<name>_public`.
pub fn wireguard_secret(role: &str) -> String {
    format!("wireguard_{}", role.replace('-', "_"))
}
