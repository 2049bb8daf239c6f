//! kiln's application layer, between the command line and the engines.
//!
//! The CLI parses arguments and renders; the engines (kiln-model, kiln-secrets,
//! kiln-converge, kiln-lab) each own one stage of the data flow. This crate owns what a
//! command *does* with them:
//!
//! - [`backup`]: an environment's backup repository from the laptop (init with the
//!   bucket's verification, list, check), each with the credential it needs;
//! - [`config`]: which kiln.toml a command works on (one resolution rule for every command);
//! - [`init`]: the starter repository `kiln init` writes, never overwriting a file;
//! - [`target`]: which environment and which hosts (one rule for the default environment);
//! - [`vault`]: opening an environment's vault from library options (no terminal here: a
//!   passphrase prompt is a callback the CLI provides);
//! - [`jobs`]: the hosts to work on, with their desired states and connections;
//! - [`session`]: plan and apply sessions over those jobs, one result for every host;
//! - [`trust`]: first contact with a host, its keys compared with the pinned ones;
//! - [`lab`]: the model's `lab` environment and the lab's servers (roles, bringing them
//!   up and recording them, the operator key that reaches them);
//! - [`dns_check`]: asking a DNS resolver for the records the model needs, compared with
//!   them record by record (`kiln dns --check`);
//! - [`workflows`]: multi-step operations (the lab demo; later recover, drill and move),
//!   each reporting through its own typed events.
//!
//! Nothing here prints, prompts or knows about clap.

pub mod backup;
pub mod config;
pub mod dns_check;
pub mod init;
pub mod jobs;
pub mod lab;
pub mod session;
pub mod target;
pub mod trust;
pub mod vault;
pub mod workflows;
