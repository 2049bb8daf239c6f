//! SSH public keys as kiln pins them: parsing OpenSSH public key lines (`type base64
//! [comment]`) and their `SHA256:` fingerprints as `ssh-keygen -l` shows them.
//!
//! The one implementation shared by validation (pinned `host_keys`), `kiln show`, the SSH
//! transport and `kiln trust`. Pure functions, no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// Key types kiln accepts as pinned host keys.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A public key (`type base64`), checked: known type, base64 data whose embedded type
/// matches, and the right length for ed25519.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The key type, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The key data as written in the line.
    pub base64: String,
    blob: Vec<u8>,
}

/// A line that is not an OpenSSH public key kiln accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host key {why}: {line:?}")]
pub struct BadKey {
    /// The offending line.
    pub line: String,
    /// Why, as a predicate: "has invalid base64 (...)".
    pub why: String,
}

fn read_string(blob: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
    let s = blob.get(at + 4..at + 4 + len)?;
    Some((s, at + 4 + len))
}

impl HostKey {
    /// Parses `type base64 [comment]`.
    pub fn parse(line: &str) -> Result<HostKey, BadKey> {
        let bad = |why: String| BadKey {
            line: line.to_owned(),
            why,
        };
        let mut words = line.split_whitespace();
        let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
            return Err(bad(
                "is not an OpenSSH public key line (`<type> <base64> [comment]`)".into(),
            ));
        };
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(bad(format!("has unknown key type `{kind}`")));
        }
        let blob = STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("has invalid base64 ({e})")))?;
        // The blob starts with the key type as an SSH string: u32 length, bytes.
        if read_string(&blob, 0).map(|(inner, _)| inner) != Some(kind.as_bytes()) {
            return Err(bad(format!("has a key blob that is not a `{kind}` key")));
        }
        if kind == "ssh-ed25519" && blob.len() != 4 + 11 + 4 + 32 {
            return Err(bad("has an ed25519 key of the wrong length".into()));
        }
        Ok(HostKey {
            kind: kind.to_owned(),
            base64: b64.to_owned(),
            blob,
        })
    }

    /// `SHA256:...` (unpadded base64 of the SHA-256 of the key blob), as OpenSSH prints.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    /// Key size in bits, as `ssh-keygen -l` reports it.
    pub fn bits(&self) -> Option<u32> {
        match self.kind.as_str() {
            "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => Some(256),
            "ecdsa-sha2-nistp256" | "sk-ecdsa-sha2-nistp256@openssh.com" => Some(256),
            "ecdsa-sha2-nistp384" => Some(384),
            "ecdsa-sha2-nistp521" => Some(521),
            "ssh-rsa" => {
                let (_, at) = read_string(&self.blob, 0)?;
                let (_e, at) = read_string(&self.blob, at)?;
                let (n, _) = read_string(&self.blob, at)?;
                let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
                let first = *n.first()?;
                Some((n.len() as u32) * 8 - first.leading_zeros())
            }
            _ => None,
        }
    }

    /// `ED25519`, `RSA`, `ECDSA`…
    pub fn label(&self) -> String {
        match self.kind.as_str() {
            "ssh-ed25519" => "ED25519".into(),
            "ssh-rsa" => "RSA".into(),
            k if k.starts_with("ecdsa-") => "ECDSA".into(),
            k => k.to_uppercase(),
        }
    }

    /// `256 SHA256:... (ED25519)`, like `ssh-keygen -l`.
    pub fn describe(&self) -> String {
        match self.bits() {
            Some(b) => format!("{b} {} ({})", self.fingerprint(), self.label()),
            None => format!("{} ({})", self.fingerprint(), self.label()),
        }
    }

    /// The `type base64` line to pin in kiln.toml (no comment).
    pub fn line(&self) -> String {
        format!("{} {}", self.kind, self.base64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    #[test]
    fn bad_lines_say_why() {
        let why = |l: &str| HostKey::parse(l).unwrap_err().why;
        assert!(why("ssh-ed25519").starts_with("is not an OpenSSH public key line"));
        assert!(why("ssh-ed25519 !!!notbase64").starts_with("has invalid base64"));
        assert_eq!(
            why("ssh-dss AAAAB3NzaC1kc3M="),
            "has unknown key type `ssh-dss`"
        );
        let data = ED.split_whitespace().nth(1).unwrap();
        assert_eq!(
            why(&format!("ssh-rsa {data}")),
            "has a key blob that is not a `ssh-rsa` key"
        );
    }

    #[test]
    fn a_good_line_keeps_type_and_data_without_the_comment() {
        let k = HostKey::parse(ED).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.line(), ED.trim_end_matches(" test"));
        assert_eq!(k.bits(), Some(256));
        assert!(k.describe().starts_with("256 SHA256:"));
        assert!(k.describe().ends_with("(ED25519)"));
    }
}
