//! `kiln completions SHELL`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;
use crate::context::Context;
use crate::error::CmdResult;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  kiln completions bash > /etc/bash_completion.d/kiln")]
pub struct Args {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "kiln", &mut script);
    // A closed pipe (`kiln completions bash | head`) is the reader's choice.
    let _ = ctx.printer.out_bytes(&script);
    Ok(ExitCode::SUCCESS)
}
