//! SSH host keys on the transport side: known_hosts lines (`[addr]:port` for non-22
//! ports) and ssh-keyscan output. Parsing and fingerprints are kiln-model's
//! [`HostKey`], shared with validation and `kiln show`.
//!
//! Pure functions; the transport and `kiln trust` use them.

pub use kiln_model::ssh_key::{BadKey, HostKey};

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
            "has a key blob that is not a `ssh-rsa` key"
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
