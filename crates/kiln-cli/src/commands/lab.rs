//! `kiln lab`: Throwaway servers on this machine, to test and rehearse.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Throwaway servers on this machine, to test and rehearse.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("lab")
}
