//! `kiln init`: Create a commented starter infrastructure repository.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Create a commented starter infrastructure repository.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("init")
}
