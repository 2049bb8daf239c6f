//! `kiln util`: tools around kiln itself. `config-schema` prints the JSON Schema of
//! kiln.toml for editors; the hidden `generate-docs [--check] [--dir docs]` writes the
//! generated references into docs/ (kiln.toml reference, JSON Schema, CLI reference), or
//! with `--check` fails naming each stale file (tests/generated_docs.rs runs it on the
//! repository's docs/, so a stale copy fails the test suite).
//!
//! The kiln.toml texts come from kiln-model's `reference` module; the CLI reference is
//! rendered here from the clap definitions (hidden commands and arguments stay hidden).
//! Nothing else: this module writes files and prints which.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;
use crate::context::Context;
use crate::error::{CliError, CmdResult};

/// Tools around kiln: the JSON Schema of kiln.toml for editors.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: UtilCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UtilCommand {
    /// Print the JSON Schema of kiln.toml, for editors (taplo, Even Better TOML).
    ///
    /// `kiln init` writes it as .kiln/kiln.schema.json and points kiln.toml's first line
    /// at it (`#:schema ./.kiln/kiln.schema.json`). Run this again after upgrading kiln.
    #[command(after_help = "Example:\n  kiln util config-schema > .kiln/kiln.schema.json")]
    ConfigSchema,
    /// Write the generated references into docs/ (or check that they are current).
    #[command(hide = true)]
    GenerateDocs(GenerateArgs),
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Write nothing; fail naming each file that is missing or differs.
    #[arg(long)]
    check: bool,
    /// Folder of the generated files.
    #[arg(long, default_value = "docs", value_name = "DIR")]
    dir: PathBuf,
}

/// How to regenerate, as the check's error says it.
const REGENERATE: &str = "cargo run -q -- util generate-docs";

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    match args.command {
        UtilCommand::ConfigSchema => {
            // `kiln util config-schema | head` is not a failure: the printer ignores it.
            ctx.printer.out(kiln_model::reference::config_schema_json());
            Ok(ExitCode::SUCCESS)
        }
        UtilCommand::GenerateDocs(g) => generate(ctx, &g),
    }
}

/// Every generated file: its name in docs/ and its content.
fn generated() -> Vec<(&'static str, String)> {
    vec![
        (
            "config-reference.md",
            kiln_model::reference::config_reference_markdown(),
        ),
        (
            "kiln.schema.json",
            kiln_model::reference::config_schema_json(),
        ),
        ("cli-reference.md", cli_reference_markdown(&Cli::command())),
    ]
}

fn generate(ctx: &Context, args: &GenerateArgs) -> CmdResult {
    let p = &ctx.printer;
    let files = generated();
    if args.check {
        let stale: Vec<String> = files
            .iter()
            .map(|(name, content)| (args.dir.join(name), content))
            .filter(|(path, content)| {
                std::fs::read_to_string(path).ok().as_deref() != Some(content.as_str())
            })
            .map(|(path, _)| path.display().to_string())
            .collect();
        if stale.is_empty() {
            p.outln(format_args!(
                "{} generated files in {} are current",
                files.len(),
                args.dir.display()
            ));
            return Ok(ExitCode::SUCCESS);
        }
        return Err(CliError::failed(miette::miette!(
            help = format!(
                "regenerate with `{REGENERATE}{}` and commit the result",
                dir_arg(&args.dir)
            ),
            "stale generated file{}: {}",
            if stale.len() == 1 { "" } else { "s" },
            stale.join(", ")
        )));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        CliError::failed(miette::miette!("cannot create {}: {e}", args.dir.display()))
    })?;
    for (name, content) in &files {
        let path = args.dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
            p.outln(format_args!("{} is current", path.display()));
            continue;
        }
        std::fs::write(&path, content).map_err(|e| {
            CliError::failed(miette::miette!("cannot write {}: {e}", path.display()))
        })?;
        p.outln(format_args!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

fn dir_arg(dir: &Path) -> String {
    if dir == Path::new("docs") {
        String::new()
    } else {
        format!(" --dir {}", kiln_shell::quote(&dir.display().to_string()))
    }
}

/// docs/cli-reference.md: every visible command with its usage, arguments and options
/// (help, default, environment variable, possible values).
fn cli_reference_markdown(cmd: &clap::Command) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = String::from(
        "<!-- Generated by `kiln util generate-docs` from the clap definitions of \
         crates/kiln-cli: do not edit. -->\n\n# kiln command-line reference\n\n",
    );
    let mut overview = Vec::new();
    collect(&cmd, &mut Vec::new(), &[], &mut overview);
    for e in &overview {
        let about = e.cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}- [`{}`](#{}){}",
            "  ".repeat(e.depth),
            e.path,
            anchor(&e.path),
            if about.is_empty() {
                String::new()
            } else {
                format!(": {about}")
            }
        );
    }
    out.push('\n');
    for e in &overview {
        command_section(&mut out, e);
    }
    out
}

/// A visible command, with where it sits and which global options it inherits.
struct Entry<'a> {
    depth: usize,
    /// `kiln lab up`.
    path: String,
    cmd: &'a clap::Command,
    /// Global options defined by an ancestor: `(id, path of that ancestor)`.
    inherited: Vec<(String, String)>,
}

/// The visible commands, depth first.
fn collect<'a>(
    cmd: &'a clap::Command,
    names: &mut Vec<&'a str>,
    inherited: &[(String, String)],
    out: &mut Vec<Entry<'a>>,
) {
    names.push(cmd.get_name());
    let path = names.join(" ");
    let mut passed_on = inherited.to_vec();
    for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
        if !inherited.iter().any(|(id, _)| id == a.get_id().as_str()) {
            passed_on.push((a.get_id().to_string(), path.clone()));
        }
    }
    out.push(Entry {
        depth: names.len() - 1,
        path,
        cmd,
        inherited: inherited.to_vec(),
    });
    for sub in cmd.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            collect(sub, names, &passed_on, out);
        }
    }
    names.pop();
}

fn anchor(path: &str) -> String {
    path.replace(' ', "-")
}

fn command_section(out: &mut String, e: &Entry<'_>) {
    let (path, cmd, root) = (&e.path, e.cmd, e.depth == 0);
    let _ = writeln!(out, "## `{path}`\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", about.to_string().trim_end());
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    let _ = writeln!(out, "```text\n{usage}\n```\n");

    let visible = |a: &&clap::Arg| {
        !a.is_hide_set()
            && !matches!(a.get_id().as_str(), "help" | "version")
            && !e.inherited.iter().any(|(id, _)| id == a.get_id().as_str())
    };
    let positionals: Vec<&clap::Arg> = cmd.get_positionals().filter(visible).collect();
    let options: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional())
        .filter(visible)
        .collect();
    if !positionals.is_empty() {
        out.push_str("Arguments:\n\n");
        for a in positionals {
            arg_item(out, a);
        }
        out.push('\n');
    }
    if !options.is_empty() {
        out.push_str(if root {
            "Options (global: every command takes them):\n\n"
        } else {
            "Options:\n\n"
        });
        for a in options {
            arg_item(out, a);
        }
        out.push('\n');
    }
    // Options of a parent command (other than kiln's own, which every command takes).
    let mut parents: Vec<&str> = Vec::new();
    for (_, from) in &e.inherited {
        if from.contains(' ') && !parents.contains(&from.as_str()) {
            parents.push(from);
        }
    }
    for p in parents {
        let _ = writeln!(out, "Also takes the options of [`{p}`](#{}).\n", anchor(p));
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        let _ = writeln!(out, "```text\n{}\n```\n", after.to_string().trim_end());
    }
}

fn arg_item(out: &mut String, a: &clap::Arg) {
    let takes_value = a.get_action().takes_values();
    let value_names: Vec<String> = match a.get_value_names() {
        Some(names) => names.iter().map(|n| n.to_string()).collect(),
        None => vec![a.get_id().as_str().to_uppercase()],
    };
    let multiple = a.get_num_args().is_some_and(|n| n.max_values() > 1);
    let values = value_names
        .iter()
        .map(|n| format!("<{n}>"))
        .collect::<Vec<_>>()
        .join(" ")
        + if multiple { "..." } else { "" };
    let name = if a.is_positional() {
        values
    } else {
        let mut flags = Vec::new();
        if let Some(s) = a.get_short() {
            flags.push(format!("-{s}"));
        }
        if let Some(l) = a.get_long() {
            flags.push(format!("--{l}"));
        }
        let mut name = flags.join(", ");
        if takes_value {
            name = format!("{name} {values}");
        }
        name
    };
    let help = a
        .get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut facts = Vec::new();
    if a.is_required_set() {
        facts.push("required".to_string());
    }
    if takes_value && !a.is_hide_default_value_set() && !a.get_default_values().is_empty() {
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|d| format!("`{}`", d.to_string_lossy()))
            .collect();
        facts.push(format!("default: {}", defaults.join(", ")));
    }
    if let Some(env) = a.get_env()
        && !a.is_hide_env_set()
    {
        facts.push(format!("environment variable: `{}`", env.to_string_lossy()));
    }
    if takes_value && !a.is_hide_possible_values_set() {
        let possible: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|p| !p.is_hide_set())
            .map(|p| match p.get_help() {
                Some(h) => format!("`{}` ({h})", p.get_name()),
                None => format!("`{}`", p.get_name()),
            })
            .collect();
        if !possible.is_empty() {
            facts.push(format!("possible values: {}", possible.join(", ")));
        }
    }
    let help = help.trim_end();
    let facts = facts.join("; ");
    let text = if facts.is_empty() {
        help.replace('\n', "\n  ")
    } else if help.is_empty() {
        capitalize(&facts)
    } else if !help.contains('\n') {
        format!("{help} ({facts})")
    } else {
        format!(
            "{}\n\n  {}.",
            help.replace('\n', "\n  "),
            capitalize(&facts)
        )
    };
    let _ = writeln!(out, "- `{name}`: {text}");
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_reference_shows_visible_commands_only() {
        let md = cli_reference_markdown(&Cli::command());
        assert!(md.contains("## `kiln init`"), "{md}");
        assert!(md.contains("## `kiln lab up`"), "{md}");
        assert!(md.contains("## `kiln util config-schema`"), "{md}");
        assert!(md.contains("environment variable: `KILN_CONFIG`"), "{md}");
        assert!(!md.contains("`kiln agent"), "hidden command shown");
        assert!(
            !md.contains("## `kiln util generate-docs"),
            "hidden command shown"
        );
        assert!(!md.contains("## `kiln help`"), "{md}");
        // Options of `kiln secrets` are shown there once, and referred to below.
        assert!(md.contains("Also takes the options of [`kiln secrets`](#kiln-secrets)."));
    }

    #[test]
    fn every_generated_file_has_content() {
        for (name, content) in generated() {
            assert!(content.len() > 1000, "{name}");
            assert!(content.ends_with('\n'), "{name}");
        }
    }
}
