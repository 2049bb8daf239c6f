//! `kiln show`: Show the resolved model: what runs where, at which URL.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Show the resolved model: what runs where, at which URL.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("show")
}
