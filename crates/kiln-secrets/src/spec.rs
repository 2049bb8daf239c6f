//! What a secret must look like: the generation rules that catalog recipes and host
//! features declare for the secrets they need, and the rule for secret names. Pure data;
//! generation lives in `generate`, which follows these rules with a CSPRNG.

use serde::Serialize;

/// A secret some part of the infrastructure needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    /// Vault name: `[a-z0-9_]+`, e.g. `hedgedoc_session_secret`.
    pub name: String,
    /// How to make it when it is missing.
    pub rule: SecretRule,
    /// One line for humans: what it is for ("HedgeDoc session cookie signing key").
    pub description: String,
}

/// How a secret is generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SecretRule {
    /// `length` characters drawn uniformly from `alphabet`.
    Random { length: usize, alphabet: Alphabet },
    /// `bytes` random bytes, standard base64 with padding (what `openssl rand -base64 N` gives).
    Base64 { bytes: usize },
    /// A Synapse signing key: `ed25519 a_XXXX <unpadded base64 of the 32-byte seed>`.
    Ed25519SigningKey,
    /// A WireGuard key pair: the private key under the spec's name, the public key under
    /// `<name>_public` (both base64 of 32 bytes).
    WireguardKeyPair,
    /// A password plus its hash under `<name>_hash`, for services that need both.
    PasswordWithHash { length: usize, hash: HashScheme },
    /// Cannot be generated: the user provides it (`kiln secrets set NAME`), e.g. S3 keys.
    Provided,
}

/// Character sets for [`SecretRule::Random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alphabet {
    /// `A-Za-z0-9`
    Alphanumeric,
    /// `0-9a-f`
    Hex,
    /// `A-Za-z0-9-_`
    UrlSafe,
}

/// Password hash formats for [`SecretRule::PasswordWithHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashScheme {
    /// bcrypt (`$2b$...`), as Grafana/Prometheus web config and htpasswd expect.
    Bcrypt,
    /// Argon2id PHC string (`$argon2id$...`).
    Argon2id,
}

impl SecretRule {
    /// Every vault name this rule fills for a spec named `name`: the name itself, plus
    /// `<name>_public` for a WireGuard pair and `<name>_hash` for a password with hash.
    pub fn outputs(&self, name: &str) -> Vec<String> {
        match self {
            SecretRule::WireguardKeyPair => vec![name.to_owned(), format!("{name}_public")],
            SecretRule::PasswordWithHash { .. } => vec![name.to_owned(), format!("{name}_hash")],
            _ => vec![name.to_owned()],
        }
    }
}

/// Longest accepted secret name (leaves room for the `_public`/`_hash` suffixes within
/// common file-name limits).
pub const MAX_NAME_LEN: usize = 120;

/// A secret name that is not `[a-z0-9_]+`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret name `{name}`: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: &'static str,
}

/// Checks that `name` is a valid vault name: 1 to [`MAX_NAME_LEN`] characters from
/// `[a-z0-9_]`. Names become file names, so nothing else is accepted.
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 120 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        "only lowercase letters, digits and `_` are allowed (e.g. `grafana_admin_password`)"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_alphanumeric_and_underscore() {
        for ok in ["a", "grafana_admin_password", "wireguard_services", "k8s_0"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Upper",
            "dash-name",
            "dot.name",
            "../escape",
            "sp ace",
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_name(&"a".repeat(121)).is_err());
    }

    #[test]
    fn multi_value_rules_name_their_outputs() {
        assert_eq!(
            SecretRule::WireguardKeyPair.outputs("wg"),
            ["wg", "wg_public"]
        );
        let r = SecretRule::PasswordWithHash {
            length: 20,
            hash: HashScheme::Bcrypt,
        };
        assert_eq!(r.outputs("pw"), ["pw", "pw_hash"]);
        assert_eq!(SecretRule::Provided.outputs("s3"), ["s3"]);
    }
}
