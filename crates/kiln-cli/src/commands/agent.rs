//! `kiln agent` (hidden): runs on a host, reads a desired state on stdin, observes, plans,
//! applies (or only plans with `--plan-only`), and writes JSON-line events on stdout.
//! This is the binary kiln ships to hosts; the laptop side is `kiln plan`/`kiln apply`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use kiln_converge::event::Event;
use kiln_converge::system::{SystemRunner, Target};

use crate::GlobalArgs;
use crate::error::{self, CliError, CmdResult};

/// Run on a host: observe, plan and apply a desired state from stdin.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Observe and plan only; change nothing.
    #[arg(long)]
    plan_only: bool,
    /// Converge this folder as if it were `/` (tests: files, directories, symlinks only).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

pub fn run(_global: &GlobalArgs, args: Args) -> CmdResult {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| {
        CliError::failed(miette::miette!(
            "cannot read the desired state on stdin: {e}"
        ))
    })?;
    let mut target = Target {
        root: args.root.unwrap_or_else(|| PathBuf::from("/")),
        runner: Box::new(SystemRunner),
    };
    let stdout = std::io::stdout();
    let mut sink = |event: Event| {
        if let Ok(line) = serde_json::to_string(&event) {
            let mut out = stdout.lock();
            // The laptop may have gone away; the apply itself goes on regardless.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    let ok = kiln_converge::agent::run(&mut target, &input, args.plan_only, &mut sink);
    if ok {
        Ok(ExitCode::from(error::SUCCESS))
    } else {
        Err(CliError::silent(error::FAILURE))
    }
}
