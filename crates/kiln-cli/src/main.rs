//! The `kiln` command line: clap definitions, dispatch to one module per command, and the
//! terminal side of kiln — nothing else. The backbone every command shares: [`context`]
//! (config path, model, environment, vaults), [`printer`] (all output), [`error`] (every
//! conversion of a failure into an exit code), [`args`] (shared clap arguments),
//! [`render`] (shared text: plans, tables) and [`progress`] (live per-host apply progress).
//! What a command does lives in kiln-ops and the engine crates; commands do not import
//! each other (`kiln lab demo` is a submodule of `kiln lab`).

mod args;
mod commands;
mod context;
mod error;
mod printer;
mod progress;
mod render;

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
    Status(commands::status::Args),
    Backup(commands::backup::Args),
    #[command(hide = true)]
    Agent(commands::agent::Args),
    Completions(commands::completions::Args),
    Util(commands::util::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = context::Context::new(&cli.global, printer::Printer::new(printer::Mode::Human));
    let result = match cli.command {
        Command::Init(args) => commands::init::run(&ctx, args),
        Command::Check(args) => commands::check::run(&ctx, args),
        Command::Dns(args) => commands::dns::run(&ctx, args),
        Command::Show(args) => commands::show::run(&ctx, args),
        Command::Secrets(args) => commands::secrets::run(&ctx, args),
        Command::Import(args) => commands::import::run(&ctx, args),
        Command::Lab(args) => commands::lab::run(&ctx, args),
        Command::Backup(args) => commands::backup::run(&ctx, args),
        Command::Trust(args) => commands::trust::run(&ctx, args),
        Command::Plan(args) => commands::plan::run(&ctx, args),
        Command::Apply(args) => commands::apply::run(&ctx, args),
        Command::Status(args) => commands::status::run(&ctx, args),
        Command::Agent(args) => commands::agent::run(&cli.global, args),
        Command::Completions(args) => commands::completions::run(&ctx, args),
        Command::Util(args) => commands::util::run(&ctx, args),
    };
    error::finish(result)
}
