//! `kiln trust ROLE`: asks the host for its SSH host keys (ssh-keyscan), shows their
//! SHA256 fingerprints as `ssh-keygen -l` does, explains how to check them on the
//! provider's console, and after confirmation (or `--yes`) pins them into kiln.toml under
//! `[environments.<env>.hosts.<role>] host_keys`, keeping the file's comments and layout.
//!
//! Arguments, narration and the question only: the host comes from the model and the
//! scan, comparison and pinning are `kiln_ops::trust`'s.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use kiln_ops::trust::Verdict;

use crate::context::Context;
use crate::error::{self, CliError, CmdResult};
use crate::printer::Printer;

/// Check and pin a host's SSH host keys.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host's role (e.g. services).
    role: String,
    /// Environment (default: the only one, else production).
    #[arg(long, short, env = "KILN_ENV")]
    env: Option<String>,
    /// Pin without asking (only after checking the fingerprints another way).
    #[arg(long, short = 'y')]
    yes: bool,
}

fn confirm(p: &Printer, question: &str) -> Result<bool, CliError> {
    p.prompt(format_args!("{question} [y/N] "));
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(miette::miette!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    let path = ctx.config_path()?.to_owned();
    let check = kiln_ops::trust::check(ctx.model()?, args.env.as_deref(), &args.role)?;

    p.outln(format_args!(
        "Host keys presented by {} ({} port {}, environment {}):",
        check.role, check.address, check.port, check.env
    ));
    for k in &check.presented {
        p.outln(format_args!("  {}", k.describe()));
    }
    match check.verdict {
        Verdict::AlreadyPinned => {
            p.outln(format_args!(
                "\nThese keys are already pinned in {}. Nothing to do.",
                path.display()
            ));
            return Ok(ExitCode::from(error::SUCCESS));
        }
        Verdict::Different => {
            p.outln("\nWARNING: kiln.toml pins different keys for this host:");
            for k in &check.pinned {
                p.outln(format_args!("  {}", k.describe()));
            }
            p.outln("A reinstalled server gets new keys; otherwise this may be an attack.");
        }
        Verdict::New => {}
    }
    p.outln(
        "\nCheck these fingerprints through a channel nobody can tamper with before trusting them:\n\
         open your provider's web console (VNC or serial console) for this server, log in, and run\n\
         \n    for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf \"$f\"; done\n\n\
         The SHA256:… values must be exactly the ones above. Some providers also print them in\n\
         the server's first-boot log (\"console output\").",
    );
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::invalid(miette::miette!(
                "not on a terminal: nothing pinned. Check the fingerprints, then run again with --yes"
            )));
        }
        if !confirm(p, &format!("Pin these keys in {}?", path.display()))? {
            p.outln("Nothing pinned.");
            return Ok(ExitCode::from(error::FAILURE));
        }
    }
    kiln_ops::trust::pin(&path, &check)?;
    p.outln(format_args!(
        "Pinned {} key(s) for {} in {}.",
        check.presented.len(),
        check.role,
        path.display()
    ));
    Ok(ExitCode::from(error::SUCCESS))
}
