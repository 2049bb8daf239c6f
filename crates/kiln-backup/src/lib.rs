//! kiln's backups: one restic-format repository per environment on S3 with Object Lock
//! ([`repo`]), written and read through rustic_core so that the stock `restic` CLI can
//! list, check and restore what kiln wrote (and kiln reads what restic wrote).
//!
//! No terminal code: results are values, errors name the repository.

pub mod backend;
pub mod bucket;
pub mod repo;

pub use repo::{Location, Repo, RepoError, SnapshotInfo};
