//! `kiln agent` (hidden): runs on a host, reads a desired state on stdin, observes, plans,
//! applies (or only plans with `--plan-only`), and writes JSON-line events on stdout.
//! This is the binary kiln ships to hosts; the laptop side is `kiln plan`/`kiln apply`.
//! The loop itself is `kiln_converge::agent::main`; this file only maps the arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_converge::agent::{self, Mode, Options};

use crate::GlobalArgs;
use crate::error::{self, CliError, CmdResult};

/// Run on a host: observe, plan and apply a desired state from stdin.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Observe and plan only; change nothing.
    #[arg(long)]
    plan_only: bool,
    /// Converge this folder as if it were `/` (tests: files, directories, symlinks only).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// `user@laptop` of who started the run, recorded in the host's lock.
    #[arg(long, value_name = "USER@HOST")]
    operator: Option<String>,
}

/// The guarded-group modes (run by kiln itself, never by hand).
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Confirm a guarded group: cancel its rollback (run over a fresh connection).
    Disarm { token: String },
    /// Roll a guarded group back (run by its timer).
    Rollback { token: String },
}

impl Args {
    fn options(self) -> Options {
        Options {
            mode: match self.action {
                None => Mode::Run {
                    plan_only: self.plan_only,
                },
                Some(Action::Disarm { token }) => Mode::Disarm { token },
                Some(Action::Rollback { token }) => Mode::Rollback { token },
            },
            root: self.root.unwrap_or_else(|| PathBuf::from("/")),
            operator: self.operator,
        }
    }
}

pub fn run(_global: &GlobalArgs, args: Args) -> CmdResult {
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let ok = agent::main(&args.options(), &mut stdin, &mut stdout) == agent::EXIT_OK;
    if ok {
        Ok(ExitCode::from(error::SUCCESS))
    } else {
        Err(CliError::silent(error::FAILURE))
    }
}
