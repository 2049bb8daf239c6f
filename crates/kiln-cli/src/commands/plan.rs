//! `kiln plan`: Show what apply would change on each host.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Show what apply would change on each host.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("plan")
}
