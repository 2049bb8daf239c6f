//! First contact with a host: ask it for its SSH host keys (ssh-keyscan, kiln-converge's),
//! compare them with the keys kiln.toml pins for it, and pin them on the user's word.
//!
//! Owns: finding the host in the model (one environment rule, `target`), the comparison
//! (a pinned key that does not parse is an error, never silently dropped), pinning through
//! `kiln_model::edit`.
//! Must not: decide that keys are trustworthy (the user does, after checking the
//! fingerprints on the provider's console; the CLI asks), re-parse kiln.toml by hand, or
//! print.

use std::path::Path;

use kiln_converge::host::HostError;
use kiln_converge::host::keys::{BadKey, HostKey};
use kiln_model::Model;
use kiln_model::edit::EditError;

use crate::target::{self, TargetError};

/// How long ssh-keyscan waits for the host.
pub const KEYSCAN_TIMEOUT_S: u32 = 10;

/// Why a host's keys could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Scan(#[from] HostError),
    #[error("environment {env}, host {role}: a pinned {key}")]
    BadPinnedKey {
        env: String,
        role: String,
        #[source]
        key: BadKey,
    },
}

impl TrustError {
    /// Whether the user gave something kiln cannot use.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, TrustError::Scan(_))
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            TrustError::Target(t) => Some(t.hint()),
            TrustError::Scan(_) => None,
            TrustError::BadPinnedKey { .. } => Some(
                "fix or remove that line of host_keys in kiln.toml, then run kiln trust again"
                    .into(),
            ),
        }
    }
}

/// How the presented keys compare with the pinned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every pinned key is among the presented ones: nothing to do.
    AlreadyPinned,
    /// Nothing is pinned yet.
    New,
    /// kiln.toml pins other keys: a reinstalled server, or an attack.
    Different,
}

/// A host's presented and pinned keys.
#[derive(Debug, Clone)]
pub struct TrustCheck {
    pub env: String,
    pub role: String,
    pub address: String,
    pub port: u16,
    pub presented: Vec<HostKey>,
    pub pinned: Vec<HostKey>,
    pub verdict: Verdict,
}

/// Scans the host playing `role` in the environment (the one rule of `target`) and
/// compares its keys with those pinned in the model.
pub fn check(model: &Model, env: Option<&str>, role: &str) -> Result<TrustCheck, TrustError> {
    let env = target::environment(model, env)?;
    let host = target::hosts(env, &[role.to_owned()])?
        .into_iter()
        .next()
        .ok_or_else(|| TargetError::UnknownRole {
            env: env.name.clone(),
            wanted: role.to_owned(),
            known: env.hosts.keys().cloned().collect(),
        })?;
    let address = host.address.to_string();
    let presented =
        kiln_converge::host::ssh::keyscan(role, &address, host.ssh_port, KEYSCAN_TIMEOUT_S)?;
    compare(
        &env.name,
        role,
        &address,
        host.ssh_port,
        &host.host_keys,
        presented,
    )
}

/// Compares `presented` with the pinned key lines of a host.
pub fn compare(
    env: &str,
    role: &str,
    address: &str,
    port: u16,
    pinned_lines: &[String],
    presented: Vec<HostKey>,
) -> Result<TrustCheck, TrustError> {
    let mut pinned = vec![];
    for line in pinned_lines {
        pinned.push(
            HostKey::parse(line).map_err(|key| TrustError::BadPinnedKey {
                env: env.to_owned(),
                role: role.to_owned(),
                key,
            })?,
        );
    }
    let verdict = if pinned.is_empty() {
        Verdict::New
    } else if pinned.iter().all(|p| presented.contains(p)) {
        Verdict::AlreadyPinned
    } else {
        Verdict::Different
    };
    Ok(TrustCheck {
        env: env.to_owned(),
        role: role.to_owned(),
        address: address.to_owned(),
        port,
        presented,
        pinned,
        verdict,
    })
}

/// Pins the presented keys in kiln.toml (comments and layout kept).
pub fn pin(config: &Path, check: &TrustCheck) -> Result<(), EditError> {
    let lines: Vec<String> = check.presented.iter().map(HostKey::line).collect();
    kiln_model::edit::set_host_keys(config, &check.env, &check.role, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINm7RYHaF64Iwr8sSPDb/4QNpuwDeWOCXisCWjwmu5Lg";

    fn key(line: &str) -> HostKey {
        HostKey::parse(line).unwrap()
    }

    fn verdict(pinned: &[&str], presented: &[&str]) -> Verdict {
        let pinned: Vec<String> = pinned.iter().map(|s| s.to_string()).collect();
        compare(
            "lab",
            "web",
            "10.0.0.1",
            22,
            &pinned,
            presented.iter().map(|l| key(l)).collect(),
        )
        .unwrap()
        .verdict
    }

    #[test]
    fn new_same_and_different_keys() {
        assert_eq!(verdict(&[], &[ED]), Verdict::New);
        assert_eq!(verdict(&[ED], &[ED, ED2]), Verdict::AlreadyPinned);
        assert_eq!(verdict(&[ED2], &[ED]), Verdict::Different);
        assert_eq!(verdict(&[ED, ED2], &[ED]), Verdict::Different);
    }

    #[test]
    fn a_pinned_key_that_does_not_parse_is_reported_not_dropped() {
        // Dropped, the broken key would leave nothing pinned ("new host": no warning) or
        // only the good one ("already pinned").
        for pinned in [
            vec!["ssh-ed25519 AAAAnotakey".to_owned()],
            vec![ED.to_owned(), "ssh-ed25519".to_owned()],
        ] {
            let err = compare("lab", "web", "10.0.0.1", 22, &pinned, vec![key(ED)]).unwrap_err();
            assert!(
                matches!(&err, TrustError::BadPinnedKey { env, role, .. } if env == "lab" && role == "web"),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("environment lab, host web: a pinned host key "),
                "{err}"
            );
        }
    }
}
