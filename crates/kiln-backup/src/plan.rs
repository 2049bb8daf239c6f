//! What one host backs up, as the laptop computes it from the model and ships to the host
//! (`/etc/kiln/backup/plan.json`, no secret in it), and the secrets file beside it
//! (`/etc/kiln/backup/secrets.json`, 0600 root: the servers' S3 credential and the
//! repository password). The host's backup mode ([`crate::run`]) reads both.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the plan lives on a host.
pub const PLAN_PATH: &str = "/etc/kiln/backup/plan.json";
/// Where the secrets live on a host (0600, root).
pub const SECRETS_PATH: &str = "/etc/kiln/backup/secrets.json";
/// Where the host keeps the last run's report (and each item's last success).
pub const STATE_PATH: &str = "/var/lib/kiln/backup/last.json";
/// The metrics file's name in node-exporter's textfile collector directory.
pub const METRICS_FILE: &str = "kiln_backup.prom";
/// The systemd units of the host's backups.
pub const SERVICE_UNIT: &str = "kiln-backup.service";
pub const TIMER_UNIT: &str = "kiln-backup.timer";

/// One host's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    pub environment: String,
    /// The host's role (the snapshots' host name).
    pub host: String,
    pub repository: PlanLocation,
    /// node-exporter's textfile collector directory, when the host has one.
    pub metrics_dir: Option<PathBuf>,
    /// Where the last run's report goes ([`STATE_PATH`]).
    pub state_path: PathBuf,
    /// What to back up, in order.
    pub items: Vec<Item>,
}

/// The repository's location (see [`crate::Location`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLocation {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
}

impl From<&PlanLocation> for crate::Location {
    fn from(p: &PlanLocation) -> crate::Location {
        crate::Location {
            endpoint: p.endpoint.clone(),
            region: p.region.clone(),
            bucket: p.bucket.clone(),
            prefix: p.prefix.clone(),
        }
    }
}

impl From<&crate::Location> for PlanLocation {
    fn from(l: &crate::Location) -> PlanLocation {
        PlanLocation {
            endpoint: l.endpoint.clone(),
            region: l.region.clone(),
            bucket: l.bucket.clone(),
            prefix: l.prefix.clone(),
        }
    }
}

/// What a snapshot holds: a database dump or a service's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dump,
    Files,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Dump => "dump",
            Kind::Files => "files",
        }
    }
}

/// One snapshot to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The service the data belongs to (the `service=` tag).
    pub service: String,
    pub kind: Kind,
    pub source: Source,
    /// What the snapshot holds, recorded as its description (`database synapse on
    /// postgres`, `volumes media of synapse`).
    pub description: String,
    /// Units stopped for the copy and started again right after, also after a failure
    /// (files of a service whose volume has no snapshot support).
    #[serde(default)]
    pub stop_units: Vec<String>,
    /// Commands run before the snapshot (Nextcloud's maintenance mode on).
    #[serde(default)]
    pub before: Vec<Vec<String>>,
    /// Commands run after it, also after a failure (maintenance mode off).
    #[serde(default)]
    pub after: Vec<Vec<String>>,
    /// The service's own unit, stopped while its data is restored in place.
    #[serde(default)]
    pub unit: Option<String>,
    /// For a dump: the database it restores into.
    #[serde(default)]
    pub database: Option<Database>,
}

/// A PostgreSQL database a dump restores into: recreated empty, then `pg_restore`d.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// The PostgreSQL server's container.
    pub container: String,
    pub name: String,
    /// The role owning it (and every object restored).
    pub owner: String,
    /// Created with `--locale=C --template=template0` (Synapse refuses another collation).
    pub c_locale: bool,
    /// Tables whose row counts the dump records and a restore verifies (the catalog's).
    #[serde(default)]
    pub key_tables: Vec<String>,
}

impl Item {
    /// The snapshot's tags.
    pub fn tags(&self, plan: &HostPlan) -> Vec<String> {
        vec![
            format!("env={}", plan.environment),
            format!("host={}", plan.host),
            format!("service={}", self.service),
            format!("kind={}", self.kind.word()),
        ]
    }
}

/// Where an item's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A command's stdout, streamed into one file of the snapshot (a database dump).
    Command { argv: Vec<String>, filename: String },
    /// Folders and files on the host.
    Paths { paths: Vec<PathBuf> },
}

/// The host's secrets file.
#[derive(Clone, Serialize, Deserialize)]
pub struct HostSecrets {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub repository_password: String,
}

impl std::fmt::Debug for HostSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSecrets")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}
