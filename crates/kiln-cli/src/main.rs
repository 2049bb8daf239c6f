//! The `kiln` command line: clap definitions, dispatch to one module per command, and the
//! mapping of failures to exit codes. Terminal output (tables, prompts, progress) lives
//! here and nowhere in the library crates.

mod commands;
mod exit;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln keeps a self-hosted infrastructure alive from one git repository:
/// it deploys, backs up, restores, moves, rehearses disasters and writes the runbook.
///
/// "My server can burn, my services will run."
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Examples:
  kiln init my-infra        start a new infrastructure repository
  kiln check                validate kiln.toml
  kiln dns --env production the DNS records to create at your registrar
  kiln show --env staging   what runs where, and at which URL")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Path to kiln.toml (default: ./kiln.toml, or the nearest one in a parent folder).
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(commands::init::Args),
    Check(commands::check::Args),
    Dns(commands::dns::Args),
    Show(commands::show::Args),
    Secrets(commands::secrets::Args),
    Import(commands::import::Args),
    Lab(commands::lab::Args),
    Trust(commands::trust::Args),
    Plan(commands::plan::Args),
    Apply(commands::apply::Args),
    #[command(hide = true)]
    Agent(commands::agent::Args),
    Completions(commands::completions::Args),
    Util(commands::util::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => commands::init::run(&cli.global, args),
        Command::Check(args) => commands::check::run(&cli.global, args),
        Command::Dns(args) => commands::dns::run(&cli.global, args),
        Command::Show(args) => commands::show::run(&cli.global, args),
        Command::Secrets(args) => commands::secrets::run(&cli.global, args),
        Command::Import(args) => commands::import::run(&cli.global, args),
        Command::Lab(args) => commands::lab::run(&cli.global, args),
        Command::Trust(args) => commands::trust::run(&cli.global, args),
        Command::Plan(args) => commands::plan::run(&cli.global, args),
        Command::Apply(args) => commands::apply::run(&cli.global, args),
        Command::Agent(args) => commands::agent::run(&cli.global, args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Util(args) => commands::util::run(args),
    };
    exit::finish(result)
}
