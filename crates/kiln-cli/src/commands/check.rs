//! `kiln check`: Validate kiln.toml and report every error.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Validate kiln.toml and report every error.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("check")
}
