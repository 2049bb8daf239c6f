//! kiln's lab: throwaway Debian servers on the local Linux machine, each a
//! systemd-nspawn machine in its own network namespace on a private bridge, plus an S3
//! server with Object Lock, an ACME server (Pebble) with the lab's DNS, and locally built
//! container images.
//!
//! The entry point is [`Lab::start`]; see `lab.rs`. This crate never prints: progress goes
//! through [`Progress`] as typed [`LabEvent`]s, failures through [`LabError`].

pub mod acme;
pub mod cmd;
pub mod error;
pub mod event;
pub mod image;
pub mod images;
pub mod lab;
pub mod layout;
pub mod mirror;
pub mod net;
pub mod prereq;
pub mod process;
pub mod proxy;
pub mod running;
pub mod s3;
pub mod server;
pub mod vm;

pub use acme::{LabDnsRecord, LabRecordType};
pub use error::{LabError, Result};
pub use event::{LabEvent, Progress};
pub use images::{ImageRecipe, ProvidedImage};
pub use lab::{Cleaned, Lab, LabOptions, LabStatus, down, down_all, status};
pub use layout::{AcmeState, LabState, Roots, S3State, ServerKind, ServerState};
pub use running::{RunningLab, lab_for_addresses};
pub use s3::{Credentials, S3Client, S3Options};
pub use server::Server;
