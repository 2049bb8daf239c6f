//! `kiln init [DIR]`: arguments and the report; kiln_ops::init writes a commented starter infrastructure repository (kiln.toml,
//! .gitignore, secrets/README.md, and the JSON Schema that kiln.toml's `#:schema` first
//! line points editors at) that passes `kiln check`. Never overwrites anything: if
//! any of those files exists, nothing is written and the error names it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::context::Context;
use crate::error::CmdResult;

/// Create a commented starter infrastructure repository.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes kiln.toml, .gitignore, secrets/README.md and .kiln/kiln.schema.json \
(for editors: taplo / Even Better TOML validate and complete kiln.toml with it); refuses to \
overwrite any of them. The starter uses Let's Encrypt's staging CA until you switch it.

Examples:
  kiln init                                    in the current folder
  kiln init my-infra --domain ergaster.org     a new folder, with your domain filled in
  kiln init my-infra && kiln check --config my-infra/kiln.toml"
)]
pub struct Args {
    /// Folder to create the repository in (created if missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// The domain you own (default: a placeholder to replace).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// ACME contact e-mail (default: admin@<domain>).
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let files = kiln_ops::init::starter(&args.dir, args.domain.as_deref(), args.email.as_deref());
    kiln_ops::init::write(&args.dir, &files)?;
    let shown = kiln_shell::quote(&args.dir.display().to_string());
    let p = &ctx.printer;
    p.outln(format_args!("Created a kiln repository in {shown}:"));
    for (rel, _) in &files {
        p.outln(format_args!("  {rel}"));
    }
    p.outln(format_args!(
        "\nNext:\n  1. edit {shown}/kiln.toml (domain, server addresses, services)\n  \
         2. kiln check --config {shown}/kiln.toml\n  \
         3. kiln dns --config {shown}/kiln.toml   (the records to create at your registrar)\n  \
         4. git init {shown} && git -C {shown} add . && git -C {shown} commit -m 'kiln init'"
    ));
    Ok(ExitCode::SUCCESS)
}
