//! Secret generation: planning which secrets are missing (pure), and making values that
//! follow a [`SecretRule`] from a caller-supplied CSPRNG (the vault passes `OsRng`; tests
//! may pass a seeded one). Never touches the vault or the terminal.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::seq::SliceRandom;
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::spec::{Alphabet, HashScheme, SecretRule, SecretSpec};
use crate::value::Secret;

/// Bcrypt cost: the library default (2^12 rounds), what htpasswd -B uses.
pub const BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;

/// What `generate` would do, decided from the specs and the names already in the vault.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GenerationPlan {
    /// Specs none of whose values exist: every output is generated.
    pub create: Vec<SecretSpec>,
    /// Values computed from an existing secret (a WireGuard public key, a password hash)
    /// whose derived half is missing. The existing secret is not changed.
    pub derive: Vec<Derivation>,
    /// `Provided` secrets that are missing: the user must `kiln secrets set` them.
    pub needs_value: Vec<SecretSpec>,
    /// Partial states kiln refuses to repair because it would change an existing value.
    pub conflicts: Vec<Conflict>,
}

/// A missing value computed from an existing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derivation {
    /// `<name>_public` from the private key `<name>`.
    WireguardPublic { private: String },
    /// `<name>_hash` from the password `<name>`.
    PasswordHash {
        password: String,
        scheme: HashScheme,
    },
}

impl Derivation {
    /// The name of the secret it fills.
    pub fn output(&self) -> String {
        match self {
            Derivation::WireguardPublic { private } => format!("{private}_public"),
            Derivation::PasswordHash { password, .. } => format!("{password}_hash"),
        }
    }
    /// The existing secret it is computed from.
    pub fn input(&self) -> &str {
        match self {
            Derivation::WireguardPublic { private } => private,
            Derivation::PasswordHash { password, .. } => password,
        }
    }
}

/// A partial state that cannot be completed without changing an existing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub present: String,
    pub missing: String,
}

/// Decides what to generate. Pure: `existing` is the set of names in the vault.
/// Specs with the same name are taken once (the first wins).
pub fn plan(specs: &[SecretSpec], existing: &BTreeSet<String>) -> GenerationPlan {
    let mut out = GenerationPlan::default();
    let mut seen = BTreeSet::new();
    for spec in specs {
        if !seen.insert(spec.name.clone()) {
            continue;
        }
        let outputs = spec.rule.outputs(&spec.name);
        let present: Vec<&String> = outputs.iter().filter(|n| existing.contains(*n)).collect();
        if present.len() == outputs.len() {
            continue;
        }
        if present.is_empty() {
            match spec.rule {
                SecretRule::Provided => out.needs_value.push(spec.clone()),
                _ => out.create.push(spec.clone()),
            }
            continue;
        }
        // One half of a pair exists.
        let main_exists = existing.contains(&spec.name);
        match (&spec.rule, main_exists) {
            (SecretRule::WireguardKeyPair, true) => out.derive.push(Derivation::WireguardPublic {
                private: spec.name.clone(),
            }),
            (SecretRule::PasswordWithHash { hash, .. }, true) => {
                out.derive.push(Derivation::PasswordHash {
                    password: spec.name.clone(),
                    scheme: *hash,
                })
            }
            _ => out.conflicts.push(Conflict {
                present: present[0].clone(),
                missing: spec.name.clone(),
            }),
        }
    }
    out
}

/// Errors while generating a value.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("secret `{name}` cannot be generated: its value must be provided")]
    Provided { name: String },
    #[error("secret `{name}`: a length of 0 is not a secret")]
    EmptyLength { name: String },
    #[error("secret `{name}`: hashing the password failed: {reason}")]
    Hash { name: String, reason: String },
    #[error("secret `{name}` is not a valid WireGuard private key (base64 of 32 bytes)")]
    BadWireguardKey { name: String },
}

/// Makes every value of `spec` (see [`SecretRule::outputs`]), in output order.
pub fn generate<R: RngCore + CryptoRng>(
    spec: &SecretSpec,
    rng: &mut R,
) -> Result<Vec<(String, Secret)>, GenerateError> {
    let name = &spec.name;
    Ok(match spec.rule {
        SecretRule::Random { length, alphabet } => {
            if length == 0 {
                return Err(GenerateError::EmptyLength { name: name.clone() });
            }
            vec![(name.clone(), random_string(length, alphabet, rng))]
        }
        SecretRule::Base64 { bytes } => {
            if bytes == 0 {
                return Err(GenerateError::EmptyLength { name: name.clone() });
            }
            let mut raw = Zeroizing::new(vec![0u8; bytes]);
            rng.fill_bytes(&mut raw);
            vec![(name.clone(), Secret::new(STANDARD.encode(&*raw)))]
        }
        SecretRule::Ed25519SigningKey => vec![(name.clone(), synapse_signing_key(rng))],
        SecretRule::WireguardKeyPair => {
            let mut private = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut *private);
            clamp(&mut private);
            let public = wireguard_public(&private);
            vec![
                (name.clone(), Secret::new(STANDARD.encode(*private))),
                (format!("{name}_public"), Secret::new(public)),
            ]
        }
        SecretRule::PasswordWithHash { length, hash } => {
            if length == 0 {
                return Err(GenerateError::EmptyLength { name: name.clone() });
            }
            let password = random_string(length, Alphabet::Alphanumeric, rng);
            let hashed = hash_password(name, &password, hash, rng)?;
            vec![(name.clone(), password), (format!("{name}_hash"), hashed)]
        }
        SecretRule::Provided => return Err(GenerateError::Provided { name: name.clone() }),
    })
}

/// Computes a [`Derivation`]'s value from the existing secret it depends on.
pub fn derive<R: RngCore + CryptoRng>(
    derivation: &Derivation,
    input: &Secret,
    rng: &mut R,
) -> Result<Secret, GenerateError> {
    match derivation {
        Derivation::WireguardPublic { private } => {
            let raw = Zeroizing::new(STANDARD.decode(input.expose().trim()).map_err(|_| {
                GenerateError::BadWireguardKey {
                    name: private.clone(),
                }
            })?);
            let key: [u8; 32] =
                raw.as_slice()
                    .try_into()
                    .map_err(|_| GenerateError::BadWireguardKey {
                        name: private.clone(),
                    })?;
            let key = Zeroizing::new(key);
            Ok(Secret::new(wireguard_public(&key)))
        }
        Derivation::PasswordHash { password, scheme } => {
            hash_password(password, input, *scheme, rng)
        }
    }
}

fn alphabet_chars(alphabet: Alphabet) -> &'static [u8] {
    match alphabet {
        Alphabet::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        Alphabet::Hex => b"0123456789abcdef",
        Alphabet::UrlSafe => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    }
}

/// `length` characters drawn uniformly (no modulo bias: `choose` uses rejection sampling).
fn random_string<R: RngCore + CryptoRng>(length: usize, alphabet: Alphabet, rng: &mut R) -> Secret {
    let chars = alphabet_chars(alphabet);
    let mut s = Zeroizing::new(String::with_capacity(length));
    for _ in 0..length {
        // `chars` is never empty, so `choose` always returns a character.
        let c = chars.choose(rng).copied().unwrap_or(b'a');
        s.push(char::from(c));
    }
    Secret::new(s.as_str())
}

/// A Synapse signing key file line: `ed25519 a_XXXX <unpadded base64 of the seed>`.
fn synapse_signing_key<R: RngCore + CryptoRng>(rng: &mut R) -> Secret {
    let key = ed25519_dalek::SigningKey::generate(rng);
    let seed = Zeroizing::new(key.to_bytes());
    let version = random_string(4, Alphabet::Alphanumeric, rng);
    Secret::new(format!(
        "ed25519 a_{} {}",
        version.expose(),
        STANDARD_NO_PAD.encode(*seed)
    ))
}

/// X25519 clamping, as `wg genkey` does, so the stored key is exactly what WireGuard uses.
fn clamp(key: &mut [u8; 32]) {
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
}

fn wireguard_public(private: &[u8; 32]) -> String {
    let secret = x25519_dalek::StaticSecret::from(*private);
    let public = x25519_dalek::PublicKey::from(&secret);
    STANDARD.encode(public.as_bytes())
}

fn hash_password<R: RngCore + CryptoRng>(
    name: &str,
    password: &Secret,
    scheme: HashScheme,
    rng: &mut R,
) -> Result<Secret, GenerateError> {
    let err = |reason: String| GenerateError::Hash {
        name: name.to_owned(),
        reason,
    };
    match scheme {
        HashScheme::Bcrypt => {
            let mut salt = [0u8; 16];
            rng.fill_bytes(&mut salt);
            let parts = bcrypt::hash_with_salt(password.expose(), BCRYPT_COST, salt)
                .map_err(|e| err(e.to_string()))?;
            Ok(Secret::new(parts.format_for_version(bcrypt::Version::TwoB)))
        }
        HashScheme::Argon2id => {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::generate(rng);
            let hash = argon2::Argon2::default()
                .hash_password(password.expose().as_bytes(), &salt)
                .map_err(|e| err(e.to_string()))?;
            Ok(Secret::new(hash.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn spec(name: &str, rule: SecretRule) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            rule,
            description: String::new(),
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn one(spec: &SecretSpec) -> String {
        let v = generate(spec, &mut rand::rngs::OsRng).unwrap();
        assert_eq!(v.len(), 1);
        v[0].1.expose().to_owned()
    }

    #[test]
    fn random_follows_length_and_alphabet() {
        let s = one(&spec(
            "session",
            SecretRule::Random {
                length: 64,
                alphabet: Alphabet::Alphanumeric,
            },
        ));
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        let h = one(&spec(
            "h",
            SecretRule::Random {
                length: 32,
                alphabet: Alphabet::Hex,
            },
        ));
        assert_eq!(h.len(), 32);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let u = one(&spec(
            "u",
            SecretRule::Random {
                length: 200,
                alphabet: Alphabet::UrlSafe,
            },
        ));
        assert!(
            u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn random_uses_the_whole_alphabet_roughly_uniformly() {
        let s = one(&spec(
            "x",
            SecretRule::Random {
                length: 16000,
                alphabet: Alphabet::Hex,
            },
        ));
        for c in "0123456789abcdef".chars() {
            let n = s.chars().filter(|&x| x == c).count();
            // expected 1000 each; 6 sigma ≈ 190
            assert!((800..1200).contains(&n), "{c} appears {n} times");
        }
    }

    #[test]
    fn two_generations_differ() {
        let sp = spec(
            "s",
            SecretRule::Random {
                length: 64,
                alphabet: Alphabet::Alphanumeric,
            },
        );
        assert_ne!(one(&sp), one(&sp));
    }

    #[test]
    fn base64_has_the_requested_byte_count() {
        let s = one(&spec("k", SecretRule::Base64 { bytes: 32 }));
        assert_eq!(s.len(), 44);
        assert_eq!(STANDARD.decode(&s).unwrap().len(), 32);
    }

    #[test]
    fn ed25519_signing_key_is_in_synapse_format() {
        let s = one(&spec("synapse_signing_key", SecretRule::Ed25519SigningKey));
        let parts: Vec<&str> = s.split(' ').collect();
        assert_eq!(parts.len(), 3, "{s:?} shape");
        assert_eq!(parts[0], "ed25519");
        assert!(parts[1].starts_with("a_") && parts[1].len() == 6);
        let seed: [u8; 32] = STANDARD_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        // A valid seed gives a key pair that signs and verifies.
        use ed25519_dalek::{Signer, Verifier};
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let sig = key.sign(b"kiln");
        key.verifying_key().verify(b"kiln", &sig).unwrap();
    }

    #[test]
    fn wireguard_pair_is_clamped_and_consistent() {
        let v = generate(
            &spec("wireguard_services", SecretRule::WireguardKeyPair),
            &mut rng(),
        )
        .unwrap();
        assert_eq!(v[0].0, "wireguard_services");
        assert_eq!(v[1].0, "wireguard_services_public");
        let private: [u8; 32] = STANDARD
            .decode(v[0].1.expose())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(private[0] & 7, 0);
        assert_eq!(private[31] & 128, 0);
        assert_eq!(private[31] & 64, 64);
        let derived = derive(
            &Derivation::WireguardPublic {
                private: "wireguard_services".into(),
            },
            &v[0].1,
            &mut rng(),
        )
        .unwrap();
        assert_eq!(derived.expose(), v[1].1.expose());
    }

    #[test]
    fn wireguard_public_key_matches_rfc7748_vector() {
        // RFC 7748 section 6.1, Alice's key pair.
        let private: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let public =
            hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
                .unwrap();
        assert_eq!(wireguard_public(&private), STANDARD.encode(public));
    }

    #[test]
    fn password_with_bcrypt_hash_verifies() {
        let sp = spec(
            "grafana_admin",
            SecretRule::PasswordWithHash {
                length: 24,
                hash: HashScheme::Bcrypt,
            },
        );
        let v = generate(&sp, &mut rand::rngs::OsRng).unwrap();
        assert_eq!(v[0].1.expose().len(), 24);
        assert_eq!(v[1].0, "grafana_admin_hash");
        assert!(v[1].1.expose().starts_with("$2b$12$"));
        assert!(bcrypt::verify(v[0].1.expose(), v[1].1.expose()).unwrap());
        assert!(!bcrypt::verify("wrong", v[1].1.expose()).unwrap());
    }

    #[test]
    fn password_with_argon2id_hash_verifies() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let sp = spec(
            "app",
            SecretRule::PasswordWithHash {
                length: 30,
                hash: HashScheme::Argon2id,
            },
        );
        let v = generate(&sp, &mut rand::rngs::OsRng).unwrap();
        assert!(v[1].1.expose().starts_with("$argon2id$"));
        let parsed = PasswordHash::new(v[1].1.expose()).unwrap();
        argon2::Argon2::default()
            .verify_password(v[0].1.expose().as_bytes(), &parsed)
            .unwrap();
        assert!(
            argon2::Argon2::default()
                .verify_password(b"nope", &parsed)
                .is_err()
        );
    }

    #[test]
    fn provided_and_empty_rules_are_refused() {
        assert!(matches!(
            generate(&spec("s3_key", SecretRule::Provided), &mut rng()),
            Err(GenerateError::Provided { .. })
        ));
        assert!(generate(&spec("x", SecretRule::Base64 { bytes: 0 }), &mut rng()).is_err());
    }

    #[test]
    fn plan_creates_only_what_is_missing() {
        let specs = vec![
            spec("a", SecretRule::Base64 { bytes: 32 }),
            spec("b", SecretRule::Base64 { bytes: 32 }),
            spec("a", SecretRule::Base64 { bytes: 8 }), // duplicate: first wins
            spec("s3", SecretRule::Provided),
            spec("wg", SecretRule::WireguardKeyPair),
            spec(
                "pw",
                SecretRule::PasswordWithHash {
                    length: 20,
                    hash: HashScheme::Bcrypt,
                },
            ),
            spec("half", SecretRule::WireguardKeyPair),
        ];
        let existing: BTreeSet<String> = ["a", "wg", "pw_hash", "half_public"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = plan(&specs, &existing);
        assert_eq!(
            p.create.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(
            p.needs_value
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["s3"]
        );
        assert_eq!(
            p.derive,
            [Derivation::WireguardPublic {
                private: "wg".into()
            }]
        );
        assert_eq!(
            p.conflicts,
            [
                Conflict {
                    present: "pw_hash".into(),
                    missing: "pw".into()
                },
                Conflict {
                    present: "half_public".into(),
                    missing: "half".into()
                },
            ]
        );
        let all: BTreeSet<String> = [
            "a",
            "b",
            "s3",
            "wg",
            "wg_public",
            "pw",
            "pw_hash",
            "half",
            "half_public",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(plan(&specs, &all), GenerationPlan::default());
    }
}
