//! Time and name, part of the base: chrony's configuration (pools, `makestep` for a
//! fresh or restored server, `rtcsync`), at `/etc/chrony/chrony.conf` on Debian and
//! `/etc/chrony.conf` on RHEL with each family's own key, drift and drop-in paths, and
//! `/etc/hostname` as a plain file.

use serde_json::json;

use super::{BaseFile, Renderer, os_name};
use crate::desired::DesiredError;
use crate::facts::OsFamily;

/// chrony's configuration file.
pub fn chrony_conf(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "/etc/chrony/chrony.conf",
        OsFamily::Rhel => "/etc/chrony.conf",
    }
}

/// The NTP pool each family's package uses.
pub fn default_pools(os: OsFamily) -> Vec<String> {
    match os {
        OsFamily::Debian => vec!["2.debian.pool.ntp.org".into()],
        OsFamily::Rhel => vec!["2.rhel.pool.ntp.org".into()],
    }
}

/// What chrony.conf is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChronyParams {
    pub os: OsFamily,
    /// `pool` lines (names resolving to several servers).
    pub pools: Vec<String>,
    /// `server` lines (one server each, e.g. the provider's).
    pub servers: Vec<String>,
}

/// chrony.conf (0644).
pub fn chrony_files(r: &Renderer<'_>, p: &ChronyParams) -> Result<Vec<BaseFile>, DesiredError> {
    const PART: &str = "time sync";
    if p.pools.is_empty() && p.servers.is_empty() {
        return Err(r.err(PART, "no NTP pool or server"));
    }
    for s in p.pools.iter().chain(&p.servers) {
        r.word(PART, "NTP source", s)?;
    }
    let ctx = json!({ "os": os_name(p.os), "pools": p.pools, "servers": p.servers });
    Ok(vec![r.file(
        chrony_conf(p.os),
        0o644,
        "chrony.conf.j2",
        ctx,
    )?])
}

/// `/etc/hostname` (0644): `name` and a newline, after checking it is a host name
/// (labels of letters, digits and inner `-`, 64 characters at most, Linux's limit).
pub fn hostname_file(r: &Renderer<'_>, name: &str) -> Result<BaseFile, DesiredError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() > 64 || !name.split('.').all(label_ok) {
        return Err(r.err("host name", format!("{name:?} is not a host name")));
    }
    Ok(BaseFile {
        path: "/etc/hostname".into(),
        mode: 0o644,
        content: format!("{name}\n"),
        sensitive: false,
    })
}
