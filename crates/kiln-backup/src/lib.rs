//! kiln's backups: one restic-format repository per environment on S3 with Object Lock
//! ([`repo`]), written and read through rustic_core so that the stock `restic` CLI can
//! list, check and restore what kiln wrote (and kiln reads what restic wrote).
//!
//! The host side: [`plan`] (what one host backs up, shipped by the laptop) and [`run`]
//! (the host's backup mode: items, consistency steps undone even after a kill, state and
//! metrics).
//!
//! No terminal code: results are values and events, errors name the repository.

pub mod backend;
pub mod bucket;
mod exec;
pub mod pg;
pub mod plan;
pub mod repo;
pub mod restore;
pub mod run;
pub mod volume;

pub use repo::{Location, Repo, RepoError, SnapshotInfo};
