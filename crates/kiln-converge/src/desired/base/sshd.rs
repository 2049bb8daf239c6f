//! sshd's part of the base: one early drop-in, `/etc/ssh/sshd_config.d/00-kiln.conf`
//! (both Debian's and RHEL's sshd_config include `sshd_config.d/*.conf` before anything
//! else, and sshd keeps the first value it reads), with key-only login, no root, the admin
//! user (or groups) only, verbose logs, and keywords gated on the host's OpenSSH version.
//!
//! Algorithms: on Debian kiln sets them ([`algorithms`]); on RHEL the system
//! crypto-policy is in charge (`update-crypto-policies`), so the drop-in sets none and
//! says so. The lists were chosen for `ssh-audit` to report nothing (it warns about every
//! classical-only key exchange, curve25519 included, since its post-quantum checks):
//! - key exchange: post-quantum hybrids only, `mlkem768x25519-sha256` and the standard
//!   name `sntrup761x25519-sha512` from OpenSSH 9.9, `sntrup761x25519-sha512@openssh.com`
//!   from 8.5 (so the admin's client needs OpenSSH 8.5 or newer, 2021; the lockout guard
//!   rolls back if it has not);
//! - ciphers: AEAD only (chacha20-poly1305, AES-GCM); every OpenSSH client since 6.5 has
//!   them, so the CTR modes (which ssh-audit does not flag) are not needed;
//! - MACs: encrypt-then-MAC only (used by no AEAD cipher, kept for clients that insist);
//! - host keys: Ed25519 and RSA with SHA-2 (and their certificates).
//!
//! Version-gated keywords: `PerSourcePenalties` and `PerSourcePenaltyExemptList` from 9.8,
//! `KbdInteractiveAuthentication` from 8.7 (`ChallengeResponseAuthentication` before).
//!
//! `AllowGroups` replaces `AllowUsers` when groups are given (sshd requires a user to pass
//! both when both are set): the admin user must then be in one of them, which only the
//! lockout guard's fresh connection proves.

use std::fmt;

use serde_json::json;

use super::{BaseFile, Renderer, os_name};
use crate::desired::DesiredError;
use crate::facts::OsFamily;

/// Where the drop-in goes.
pub const DROP_IN: &str = "/etc/ssh/sshd_config.d/00-kiln.conf";

/// An OpenSSH release, `major.minor` (the portable release's `pN` does not change the
/// keywords).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpensshVersion {
    pub major: u32,
    pub minor: u32,
}

impl OpensshVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        OpensshVersion { major, minor }
    }

    /// The version in `sshd -V` or `ssh -V` output (`OpenSSH_9.2p1 Debian-2+deb12u3,
    /// OpenSSL 3.0.11 ...`, or Debian 12's `OpenSSH_9.2, OpenSSL ...`) or in a server's
    /// banner (`SSH-2.0-OpenSSH_10.0p2 Debian-7`).
    pub fn parse(text: &str) -> Option<OpensshVersion> {
        let (_, rest) = text.split_once("OpenSSH_")?;
        let (major, rest) = rest.split_once('.')?;
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(OpensshVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= OpensshVersion::new(major, minor)
    }
}

impl fmt::Display for OpensshVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What the drop-in is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdParams {
    pub port: u16,
    /// The user kiln connects as (`AllowUsers`, unless `allow_groups` is given).
    pub admin_user: String,
    /// `AllowGroups` instead of `AllowUsers` when not empty.
    pub allow_groups: Vec<String>,
    pub os: OsFamily,
    /// The host's sshd (see [`OpensshVersion::parse`]).
    pub openssh: OpensshVersion,
    /// Addresses never penalised (`PerSourcePenaltyExemptList`, OpenSSH 9.8 and newer):
    /// the operator's, when known, so that failed attempts (a lockout test, a wrong key)
    /// do not keep the operator out.
    pub penalties_exempt: Vec<kiln_model::ipnet::IpNet>,
}

/// The algorithm lists kiln sets on Debian.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Algorithms {
    pub kex: Vec<&'static str>,
    pub ciphers: Vec<&'static str>,
    pub macs: Vec<&'static str>,
    pub host_keys: Vec<&'static str>,
}

/// The algorithms for an OpenSSH version (see the module doc for why these).
pub fn algorithms(v: OpensshVersion) -> Algorithms {
    let kex = if v.at_least(9, 9) {
        vec![
            "mlkem768x25519-sha256",
            "sntrup761x25519-sha512",
            "sntrup761x25519-sha512@openssh.com",
        ]
    } else if v.at_least(8, 5) {
        vec!["sntrup761x25519-sha512@openssh.com"]
    } else {
        // Older than every supported target: no post-quantum exchange to offer.
        vec!["curve25519-sha256", "curve25519-sha256@libssh.org"]
    };
    Algorithms {
        kex,
        ciphers: vec![
            "chacha20-poly1305@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-gcm@openssh.com",
        ],
        macs: vec![
            "hmac-sha2-512-etm@openssh.com",
            "hmac-sha2-256-etm@openssh.com",
            "umac-128-etm@openssh.com",
        ],
        host_keys: vec![
            "ssh-ed25519-cert-v01@openssh.com",
            "ssh-ed25519",
            "rsa-sha2-512-cert-v01@openssh.com",
            "rsa-sha2-512",
            "rsa-sha2-256-cert-v01@openssh.com",
            "rsa-sha2-256",
        ],
    }
}

/// The sshd drop-in ([`DROP_IN`], 0644).
pub fn sshd_files(r: &Renderer<'_>, p: &SshdParams) -> Result<Vec<BaseFile>, DesiredError> {
    const PART: &str = "sshd drop-in";
    if p.port == 0 {
        return Err(r.err(PART, "port 0 is not a port"));
    }
    r.word(PART, "admin user", &p.admin_user)?;
    for g in &p.allow_groups {
        r.word(PART, "group", g)?;
    }
    let v = p.openssh;
    let ctx = json!({
        "os": os_name(p.os),
        "openssh": v.to_string(),
        "port": p.port,
        "admin_user": p.admin_user,
        "allow_groups": p.allow_groups,
        "kbd_interactive": if v.at_least(8, 7) {
            "KbdInteractiveAuthentication"
        } else {
            "ChallengeResponseAuthentication"
        },
        "penalties": v.at_least(9, 8),
        "penalties_exempt": p.penalties_exempt.iter().map(|n| {
            // A single address reads as one (sshd takes both forms).
            if n.prefix_len() == n.max_prefix_len() { n.addr().to_string() } else { n.to_string() }
        }).collect::<Vec<_>>(),
        "algorithms": match p.os {
            OsFamily::Debian => Some(algorithms(v)),
            OsFamily::Rhel => None,
        },
    });
    Ok(vec![r.file(DROP_IN, 0o644, "sshd-00-kiln.conf.j2", ctx)?])
}
