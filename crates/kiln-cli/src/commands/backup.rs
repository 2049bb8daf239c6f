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
  kiln backup run --env lab            back every host up now, with progress
  kiln backup run --service synapse    only Synapse's database and files
  kiln backup list --env lab           snapshots per service, and the restic URL
  kiln backup restore synapse --in-place       the latest, over the live data
  kiln backup restore synapse --to ./synapse   into a folder here
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
    /// Back up now: each host's backup mode (the one its timer runs), in parallel, with
    /// progress; exit 1 when a service's backup failed (the others go on).
    Run {
        /// Only the host playing this role (repeatable).
        #[arg(long = "host", value_name = "ROLE")]
        hosts: Vec<String>,
        /// Only this service's backups.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Private key for SSH (default: for a lab environment, the running lab's key).
        #[arg(long, env = "KILN_SSH_IDENTITY", value_name = "FILE")]
        identity: Option<std::path::PathBuf>,
    },
    /// Restore a service's data: into a folder here (`--to DIR`, read-only credential),
    /// or in place on its host (`--in-place`: the service stopped, its databases
    /// recreated and restored with pg_restore, its files restored with owners and modes,
    /// started again and waited for).
    Restore {
        service: String,
        /// A snapshot id (prefix), or `latest` (the latest of each kind, the default).
        #[arg(long, value_name = "ID|latest")]
        snapshot: Option<String>,
        /// Restore on the service's host, over its current data.
        #[arg(long, conflicts_with = "to", required_unless_present = "to")]
        in_place: bool,
        /// Restore into this folder on this machine (`DIR/dump/`, `DIR/files/`).
        #[arg(long, value_name = "DIR")]
        to: Option<std::path::PathBuf>,
        /// Private key for SSH (with --in-place).
        #[arg(long, env = "KILN_SSH_IDENTITY", value_name = "FILE")]
        identity: Option<std::path::PathBuf>,
    },
    /// Apply `[backups] retention` (admin credential): each service's snapshots beyond it
    /// are removed from the repository; Object Lock keeps their data in the bucket's old
    /// versions until the lock runs out, which is said per snapshot.
    Forget {
        /// Say what would go, remove nothing.
        #[arg(long)]
        dry_run: bool,
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
    if let Sub::Run {
        hosts,
        service,
        identity,
    } = &args.command
    {
        return run_now(
            ctx,
            &args.vault,
            &env.name,
            hosts,
            service.as_deref(),
            identity,
        );
    }
    if let Sub::Restore {
        service,
        snapshot,
        in_place: true,
        identity,
        ..
    } = &args.command
    {
        return restore_in_place(
            ctx,
            &args.vault,
            &env.name,
            service,
            snapshot.as_deref(),
            identity,
        );
    }
    let vault = ctx.open_vault(&env.name, &args.vault.unlock())?;
    let target = Target::new(model, env, &vault)?;
    let p = &ctx.printer;
    match args.command {
        Sub::Run { .. } => unreachable!("handled above"),
        Sub::Restore {
            service,
            snapshot,
            to,
            ..
        } => {
            let dir = to.unwrap_or_default();
            let snapshot = snapshot.as_deref().filter(|s| *s != "latest");
            for (s, dest) in backup::restore_to(&target, &service, snapshot, &dir)? {
                p.outln(format_args!(
                    "restored snapshot {} ({}, {}) into {}",
                    &s.id[..8],
                    s.tags.join(","),
                    s.time
                        .chars()
                        .take(19)
                        .collect::<String>()
                        .replace('T', " "),
                    dest.display()
                ));
            }
        }
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
        Sub::Forget { dry_run } => {
            let judged = backup::forget(&target, dry_run)?;
            let lock = target.backups.object_lock_days;
            let mut rows = vec![
                [
                    "SERVICE",
                    "KIND",
                    "ID",
                    "TIME",
                    "VERDICT",
                    "WHY / LOCKED UNTIL",
                ]
                .map(String::from),
            ];
            let mut gone = 0;
            for j in &judged {
                let s = &j.snapshot;
                let why = if j.keep {
                    j.reasons.join(", ")
                } else {
                    gone += 1;
                    match lock {
                        Some(days) => format!(
                            "its data stays in the bucket's old versions until at least {} (Object Lock, {days} days)",
                            day(s.unix + i64::from(days) * 86400)
                        ),
                        None => "no Object Lock: gone once pruned".into(),
                    }
                };
                rows.push([
                    backup::tag(&s.tags, "service").unwrap_or("-").to_owned(),
                    backup::tag(&s.tags, "kind").unwrap_or("-").to_owned(),
                    s.id.chars().take(8).collect(),
                    s.time
                        .chars()
                        .take(19)
                        .collect::<String>()
                        .replace('T', " "),
                    if j.keep {
                        "keep"
                    } else if dry_run {
                        "would forget"
                    } else {
                        "forgotten"
                    }
                    .into(),
                    why,
                ]);
            }
            p.out(align(&rows, "  "));
            p.outln(format_args!(
                "{} {gone} of {} snapshot(s) ([backups] retention: daily {}, weekly {}, monthly {}, yearly {})",
                if dry_run { "would forget" } else { "forgot" },
                judged.len(),
                target.backups.retention.daily,
                target.backups.retention.weekly,
                target.backups.retention.monthly,
                target.backups.retention.yearly
            ));
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

/// The jobs of `env` (desired states and connections), their secrets from the vault.
fn jobs(
    ctx: &Context,
    vault: &VaultArgs,
    env: &str,
    hosts: &[String],
    identity: &Option<std::path::PathBuf>,
) -> Result<Vec<kiln_converge::run::Job>, crate::error::CliError> {
    let model = ctx.model()?;
    let secrets: std::sync::Arc<dyn kiln_converge::desired::SecretSource> =
        std::sync::Arc::new(kiln_ops::vault::LazyVault::new(
            model.base_dir(),
            env,
            vault.unlock(),
            Box::new(crate::context::Terminal),
        ));
    Ok(kiln_ops::jobs::from_config(
        model,
        &kiln_ops::jobs::JobOptions {
            env: Some(env.to_owned()),
            roles: hosts.to_vec(),
            identity: identity.clone(),
            sudo_password: None,
            lab_roots: kiln_lab::Roots::default(),
        },
        secrets,
    )?)
}

/// `kiln backup restore SERVICE --in-place`, on the host that backs it up.
fn restore_in_place(
    ctx: &Context,
    vault: &VaultArgs,
    env: &str,
    service: &str,
    snapshot: Option<&str>,
    identity: &Option<std::path::PathBuf>,
) -> CmdResult {
    use kiln_backup::restore::RestoreEvent as R;
    let jobs = jobs(ctx, vault, env, &[], identity)?;
    let targets = kiln_ops::backup::hosts_with_backups(&jobs, Some(service))
        .map_err(|e| crate::error::CliError::invalid(miette::miette!("{e}")))?;
    let p = &ctx.printer;
    let started = std::time::Instant::now();
    let mut failed = false;
    for (job, _) in &targets {
        let host = job.name.as_str();
        let line = |text: String| {
            p.outln(format_args!(
                "[{:6.1}s] {host:<12} {text}",
                started.elapsed().as_secs_f64()
            ))
        };
        let on_event = |e: &R| match e {
            R::Chosen {
                kind,
                snapshot,
                time,
            } => line(format!(
                "{service} {}: snapshot {} of {}",
                kind.word(),
                snapshot.chars().take(8).collect::<String>(),
                time.chars().take(19).collect::<String>().replace('T', " ")
            )),
            R::Stopped { units } => line(format!("stopped {}", units.join(", "))),
            R::DatabaseRestored {
                name,
                seconds,
                verified,
            } => line(if verified.is_empty() {
                format!("database {name} restored in {seconds:.1} s")
            } else {
                format!(
                    "database {name} restored in {seconds:.1} s, verified: {}",
                    kiln_backup::pg::rows_line(verified)
                )
            }),
            R::FilesRestored {
                paths,
                seconds,
                verified_files,
            } => line(format!(
                "files restored in {seconds:.1} s{}: {}",
                verified_files
                    .map(|n| format!(", verified: {n} file{}", if n == 1 { "" } else { "s" }))
                    .unwrap_or_default(),
                paths.join(", ")
            )),
            R::Started { units, seconds } => line(format!(
                "started {} ({seconds:.1} s, healthy)",
                units.join(", ")
            )),
            R::Failed { step, message } => line(format!("{step} FAILED: {message}")),
        };
        let snapshot = snapshot.filter(|s| *s != "latest");
        match kiln_ops::backup::restore_in_place(job, service, snapshot, &on_event) {
            Ok((true, _)) => {}
            Ok((false, stderr)) => {
                failed = true;
                p.note(format_args!("{host}: {}", stderr.trim()));
            }
            Err(e) => {
                failed = true;
                p.note(format_args!("{e}"));
            }
        }
    }
    if failed {
        return Err(crate::error::CliError::silent(crate::error::FAILURE));
    }
    p.outln(format_args!(
        "restored {service} in place in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `kiln backup run`: the hosts' desired states say which back up what; each runs its
/// backup mode over SSH, its events rendered as they come.
fn run_now(
    ctx: &Context,
    vault: &VaultArgs,
    env: &str,
    hosts: &[String],
    service: Option<&str>,
    identity: &Option<std::path::PathBuf>,
) -> CmdResult {
    use kiln_backup::run::BackupEvent as E;
    let jobs = jobs(ctx, vault, env, hosts, identity)?;
    let targets = kiln_ops::backup::hosts_with_backups(&jobs, service)
        .map_err(|e| crate::error::CliError::invalid(miette::miette!("{e}")))?;
    let p = &ctx.printer;
    if targets.is_empty() {
        p.outln(format_args!("no host of {env} backs anything up"));
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let line = |host: &str, text: String| {
        p.outln(format_args!(
            "[{:6.1}s] {host:<12} {text}",
            started.elapsed().as_secs_f64()
        ))
    };
    let on_event = |host: &str, e: &E| match e {
        E::Recovered { what } => line(host, format!("undone: {what}")),
        E::RepositoryFailed { message } => line(host, format!("FAILED: {message}")),
        E::Started { service, kind } => line(host, format!("{service} {}: started", kind.word())),
        E::Stopped { service, units } => line(
            host,
            format!(
                "{service}: stopped {} for a consistent copy",
                units.join(", ")
            ),
        ),
        E::StepFailed {
            service,
            step,
            message,
        } => line(host, format!("{service}: {step} FAILED: {message}")),
        E::Snapshotted {
            service,
            of,
            volume,
            seconds,
        } => line(
            host,
            format!(
                "{service}: {of} snapshot {volume} taken in {seconds:.1} s, copying from it (the service keeps running)"
            ),
        ),
        E::SnapshotSkipped { service, message } => line(
            host,
            format!("{service}: warning: {message}; copying with the service stopped instead"),
        ),
        E::SnapshotRemoved { service, volume } => {
            line(host, format!("{service}: snapshot {volume} removed"))
        }
        E::Done {
            service,
            kind,
            snapshot,
            files,
            bytes: read,
            bytes_added,
            seconds,
            downtime_seconds,
        } => line(
            host,
            format!(
                "{service} {}: done in {seconds:.1} s, snapshot {}: {files} file(s), {} (+{} new){}",
                kind.word(),
                snapshot.chars().take(8).collect::<String>(),
                bytes(*read),
                bytes(*bytes_added),
                downtime_seconds
                    .map(|d| format!(", {service} stopped {d:.1} s"))
                    .unwrap_or_default()
            ),
        ),
        E::Failed {
            service,
            kind,
            message,
            seconds,
        } => line(
            host,
            format!(
                "{service} {}: FAILED after {seconds:.1} s: {message}",
                kind.word()
            ),
        ),
    };
    let results = kiln_ops::backup::run_hosts(&targets, service, &on_event);
    let mut failed = 0;
    for (host, r) in &results {
        match r {
            Ok(run) if run.ok => {}
            Ok(run) => {
                failed += 1;
                if !run.stderr.trim().is_empty() {
                    p.note(format_args!("{host}: {}", run.stderr.trim()));
                }
            }
            Err(e) => {
                failed += 1;
                p.note(format_args!("{e}"));
            }
        }
    }
    // The infrastructure repository itself, beside the backups.
    let model = ctx.model()?;
    match ctx.open_vault(env, &vault.unlock()).and_then(|v| {
        let target = Target::new(model, ctx.environment(Some(env))?, &v)?;
        Ok(kiln_ops::backup::archive_repository(
            &target,
            model.base_dir(),
        )?)
    }) {
        Ok(a) => line(
            "laptop",
            format!(
                "infrastructure repository: {} file(s), {} encrypted to {} key(s) (recovery keys included), stored as {}",
                a.files,
                bytes(a.bytes as u64),
                a.recipients,
                a.url
            ),
        ),
        Err(e) => {
            failed += 1;
            p.note(format_args!(
                "storing the infrastructure repository failed: {e:?}"
            ));
        }
    }
    if failed > 0 {
        p.note(format_args!(
            "backups failed on {failed} of {} host(s) ({:.1} s)",
            results.len(),
            started.elapsed().as_secs_f64()
        ));
        return Err(crate::error::CliError::silent(crate::error::FAILURE));
    }
    p.outln(format_args!(
        "backed up {} host(s) in {:.1} s",
        results.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A Unix time as its UTC date, `2026-12-03`.
fn day(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
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
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_796_304_167), "2026-12-03");
        assert_eq!(day(951_782_400), "2000-02-29");
    }
}
