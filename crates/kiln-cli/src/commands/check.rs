//! `kiln check`: validate kiln.toml and report every error (exit 2), or say what was
//! checked (exit 0). Finding and loading the file is the context's (one rule for every
//! command).

use std::process::ExitCode;

use crate::context::Context;
use crate::error::CmdResult;

/// Validate kiln.toml and report every error.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the configuration is valid, 2 when it is not (every error is \
listed, each with its file:line:column and a hint).

Examples:
  kiln check                                      the nearest kiln.toml (here or in a parent folder)
  kiln check --config examples/reference/kiln.toml
  KILN_CONFIG=infra/kiln.toml kiln check"
)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> CmdResult {
    let model = ctx.model()?;
    let p = &ctx.printer;
    let hosts: usize = model.environments.iter().map(|e| e.hosts.len()).sum();
    let envs: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
    p.outln(format_args!(
        "{}: ok — {} environment{} ({}), {} host{}, {} service{}, {} secret{} needed",
        model.config_path().display(),
        envs.len(),
        plural(envs.len()),
        envs.join(", "),
        hosts,
        plural(hosts),
        model.services.len(),
        plural(model.services.len()),
        model.required_secrets().len(),
        plural(model.required_secrets().len()),
    ));
    for w in &model.warnings {
        p.outln(format_args!("warning: {}", w.message));
        if let Some(loc) = w.location() {
            p.outln(format_args!("  at {loc}: {}", w.label));
        }
        if let Some(h) = &w.help {
            p.outln(format_args!("  help: {h}"));
        }
    }
    // Not errors, but kiln will refuse to connect to these hosts until their keys are pinned.
    for env in &model.environments {
        let unpinned: Vec<&str> = env
            .hosts
            .values()
            .filter(|h| h.host_keys.is_empty())
            .map(|h| h.role.as_str())
            .collect();
        if !unpinned.is_empty() {
            p.outln(format_args!(
                "note: {}: no pinned SSH host key yet for {} (run `kiln trust <role> --env {}` before deploying)",
                env.name,
                unpinned.join(", "),
                env.name
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
