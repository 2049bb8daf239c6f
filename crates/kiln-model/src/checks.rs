//! Checks on single values (domains, e-mail addresses, names, modes, URLs, OpenSSH keys):
//! pure functions returning why a value is wrong. `validate` attaches spans and hints.

use crate::ssh_key::HostKey;

/// A DNS label: 1-63 of `a-z0-9-`, not starting or ending with `-`.
fn label(l: &str) -> Result<(), String> {
    if l.is_empty() {
        return Err("has an empty label (two dots in a row, or a leading/trailing dot)".into());
    }
    if l.len() > 63 {
        return Err(format!("label `{l}` is longer than 63 characters"));
    }
    if let Some(c) = l
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        if c.is_ascii_uppercase() {
            return Err("contains upper-case letters; write domain names in lower case".into());
        }
        return Err(format!(
            "contains `{c}`, which is not allowed in a domain name"
        ));
    }
    if l.starts_with('-') || l.ends_with('-') {
        return Err(format!("label `{l}` starts or ends with `-`"));
    }
    Ok(())
}

/// A fully qualified domain name with at least two labels, no trailing dot.
pub fn domain(s: &str) -> Result<(), String> {
    if s.ends_with('.') {
        return Err("ends with a dot; write it without the trailing dot".into());
    }
    if s.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    s.split('.').try_for_each(label)?;
    if !s.contains('.') {
        return Err("needs at least two labels (like `example.org`)".into());
    }
    if s.rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("has an all-numeric top-level label".into());
    }
    Ok(())
}

/// One or more labels, prepended to a domain (`matrix`, `sliding.matrix`).
pub fn subdomain(s: &str) -> Result<(), String> {
    if s.starts_with('.') || s.ends_with('.') {
        return Err("starts or ends with a dot".into());
    }
    s.split('.').try_for_each(label)
}

/// Domains no public CA issues certificates for (RFC 2606 / RFC 6761): why, if reserved.
pub fn reserved_domain(s: &str) -> Option<&'static str> {
    for reserved in ["example.com", "example.org", "example.net"] {
        if s == reserved || s.ends_with(&format!(".{reserved}")) {
            return Some("is reserved for documentation (RFC 2606)");
        }
    }
    let tld = s.rsplit('.').next().unwrap_or("");
    match tld {
        "test" | "example" | "invalid" | "localhost" => {
            Some("uses a top-level domain reserved by RFC 2606")
        }
        _ => None,
    }
}

/// `local@domain`.
pub fn email(s: &str) -> Result<(), String> {
    let Some((local, dom)) = s.rsplit_once('@') else {
        return Err("has no `@`".into());
    };
    if local.is_empty() {
        return Err("has nothing before the `@`".into());
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(*c)))
    {
        return Err(format!("contains `{c}` before the `@`"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("has a misplaced dot before the `@`".into());
    }
    domain(dom).map_err(|e| format!("domain `{dom}` {e}"))
}

/// The domain part of an e-mail address.
pub fn email_domain(s: &str) -> &str {
    s.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// An octal file mode string such as `"0644"` or `"755"`.
pub fn mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if !(3..=4).contains(&digits.len()) || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("`{s}` is not an octal mode like \"0644\""));
    }
    u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
}

/// Environment, service and role names: `[a-z][a-z0-9-]*`, at most 63 (they appear in
/// DNS names and secret names).
pub fn name(s: &str) -> Result<(), String> {
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(
            "must start with a lower-case letter and hold only `a-z`, `0-9` and `-`".into(),
        );
    }
    if s.len() > 63 || s.ends_with('-') {
        return Err("must be at most 63 characters and not end with `-`".into());
    }
    Ok(())
}

/// A vault secret name: `[a-z0-9_]+`.
pub fn secret_name(s: &str) -> Result<(), String> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("must hold only `a-z`, `0-9` and `_`".into());
    }
    Ok(())
}

/// A Unix user or group name.
pub fn unix_name(s: &str) -> Result<(), String> {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || s.len() > 32 {
        return Err(
            "is not a valid user/group name (`[a-z_][a-z0-9_-]*`, at most 32 characters)".into(),
        );
    }
    Ok(())
}

/// A systemd unit name with a type kiln manages.
pub fn unit_name(s: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        ".service", ".timer", ".socket", ".path", ".target", ".mount",
    ];
    let Some(stem) = SUFFIXES.iter().find_map(|suf| s.strip_suffix(suf)) else {
        return Err(format!("must end with one of {}", SUFFIXES.join(", ")));
    };
    if stem.is_empty() || s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err("is not a valid systemd unit name".into());
    }
    Ok(())
}

/// An absolute path without `..` components.
pub fn absolute_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("must be an absolute path (starting with `/`)".into());
    }
    if s.split('/').any(|c| c == "..") {
        return Err("must not contain `..`".into());
    }
    if s.contains('\0') {
        return Err("contains a NUL character".into());
    }
    Ok(())
}

/// A path relative to kiln.toml's folder, staying inside it.
pub fn relative_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.starts_with('/') {
        return Err("must be relative to kiln.toml's folder".into());
    }
    if s.split('/').any(|c| c == "..") {
        return Err("must stay inside kiln.toml's folder (no `..`)".into());
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host.
pub fn url(s: &str) -> Result<(), String> {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return Err("must start with https:// (or http://)".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
            port.parse::<u16>()
                .map_err(|_| format!("has an invalid port `{port}`"))?;
            h
        }
        _ => authority,
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') {
        domain(host).map_err(|e| format!("host `{host}` {e}"))?;
    }
    if s.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    Ok(())
}

/// A host name given as an address (may be a single label from ~/.ssh/config).
pub fn hostname(s: &str) -> Result<(), String> {
    if s.ends_with('.') {
        return Err("ends with a dot".into());
    }
    s.split('.').try_for_each(label)
}

/// An S3 bucket name.
pub fn bucket(s: &str) -> Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(3..=63).contains(&s.len()) || !ok_chars || !ends_ok {
        return Err("is not a valid bucket name (3-63 of `a-z0-9.-`, starting and ending with a letter or digit)".into());
    }
    Ok(())
}

/// A version / image tag.
pub fn version(s: &str) -> Result<(), String> {
    // Optionally pinned by digest: `v1.118.0@sha256:<64 hex digits>`.
    let s = match s.split_once('@') {
        Some((tag, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return Err("has a digest that is not `sha256:` and 64 lower-case hex digits (like `v1.118.0@sha256:0123…`)".into());
            }
            tag
        }
        None => s,
    };
    if s.is_empty() || s.len() > 128 || s.starts_with(['.', '-']) {
        return Err("must be a non-empty image tag (like `1.9.9` or `v1.94.0`)".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "contains `{c}`; a tag holds only letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// A container image reference without tag or digest.
pub fn image(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err("must be a lower-case image name like `docker.io/library/nginx`".into());
    }
    let last = s.rsplit('/').next().unwrap_or("");
    if last.contains(':') || s.contains('@') {
        return Err("must not include a tag or digest: put the tag in `version`".into());
    }
    Ok(())
}

/// Parses an OpenSSH public key line (`type base64 [comment]`); returns the key type and
/// its `SHA256:` fingerprint as `ssh-keygen -l` prints it.
pub fn ssh_key_fingerprint(line: &str) -> Result<(String, String), String> {
    let key = HostKey::parse(line).map_err(|e| e.why)?;
    let fingerprint = key.fingerprint();
    Ok((key.kind, fingerprint))
}

/// `type base64` of a key line, without the comment.
pub fn ssh_key_canonical(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(domain("ergaster.org").is_ok());
        assert!(domain("staging.ergaster.org").is_ok());
        assert!(domain("ergaster").is_err());
        assert!(domain("Ergaster.org").is_err());
        assert!(domain("a..org").is_err());
        assert!(domain("-a.org").is_err());
        assert!(domain("a.org.").is_err());
        assert!(domain("1.2.3.4").is_err());
        assert!(subdomain("sliding.matrix").is_ok());
        assert!(subdomain("under_score").is_err());
    }

    #[test]
    fn reserved() {
        assert!(reserved_domain("example.com").is_some());
        assert!(reserved_domain("cloud.example.org").is_some());
        assert!(reserved_domain("foo.test").is_some());
        assert!(reserved_domain("a.localhost").is_some());
        assert!(reserved_domain("notexample.com").is_none());
        assert!(reserved_domain("ergaster.org").is_none());
    }

    #[test]
    fn emails() {
        assert!(email("thib@ergaster.org").is_ok());
        assert!(email("a.b+c@x.io").is_ok());
        assert!(email("thib.ergaster.org").is_err());
        assert!(email("@x.org").is_err());
        assert!(email("a b@x.org").is_err());
        assert!(email("a@x").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(mode("0644"), Ok(0o644));
        assert_eq!(mode("755"), Ok(0o755));
        assert_eq!(mode("4755"), Ok(0o4755));
        assert!(mode("0855").is_err());
        assert!(mode("rw-r--r--").is_err());
        assert!(mode("07777").is_err());
    }

    #[test]
    fn urls() {
        assert!(url("https://ntfy.sh/alerts").is_ok());
        assert!(url("https://s3.fr-par.scw.cloud").is_ok());
        assert!(url("http://127.0.0.1:9000").is_ok());
        assert!(url("ftp://x.org").is_err());
        assert!(url("https://").is_err());
        assert!(url("https://x.org:99999").is_err());
    }

    #[test]
    fn ssh_keys_are_parsed_and_fingerprinted_like_ssh_keygen() {
        // Fingerprint checked against `ssh-keygen -lf` for this key.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINm7RYHaF64Iwr8sSPDb/4QNpuwDeWOCXisCWjwmu5Lg test@host";
        let (kind, fp) = ssh_key_fingerprint(key).unwrap();
        assert_eq!(kind, "ssh-ed25519");
        assert_eq!(fp, "SHA256:N2meKJJMSdFHqoSJItXaQTWnyFfuSbgxmzuRtjJy1ew");
        assert!(ssh_key_fingerprint("ssh-ed25519").is_err());
        assert!(ssh_key_fingerprint("ssh-ed25519 !!!notbase64").is_err());
        assert!(ssh_key_fingerprint("ssh-dss AAAAB3NzaC1kc3M=").is_err());
        // An RSA blob labelled ed25519.
        assert!(ssh_key_fingerprint("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7").is_err());
        assert_eq!(
            ssh_key_canonical(key),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINm7RYHaF64Iwr8sSPDb/4QNpuwDeWOCXisCWjwmu5Lg"
        );
    }
}
