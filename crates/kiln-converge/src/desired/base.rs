//! The files of the hardened base every host gets, rendered from plain parameters: sshd
//! ([`sshd`]), firewalld ([`firewall`]), automatic security updates and their metrics
//! ([`updates`]), time and host name ([`time`]), node-exporter ([`node_exporter`]) and the
//! WireGuard interface ([`wireguard`]). Each function returns the files of its part for
//! one host and OS family, as [`BaseFile`]s (path, mode, content); the templates are the
//! catalog's `base/*.j2` ([`kiln_catalog::BASE_TEMPLATES`]), rendered with
//! [`render_catalog`] like the services' (a repository overrides one with
//! `catalog/base/<name>`).
//!
//! Pure: no model (the parameters are this module's own structs, filled in by the
//! feature that reads `[base]`), no host, no vault (a value that is a secret, the
//! WireGuard private key, comes in as a [`kiln_secrets::Secret`] and its file is marked
//! sensitive). Which files form a guarded group, which unit they reload and how a file is
//! validated on the host (`sshd -t`, `firewall-offline-cmd --check-config`) is the
//! wiring's business, not this module's.
//!
//! Only Debian runs here: the RHEL renderings are covered by snapshot tests, not by a
//! real RHEL host.

pub mod feature;
pub mod firewall;
pub mod node_exporter;
pub mod sshd;
pub mod time;
pub mod updates;
pub mod wireguard;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_catalog::BASE_KIND;
use serde_json::Value;

use super::template::render_catalog;
use super::{DesiredError, NoSecrets};
use crate::facts::OsFamily;
use crate::resource::{Content, File, Notify};

/// One file of the base: where it goes, its mode and its content (owner root:root).
#[derive(Clone, PartialEq, Eq)]
pub struct BaseFile {
    pub path: PathBuf,
    pub mode: u32,
    pub content: String,
    /// The content holds a secret (plans show that it changed, never how).
    pub sensitive: bool,
}

impl BaseFile {
    /// The file as a resource (root:root, unchecked) notifying `notify`.
    pub fn into_resource(self, notify: &[Notify]) -> File {
        let mut f = File::root(self.path, Content::text(self.content), self.mode);
        f.sensitive = self.sensitive;
        f.notify = notify.to_vec();
        f
    }

    /// [`Self::into_resource`], in guarded group `guard`.
    pub fn into_guarded(self, guard: &str, notify: &[Notify]) -> File {
        let mut f = self.into_resource(notify);
        f.guard = Some(guard.to_owned());
        f
    }
}

impl fmt::Debug for BaseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let content: &dyn fmt::Debug = if self.sensitive {
            &"<redacted>"
        } else {
            &self.content
        };
        f.debug_struct("BaseFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("content", content)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// Renders the base's catalog templates for one host: `base_dir` is the folder of
/// kiln.toml (where `catalog/base/<name>` overrides live), `host` the host's role (named
/// in the files and in errors).
pub struct Renderer<'a> {
    base_dir: &'a Path,
    host: &'a str,
}

impl<'a> Renderer<'a> {
    pub fn new(base_dir: &'a Path, host: &'a str) -> Self {
        Renderer { base_dir, host }
    }

    /// The host's role.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// Renders `base/<name>` with `ctx` plus `host.role`. The base's templates read no
    /// secret from the vault: an override calling `secret()` is an error.
    fn render(&self, name: &str, mut ctx: Value) -> Result<String, DesiredError> {
        if let Value::Object(m) = &mut ctx {
            m.insert("host".into(), serde_json::json!({ "role": self.host }));
        }
        let (text, _) = render_catalog(
            self.base_dir,
            BASE_KIND,
            name,
            &ctx,
            Arc::new(NoSecrets(
                "the base's templates get their values from kiln, not from the vault".into(),
            )),
            &format!("the base ({name})"),
            self.host,
        )?;
        Ok(text)
    }

    /// A file at `path` rendered from `base/<name>`.
    fn file(
        &self,
        path: impl Into<PathBuf>,
        mode: u32,
        name: &str,
        ctx: Value,
    ) -> Result<BaseFile, DesiredError> {
        Ok(BaseFile {
            path: path.into(),
            mode,
            content: self.render(name, ctx)?,
            sensitive: false,
        })
    }

    /// Refuses a value that would not stay one word in a configuration file (a space, a
    /// newline, a quote or markup would let it add lines or attributes of its own).
    fn word(&self, part: &'static str, what: &str, value: &str) -> Result<(), DesiredError> {
        let ok = !value.is_empty()
            && !value.starts_with('-')
            && value.chars().all(|c| {
                c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '#' | '\\' | '<' | '>' | '&')
            });
        if ok {
            Ok(())
        } else {
            Err(self.err(
                part,
                format!("{what} {value:?} is not one word (letters, digits, . _ - : / @ ...)"),
            ))
        }
    }

    fn err(&self, part: &'static str, message: impl Into<String>) -> DesiredError {
        DesiredError::Base {
            host: self.host.to_owned(),
            part,
            message: message.into(),
        }
    }
}

/// The family's name in the templates' context (`debian`, `rhel`).
fn os_name(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "debian",
        OsFamily::Rhel => "rhel",
    }
}

#[cfg(test)]
mod tests;
