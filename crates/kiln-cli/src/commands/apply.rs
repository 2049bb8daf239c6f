//! `kiln apply`: Bring hosts to the declared state.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Bring hosts to the declared state.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("apply")
}
