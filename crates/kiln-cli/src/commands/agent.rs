//! `kiln agent` (hidden): runs on a host, reads a desired state on stdin, observes, plans,
//! applies (or only plans with `--plan-only`), and writes JSON-line events on stdout.
//! This is the binary kiln ships to hosts; the laptop side is `kiln plan`/`kiln apply`.
//! The loop itself is `kiln_converge::agent::main`; this file only maps the arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_converge::agent::{self, Mode, Options};

use crate::GlobalArgs;
use crate::error::{self, CliError, CmdResult};

/// Run on a host: observe, plan and apply a desired state from stdin.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Observe and plan only; change nothing.
    #[arg(long)]
    plan_only: bool,
    /// Converge this folder as if it were `/` (tests: files, directories, symlinks only).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// `user@laptop` of who started the run, recorded in the host's lock.
    #[arg(long, value_name = "USER@HOST")]
    operator: Option<String>,
}

/// The guarded-group modes (run by kiln itself, never by hand).
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Confirm a guarded group: cancel its rollback (run over a fresh connection).
    Disarm { token: String },
    /// Roll a guarded group back (run by its timer).
    Rollback { token: String },
    /// Back this host's services up as /etc/kiln/backup/plan.json says (run by
    /// kiln-backup.timer, or by `kiln backup run`); JSON-line events on stdout.
    Backup {
        /// Only this service's items.
        #[arg(long)]
        service: Option<String>,
        /// Only undo what a killed run left (the unit's ExecStopPost).
        #[arg(long)]
        recover: bool,
        /// The plan (tests).
        #[arg(long, default_value = kiln_backup::plan::PLAN_PATH, hide = true)]
        plan: PathBuf,
        /// The secrets file (tests).
        #[arg(long, default_value = kiln_backup::plan::SECRETS_PATH, hide = true)]
        secrets: PathBuf,
    },
    /// Copy an item's files from an LVM snapshot, in a mount namespace of its own (run
    /// by `agent backup` under `unshare`): the job as JSON on stdin, the snapshot as JSON
    /// on stdout.
    #[command(hide = true)]
    BackupSnapshot,
    /// Restore a service's data in place from its backups (run by `kiln backup restore
    /// --in-place`); JSON-line events on stdout.
    Restore {
        service: String,
        /// This snapshot (an id prefix) instead of the latest of each kind.
        #[arg(long)]
        snapshot: Option<String>,
    },
}

impl Args {
    fn options(self) -> Options {
        Options {
            mode: match self.action {
                None
                | Some(Action::Backup { .. } | Action::Restore { .. } | Action::BackupSnapshot) => {
                    Mode::Run {
                        plan_only: self.plan_only,
                    }
                }
                Some(Action::Disarm { token }) => Mode::Disarm { token },
                Some(Action::Rollback { token }) => Mode::Rollback { token },
            },
            root: self.root.unwrap_or_else(|| PathBuf::from("/")),
            operator: self.operator,
        }
    }
}

pub fn run(_global: &GlobalArgs, args: Args) -> CmdResult {
    if let Some(Action::Backup {
        service,
        recover,
        plan,
        secrets,
    }) = &args.action
    {
        return backup(plan, secrets, service.as_deref(), *recover);
    }
    if let Some(Action::Restore { service, snapshot }) = &args.action {
        return restore(service, snapshot.as_deref());
    }
    if let Some(Action::BackupSnapshot) = &args.action {
        return backup_snapshot();
    }
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let ok = agent::main(&args.options(), &mut stdin, &mut stdout) == agent::EXIT_OK;
    if ok {
        Ok(ExitCode::from(error::SUCCESS))
    } else {
        Err(CliError::silent(error::FAILURE))
    }
}

/// The host's backup mode: events as JSON lines on stdout (the journal keeps them; `kiln
/// backup run` renders them); exit 1 when an item failed, with why on stderr.
fn backup(plan: &Path, secrets: &Path, service: Option<&str>, recover: bool) -> CmdResult {
    use std::io::Write;
    let out = std::sync::Mutex::new(std::io::stdout());
    let mut failed = false;
    let mut emit = |e: &kiln_backup::run::BackupEvent| {
        use kiln_backup::run::BackupEvent as E;
        failed |= matches!(
            e,
            E::Failed { .. } | E::RepositoryFailed { .. } | E::StepFailed { .. }
        );
        if let (Ok(line), Ok(mut o)) = (serde_json::to_string(e), out.lock()) {
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    };
    let fail = |message: String| CliError::failed(miette::miette!("{message}"));
    if recover {
        // Only the plan is needed to undo: the secrets may be what is broken.
        let text =
            std::fs::read_to_string(plan).map_err(|e| fail(format!("{}: {e}", plan.display())))?;
        let parsed: kiln_backup::plan::HostPlan =
            serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", plan.display())))?;
        kiln_backup::run::recover(&parsed, &mut emit);
    } else {
        let (parsed, secrets) =
            kiln_backup::run::load(plan, secrets).map_err(|e| fail(e.to_string()))?;
        kiln_backup::run::run(&parsed, &secrets, service, &mut emit)
            .map_err(|e| fail(e.to_string()))?;
    }
    if failed {
        Err(CliError::silent(error::FAILURE))
    } else {
        Ok(ExitCode::from(error::SUCCESS))
    }
}

/// The copy from an LVM snapshot, in the child `agent backup` starts in a mount
/// namespace of its own: the job on stdin, the snapshot made on stdout.
fn backup_snapshot() -> CmdResult {
    let fail = |message: String| CliError::failed(miette::miette!("{message}"));
    let job: kiln_backup::volume::SnapshotJob = serde_json::from_reader(std::io::stdin().lock())
        .map_err(|e| fail(format!("the snapshot job on stdin: {e}")))?;
    let snap = kiln_backup::volume::child_main(&job).map_err(fail)?;
    let line = serde_json::to_string(&snap).map_err(|e| fail(e.to_string()))?;
    println!("{line}");
    Ok(ExitCode::from(error::SUCCESS))
}

/// The host's restore mode: events as JSON lines on stdout; exit 1 with why on stderr.
fn restore(service: &str, snapshot: Option<&str>) -> CmdResult {
    use std::io::Write;
    let fail = |message: String| CliError::failed(miette::miette!("{message}"));
    let (plan, secrets) = kiln_backup::run::load(
        Path::new(kiln_backup::plan::PLAN_PATH),
        Path::new(kiln_backup::plan::SECRETS_PATH),
    )
    .map_err(|e| fail(e.to_string()))?;
    let choice = match snapshot {
        None | Some("latest") => kiln_backup::restore::Choice::Latest,
        Some(id) => kiln_backup::restore::Choice::Snapshot(id.to_owned()),
    };
    let mut out = std::io::stdout();
    kiln_backup::restore::restore_in_place(&plan, &secrets, service, &choice, &mut |e| {
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    })
    .map_err(|e| fail(e.to_string()))?;
    Ok(ExitCode::from(error::SUCCESS))
}
