//! Finds the Debian mirror this machine's apt already uses (one-line `.list` files and deb822
//! `.sources` files), so the lab never hard-codes a registry host. Parsing is pure and tested;
//! only [`host_mirror`] reads files.

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// The Debian archive and (when configured) security archive URIs, without trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AptMirror {
    pub debian: String,
    pub security: Option<String>,
}

impl AptMirror {
    /// The same mirror over plain http: apt-cacher-ng can only cache plain http (signatures
    /// still protect the content).
    pub fn plain_http(&self) -> AptMirror {
        let f = |u: &str| {
            u.strip_prefix("https://")
                .map(|r| format!("http://{r}"))
                .unwrap_or_else(|| u.to_string())
        };
        AptMirror {
            debian: f(&self.debian),
            security: self.security.as_deref().map(f),
        }
    }
}

/// One source entry: its URI and suites (deb lines only, deb-src ignored).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    uri: String,
    suites: Vec<String>,
}

fn parse_one_line(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        {
            Some(r) => r.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(Entry {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
            });
        }
    }
    out
}

fn parse_deb822(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut types, mut uris, mut suites, mut enabled) =
            (Vec::new(), Vec::new(), Vec::new(), true);
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || {
                value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris {
                out.push(Entry {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    out
}

fn pick(entries: &[Entry]) -> Option<AptMirror> {
    let usable = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    let trimmed = |u: &str| u.trim_end_matches('/').to_string();
    let debian = entries.iter().find(|e| {
        usable(&e.uri)
            && trimmed(&e.uri).ends_with("/debian")
            && e.suites.iter().any(|s| !s.ends_with("-security"))
    })?;
    let security = entries
        .iter()
        .find(|e| usable(&e.uri) && trimmed(&e.uri).ends_with("/debian-security"))
        .map(|e| trimmed(&e.uri));
    Some(AptMirror {
        debian: trimmed(&debian.uri),
        security,
    })
}

/// Parses the given source files (path, content); `.sources` files are deb822.
pub fn mirror_from_sources(files: &[(PathBuf, String)]) -> Option<AptMirror> {
    let mut entries = Vec::new();
    for (path, text) in files {
        if path.extension().is_some_and(|e| e == "sources") {
            entries.extend(parse_deb822(text));
        } else {
            entries.extend(parse_one_line(text));
        }
    }
    pick(&entries)
}

/// Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}. The environment
/// variable `KILN_LAB_MIRROR` (and `KILN_LAB_SECURITY_MIRROR`) overrides.
pub fn host_mirror() -> Result<AptMirror> {
    if let Ok(m) = std::env::var("KILN_LAB_MIRROR") {
        return Ok(AptMirror {
            debian: m.trim_end_matches('/').to_string(),
            security: std::env::var("KILN_LAB_SECURITY_MIRROR").ok(),
        });
    }
    let root = Path::new("/etc/apt");
    let mut paths = vec![root.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(root.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        paths.extend(more);
    }
    let files: Vec<(PathBuf, String)> = paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok().map(|t| (p.clone(), t)))
        .collect();
    mirror_from_sources(&files).ok_or_else(|| LabError::NoMirror {
        checked: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_give_archive_and_security() {
        let text = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\nComponents: main\n";
        let m =
            mirror_from_sources(&[("/etc/apt/sources.list.d/debian.sources".into(), text.into())])
                .unwrap();
        assert_eq!(m.debian, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

    #[test]
    fn one_line_sources_with_options_and_src_lines() {
        let text = "deb-src http://src.example/debian bookworm main\n# deb http://old.example/debian sid main\ndeb [arch=amd64 signed-by=/k.gpg] https://m.example/debian/ bookworm main\n";
        let m = mirror_from_sources(&[("/etc/apt/sources.list".into(), text.into())]).unwrap();
        assert_eq!(m.debian, "https://m.example/debian");
        assert_eq!(m.security, None);
        assert_eq!(m.plain_http().debian, "http://m.example/debian");
    }

    #[test]
    fn disabled_stanzas_and_non_debian_archives_are_ignored() {
        let text = "Types: deb\nURIs: http://a.example/debian\nSuites: trixie\nEnabled: no\n\nTypes: deb\nURIs: http://b.example/ubuntu\nSuites: noble\n";
        assert_eq!(
            mirror_from_sources(&[("x.sources".into(), text.into())]),
            None
        );
    }
}
