//! `kiln completions SHELL`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;
use crate::exit::CmdResult;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  kiln completions bash > /etc/bash_completion.d/kiln")]
pub struct Args {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kiln", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
