//! What a secret must look like: the generation rules that catalog recipes and host
//! features declare for the secrets they need. Pure data; generation lives in the vault
//! code, which follows these rules with a CSPRNG.

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
