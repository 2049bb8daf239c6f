//! `kiln check`: validate kiln.toml and report every error (exit 2), or say what was
//! checked (exit 0). Also home of [`load_model`], which every command reading kiln.toml
//! uses so that they all find and report the configuration the same way.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use kiln_model::Model;

use crate::GlobalArgs;
use crate::exit::{CliError, CmdResult};

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

pub fn run(global: &GlobalArgs, _args: Args) -> CmdResult {
    let model = load_model(global)?;
    let hosts: usize = model.environments.iter().map(|e| e.hosts.len()).sum();
    let envs: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
    println!(
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
    );
    // Not errors, but kiln will refuse to connect to these hosts until their keys are pinned.
    for env in &model.environments {
        let unpinned: Vec<&str> = env
            .hosts
            .values()
            .filter(|h| h.host_keys.is_empty())
            .map(|h| h.role.as_str())
            .collect();
        if !unpinned.is_empty() {
            println!(
                "note: {}: no pinned SSH host key yet for {} (run `kiln trust <role> --env {}` before deploying)",
                env.name,
                unpinned.join(", "),
                env.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The kiln.toml to use: `--config` / `KILN_CONFIG`, else the nearest one upward from the
/// current folder.
pub fn config_path(global: &GlobalArgs) -> Result<PathBuf, CliError> {
    if let Some(p) = &global.config {
        // `--config my-infra` means the kiln.toml in that folder.
        if p.is_dir() {
            return Ok(p.join(kiln_model::CONFIG_FILE));
        }
        return Ok(p.clone());
    }
    let found = kiln_model::find_config(std::path::Path::new(".")).ok_or_else(|| {
        CliError::invalid(miette::miette!(
            help = "run `kiln init` to create one, or pass --config PATH",
            "no kiln.toml in this folder or any parent folder"
        ))
    })?;
    // Shown relative to the current folder when it is below it.
    let cwd = std::env::current_dir().unwrap_or_default();
    Ok(found.strip_prefix(&cwd).map(PathBuf::from).unwrap_or(found))
}

/// Loads and validates kiln.toml; on failure prints every diagnostic to stderr and
/// returns an exit-2 error.
pub fn load_model(global: &GlobalArgs) -> Result<Model, CliError> {
    let path = config_path(global)?;
    kiln_model::load(&path).map_err(|diags| {
        let stderr = std::io::stderr();
        let colors = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let width = terminal_width();
        eprint!("{}", diags.render(width, colors));
        let n = diags.len();
        CliError::invalid(miette::miette!(
            "{n} problem{} in {}",
            if n == 1 { "" } else { "s" },
            path.display()
        ))
    })
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
        .clamp(60, 160)
}
