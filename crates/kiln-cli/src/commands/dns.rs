//! `kiln dns`: Print the DNS records each environment needs.

use crate::GlobalArgs;
use crate::exit::{self, CmdResult};

/// Print the DNS records each environment needs.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_global: &GlobalArgs, _args: Args) -> CmdResult {
    exit::not_yet("dns")
}
