//! One module per `kiln` command: its clap arguments and its `run`.

pub mod agent;
pub mod apply;
pub mod backup;
pub mod check;
pub mod completions;
pub mod dns;
pub mod import;
pub mod init;
pub mod lab;
pub mod plan;
pub mod secrets;
pub mod show;
pub mod status;
pub mod trust;
pub mod util;
