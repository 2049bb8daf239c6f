//! `kiln import`: Import secrets from other tools (ansible-vault).

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Import secrets from other tools (ansible-vault).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("import")
}
