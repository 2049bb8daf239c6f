//! SSH host keys: parsing OpenSSH public key lines, SHA256 fingerprints as `ssh-keygen -l`
//! shows them, known_hosts lines (`[addr]:port` for non-22 ports), ssh-keyscan output.
//!
//! Pure functions; the transport and `kiln trust` use them.

use base64::Engine as _;

/// A public host key (`type base64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub kind: String,
    pub base64: String,
    blob: Vec<u8>,
}

/// A key line that is not an OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an OpenSSH public key line ({why}): {line:?}")]
pub struct BadKey {
    pub line: String,
    pub why: &'static str,
}

fn read_string(blob: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
    let s = blob.get(at + 4..at + 4 + len)?;
    Some((s, at + 4 + len))
}

impl HostKey {
    /// Parses `type base64 [comment]`.
    pub fn parse(line: &str) -> Result<HostKey, BadKey> {
        let bad = |why| BadKey {
            line: line.to_owned(),
            why,
        };
        let mut words = line.split_whitespace();
        let kind = words.next().ok_or_else(|| bad("empty"))?;
        let b64 = words.next().ok_or_else(|| bad("no key data"))?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("key data is not base64"))?;
        let (inner, _) = read_string(&blob, 0).ok_or_else(|| bad("truncated key data"))?;
        if inner != kind.as_bytes() {
            return Err(bad("key type does not match its data"));
        }
        Ok(HostKey {
            kind: kind.to_owned(),
            base64: b64.to_owned(),
            blob,
        })
    }

    /// `SHA256:...` (unpadded base64 of the SHA-256 of the key blob), as OpenSSH prints.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
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

    /// The `type base64` line to pin in kiln.toml.
    pub fn line(&self) -> String {
        format!("{} {}", self.kind, self.base64)
    }
}

/// The host pattern known_hosts uses for `addr:port`.
pub fn known_hosts_pattern(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// known_hosts text pinning `keys` for `address:port`.
pub fn known_hosts(address: &str, port: u16, keys: &[HostKey]) -> String {
    let pat = known_hosts_pattern(address, port);
    keys.iter()
        .map(|k| format!("{pat} {} {}\n", k.kind, k.base64))
        .collect()
}

/// Keys from `ssh-keyscan` output (`host type base64` lines; comments skipped).
pub fn parse_keyscan(stdout: &str) -> Vec<HostKey> {
    let mut keys: Vec<HostKey> = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(' ')
                .and_then(|(_, rest)| HostKey::parse(rest).ok())
        })
        .collect();
    keys.sort_by(|a, b| a.kind.cmp(&b.kind));
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with ssh-keygen; fingerprints as printed by `ssh-keygen -l -f`.
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        std::fs::write(&path, format!("{ED}\n")).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let expected = String::from_utf8(out.stdout).unwrap();
        let k = HostKey::parse(ED).unwrap();
        // "256 SHA256:xxx test (ED25519)"
        let mut words = expected.split_whitespace();
        assert_eq!(words.next(), Some("256"));
        assert_eq!(words.next(), Some(k.fingerprint().as_str()));
        assert_eq!(k.describe(), format!("256 {} (ED25519)", k.fingerprint()));
    }

    #[test]
    fn rsa_bits_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("rsa");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let k = HostKey::parse(&line).unwrap();
        assert_eq!(k.bits(), Some(3072));
        let out = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&k.fingerprint()));
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(HostKey::parse("").is_err());
        assert!(HostKey::parse("ssh-ed25519 !!!").is_err());
        // data of an ed25519 key labelled as rsa
        let data = ED.split_whitespace().nth(1).unwrap();
        assert_eq!(
            HostKey::parse(&format!("ssh-rsa {data}")).unwrap_err().why,
            "key type does not match its data"
        );
    }

    #[test]
    fn known_hosts_uses_brackets_for_other_ports() {
        let k = HostKey::parse(ED).unwrap();
        let data = ED.split_whitespace().nth(1).unwrap();
        assert_eq!(
            known_hosts("10.0.0.1", 22, std::slice::from_ref(&k)),
            format!("10.0.0.1 ssh-ed25519 {data}\n")
        );
        assert_eq!(
            known_hosts("127.0.0.1", 2222, &[k]),
            format!("[127.0.0.1]:2222 ssh-ed25519 {data}\n")
        );
    }

    #[test]
    fn keyscan_output_is_parsed() {
        let data = ED.split_whitespace().nth(1).unwrap();
        let out =
            format!("# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2\n[127.0.0.1]:2222 ssh-ed25519 {data}\n");
        let keys = parse_keyscan(&out);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kind, "ssh-ed25519");
    }
}
