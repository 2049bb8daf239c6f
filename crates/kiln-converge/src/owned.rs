//! The ownership record each host keeps (`/var/lib/kiln/owned.json`): what kiln put there,
//! so that what is no longer declared can be removed, and guarded commands that already
//! ran are not run again; and what kiln borrowed (style rule 12, "taking over is
//! borrowing"): files and symlinks that existed before kiln managed them (a file's bytes
//! are kept in `/var/lib/kiln/originals/`, root only), and units that existed before (a
//! package's, or a unit file kiln overwrote), with their state then, so that both are
//! given back when kiln stops managing them.
//!
//! Data and (de)serialization only; the agent reads and writes it under its root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the record lives, relative to the host's root.
pub const OWNED_PATH: &str = "/var/lib/kiln/owned.json";

/// Where the originals of taken-over files are kept (0700), one file (0600) per content,
/// named by its sha256.
pub const ORIGINALS_DIR: &str = "/var/lib/kiln/originals";

/// Where the bytes of an original with this hash are kept, relative to the host's root.
pub fn original_path(sha256: &str) -> PathBuf {
    PathBuf::from(ORIGINALS_DIR).join(sha256)
}

/// What was at a path before kiln took it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Original {
    /// A regular file; its bytes are at [`original_path`].
    File {
        sha256: String,
        mode: u32,
        owner: String,
        group: String,
    },
    /// A symbolic link (e.g. /etc/resolv.conf on many systems).
    Symlink { target: PathBuf },
}

impl Original {
    /// The hash of the kept bytes, for a regular file.
    pub fn sha256(&self) -> Option<&str> {
        match self {
            Original::File { sha256, .. } => Some(sha256),
            Original::Symlink { .. } => None,
        }
    }
}

/// A unit that existed before kiln managed it, and its state then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BorrowedUnit {
    pub enabled: bool,
    pub active: bool,
}

/// What kiln manages on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owned {
    #[serde(default)]
    pub files: BTreeSet<PathBuf>,
    /// Directories kiln created (one that existed before is never removed).
    #[serde(default)]
    pub directories: BTreeSet<PathBuf>,
    #[serde(default)]
    pub symlinks: BTreeSet<PathBuf>,
    #[serde(default)]
    pub units: BTreeSet<String>,
    /// Of those units, the ones a package ships ([`crate::resource::UnitKind::Packaged`]):
    /// kiln wrote no file for them, so none is ever removed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub packaged: BTreeSet<String>,
    /// Of those units, the ones a Podman quadlet generates: unit → its quadlet file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quadlets: BTreeMap<String, String>,
    /// Users and groups kiln created (pre-existing accounts are never removed).
    #[serde(default)]
    pub users: BTreeSet<String>,
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Packages kiln installed (pre-installed packages are never removed).
    #[serde(default)]
    pub packages: BTreeSet<String>,
    /// Commands that ran successfully: name → sha256 of their `run` text.
    #[serde(default)]
    pub commands: BTreeMap<String, String>,
    /// Of the owned files (unit files included), those that existed before kiln: restored,
    /// not removed, when no longer declared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub originals: BTreeMap<PathBuf, Original>,
    /// Of the owned units, those that existed before kiln: given back their state, not
    /// stopped and disabled, when no longer declared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub borrowed_units: BTreeMap<String, BorrowedUnit>,
}

impl Owned {
    /// The file kiln wrote for an owned unit (its quadlet, or its unit file).
    pub fn unit_file(&self, unit: &str) -> PathBuf {
        match self.quadlets.get(unit) {
            Some(file) => crate::resource::quadlet_path(file),
            None => crate::resource::unit_path(unit),
        }
    }

    /// Everything in either record (written before an apply starts, so that a run killed
    /// midway still knows about what it may have created).
    pub fn union(&self, other: &Owned) -> Owned {
        let mut u = self.clone();
        u.files.extend(other.files.iter().cloned());
        u.directories.extend(other.directories.iter().cloned());
        u.symlinks.extend(other.symlinks.iter().cloned());
        u.units.extend(other.units.iter().cloned());
        for (k, v) in &other.quadlets {
            u.quadlets.entry(k.clone()).or_insert_with(|| v.clone());
        }
        u.users.extend(other.users.iter().cloned());
        u.groups.extend(other.groups.iter().cloned());
        u.packages.extend(other.packages.iter().cloned());
        for (k, v) in &other.commands {
            u.commands.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.originals {
            u.originals.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.borrowed_units {
            u.borrowed_units.entry(k.clone()).or_insert(*v);
        }
        u
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
