//! Guarded groups: changes that could cut the operator off (sshd, firewall, WireGuard,
//! network) are kept only once a *fresh* SSH connection proved the host still reachable,
//! and rolled back by the host itself otherwise (design.md, "Lockout safety").
//!
//! # How it works
//! - **Declare**: a [`File`](crate::resource::File) or [`Unit`](crate::resource::Unit)
//!   carries `guard: Some("ssh")`. The group's changes are its files' writes, its units'
//!   file writes and state changes, and the restarts/reloads its files notify.
//! - **Plan**: [`groups`] lists each group with the indices of its changes
//!   ([`Plan::groups`](crate::plan::Plan::groups)); pure, called by the planner.
//! - **Arm** (agent, before the group's first change, under the host lock): [`arm`]
//!   saves the group's files as they are (content, mode, owner; or absent) and whether
//!   its units run, in `/var/lib/kiln/guard/TOKEN.json` (root only), and starts a
//!   transient timer, `systemd-run --on-active=Ns --unit kiln-rollback-TOKEN`, that runs
//!   this very agent binary as `agent rollback TOKEN`.
//! - **Apply** the group's changes; when its last change is done the agent emits
//!   [`Event::GuardArmed`](crate::event::Event::GuardArmed) and carries on with the rest
//!   of the plan. If one of the group's changes fails, the rest of the group is skipped
//!   and the agent rolls the group back at once ([`rollback`]) and disarms the timer.
//! - **Prove** (laptop, [`Host::run_agent`](crate::host::Host::run_agent)): on that event
//!   kiln opens a fresh connection outside the ControlMaster
//!   ([`Host::fresh_connection`](crate::host::Host::fresh_connection)) and runs
//!   `agent disarm TOKEN` over it, through sudo as usual. Success ([`disarm`]: the saved
//!   state is deleted, the timer stopped) confirms the group; any failure leaves the timer
//!   to roll it back, and the host is reported failed naming the group.
//! - **Roll back** (the timer): takes the host lock (so not in the middle of an apply; after
//!   [`ROLLBACK_LOCK_WAIT`](crate::agent::ROLLBACK_LOCK_WAIT) it goes ahead anyway),
//!   restores the saved files, `daemon-reload`s, restarts the units that ran before and
//!   stops those that did not. A group disarmed in the meantime is left alone.
//!
//! Under a root prefix (tests) no timer is armed: the saved state is still written, and
//! tests run `agent rollback TOKEN --root DIR` themselves.
//!
//! # Extension point
//! Issue 11 (sshd and firewall hardening) puts its files and units in guarded groups from
//! its `desired/` module; nothing here knows about sshd or firewalls. Not covered (yet):
//! removals of files that were guarded (no longer declared, so no longer in a group), and
//! steps after a group waiting for its confirmation (they run at once).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apply::write_file_atomic;
use crate::owned::sha256_hex;
use crate::plan::{Change, Op};
use crate::resource::{Content, DesiredState, ResourceId};
use crate::system::Target;

/// Where saved states of armed groups live, relative to the host's root.
pub const GUARD_DIR: &str = "/var/lib/kiln/guard";

/// Seconds a group has to be confirmed when the desired state does not say.
pub const DEFAULT_TIMEOUT_S: u32 = 90;

/// One guarded group of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardGroup {
    pub name: String,
    /// Indices into the plan's changes, in order.
    pub changes: Vec<usize>,
}

/// The group a file path or unit belongs to.
fn group_of<'a>(change: &Change, desired: &'a DesiredState) -> Option<&'a str> {
    match (&change.id, change.op) {
        (ResourceId::File(p), Op::Create | Op::Update | Op::TakeOver) => desired
            .files
            .iter()
            .find(|f| &f.path == p)
            .and_then(|f| f.guard.as_deref())
            .or_else(|| {
                desired
                    .units
                    .iter()
                    .find(|u| u.has_path(p))
                    .and_then(|u| u.guard.as_deref())
            }),
        (ResourceId::Unit(n), _) => desired
            .units
            .iter()
            .find(|u| &u.name == n)
            .and_then(|u| u.guard.as_deref())
            .or_else(|| {
                desired.files.iter().find_map(|f| {
                    f.guard
                        .as_deref()
                        .filter(|_| f.notify.iter().any(|x| &x.unit == n))
                })
            }),
        _ => None,
    }
}

/// The guarded groups of `changes` (pure), in order of their first change.
pub fn groups(changes: &[Change], desired: &DesiredState) -> Vec<GuardGroup> {
    let mut out: Vec<GuardGroup> = vec![];
    for (i, c) in changes.iter().enumerate() {
        if let Some(name) = group_of(c, desired) {
            match out.iter_mut().find(|g| g.name == name) {
                Some(g) => g.changes.push(i),
                None => out.push(GuardGroup {
                    name: name.to_owned(),
                    changes: vec![i],
                }),
            }
        }
    }
    out
}

/// What a group covers on the host: the files to save and the units to restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub files: Vec<PathBuf>,
    pub units: Vec<String>,
}

/// The files and units of group `name` in `desired`.
pub fn members(desired: &DesiredState, name: &str) -> Members {
    let mut m = Members::default();
    let is = |g: &Option<String>| g.as_deref() == Some(name);
    for f in desired.files.iter().filter(|f| is(&f.guard)) {
        m.files.push(f.path.clone());
        for n in &f.notify {
            if !m.units.contains(&n.unit) {
                m.units.push(n.unit.clone());
            }
        }
    }
    for u in desired.units.iter().filter(|u| is(&u.guard)) {
        m.files.extend(u.path());
        if !m.units.contains(&u.name) {
            m.units.push(u.name.clone());
        }
    }
    m
}

/// A file as it was before the group was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Before {
    Absent,
    File {
        content: Content,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

/// The saved state of an armed group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub group: String,
    pub token: String,
    pub files: Vec<(PathBuf, Before)>,
    /// Each unit and whether it was active before.
    pub units: Vec<(String, bool)>,
}

/// Guard failures, naming the group or token and the path.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("guarded group {group}: {path}: {action}: {source}")]
    Io {
        group: String,
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("guarded group {group}: cannot arm the rollback timer: {message}")]
    Timer { group: String, message: String },
    #[error(
        "no armed guard {token} on this host (already rolled back, or disarmed)\n  hint: check the files of the group on the host; `journalctl -u kiln-rollback-{token}` shows a rollback"
    )]
    NotArmed { token: String },
    #[error("guard {token}: {message}")]
    Bad { token: String, message: String },
}

/// The unit name of a token's rollback timer (without `.timer`).
pub fn timer_unit(token: &str) -> String {
    format!("kiln-rollback-{token}")
}

/// The marker a rollback leaves (`TOKEN.rolled-back`), relative to the host's root.
pub fn rolled_back_marker(token: &str) -> String {
    format!("{GUARD_DIR}/{token}.rolled-back")
}

fn rolled_back_path(target: &Target, token: &str) -> PathBuf {
    target.path(Path::new(&rolled_back_marker(token)))
}

fn state_path(target: &Target, token: &str) -> PathBuf {
    target
        .path(Path::new(GUARD_DIR))
        .join(format!("{token}.json"))
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 64 && token.chars().all(|c| c.is_ascii_hexdigit())
}

/// A fresh token for a group (not secret: it names a timer).
pub fn new_token(host: &str, group: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{host}\n{group}\n{nanos}\n{}", std::process::id());
    sha256_hex(seed.as_bytes())[..16].to_owned()
}

fn read_before(real: &Path, group: &str) -> Result<Before, GuardError> {
    let io = |action| {
        let path = real.display().to_string();
        let group = group.to_owned();
        move |source| GuardError::Io {
            group,
            path,
            action,
            source,
        }
    };
    match fs::symlink_metadata(real) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Before::Absent),
        Err(e) => Err(io("read metadata")(e)),
        Ok(m) if m.file_type().is_symlink() => Ok(Before::Symlink {
            target: fs::read_link(real).map_err(io("read symlink"))?,
        }),
        Ok(m) if m.is_file() => Ok(Before::File {
            content: Content(fs::read(real).map_err(io("read"))?),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }),
        Ok(_) => Err(io("save")(std::io::Error::other(
            "neither a file nor a symlink",
        ))),
    }
}

/// Arms group `name` of `desired`: saves its files and units' state, then (on a real
/// root) starts the rollback timer firing in `timeout_s` seconds. Returns the token.
pub fn arm(
    target: &mut Target,
    desired: &DesiredState,
    name: &str,
    timeout_s: u32,
) -> Result<String, GuardError> {
    let token = new_token(&desired.host, name);
    let m = members(desired, name);
    let mut files = vec![];
    for p in &m.files {
        files.push((p.clone(), read_before(&target.path(p), name)?));
    }
    let real = target.is_real_root();
    let mut units = vec![];
    for u in &m.units {
        let active = real
            && target
                .run(&["systemctl", "is-active", "--quiet", "--", u])
                .map(|o| o.success())
                .unwrap_or(false);
        units.push((u.clone(), active));
    }
    let saved = Saved {
        group: name.to_owned(),
        token: token.clone(),
        files,
        units,
    };
    let path = state_path(target, &token);
    let io = |action| {
        let path = path.display().to_string();
        let group = name.to_owned();
        move |source| GuardError::Io {
            group,
            path,
            action,
            source,
        }
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| io("encode")(e.into()))?;
    write_file_atomic(&path, &bytes, 0o600, 0, 0)
        .map_err(|e| io("write")(std::io::Error::other(e.to_string())))?;
    if real {
        let exe = std::env::current_exe()
            .map_err(|e| GuardError::Timer {
                group: name.to_owned(),
                message: format!("cannot find the agent's own binary: {e}"),
            })?
            .display()
            .to_string();
        let unit = timer_unit(&token);
        let on_active = format!("--on-active={timeout_s}s");
        let description =
            format!("--description=kiln: roll back guarded group {name} unless confirmed");
        let out = target.run(&[
            "systemd-run",
            "--quiet",
            "--collect",
            "--unit",
            &unit,
            &description,
            &on_active,
            "--timer-property=AccuracySec=1s",
            "--",
            &exe,
            "agent",
            "rollback",
            &token,
        ]);
        let failure = match out {
            Ok(o) if o.success() => None,
            Ok(o) => Some(o.tail()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(message) = failure {
            let _ = fs::remove_file(&path);
            return Err(GuardError::Timer {
                group: name.to_owned(),
                message,
            });
        }
    }
    Ok(token)
}

/// Opens and locks the saved state of `token`; None when there is none (anymore).
fn open_locked(target: &Target, token: &str) -> Result<Option<(File, PathBuf)>, GuardError> {
    if !valid_token(token) {
        return Err(GuardError::Bad {
            token: token.to_owned(),
            message: "not a guard token".into(),
        });
    }
    let path = state_path(target, token);
    let io = |action: &'static str| {
        let path = path.display().to_string();
        move |source| GuardError::Io {
            group: format!("(token {token})"),
            path,
            action,
            source,
        }
    };
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    };
    // Disarm and rollback exclude each other: whoever comes second finds the state
    // unlinked.
    file.lock().map_err(io("lock"))?;
    let linked = file.metadata().map_err(io("read metadata"))?.nlink() > 0;
    Ok(linked.then_some((file, path)))
}

fn stop_timer(target: &mut Target, token: &str) -> Option<String> {
    if !target.is_real_root() {
        return None;
    }
    let timer = format!("{}.timer", timer_unit(token));
    match target.run(&["systemctl", "stop", "--", &timer]) {
        Ok(o) if o.success() => None,
        Ok(o) => Some(format!("stopping {timer}: {}", o.tail())),
        Err(e) => Some(format!("stopping {timer}: {e}")),
    }
}

/// Disarms `token`: deletes its saved state (so no rollback happens any more) and stops
/// its timer. Returns a warning when the timer could not be stopped (harmless: its
/// rollback then finds nothing to do).
pub fn disarm(target: &mut Target, token: &str) -> Result<Option<String>, GuardError> {
    let Some((_file, path)) = open_locked(target, token)? else {
        return Err(GuardError::NotArmed {
            token: token.to_owned(),
        });
    };
    fs::remove_file(&path).map_err(|source| GuardError::Io {
        group: format!("(token {token})"),
        path: path.display().to_string(),
        action: "remove",
        source,
    })?;
    Ok(stop_timer(target, token))
}

/// What a rollback did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolledBack {
    pub group: String,
    pub files: usize,
    /// Steps that failed (the others were still done).
    pub errors: Vec<String>,
}

/// Rolls `token` back: restores the saved files, reloads systemd, restarts the units that
/// were active and stops the others; then deletes the saved state and (unless `from_timer`)
/// stops the timer. None when there is nothing to roll back (disarmed meanwhile). The
/// caller holds the host lock.
pub fn rollback(
    target: &mut Target,
    token: &str,
    from_timer: bool,
) -> Result<Option<RolledBack>, GuardError> {
    let Some((mut file, path)) = open_locked(target, token)? else {
        return Ok(None);
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| GuardError::Io {
            group: format!("(token {token})"),
            path: path.display().to_string(),
            action: "read",
            source,
        })?;
    let saved: Saved = serde_json::from_str(&text).map_err(|e| GuardError::Bad {
        token: token.to_owned(),
        message: format!("{}: {e}", path.display()),
    })?;
    let mut done = RolledBack {
        group: saved.group.clone(),
        ..Default::default()
    };
    for (p, before) in &saved.files {
        let real = target.path(p);
        let r = match before {
            Before::Absent => match fs::remove_file(&real) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Before::File {
                content,
                mode,
                uid,
                gid,
            } => write_file_atomic(&real, content.bytes(), *mode, *uid, *gid)
                .map_err(|e| e.to_string()),
            Before::Symlink { target: t } => {
                let _ = fs::remove_file(&real);
                std::os::unix::fs::symlink(t, &real).map_err(|e| e.to_string())
            }
        };
        match r {
            Ok(()) => done.files += 1,
            Err(e) => done.errors.push(format!("restore {}: {e}", p.display())),
        }
    }
    if target.is_real_root() && !saved.units.is_empty() {
        let mut run = |args: &[&str]| match target.run(args) {
            Ok(o) if o.success() => None,
            Ok(o) => Some(format!("`{}`: {}", args.join(" "), o.tail())),
            Err(e) => Some(format!("`{}`: {e}", args.join(" "))),
        };
        done.errors.extend(run(&["systemctl", "daemon-reload"]));
        for (u, was_active) in &saved.units {
            let verb = if *was_active { "restart" } else { "stop" };
            done.errors.extend(run(&["systemctl", verb, "--", u]));
        }
    }
    // The proof kiln looks for afterwards: this group was rolled back (not disarmed,
    // which removes the saved state too). Best effort: the rollback itself is done.
    let _ = fs::write(rolled_back_path(target, token), b"rolled back\n");
    fs::remove_file(&path).map_err(|source| GuardError::Io {
        group: saved.group.clone(),
        path: path.display().to_string(),
        action: "remove",
        source,
    })?;
    if !from_timer && let Some(w) = stop_timer(target, token) {
        done.errors.push(w);
    }
    Ok(Some(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredState {
        serde_json::from_str(
            r#"{"host":"web",
                "files":[
                  {"path":"/etc/ssh/sshd_config.d/kiln.conf","content":"Port 22\n","guard":"ssh",
                   "notify":[{"unit":"ssh.service","action":"restart"}]},
                  {"path":"/etc/app.conf","content":"x\n"}],
                "units":[{"name":"ssh.service","content":"[Service]\n"},
                         {"name":"fw.service","content":"[Service]\n","guard":"fw"}]}"#,
        )
        .unwrap()
    }

    fn change(id: ResourceId, op: Op) -> Change {
        Change {
            id,
            op,
            details: vec![],
            diff: None,
            reason: None,
            content: true,
        }
    }

    #[test]
    fn groups_hold_their_files_units_and_notified_restarts() {
        let d = desired();
        let changes = vec![
            change(ResourceId::File("/etc/app.conf".into()), Op::Update),
            change(
                ResourceId::File("/etc/ssh/sshd_config.d/kiln.conf".into()),
                Op::Update,
            ),
            change(
                ResourceId::File("/etc/systemd/system/fw.service".into()),
                Op::Create,
            ),
            change(ResourceId::Systemd, Op::DaemonReload),
            change(ResourceId::Unit("fw.service".into()), Op::Start),
            change(ResourceId::Unit("ssh.service".into()), Op::Restart),
        ];
        assert_eq!(
            groups(&changes, &d),
            [
                GuardGroup {
                    name: "ssh".into(),
                    changes: vec![1, 5]
                },
                GuardGroup {
                    name: "fw".into(),
                    changes: vec![2, 4]
                },
            ]
        );
        let m = members(&d, "ssh");
        assert_eq!(m.files, [PathBuf::from("/etc/ssh/sshd_config.d/kiln.conf")]);
        assert_eq!(m.units, ["ssh.service"]);
    }

    #[test]
    fn arm_then_rollback_restores_files_and_disarm_wins_over_a_later_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target {
            root: dir.path().to_owned(),
            runner: Box::new(crate::system::ScriptedRunner::default()),
        };
        let d = desired();
        let conf = dir.path().join("etc/ssh/sshd_config.d/kiln.conf");
        fs::create_dir_all(conf.parent().unwrap()).unwrap();
        fs::write(&conf, "Port 22\n").unwrap();
        let token = arm(&mut t, &d, "ssh", 5).unwrap();
        fs::write(&conf, "Port 2222\n").unwrap();
        let done = rollback(&mut t, &token, false).unwrap().unwrap();
        assert_eq!(done.group, "ssh");
        assert!(done.errors.is_empty(), "{:?}", done.errors);
        assert_eq!(fs::read_to_string(&conf).unwrap(), "Port 22\n");
        assert!(matches!(
            disarm(&mut t, &token),
            Err(GuardError::NotArmed { .. })
        ));

        // A unit file that did not exist is removed again.
        let fw = dir.path().join("etc/systemd/system/fw.service");
        let token = arm(&mut t, &d, "fw", 5).unwrap();
        fs::create_dir_all(fw.parent().unwrap()).unwrap();
        fs::write(&fw, "[Service]\n").unwrap();
        // Confirmed: a rollback afterwards finds nothing to do.
        assert_eq!(disarm(&mut t, &token).unwrap(), None);
        assert_eq!(rollback(&mut t, &token, true).unwrap(), None);
        assert!(fw.exists());
        assert!(matches!(
            rollback(&mut t, "../etc", true),
            Err(GuardError::Bad { .. })
        ));
    }
}
