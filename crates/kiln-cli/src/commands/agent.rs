//! `kiln agent`: Run on a host: observe, plan and apply a desired state from stdin.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Run on a host: observe, plan and apply a desired state from stdin.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("agent")
}
