//! `kiln secrets`: Manage the encrypted secrets kept in the repository.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Manage the encrypted secrets kept in the repository.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("secrets")
}
