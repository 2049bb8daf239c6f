//! `kiln plan`: shows, per host, what `kiln apply` would create, change and remove, with
//! unified diffs of files (secrets redacted) and a summary. Exit 0 when nothing would
//! change, 3 when changes are pending, 1/2 on errors. Its one side effect on a host (the
//! agent shipped, older copies removed) is stated in `--help`.
//!
//! Arguments and rendering only: the hosts come from `kiln_ops::jobs`, the plans from a
//! `kiln_ops::session` (one result for every selected host).

use std::process::ExitCode;

use crate::args::Targeting;
use crate::context::Context;
use crate::error::{self, CliError, CmdResult};
use crate::render::plan::render_plan;

/// Show what apply would change on each host.
///
/// Changes nothing the plan lists. To observe a host, kiln runs its agent there: when the
/// host does not have this version of kiln yet, plan uploads it to
/// /var/lib/kiln/bin/kiln-<sha256> (as root, through sudo) and deletes the agent copies
/// there that are older than 7 days. Nothing else is written on the host.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 nothing would change, 3 changes are pending, 1 a host \
could not be planned, 2 bad input.

Examples:
  kiln plan --env staging              every host of staging
  kiln plan --env lab --host services  one host (the lab's operator key is found by itself)
  kiln plan --json | jq .plan.changes  machine-readable plans, one object per host"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Targeting,
    /// Print the plans as JSON (one object per host).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    let jobs = args.target.jobs(ctx)?;
    let binary = kiln_ops::session::agent_binary()?;
    let report = kiln_ops::session::plan(
        jobs,
        &binary,
        args.target.jobs,
        &mut kiln_ops::session::no_progress(),
    )?;
    for (name, plan) in report.plans() {
        if args.json {
            let v = serde_json::json!({ "host": name, "plan": plan });
            p.outln(v);
        } else {
            p.out(render_plan(name, plan));
        }
    }
    let failures: Vec<String> = report.failures().map(ToString::to_string).collect();
    let total = report.total();
    let pending_hosts = report.pending().len();
    if !args.json {
        p.outln(format_args!(
            "\nPlan: {} to create, {} to change, {} to remove, on {} of {} host(s){}.",
            total.create,
            total.change,
            total.remove,
            pending_hosts,
            report.hosts.len(),
            if failures.is_empty() {
                String::new()
            } else {
                format!("; {} could not be planned", failures.len())
            }
        ));
    }
    if !failures.is_empty() {
        return Err(CliError::failed(miette::miette!(
            "planning failed on {} host(s):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    Ok(ExitCode::from(if pending_hosts > 0 {
        error::CHANGES_PENDING
    } else {
        error::SUCCESS
    }))
}
