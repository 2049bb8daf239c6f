//! `kiln trust`: Check and pin a host's SSH host keys.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Check and pin a host's SSH host keys.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("trust")
}
