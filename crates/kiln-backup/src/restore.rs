//! Restoring a service in place on its host: the service stopped; each of its dumps
//! restored into a database recreated empty (`createdb`, for Synapse with `--locale=C
//! --template=template0`), streamed from the snapshot into `pg_restore --exit-on-error`
//! whose exit status is checked; its files restored where they were, with owners and
//! modes, files the snapshot lacks removed; the service started again (systemd waits for
//! its health check). Events as it goes, no terminal code.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, HostSecrets, Item, Kind, Source};
use crate::repo::Repo;

/// What a restore reports as it goes (JSON lines on the agent's stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RestoreEvent {
    /// The snapshot chosen for one of the service's items.
    Chosen {
        kind: Kind,
        snapshot: String,
        time: String,
    },
    Stopped {
        units: Vec<String>,
    },
    DatabaseRestored {
        name: String,
        seconds: f64,
        /// The key tables' rows, found equal to what the snapshot recorded (empty when
        /// it recorded none).
        #[serde(default)]
        verified: Vec<crate::pg::RowCount>,
    },
    FilesRestored {
        paths: Vec<String>,
        seconds: f64,
        /// The files (every entry but directories) found where they were restored,
        /// equal to what the snapshot recorded; `None` when it recorded nothing (a
        /// snapshot without summary, as restic 0.14 writes).
        #[serde(default)]
        verified_files: Option<u64>,
    },
    Started {
        units: Vec<String>,
        seconds: f64,
    },
    Failed {
        step: String,
        message: String,
    },
}

/// Which snapshots to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The latest of each of the service's items.
    Latest,
    /// This one snapshot (an id prefix): the item of its kind only.
    Snapshot(String),
}

/// A restore that could not be done; the service was left as the message says.
#[derive(Debug, thiserror::Error)]
#[error("restoring {service}: {message}")]
pub struct RestoreError {
    pub service: String,
    pub message: String,
}

/// What feeds a command's stdin (a dump streamed out of a snapshot).
type Feed<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<(), String>;

/// Runs `argv`, fed by `stdin`; its failure as a message with stderr's last lines.
fn run_checked(argv: &[&str], stdin: Option<Feed<'_>>) -> Result<(), String> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))?;
    let mut fed = Ok(());
    if let Some(feed) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        fed = feed(&mut pipe);
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(crate::exec::failure(argv, out.status, &out.stderr));
    }
    fed.map_err(|e| format!("`{}`: {e}", argv.join(" ")))
}

/// Restores `service`'s data in place as `choice` says.
pub fn restore_in_place(
    plan: &HostPlan,
    secrets: &HostSecrets,
    service: &str,
    choice: &Choice,
    on_event: &mut dyn FnMut(&RestoreEvent),
) -> Result<(), RestoreError> {
    let err = |message: String| RestoreError {
        service: service.to_owned(),
        message,
    };
    let items: Vec<&Item> = plan.items.iter().filter(|i| i.service == service).collect();
    if items.is_empty() {
        let mut known: Vec<&str> = plan.items.iter().map(|i| i.service.as_str()).collect();
        known.dedup();
        return Err(err(format!(
            "this host backs up no service `{service}` (it has: {})",
            known.join(", ")
        )));
    }
    let location = (&plan.repository).into();
    let creds = kiln_s3::Credentials::new(
        secrets.access_key_id.clone(),
        secrets.secret_access_key.clone(),
    );
    let password = kiln_secrets::Secret::new(secrets.repository_password.clone());
    let mut repo = Repo::open(&location, &creds, &password).map_err(|e| err(e.to_string()))?;
    // The snapshot of each item, all chosen before anything is stopped.
    let mut chosen = vec![];
    for item in &items {
        let tags = item.tags(plan);
        let snap = match choice {
            Choice::Latest => repo.latest(&tags).map_err(|e| err(e.to_string()))?,
            Choice::Snapshot(id) => {
                let s = repo.find(id).map_err(|e| err(e.to_string()))?;
                if !s.tags.contains(&format!("service={service}")) {
                    return Err(err(format!(
                        "snapshot {} is not one of {service}'s (its tags: {})",
                        &s.id[..8],
                        s.tags.join(", ")
                    )));
                }
                tags.iter().all(|t| s.tags.contains(t)).then_some(s)
            }
        };
        if let Some(s) = snap {
            on_event(&RestoreEvent::Chosen {
                kind: item.kind,
                snapshot: s.id.clone(),
                time: s.time.clone(),
            });
            chosen.push((*item, s));
        }
    }
    if chosen.is_empty() {
        return Err(err(
            "no snapshot to restore: `kiln backup list` shows what there is".into(),
        ));
    }
    let mut units: Vec<String> = items.iter().filter_map(|i| i.unit.clone()).collect();
    units.dedup();
    for u in &units {
        run_checked(&["systemctl", "stop", u], None).map_err(&err)?;
    }
    on_event(&RestoreEvent::Stopped {
        units: units.clone(),
    });
    let mut failure = None;
    // Databases first, then files: an application started later finds both.
    chosen.sort_by_key(|(i, _)| i.kind);
    for (item, snap) in &chosen {
        let started = Instant::now();
        let r = match (&item.source, &item.database) {
            (Source::Command { filename, .. }, Some(db)) => {
                restore_database(&mut repo, snap, filename, db).map(|verified| {
                    on_event(&RestoreEvent::DatabaseRestored {
                        name: db.name.clone(),
                        seconds: started.elapsed().as_secs_f64(),
                        verified,
                    })
                })
            }
            (Source::Command { .. }, None) => Err(format!(
                "the {} dump has no database to restore into",
                item.kind.word()
            )),
            (Source::Paths { .. }, _) => repo
                .restore_in_place(&snap.id, true)
                .map_err(|e| e.to_string())
                .and_then(|()| verify_files(snap))
                .map(|verified_files| {
                    on_event(&RestoreEvent::FilesRestored {
                        paths: snap.paths.clone(),
                        seconds: started.elapsed().as_secs_f64(),
                        verified_files,
                    })
                }),
        };
        if let Err(message) = r {
            on_event(&RestoreEvent::Failed {
                step: format!("{} {}", service, item.kind.word()),
                message: message.clone(),
            });
            failure = Some(message);
            break;
        }
    }
    if let Some(message) = failure {
        return Err(err(format!(
            "{message}\n  the service was left stopped ({}): its data may be half restored; fix the cause and restore again",
            units.join(", ")
        )));
    }
    let started = Instant::now();
    for u in &units {
        run_checked(&["systemctl", "start", u], None).map_err(&err)?;
    }
    on_event(&RestoreEvent::Started {
        units,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Every entry but directories under `path` (itself included when it is no directory),
/// symbolic links not followed: what a snapshot's summary counts as files.
fn count_files(path: &std::path::Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(1);
    }
    let mut n = 0;
    for entry in std::fs::read_dir(path)? {
        n += count_files(&entry?.path())?;
    }
    Ok(n)
}

/// The restored files of `snap` counted where they are, against what it recorded.
fn verify_files(snap: &crate::SnapshotInfo) -> Result<Option<u64>, String> {
    if !snap.summarized {
        return Ok(None);
    }
    let mut found = 0;
    for p in &snap.paths {
        found += count_files(std::path::Path::new(p)).map_err(|e| format!("{p}: {e}"))?;
    }
    if found == snap.files {
        Ok(Some(found))
    } else {
        Err(format!(
            "the files restored from snapshot {} are {found}, the snapshot recorded {}",
            &snap.id[..8.min(snap.id.len())],
            snap.files
        ))
    }
}

/// The dump `filename` of snapshot `snap` into database `db`, recreated empty first,
/// then the rows of the key tables the snapshot recorded counted again: the counts it
/// verified, or what differs.
fn restore_database(
    repo: &mut Repo,
    snap: &crate::SnapshotInfo,
    filename: &str,
    db: &crate::plan::Database,
) -> Result<Vec<crate::pg::RowCount>, String> {
    let id = snap.id.as_str();
    let c = db.container.as_str();
    let name = db.name.as_str();
    let psql = |sql: &str| -> Result<(), String> {
        run_checked(
            &[
                "podman",
                "exec",
                c,
                "psql",
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            None,
        )
    };
    // Nobody may hold the database while it is replaced.
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))?;
    psql(&format!("DROP DATABASE IF EXISTS \"{name}\""))?;
    let mut create = vec![
        "podman", "exec", c, "createdb", "-U", "postgres", "--owner", &db.owner,
    ];
    if db.c_locale {
        create.extend(["--locale=C", "--template=template0", "--encoding=UTF8"]);
    }
    create.push(name);
    run_checked(&create, None)?;
    let role = format!("--role={}", db.owner);
    let dbname = format!("--dbname={name}");
    let path = format!("/{filename}");
    let mut feed = |w: &mut dyn Write| -> Result<(), String> {
        let mut w = w;
        repo.dump_file(id, &path, &mut w).map_err(|e| e.to_string())
    };
    run_checked(
        &[
            "podman",
            "exec",
            "-i",
            c,
            "pg_restore",
            "-U",
            "postgres",
            "--exit-on-error",
            "--no-owner",
            &role,
            &dbname,
        ],
        Some(&mut feed),
    )?;
    let Some(recorded) = snap
        .description
        .as_deref()
        .and_then(crate::pg::recorded_rows)
    else {
        return Ok(vec![]);
    };
    let tables: Vec<String> = recorded.iter().map(|r| r.table.clone()).collect();
    let restored = crate::pg::count_rows(c, name, &tables)?;
    let differences = crate::pg::differences(&recorded, &restored);
    if differences.is_empty() {
        Ok(recorded)
    } else {
        Err(format!(
            "database {name} restored from snapshot {} does not hold what the snapshot recorded: {}",
            &id[..8.min(id.len())],
            differences.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_counted_as_a_snapshot_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        std::fs::write(root.join("a/one"), "1").unwrap();
        std::fs::write(root.join("a/b/two"), "2").unwrap();
        // A link counts once and is not followed (it points back up the tree).
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        assert_eq!(count_files(&root).unwrap(), 3);
        assert_eq!(count_files(&root.join("a/one")).unwrap(), 1);
        assert!(count_files(&root.join("missing")).is_err());
    }
}
