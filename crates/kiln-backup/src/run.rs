//! The host's backup mode: runs a [`HostPlan`] item by item (one failing does not stop
//! the others), reports each step as a [`BackupEvent`], keeps each item's last result in
//! the state file and writes them as node-exporter textfile metrics.
//!
//! What a run changes on the host to make a snapshot consistent (units stopped, a
//! maintenance mode switched on) is written to a pending file *before* it is done, and
//! undone from that file after the item, whatever happened: a run killed half-way (even
//! by SIGKILL) leaves the pending file, which the unit's `ExecStopPost` (`--recover`) or
//! the next run undoes first.
//!
//! One run at a time per host (a lock file); no terminal code.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, HostSecrets, Item, Kind, Source};
use crate::repo::{Repo, SnapshotInfo};

/// What a run reports as it goes (JSON lines on the agent's stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackupEvent {
    /// Undoing what a killed run left (units started again, `after` commands run).
    Recovered {
        what: String,
    },
    /// The repository could not be opened: every item fails with this.
    RepositoryFailed {
        message: String,
    },
    Started {
        service: String,
        kind: Kind,
    },
    /// A snapshot of the volume (or btrfs subvolume) holding the service's data was taken: its files are
    /// copied from it with the service running.
    Snapshotted {
        service: String,
        /// `LVM` or `btrfs`.
        #[serde(default)]
        of: String,
        /// The snapshot (`vg/kiln-backup-lv`, or the btrfs snapshot's path).
        volume: String,
        /// How long the `before` steps (a maintenance mode) lasted, snapshot included.
        seconds: f64,
    },
    /// The data is on LVM or btrfs but no snapshot could be taken (no room in the volume group):
    /// the copy is made the other way (the service stopped).
    SnapshotSkipped {
        service: String,
        message: String,
    },
    /// The snapshot was removed after the copy.
    SnapshotRemoved {
        service: String,
        volume: String,
    },
    /// Units stopped for a consistent copy.
    Stopped {
        service: String,
        units: Vec<String>,
    },
    /// A consistency step (before/after command, start again) failed.
    StepFailed {
        service: String,
        step: String,
        message: String,
    },
    Done {
        service: String,
        kind: Kind,
        snapshot: String,
        files: u64,
        bytes: u64,
        bytes_added: u64,
        seconds: f64,
        /// How long the service was stopped, when it was.
        downtime_seconds: Option<f64>,
    },
    Failed {
        service: String,
        kind: Kind,
        message: String,
        seconds: f64,
    },
}

/// The last result of one item (`service/kind`), as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    pub service: String,
    pub kind: Kind,
    /// When it last ran, and whether that run succeeded.
    pub last_run: i64,
    pub ok: bool,
    pub error: Option<String>,
    /// When it last succeeded (kept across failed runs).
    pub last_success: Option<i64>,
    pub seconds: f64,
    pub files: u64,
    pub bytes_added: u64,
    pub snapshot: Option<String>,
}

/// The state file: each item's last result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub items: BTreeMap<String, ItemState>,
}

/// What was changed for consistency and must be undone (the pending file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    service: String,
    start_units: Vec<String>,
    after: Vec<Vec<String>>,
    /// Snapshots to remove (LVM `vg/name`, btrfs paths).
    #[serde(default, alias = "lvm_snapshots")]
    snapshots: Vec<String>,
}

/// A run that could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
    #[error(
        "another backup is running on this host (lock {} held)\n  hint: wait for it (systemctl status kiln-backup.service)",
        .path.display()
    )]
    Busy { path: PathBuf },
    #[error("no service `{service}` in this host's backups (it has: {known})")]
    UnknownService { service: String, known: String },
}

/// The plan and the secrets from their files; the secrets file must be root's alone.
pub fn load(plan: &Path, secrets: &Path) -> Result<(HostPlan, HostSecrets), RunError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| RunError::File {
            path: p.into(),
            message: e.to_string(),
        })
    };
    let parsed: HostPlan = serde_json::from_str(&read(plan)?).map_err(|e| RunError::File {
        path: plan.into(),
        message: format!("not a backup plan: {e}"),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(secrets).map_err(|e| RunError::File {
            path: secrets.into(),
            message: e.to_string(),
        })?;
        if meta.mode() & 0o077 != 0 {
            return Err(RunError::File {
                path: secrets.into(),
                message: format!(
                    "readable by others (mode {:o}); refusing to use it (chmod 600 it)",
                    meta.mode() & 0o777
                ),
            });
        }
    }
    let s: HostSecrets = serde_json::from_str(&read(secrets)?).map_err(|e| RunError::File {
        path: secrets.into(),
        message: format!("not a backup secrets file: {}", e.classify_word()),
    })?;
    Ok((parsed, s))
}

trait ClassifyWord {
    fn classify_word(&self) -> &'static str;
}

impl ClassifyWord for serde_json::Error {
    /// The kind of error only: the message could quote a secret.
    fn classify_word(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or wrong fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Files a run uses beside the state file.
struct Paths {
    lock: PathBuf,
    pending: PathBuf,
}

fn paths(plan: &HostPlan) -> Paths {
    let dir = plan
        .state_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Paths {
        lock: dir.join("lock"),
        pending: dir.join("pending.json"),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs `argv`; its failure as a message (exit status and stderr's last lines).
fn command(argv: &[String]) -> Result<(), String> {
    crate::exec::output(argv).map(|_| ())
}

fn systemctl(verb: &str, unit: &str) -> Result<(), String> {
    command(&["systemctl".to_owned(), verb.to_owned(), unit.to_owned()])
}

/// Undoes what the pending file says (units started, `after` commands run, snapshot
/// volumes removed) and removes it, then removes any snapshot volume kiln left. Reports
/// what it did; nothing when there was nothing to undo.
pub fn recover(plan: &HostPlan, on_event: &mut dyn FnMut(&BackupEvent)) {
    let p = paths(plan);
    if let Ok(text) = std::fs::read_to_string(&p.pending) {
        let pending: Pending = serde_json::from_str(&text).unwrap_or_default();
        undo(&pending, on_event, true);
        let _ = std::fs::remove_file(&p.pending);
    }
    remove_leftover_snapshots(on_event);
}

/// Removes the snapshot volumes kiln made that are still there, whatever left them.
fn remove_leftover_snapshots(on_event: &mut dyn FnMut(&BackupEvent)) {
    let pending = Pending::default();
    for name in crate::volume::leftovers() {
        let r = crate::volume::remove(&name);
        report_undo(
            &pending,
            &format!("remove snapshot {name}"),
            r,
            on_event,
            true,
        );
    }
}

fn undo(pending: &Pending, on_event: &mut dyn FnMut(&BackupEvent), recovering: bool) {
    for argv in &pending.after {
        let r = command(argv);
        report_undo(pending, &argv.join(" "), r, on_event, recovering);
    }
    for unit in &pending.start_units {
        let r = systemctl("start", unit);
        report_undo(pending, &format!("start {unit}"), r, on_event, recovering);
    }
    for name in &pending.snapshots {
        let r = crate::volume::remove(name);
        report_undo(
            pending,
            &format!("remove snapshot {name}"),
            r,
            on_event,
            recovering,
        );
    }
}

fn report_undo(
    pending: &Pending,
    what: &str,
    r: Result<(), String>,
    on_event: &mut dyn FnMut(&BackupEvent),
    recovering: bool,
) {
    match r {
        Ok(()) if recovering => on_event(&BackupEvent::Recovered {
            what: format!("{} (left by a run that did not finish)", what),
        }),
        Ok(()) => {}
        Err(message) => on_event(&BackupEvent::StepFailed {
            service: pending.service.clone(),
            step: what.to_owned(),
            message,
        }),
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Runs the plan's items (only `service`'s when given). Failures are per item; the
/// returned state holds every item's last result (also those not run this time).
pub fn run(
    plan: &HostPlan,
    secrets: &HostSecrets,
    service: Option<&str>,
    on_event: &mut dyn FnMut(&BackupEvent),
) -> Result<State, RunError> {
    if let Some(s) = service
        && !plan.items.iter().any(|i| i.service == s)
    {
        let mut known: Vec<&str> = plan.items.iter().map(|i| i.service.as_str()).collect();
        known.dedup();
        return Err(RunError::UnknownService {
            service: s.to_owned(),
            known: known.join(", "),
        });
    }
    let p = paths(plan);
    if let Some(dir) = p.lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| RunError::File {
            path: dir.into(),
            message: e.to_string(),
        })?;
    }
    let lock = File::create(&p.lock).map_err(|e| RunError::File {
        path: p.lock.clone(),
        message: e.to_string(),
    })?;
    if lock.try_lock().is_err() {
        return Err(RunError::Busy { path: p.lock });
    }
    recover(plan, on_event);
    let mut state: State = std::fs::read_to_string(&plan.state_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let items: Vec<&Item> = plan
        .items
        .iter()
        .filter(|i| service.is_none_or(|s| i.service == s))
        .collect();
    let location = (&plan.repository).into();
    let creds = kiln_s3::Credentials::new(
        secrets.access_key_id.clone(),
        secrets.secret_access_key.clone(),
    );
    let password = kiln_secrets::Secret::new(secrets.repository_password.clone());
    let mut repo = match Repo::open(&location, &creds, &password) {
        Ok(r) => Some(r),
        Err(e) => {
            on_event(&BackupEvent::RepositoryFailed {
                message: e.to_string(),
            });
            for item in &items {
                record(&mut state, item, now(), Err(e.to_string()), 0.0);
            }
            None
        }
    };
    if let Some(repo) = repo.as_mut() {
        for item in items {
            let started = Instant::now();
            on_event(&BackupEvent::Started {
                service: item.service.clone(),
                kind: item.kind,
            });
            let origin = match &item.source {
                Source::Paths { paths } => crate::volume::origin(paths),
                Source::Command { .. } => None,
            };
            let result = match origin
                .map(|origin| from_snapshot(plan, item, secrets, &origin, &p, on_event))
            {
                Some(Ok(done)) => done,
                Some(Err(why)) => {
                    // No snapshot after all: the service is stopped for its copy.
                    on_event(&BackupEvent::SnapshotSkipped {
                        service: item.service.clone(),
                        message: why,
                    });
                    one(plan, item, repo, &p, on_event)
                }
                None => one(plan, item, repo, &p, on_event),
            };
            let seconds = started.elapsed().as_secs_f64();
            match &result {
                Ok((s, downtime)) => on_event(&BackupEvent::Done {
                    service: item.service.clone(),
                    kind: item.kind,
                    snapshot: s.id.clone(),
                    files: s.files,
                    bytes: s.bytes,
                    bytes_added: s.bytes_added,
                    seconds,
                    downtime_seconds: *downtime,
                }),
                Err(message) => on_event(&BackupEvent::Failed {
                    service: item.service.clone(),
                    kind: item.kind,
                    message: message.clone(),
                    seconds,
                }),
            }
            record(
                &mut state,
                item,
                now(),
                result.map(|(s, _)| s).map_err(|e| e.to_string()),
                seconds,
            );
            if repo.is_spent() {
                // A failed rustic operation leaves the handle unusable: open it again.
                match Repo::open(&location, &creds, &password) {
                    Ok(r) => *repo = r,
                    Err(e) => {
                        on_event(&BackupEvent::RepositoryFailed {
                            message: e.to_string(),
                        });
                        break;
                    }
                }
            }
        }
    }
    save(plan, &state)?;
    Ok(state)
}

fn record(
    state: &mut State,
    item: &Item,
    at: i64,
    result: Result<SnapshotInfo, String>,
    seconds: f64,
) {
    let key = format!("{}/{}", item.service, item.kind.word());
    let previous = state.items.get(&key).and_then(|s| s.last_success);
    let entry = match result {
        Ok(s) => ItemState {
            service: item.service.clone(),
            kind: item.kind,
            last_run: at,
            ok: true,
            error: None,
            last_success: Some(at),
            seconds,
            files: s.files,
            bytes_added: s.bytes_added,
            snapshot: Some(s.id),
        },
        Err(e) => ItemState {
            service: item.service.clone(),
            kind: item.kind,
            last_run: at,
            ok: false,
            error: Some(e),
            last_success: previous,
            seconds,
            files: 0,
            bytes_added: 0,
            snapshot: None,
        },
    };
    state.items.insert(key, entry);
}

/// What [`from_snapshot`] could not do: take the snapshot (the copy can be made
/// otherwise), or a step of the item (it failed).
enum SnapshotFailure {
    NoSnapshot(String),
    Failed(String),
}

/// The result of an item: its snapshot and how long the service was stopped for it.
type ItemResult = Result<(SnapshotInfo, Option<f64>), String>;

impl Pending {
    /// Written before what it undoes is done.
    fn save(&self, p: &Paths) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        write_atomically(&p.pending, &text).map_err(|e| format!("{}: {e}", p.pending.display()))
    }
}

/// One item of files on LVM or btrfs: its `before` steps only while the snapshot is taken, its
/// files copied from the snapshot by a child process ([`crate::volume`]), the snapshot
/// removed after. `Err(why)` when no snapshot could be taken (the caller copies
/// otherwise); `Ok` with the item's result when one was.
fn from_snapshot(
    plan: &HostPlan,
    item: &Item,
    secrets: &HostSecrets,
    origin: &crate::volume::Origin,
    p: &Paths,
    on_event: &mut dyn FnMut(&BackupEvent),
) -> Result<ItemResult, String> {
    let name = origin.snapshot_name();
    let mut pending = Pending {
        service: item.service.clone(),
        start_units: vec![],
        after: item.after.clone(),
        snapshots: vec![name.clone()],
    };
    if let Err(e) = pending.save(p) {
        return Ok(Err(e));
    }
    let started = Instant::now();
    let taken: Result<crate::volume::Taken, SnapshotFailure> = (|| {
        for argv in &item.before {
            command(argv).map_err(SnapshotFailure::Failed)?;
        }
        crate::volume::create(origin).map_err(SnapshotFailure::NoSnapshot)
    })();
    // The maintenance mode ends as soon as the snapshot exists (or failed to).
    for argv in &item.after {
        let r = command(argv);
        report_undo(&pending, &argv.join(" "), r, on_event, false);
    }
    pending.after.clear();
    let _ = pending.save(p);
    let created = taken.is_ok();
    let result = match taken {
        Ok(taken) => {
            on_event(&BackupEvent::Snapshotted {
                service: item.service.clone(),
                of: origin.kind().to_owned(),
                volume: name.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
            let job = crate::volume::SnapshotJob {
                environment: plan.environment.clone(),
                host: plan.host.clone(),
                repository: plan.repository.clone(),
                item: item.clone(),
                secrets: secrets.clone(),
                taken,
            };
            crate::volume::run_child(&job).map(|s| (s, None))
        }
        Err(SnapshotFailure::Failed(m)) => Err(m),
        Err(SnapshotFailure::NoSnapshot(m)) => {
            let _ = std::fs::remove_file(&p.pending);
            return Err(m);
        }
    };
    match crate::volume::remove(&name) {
        Ok(()) if created => on_event(&BackupEvent::SnapshotRemoved {
            service: item.service.clone(),
            volume: name,
        }),
        Ok(()) => {}
        Err(message) => on_event(&BackupEvent::StepFailed {
            service: item.service.clone(),
            step: format!("remove snapshot {name}"),
            message,
        }),
    }
    let _ = std::fs::remove_file(&p.pending);
    Ok(result)
}

/// One item: consistency steps around the snapshot, undone whatever happens.
fn one(
    plan: &HostPlan,
    item: &Item,
    repo: &mut Repo,
    p: &Paths,
    on_event: &mut dyn FnMut(&BackupEvent),
) -> ItemResult {
    let pending = Pending {
        service: item.service.clone(),
        start_units: item.stop_units.clone(),
        after: item.after.clone(),
        snapshots: vec![],
    };
    let changes = !pending.start_units.is_empty() || !pending.after.is_empty();
    if changes {
        pending.save(p)?;
    }
    type Copied = (Result<SnapshotInfo, crate::RepoError>, Option<Instant>);
    let result: Result<Copied, String> = (|| {
        for argv in &item.before {
            command(argv)?;
        }
        let stopped = if item.stop_units.is_empty() {
            None
        } else {
            for u in &item.stop_units {
                systemctl("stop", u)?;
            }
            on_event(&BackupEvent::Stopped {
                service: item.service.clone(),
                units: item.stop_units.clone(),
            });
            Some(Instant::now())
        };
        let tags = item.tags(plan);
        let snap = match &item.source {
            Source::Command { argv, filename } => match &item.database {
                // The key tables counted in the transaction snapshot the dump shares.
                Some(db) if !db.key_tables.is_empty() => {
                    let held = crate::pg::hold(&db.container, &db.name, &db.key_tables)?;
                    let mut argv = argv.clone();
                    argv.push(format!("--snapshot={}", held.snapshot));
                    let description = if held.rows.is_empty() {
                        item.description.clone()
                    } else {
                        format!("{}\n{}", item.description, crate::pg::rows_line(&held.rows))
                    };
                    let snap =
                        repo.backup_command(&argv, filename, &plan.host, &tags, Some(&description));
                    held.release();
                    snap
                }
                _ => {
                    repo.backup_command(argv, filename, &plan.host, &tags, Some(&item.description))
                }
            },
            Source::Paths { paths } => {
                repo.backup_paths(paths, &plan.host, &tags, Some(&item.description))
            }
        };
        Ok((snap, stopped))
    })();
    // Undone in every case, the pending file removed once done.
    if changes {
        undo(&pending, on_event, false);
        let _ = std::fs::remove_file(&p.pending);
    }
    let (snap, stopped) = result?;
    let downtime = stopped.map(|t| t.elapsed().as_secs_f64());
    snap.map(|s| (s, downtime)).map_err(|e| e.to_string())
}

/// Writes the state file and the metrics.
fn save(plan: &HostPlan, state: &State) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(state).map_err(|e| RunError::File {
        path: plan.state_path.clone(),
        message: e.to_string(),
    })?;
    write_atomically(&plan.state_path, &text).map_err(|e| RunError::File {
        path: plan.state_path.clone(),
        message: e.to_string(),
    })?;
    if let Some(dir) = &plan.metrics_dir {
        let path = dir.join(crate::plan::METRICS_FILE);
        write_atomically(&path, &metrics(state)).map_err(|e| RunError::File {
            path,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// The state as node-exporter textfile metrics, one series per service and kind.
pub fn metrics(state: &State) -> String {
    type Get = fn(&ItemState) -> Option<f64>;
    let families: [(&str, &str, Get); 6] = [
        (
            "kiln_backup_last_success_timestamp_seconds",
            "When the last successful backup of the service's data of this kind finished (Unix time).",
            |s| s.last_success.map(|t| t as f64),
        ),
        (
            "kiln_backup_last_run_timestamp_seconds",
            "When the last backup run of it finished (Unix time), successful or not.",
            |s| Some(s.last_run as f64),
        ),
        (
            "kiln_backup_last_exit_status",
            "0 when the last run of it succeeded, 1 when it failed.",
            |s| Some(if s.ok { 0.0 } else { 1.0 }),
        ),
        (
            "kiln_backup_last_duration_seconds",
            "How long the last run of it took.",
            |s| Some(s.seconds),
        ),
        (
            "kiln_backup_last_bytes_added",
            "Bytes the last successful run added to the repository (after deduplication).",
            |s| s.ok.then_some(s.bytes_added as f64),
        ),
        (
            "kiln_backup_last_files",
            "Files in the last successful snapshot.",
            |s| s.ok.then_some(s.files as f64),
        ),
    ];
    let mut out = String::new();
    for (name, help, get) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for s in state.items.values() {
            if let Some(v) = get(s) {
                out.push_str(&format!(
                    "{name}{{service=\"{}\",kind=\"{}\"}} {v}\n",
                    s.service.replace(['\\', '"', '\n'], "_"),
                    s.kind.word()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(service: &str, kind: Kind, ok: bool, last_success: Option<i64>) -> ItemState {
        ItemState {
            service: service.into(),
            kind,
            last_run: 1_700_000_100,
            ok,
            error: (!ok).then(|| "boom".into()),
            last_success,
            seconds: 1.5,
            files: 3,
            bytes_added: 1024,
            snapshot: ok.then(|| "abc".into()),
        }
    }

    #[test]
    fn metrics_keep_the_last_success_of_a_failing_item_and_flag_it() {
        let mut state = State::default();
        state.items.insert(
            "synapse/dump".into(),
            item("synapse", Kind::Dump, false, Some(1_700_000_000)),
        );
        state.items.insert(
            "hedgedoc/files".into(),
            item("hedgedoc", Kind::Files, true, Some(1_700_000_100)),
        );
        let m = metrics(&state);
        assert!(m.contains(
            "kiln_backup_last_success_timestamp_seconds{service=\"synapse\",kind=\"dump\"} 1700000000\n"
        ));
        assert!(m.contains("kiln_backup_last_exit_status{service=\"synapse\",kind=\"dump\"} 1\n"));
        assert!(
            m.contains("kiln_backup_last_exit_status{service=\"hedgedoc\",kind=\"files\"} 0\n")
        );
        // A failed run added nothing worth a series.
        assert!(!m.contains("kiln_backup_last_bytes_added{service=\"synapse\""));
        assert!(
            m.contains("kiln_backup_last_bytes_added{service=\"hedgedoc\",kind=\"files\"} 1024\n")
        );
        // Every family is declared once, as a gauge.
        assert_eq!(m.matches("# TYPE ").count(), 6);
        assert!(
            m.lines()
                .all(|l| l.starts_with('#') || l.starts_with("kiln_backup_"))
        );
    }

    #[test]
    fn a_failure_keeps_the_previous_success_time() {
        let mut state = State::default();
        let it = Item {
            service: "synapse".into(),
            kind: Kind::Dump,
            source: Source::Paths { paths: vec![] },
            description: String::new(),
            stop_units: vec![],
            before: vec![],
            after: vec![],
            unit: None,
            database: None,
        };
        record(
            &mut state,
            &it,
            100,
            Ok(SnapshotInfo {
                id: "a".into(),
                time: String::new(),
                unix: 100,
                hostname: "h".into(),
                paths: vec![],
                tags: vec![],
                description: None,
                summarized: true,
                files: 1,
                bytes: 1,
                bytes_added: 1,
            }),
            1.0,
        );
        record(&mut state, &it, 200, Err("down".into()), 1.0);
        let s = &state.items["synapse/dump"];
        assert_eq!((s.last_run, s.last_success, s.ok), (200, Some(100), false));
    }

    #[test]
    fn a_failing_command_says_why_with_stderr() {
        let e = command(&["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()]).unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        assert!(command(&["true".into()]).is_ok());
    }
}
