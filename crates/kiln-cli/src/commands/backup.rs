//! `kiln backup`: the environment's off-site backup repository, from the laptop. Thin
//! layer over `kiln_ops::backup`: arguments, the vault, tables and JSON.

use std::process::ExitCode;

use kiln_ops::backup::{self, InitOptions, Target};

use crate::args::VaultArgs;
use crate::context::Context;
use crate::error::CmdResult;
use crate::render::table::align;

/// The off-site backups of an environment: a restic-format repository on S3 with Object
/// Lock, readable with the stock restic CLI.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kiln backup init --env lab           create the repository after verifying the bucket
  kiln backup init --set-lifecycle     also expire non-current versions after the lock
  kiln backup list --env lab           snapshots per service, and the restic URL
  kiln backup check --read-data-subset 10%")]
pub struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Verify the bucket (Object Lock and its retention, versioning, a lifecycle rule, and
    /// that the servers' credential cannot delete a version), then create the repository
    /// with the admin credential. Refuses an unfit bucket without creating anything; safe
    /// to repeat.
    Init {
        /// Add a lifecycle rule expiring non-current versions a day after the lock's
        /// retention, when the bucket has none (else storage grows forever).
        #[arg(long)]
        set_lifecycle: bool,
    },
    /// The snapshots, oldest first, per service with age and size, and where the
    /// repository is in the form the restic CLI takes (read-only credential).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check the repository's structure, and with --read-data-subset read that share of
    /// the data back and verify it (read-only credential).
    Check {
        /// `10%`, `1/5`, `all`, or a size like `500MiB`, as restic takes it.
        #[arg(long, value_name = "SUBSET")]
        read_data_subset: Option<String>,
    },
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let model = ctx.model()?;
    let env = ctx.environment(args.vault.env.as_deref())?;
    let vault = ctx.open_vault(&env.name, &args.vault.unlock())?;
    let target = Target::new(model, env, &vault)?;
    let p = &ctx.printer;
    match args.command {
        Sub::Init { set_lifecycle } => {
            let r = backup::init(&target, InitOptions { set_lifecycle })?;
            for w in &r.warnings {
                p.note(format_args!("warning: {w}"));
            }
            if let Some(days) = r.lifecycle_set {
                p.note(format_args!(
                    "set a lifecycle rule on bucket {}: non-current versions expire after {days} days",
                    target.location.bucket
                ));
            }
            if r.server_cannot_delete {
                p.note("verified: the servers' credential is refused deleting an object version (403 AccessDenied)");
            }
            if r.created {
                p.outln(format_args!("created backup repository {}", r.url));
            } else {
                p.outln(format_args!(
                    "backup repository {} is already there, and the repository password opens it",
                    r.url
                ));
            }
        }
        Sub::List { json } => {
            let l = backup::list(&target)?;
            if json {
                p.json(&l)?;
                return Ok(ExitCode::SUCCESS);
            }
            p.outln(format_args!("repository: {}", l.repository));
            if l.snapshots.is_empty() {
                p.outln("no snapshot yet");
                return Ok(ExitCode::SUCCESS);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let mut rows = vec![
                [
                    "SERVICE", "KIND", "HOST", "ID", "TIME", "AGE", "FILES", "SIZE", "ADDED",
                ]
                .map(String::from),
            ];
            for s in &l.snapshots {
                let i = &s.snapshot;
                rows.push([
                    s.service.clone().unwrap_or_else(|| "-".into()),
                    s.kind.clone().unwrap_or_else(|| "-".into()),
                    i.hostname.clone(),
                    i.id.chars().take(8).collect(),
                    i.time
                        .chars()
                        .take(19)
                        .collect::<String>()
                        .replace('T', " "),
                    age(now - i.unix),
                    i.files.to_string(),
                    bytes(i.bytes),
                    bytes(i.bytes_added),
                ]);
            }
            p.out(align(&rows, "  "));
        }
        Sub::Check { read_data_subset } => {
            let url = backup::check(&target, read_data_subset.as_deref())?;
            match read_data_subset {
                Some(s) => p.outln(format_args!(
                    "backup repository {url}: no problem found (structure, and {s} of the data read back)"
                )),
                None => p.outln(format_args!(
                    "backup repository {url}: no problem found (structure; --read-data-subset reads data back)"
                )),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `42s`, `5m`, `3h`, `2d` ago.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Bytes in binary units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_at_a_glance() {
        assert_eq!(age(-3), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60 * 5 + 3), "5m");
        assert_eq!(age(3600 * 3), "3h");
        assert_eq!(age(86400 * 2 + 5), "2d");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
