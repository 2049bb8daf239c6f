//! Reading ansible-vault data, for `kiln import ansible-vault`: the vault text format
//! (`$ANSIBLE_VAULT;1.1;AES256` and `$ANSIBLE_VAULT;1.2;AES256;<vault-id>`), inline
//! `!vault |` values in YAML vars files, and whole-file encrypted vars files.
//!
//! The cipher, as ansible-core implements it: PBKDF2-HMAC-SHA256 (10 000 iterations) of
//! the password and a salt gives 80 bytes: an AES-256 key, an HMAC-SHA256 key and the
//! CTR initial counter block. The envelope is hex of
//! `hex(salt) \n hex(hmac) \n hex(ciphertext)`; the plaintext is PKCS#7-padded. The MAC
//! is checked (in constant time) before anything is decrypted.
//!
//! Pure parsing and decryption: no file is read here (the caller passes contents), nothing
//! is printed, and values only ever leave as [`Secret`]s.

use std::path::{Path, PathBuf};

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use zeroize::Zeroizing;

use crate::spec;
use crate::value::Secret;

const PBKDF2_ITERATIONS: u32 = 10_000;
const HEADER_PREFIX: &str = "$ANSIBLE_VAULT;";

/// What went wrong, and where (`line` is 1-based in `file`).
#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    #[error("{file}:{line}: wrong vault password (the HMAC does not match){}", vault_id.as_ref().map(|v| format!(" for vault id `{v}`")).unwrap_or_default())]
    WrongPassword {
        file: PathBuf,
        line: usize,
        vault_id: Option<String>,
    },
    #[error("{file}:{line}: {reason}")]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{file}:{line}:{col}: invalid YAML: {reason}")]
    Yaml {
        file: PathBuf,
        line: usize,
        col: usize,
        reason: String,
    },
    #[error(
        "{file}:{line}: variable `{name}` cannot become a kiln secret name: only lowercase \
         letters, digits and `_` are allowed; rename it in the vars file first"
    )]
    InvalidName {
        file: PathBuf,
        line: usize,
        name: String,
    },
    #[error(
        "{file}:{line}: `{path}` is nested inside a mapping or list: kiln imports top-level \
         variables only (move it to the top level, or set it with `kiln secrets set`)"
    )]
    Nested {
        file: PathBuf,
        line: usize,
        path: String,
    },
    #[error("{file}:{line}: `{name}` is a {kind}, not a text value")]
    NotScalar {
        file: PathBuf,
        line: usize,
        name: String,
        kind: &'static str,
    },
    #[error("{file}:{line}: the decrypted value of `{name}` is not UTF-8 text")]
    NotText {
        file: PathBuf,
        line: usize,
        name: String,
    },
    #[error(
        "{file}: no vault-encrypted values found (neither `!vault` values nor a whole-file vault)"
    )]
    NothingToImport { file: PathBuf },
}

impl AnsibleError {
    /// Whether the user's input is at fault (exit 2): all of them, as import only parses.
    pub fn is_bad_input(&self) -> bool {
        true
    }
}

/// A variable found in a vars file, decrypted.
#[derive(Debug)]
pub struct ImportedVar {
    /// The variable name, also its kiln secret name.
    pub name: String,
    pub value: Secret,
    pub file: PathBuf,
    /// Line of the variable in `file`, or in the decrypted text of a whole-file vault.
    pub line: usize,
    /// True when `file` is a whole-file vault (the line is in its decrypted text).
    pub whole_file: bool,
}

/// The parsed header of a vault text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: String,
    pub vault_id: Option<String>,
    /// The hex payload (line breaks removed).
    pub payload: String,
}

/// Whether `text` (a whole file) is an ansible-vault encrypted file.
pub fn is_vault_text(text: &str) -> bool {
    text.trim_start().starts_with(HEADER_PREFIX)
}

/// Parses a vault text's envelope. `line` is where it starts in `file` (for errors).
pub fn parse_envelope(text: &str, file: &Path, line: usize) -> Result<Envelope, AnsibleError> {
    let bad = |l: usize, reason: String| AnsibleError::Malformed {
        file: file.to_owned(),
        line: l,
        reason,
    };
    let mut lines = text.trim().lines();
    let header = lines.next().unwrap_or("").trim();
    let fields: Vec<&str> = header.split(';').collect();
    if fields.first() != Some(&"$ANSIBLE_VAULT") || fields.len() < 3 {
        return Err(bad(
            line,
            "not an ansible-vault text (expected `$ANSIBLE_VAULT;1.1;AES256`)".into(),
        ));
    }
    let version = fields[1].to_owned();
    let vault_id = match (version.as_str(), fields.len()) {
        ("1.1", 3) => None,
        ("1.2", 4) => Some(fields[3].to_owned()),
        ("1.1" | "1.2", _) => return Err(bad(line, format!("malformed vault header `{header}`"))),
        (v, _) => {
            return Err(bad(
                line,
                format!("unsupported vault format version {v} (1.1 and 1.2 are)"),
            ));
        }
    };
    if fields[2] != "AES256" {
        return Err(bad(
            line,
            format!(
                "unsupported vault cipher `{}` (only AES256 exists)",
                fields[2]
            ),
        ));
    }
    let mut payload = String::new();
    for (i, l) in lines.enumerate() {
        let l = l.trim();
        if !l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(
                line + 1 + i,
                "vault payload line is not hexadecimal".into(),
            ));
        }
        payload.push_str(l);
    }
    if payload.is_empty() {
        return Err(bad(line, "vault text has no payload (truncated?)".into()));
    }
    Ok(Envelope {
        version,
        vault_id,
        payload,
    })
}

/// Decrypts a vault text (`$ANSIBLE_VAULT;…` plus its hex lines) with `password`.
pub fn decrypt(
    text: &str,
    password: &Secret,
    file: &Path,
    line: usize,
) -> Result<Zeroizing<Vec<u8>>, AnsibleError> {
    let env = parse_envelope(text, file, line)?;
    let bad = |reason: &str| AnsibleError::Malformed {
        file: file.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let inner = hex::decode(&env.payload)
        .map_err(|_| bad("vault payload is not valid hex (truncated?)"))?;
    let parts: Vec<&[u8]> = inner.split(|&b| b == b'\n').collect();
    let [salt, mac, ciphertext] = parts.as_slice() else {
        return Err(bad(
            "vault payload does not hold salt, HMAC and ciphertext (truncated?)",
        ));
    };
    let unhex = |part: &[u8], what: &str| {
        hex::decode(part).map_err(|_| bad(&format!("vault {what} is not valid hex (truncated?)")))
    };
    let salt = unhex(salt, "salt")?;
    let mac = unhex(mac, "HMAC")?;
    let mut data = Zeroizing::new(unhex(ciphertext, "ciphertext")?);

    let mut derived = Zeroizing::new([0u8; 80]);
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.expose().as_bytes(),
        &salt,
        PBKDF2_ITERATIONS,
        &mut *derived,
    );
    let (aes_key, rest) = derived.split_at(32);
    let (mac_key, iv) = rest.split_at(32);

    let mut check =
        <Hmac<Sha256> as Mac>::new_from_slice(mac_key).map_err(|_| bad("invalid HMAC key"))?;
    check.update(&data);
    // verify_slice compares in constant time.
    check
        .verify_slice(&mac)
        .map_err(|_| AnsibleError::WrongPassword {
            file: file.to_owned(),
            line,
            vault_id: env.vault_id.clone(),
        })?;

    let mut cipher = ctr::Ctr128BE::<Aes256>::new(aes_key.into(), iv.into());
    cipher.apply_keystream(&mut data);
    let pad = usize::from(*data.last().ok_or_else(|| bad("empty ciphertext"))?);
    if pad == 0
        || pad > 16
        || pad > data.len()
        || !data[data.len() - pad..]
            .iter()
            .all(|&b| usize::from(b) == pad)
    {
        return Err(bad("invalid padding after decryption"));
    }
    let len = data.len() - pad;
    data.truncate(len);
    Ok(data)
}

/// Reads a vars file's contents: inline `!vault` values, or every top-level value of a
/// whole-file vault. All or nothing: the first problem is returned.
pub fn read_vars_file(
    file: &Path,
    contents: &str,
    password: &Secret,
) -> Result<Vec<ImportedVar>, AnsibleError> {
    if is_vault_text(contents) {
        let start = contents
            .lines()
            .position(|l| l.trim_start().starts_with(HEADER_PREFIX))
            .unwrap_or(0)
            + 1;
        let plain = decrypt(contents, password, file, start)?;
        let text = std::str::from_utf8(&plain).map_err(|_| AnsibleError::NotText {
            file: file.to_owned(),
            line: start,
            name: file.display().to_string(),
        })?;
        let text = Zeroizing::new(text.to_owned());
        let vars = collect(file, &text, password, true)?;
        return Ok(vars);
    }
    let vars = collect(file, contents, password, false)?;
    if vars.is_empty() {
        return Err(AnsibleError::NothingToImport {
            file: file.to_owned(),
        });
    }
    Ok(vars)
}

/// One YAML event with its position.
struct Collector {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.events.push((ev, mark));
    }
}

fn is_vault_tag(ev: &Event) -> bool {
    matches!(ev, Event::Scalar(_, _, _, Some(tag)) if tag.suffix == "vault")
}

fn collect(
    file: &Path,
    text: &str,
    password: &Secret,
    whole_file: bool,
) -> Result<Vec<ImportedVar>, AnsibleError> {
    let mut rx = Collector { events: vec![] };
    Parser::new_from_str(text)
        .load(&mut rx, true)
        .map_err(|e| AnsibleError::Yaml {
            file: file.to_owned(),
            line: e.marker().line(),
            col: e.marker().col() + 1,
            reason: e.info().to_owned(),
        })?;
    let events = rx.events;
    let mut out = vec![];
    // Walk: depth 1 mapping's keys are variables.
    let mut i = 0;
    let mut depth = 0usize;
    // Path of keys for nested-value errors.
    let mut top_key: Option<(String, usize)> = None;
    let mut expecting_key = vec![];
    while i < events.len() {
        let (ev, mark) = &events[i];
        match ev {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 1
                    && let Some((name, line)) = top_key.take()
                {
                    let kind = if matches!(ev, Event::MappingStart(..)) {
                        "mapping"
                    } else {
                        "list"
                    };
                    if whole_file {
                        return Err(AnsibleError::NotScalar {
                            file: file.to_owned(),
                            line,
                            name,
                            kind,
                        });
                    }
                    // Scan the nested value for `!vault` values: those cannot be imported.
                    let nested = find_nested_vault(&events[i..]);
                    if let Some(line) = nested {
                        return Err(AnsibleError::Nested {
                            file: file.to_owned(),
                            line,
                            path: name,
                        });
                    }
                    // Skip the nested value entirely.
                    i = skip_node(&events, i);
                    if let Some(k) = expecting_key.last_mut() {
                        *k = true;
                    }
                    continue;
                }
                depth += 1;
                expecting_key.push(matches!(ev, Event::MappingStart(..)));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
                expecting_key.pop();
            }
            Event::Scalar(value, _, _, _) if depth == 1 && expecting_key.last() == Some(&true) => {
                if let Some(k) = expecting_key.last_mut() {
                    *k = false;
                }
                top_key = Some((value.clone(), mark.line()));
            }
            Event::Scalar(value, _, _, _) if depth == 1 && expecting_key.last() == Some(&false) => {
                if let Some(k) = expecting_key.last_mut() {
                    *k = true;
                }
                let Some((name, line)) = top_key.take() else {
                    i += 1;
                    continue;
                };
                let vault = is_vault_tag(ev);
                if !vault && !whole_file {
                    i += 1;
                    continue;
                }
                if spec::check_name(&name).is_err() {
                    return Err(AnsibleError::InvalidName {
                        file: file.to_owned(),
                        line,
                        name,
                    });
                }
                let secret = if vault {
                    let plain = decrypt(value, password, file, mark.line())?;
                    let s = std::str::from_utf8(&plain).map_err(|_| AnsibleError::NotText {
                        file: file.to_owned(),
                        line,
                        name: name.clone(),
                    })?;
                    Secret::new(s)
                } else {
                    Secret::new(value.as_str())
                };
                out.push(ImportedVar {
                    name,
                    value: secret,
                    file: file.to_owned(),
                    line,
                    whole_file,
                });
            }
            Event::Scalar(..) if depth > 1 && is_vault_tag(ev) => {
                return Err(AnsibleError::Nested {
                    file: file.to_owned(),
                    line: mark.line(),
                    path: top_key.map(|k| k.0).unwrap_or_default(),
                });
            }
            Event::Alias(_) if depth == 1 && expecting_key.last() == Some(&false) => {
                if let Some(k) = expecting_key.last_mut() {
                    *k = true;
                }
                if let Some((name, line)) = top_key.take()
                    && whole_file
                {
                    return Err(AnsibleError::NotScalar {
                        file: file.to_owned(),
                        line,
                        name,
                        kind: "YAML alias",
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(out)
}

/// Index just past the node starting at `start` (a MappingStart/SequenceStart).
fn skip_node(events: &[(Event, Marker)], start: usize) -> usize {
    let mut depth = 0usize;
    for (j, (ev, _)) in events.iter().enumerate().skip(start) {
        match ev {
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    events.len()
}

/// Line of the first `!vault` scalar inside the node starting at `events[0]`.
fn find_nested_vault(events: &[(Event, Marker)]) -> Option<usize> {
    let end = skip_node(events, 0);
    events[..end]
        .iter()
        .find(|(ev, _)| is_vault_tag(ev))
        .map(|(_, m)| m.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_headers() {
        let f = Path::new("v.yml");
        let e = parse_envelope("$ANSIBLE_VAULT;1.1;AES256\nabcd\n0123\n", f, 1).unwrap();
        assert_eq!(
            (e.version.as_str(), e.vault_id, e.payload.as_str()),
            ("1.1", None, "abcd0123")
        );
        let e = parse_envelope("$ANSIBLE_VAULT;1.2;AES256;prod\nab\n", f, 1).unwrap();
        assert_eq!(e.vault_id.as_deref(), Some("prod"));
        assert!(parse_envelope("$ANSIBLE_VAULT;1.0;AES\nab\n", f, 1).is_err());
        assert!(parse_envelope("$ANSIBLE_VAULT;1.1;AES256\n", f, 1).is_err());
        let err = parse_envelope("$ANSIBLE_VAULT;1.1;AES256\nab\nzz\n", f, 10).unwrap_err();
        assert!(err.to_string().starts_with("v.yml:12:"), "{err}");
    }
}
