//! `kiln apply`: shows the plan, asks for confirmation (or `--yes`), then converges all
//! hosts in parallel with bounded concurrency, with live per-host progress (bars on a
//! terminal, plain lines otherwise, JSON lines with `--json`). A failing host does not stop
//! the others; the summary says what failed where and why, and the exit code is non-zero.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use kiln_converge::run::{Slot, close_all};
use kiln_ops::session;

use crate::args::Targeting;
use crate::context::Context;
use crate::error::{self, CliError, CmdResult};
use crate::printer::Printer;
use crate::progress::Renderer;
use crate::render::plan::render_plan;

/// Bring hosts to the declared state.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Targeting,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the agents' events as JSON lines (each with a "host" field), nothing else.
    #[arg(long)]
    pub json: bool,
}

fn confirm(p: &Printer) -> Result<bool, CliError> {
    p.prompt("Apply these changes? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(miette::miette!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !tty {
        return Err(CliError::invalid(miette::miette!(
            "kiln apply needs confirmation: not on a terminal, so pass --yes (after checking `kiln plan`)"
        )));
    }
    let jobs = args.target.jobs(ctx)?;
    let binary = session::agent_binary()?;
    // One slot per host: the plan shown and the apply share one SSH connection.
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    if !args.yes {
        let plans = session::plan_pinned(
            &mut slots,
            &binary,
            args.target.jobs,
            &mut session::no_progress(),
        )?;
        let mut any = false;
        for (name, plan) in &plans {
            p.out(render_plan(name, plan));
            any |= !plan.is_empty();
        }
        if !any {
            p.outln("Nothing to do.");
            return Ok(ExitCode::from(error::SUCCESS));
        }
        if !confirm(p)? {
            p.outln("Nothing applied.");
            return Ok(ExitCode::from(error::SUCCESS));
        }
    }

    let report = session::apply(
        &mut slots,
        &binary,
        args.target.jobs,
        &mut Renderer::new(*p, args.json),
    );
    close_all(slots);
    let report = report?;
    if !args.json {
        p.outln(format_args!(
            "Applied {} change(s) on {} host(s) in {:.1} s; {} failed.",
            report.changed,
            report.hosts,
            report.elapsed.as_secs_f64(),
            report.failed.len()
        ));
    }
    if !report.pending_certificates.is_empty() && !args.json {
        let now = kiln_converge::certs::now();
        p.note(format_args!(
            "warning: {} certificate(s) pending: the proxy keeps asking its ACME server; `kiln status` shows them\n{}",
            report.pending_certificates.len(),
            report
                .pending_certificates
                .iter()
                .map(|(host, c)| format!("  {host}: {}", crate::render::certs::line(c, now)))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if report.failed.is_empty() {
        Ok(ExitCode::from(error::SUCCESS))
    } else {
        Err(CliError::failed(miette::miette!(
            "{} host(s) failed:\n{}",
            report.failed.len(),
            report
                .failed
                .iter()
                .map(|f| format!("  {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }
}
