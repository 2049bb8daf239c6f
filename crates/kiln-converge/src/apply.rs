//! Apply: carries out a [`Plan`] on a [`Target`], in order, reporting each step as an
//! [`Event`]. A failed step does not stop the host: every later step that does not depend
//! on it still runs, and those that do (see [`depends_on`]) are reported as skipped.
//!
//! Starting or restarting a unit is only a success once the unit has settled active
//! ([`wait_settled`]): a service that dies at once is a failure with its journal lines.
//! A unit with a health check ([`crate::resource::Health`]) is started without waiting
//! for systemd's job (`--no-block`: with `Notify=healthy` the job itself lasts until the
//! container is healthy), settled with its health timeout, then its container polled
//! until `healthy` ([`wait_healthy`]). When it does not become healthy, the apply stops
//! touching the host: every later change is skipped ([`ApplyError::Unhealthy`]), as what
//! comes after (a later stage's commands and units) counts on it.
//!
//! Images are pulled with `podman pull`. Before the first quadlet file is written, every
//! declared quadlet of the host is checked by the host's generator
//! ([`crate::podman::check_quadlets`]); when it refuses them none is written.
//!
//! Changes of a guarded group ([`crate::guard`]) are applied with a rollback armed before
//! the group's first change; after its last, the agent reports
//! [`Event::GuardArmed`] (the laptop then confirms it), or rolls the group back at once
//! when one of its changes failed. The agent runs under the host lock ([`crate::lock`]).
//!
//! Files are written crash-safely: a temporary file in the same folder, created 0600, given
//! its owner and mode before any content is written, fsynced, renamed over the old one, and
//! the folder fsynced. A run killed at any point leaves each file old or new, never partial.
//! The ownership record is widened before the first change and narrowed after the last.
//! Before either, the originals of files the plan takes over are kept (style rule 12):
//! their bytes under [`ORIGINALS_DIR`], root only, so a restore can give them back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::{Event, EventSink};
use crate::facts::{Facts, PackageManager};
use crate::observe::Accounts;
use crate::owned::{ORIGINALS_DIR, OWNED_PATH, Original, Owned, original_path, sha256_hex};
use crate::plan::{Change, Op, Plan};
use crate::resource::{DesiredState, ResourceId, Stage, UnitKind};
use crate::system::Target;

/// One step failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("unknown {what} {name:?} (it must exist on the host or be declared)")]
    UnknownAccount { what: &'static str, name: String },
    #[error("{0} is in the plan but not in the desired state (internal error)")]
    Missing(String),
    #[error("{0} needs the real system: the agent runs with a root prefix (tests only)")]
    NeedsRealRoot(String),
    #[error("packages are declared but the host's OS was not detected (/etc/os-release)")]
    NoFacts,
    #[error(
        "{path}: changed since it was observed ({found}; the plan saw {expected}): its original was not kept and nothing was written\n  hint: run `kiln apply` again to see the new plan"
    )]
    ChangedSincePlanned {
        path: String,
        expected: String,
        found: String,
    },
    #[error(
        "{path}: the original kept by kiln is {problem} ({store})\n  hint: restore the file by hand, then remove it from {record}"
    )]
    OriginalLost {
        path: String,
        store: String,
        problem: String,
        record: &'static str,
    },
    #[error(
        "unit {unit} did not stay active after `systemctl {verb}`: {state}{journal}\n  hint: `journalctl -u {unit}` on the host shows more"
    )]
    UnitNotActive {
        unit: String,
        verb: String,
        /// e.g. `failed (exit-code)`.
        state: String,
        /// The unit's last journal lines, already formatted (empty when none).
        journal: String,
    },
    #[error(
        "cannot pull image {reference}{}: {message}\n  hint: check the image's name and version, and that the host reaches its registry",
        service.as_ref().map(|s| format!(" for service {s}")).unwrap_or_default()
    )]
    Pull {
        reference: String,
        service: Option<String>,
        message: String,
    },
    /// A unit with a health check did not become healthy: the apply stops changing the
    /// host (every later change is skipped).
    #[error(transparent)]
    Unhealthy(Box<Unhealthy>),
    #[error(
        "{0}\n  hint: fix the quadlet's keys (podman-systemd.unit(5) lists them); none of this host's quadlet files was installed"
    )]
    QuadletRefused(crate::podman::QuadletRefusal),
    #[error("{0}")]
    QuadletCheck(String),
    /// A file's check ([`crate::resource::File::validate`]) refused its new content: the
    /// file was left as it was.
    #[error(
        "{path}: the new content was refused by `{check}`, so it was not installed (the file is unchanged):\n{output}"
    )]
    Refused {
        path: String,
        check: String,
        output: String,
    },
}

/// A unit with a health check that did not become healthy ([`ApplyError::Unhealthy`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "unit {unit}: container {container} is not healthy after {waited_s} s ({state}){last_check}{journal}\n  hint: {}",
    match back {
        Some(v) => format!("to go back: set the service's version back to {v} in kiln.toml and apply again"),
        None => format!("`podman healthcheck run {container}` and `journalctl -u {unit}` on the host show more"),
    }
)]
pub struct Unhealthy {
    pub unit: String,
    pub container: String,
    pub waited_s: u64,
    /// What was seen last, e.g. `health starting` or `the unit is failed (failed), result timeout`.
    pub state: String,
    /// The last health check's exit code and output, formatted (empty when Podman had none).
    pub last_check: String,
    /// The unit's last journal lines, formatted (empty when none).
    pub journal: String,
    /// The version to set back to (from the image its container ran before), when known.
    pub back: Option<String>,
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ApplyError {
    let path = path.display().to_string();
    move |source| ApplyError::Io {
        path,
        action,
        source,
    }
}

/// Writes `bytes` to `real` atomically with the given mode and ownership.
pub fn write_file_atomic(
    real: &Path,
    bytes: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), ApplyError> {
    write_file_checked(real, bytes, mode, uid, gid, |_| Ok(()))
}

/// Runs a file's check on its candidate: the check's argv with `{}` replaced by the
/// candidate's path; a failure is [`ApplyError::Refused`] with the check's output and the
/// line it names.
fn validate_candidate(
    target: &mut Target,
    path: &Path,
    check: &crate::resource::Validate,
    content: &[u8],
    candidate: &Path,
) -> Result<(), ApplyError> {
    let shown = candidate.display().to_string();
    let args: Vec<String> = check.argv.iter().map(|a| a.replace("{}", &shown)).collect();
    let argv = crate::facts::Argv { env: vec![], args };
    let refused = |output: String| ApplyError::Refused {
        path: path.display().to_string(),
        check: check.name.clone(),
        output,
    };
    let out = target
        .runner
        .run(&argv)
        .map_err(|e| refused(e.to_string()))?;
    if out.success() {
        return Ok(());
    }
    let mut output = out.tail();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(at) = named_line(&output, &name, content) {
        output.push_str(&at);
    }
    Err(refused(output))
}

/// Where a check's output points in the file: `<file name>:<line>` quoted back with the
/// nearest comment above it (kiln's rendered files head each block with one, such as
/// `# service www`), so the error names what the line is for.
fn named_line(output: &str, name: &str, content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let pat = format!("{name}:");
    let line: usize = output.match_indices(&pat).find_map(|(i, _)| {
        let rest = &output[i + pat.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.get(line.checked_sub(1)?)?;
    let heading = lines[..line - 1]
        .iter()
        .rev()
        .find(|l| l.starts_with("# "))
        .filter(|_| line > 1);
    let mut s = format!("\nline {line} of the new {name}: `{}`", at.trim());
    if let Some(h) = heading {
        s.push_str(&format!(", in the block after `{}`", h.trim()));
    }
    Some(s)
}

/// [`write_file_atomic`], with `check` run on the complete candidate (same folder, mode
/// and owner) before it replaces the file; when the check fails the candidate is removed
/// and the file stays as it was.
fn write_file_checked(
    real: &Path,
    bytes: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
    check: impl FnOnce(&Path) -> Result<(), ApplyError>,
) -> Result<(), ApplyError> {
    let dir = real.parent().ok_or_else(|| ApplyError::Io {
        path: real.display().to_string(),
        action: "find parent folder",
        source: std::io::Error::other("no parent"),
    })?;
    ensure_parent(dir)?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.kiln-tmp-{}", std::process::id()));
    remove_stale_temporaries(dir, &name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp, "create temporary file"))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io(&tmp, "chown"))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(&tmp, "chmod"))?;
        f.write_all(bytes).map_err(io(&tmp, "write"))?;
        f.sync_all().map_err(io(&tmp, "fsync"))?;
        drop(f);
        check(&tmp)?;
        fs::rename(&tmp, real).map_err(io(real, "rename into place"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Replaces whatever is at `real` (not a directory) by a symlink to `to`, atomically.
fn write_symlink_atomic(real: &Path, to: &Path) -> Result<(), ApplyError> {
    let parent = real
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    ensure_parent(&parent)?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.kiln-tmp-{}", std::process::id()));
    remove_stale_temporaries(&parent, &name);
    std::os::unix::fs::symlink(to, &tmp).map_err(io(&tmp, "create symlink"))?;
    fs::rename(&tmp, real).map_err(io(real, "rename into place"))?;
    sync_dir(&parent)
}

/// Removes temporary files a killed run left next to `name` (best effort: they are
/// never read, only in the way).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.kiln-tmp-");
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync folder"))
}

fn ensure_parent(dir: &Path) -> Result<(), ApplyError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io(dir, "create parent folders"))?;
    }
    Ok(())
}

fn set_meta(real: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), ApplyError> {
    std::os::unix::fs::chown(real, Some(uid), Some(gid)).map_err(io(real, "chown"))?;
    fs::set_permissions(real, fs::Permissions::from_mode(mode)).map_err(io(real, "chmod"))
}

fn write_owned(target: &Target, owned: &Owned) -> Result<(), ApplyError> {
    let real = target.path(Path::new(OWNED_PATH));
    let bytes = serde_json::to_vec_pretty(owned).map_err(|e| ApplyError::Io {
        path: real.display().to_string(),
        action: "serialize",
        source: std::io::Error::other(e),
    })?;
    write_file_atomic(&real, &bytes, 0o600, 0, 0)
}

fn ids(accounts: &Accounts, owner: &str, group: &str) -> Result<(u32, u32), ApplyError> {
    let uid = accounts
        .uid(owner)
        .ok_or_else(|| ApplyError::UnknownAccount {
            what: "user",
            name: owner.to_owned(),
        })?;
    let gid = accounts
        .gid(group)
        .ok_or_else(|| ApplyError::UnknownAccount {
            what: "group",
            name: group.to_owned(),
        })?;
    Ok((uid, gid))
}

fn run_ok(
    target: &mut Target,
    args: &[String],
    env: &[(String, String)],
) -> Result<(), ApplyError> {
    let argv = crate::facts::Argv {
        env: env.to_vec(),
        args: args.to_vec(),
    };
    let out = target.runner.run(&argv).map_err(|e| ApplyError::Command {
        command: args.join(" "),
        message: e.to_string(),
    })?;
    if out.success() {
        Ok(())
    } else {
        Err(ApplyError::Command {
            command: args.join(" "),
            message: out.tail(),
        })
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Ctx<'a> {
    desired: &'a DesiredState,
    /// The originals of the files kiln took over, from the record before this apply.
    originals: &'a BTreeMap<PathBuf, Original>,
    facts: Option<&'a Facts>,
    accounts: Option<Accounts>,
    packages_done: bool,
    /// The stage whose enables were batched since the last daemon-reload.
    enables_done: Option<Stage>,
    /// The check of the host's quadlet files, made before the first one is written.
    quadlets_checked: Option<Result<(), ApplyError>>,
    /// The unit (and its container) the last step saw become healthy, to report.
    healthy: Option<(String, String)>,
}

impl Ctx<'_> {
    fn accounts(&mut self, target: &Target) -> Result<&Accounts, ApplyError> {
        if self.accounts.is_none() {
            let a = Accounts::read(target).map_err(|e| ApplyError::Io {
                path: "/etc/passwd".into(),
                action: "read accounts",
                source: std::io::Error::other(e.to_string()),
            })?;
            self.accounts = Some(a);
        }
        self.accounts
            .as_ref()
            .ok_or_else(|| ApplyError::Missing("accounts".into()))
    }

    fn pm(&self) -> Result<PackageManager, ApplyError> {
        self.facts
            .map(Facts::package_manager)
            .ok_or(ApplyError::NoFacts)
    }
}

fn step(
    target: &mut Target,
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    index: usize,
) -> Result<Option<String>, ApplyError> {
    let change = &plan.changes[index];
    let d = ctx.desired;
    let real_root = target.is_real_root();
    let need_real = |what: &str| -> Result<(), ApplyError> {
        if real_root {
            Ok(())
        } else {
            Err(ApplyError::NeedsRealRoot(what.to_owned()))
        }
    };
    match (&change.id, change.op) {
        (ResourceId::Group(name), Op::Create) => {
            need_real("groups")?;
            let g = d
                .groups
                .iter()
                .find(|g| &g.name == name)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            let mut args = strs(&["groupadd"]);
            if g.system {
                args.push("--system".into());
            }
            args.extend(["--".into(), name.clone()]);
            run_ok(target, &args, &[])?;
            ctx.accounts = None;
        }
        (ResourceId::Group(name), Op::Remove) => {
            need_real("groups")?;
            run_ok(target, &strs(&["groupdel", "--", name]), &[])?;
            ctx.accounts = None;
        }
        (ResourceId::User(name), Op::Create | Op::Update) => {
            need_real("users")?;
            let u = d
                .users
                .iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            let create = change.op == Op::Create;
            let mut args = strs(&[if create { "useradd" } else { "usermod" }]);
            if create && u.system {
                args.push("--system".into());
            }
            if let Some(h) = &u.home {
                args.extend(["--home-dir".into(), h.display().to_string()]);
            }
            if let Some(s) = &u.shell {
                args.extend(["--shell".into(), s.display().to_string()]);
            }
            // A group named like the user (declared, so created first): its primary group,
            // instead of useradd failing to create a user-private group of that name.
            if create
                && ctx.accounts(target)?.gid(name).is_some()
                && !name.chars().all(|c| c.is_ascii_digit())
            {
                args.extend(["--gid".into(), name.clone()]);
            }
            if !create || !u.groups.is_empty() {
                args.extend(["--groups".into(), u.groups.join(",")]);
            }
            args.extend(["--".into(), name.clone()]);
            run_ok(target, &args, &[])?;
            ctx.accounts = None;
        }
        (ResourceId::User(name), Op::Remove) => {
            need_real("users")?;
            run_ok(target, &strs(&["userdel", "--", name]), &[])?;
            ctx.accounts = None;
        }
        (ResourceId::Package(_), Op::Install) => {
            // All installs in one package manager transaction, at the first one.
            if !ctx.packages_done {
                need_real("packages")?;
                let names: Vec<String> = plan
                    .changes
                    .iter()
                    .filter(|c| c.op == Op::Install)
                    .filter_map(|c| match &c.id {
                        ResourceId::Package(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                let pm = ctx.pm()?;
                let install = pm.install(&names);
                if run_ok(target, &install.args, &install.env).is_err() {
                    let refresh = pm.refresh();
                    run_ok(target, &refresh.args, &refresh.env)?;
                    run_ok(target, &install.args, &install.env)?;
                }
                ctx.packages_done = true;
                ctx.accounts = None;
            }
        }
        (ResourceId::Package(name), Op::Uninstall) => {
            need_real("packages")?;
            let rm = ctx.pm()?.remove(std::slice::from_ref(name));
            run_ok(target, &rm.args, &rm.env)?;
        }
        (ResourceId::Directory(path), Op::Create | Op::Update) => {
            let dir = d
                .directories
                .iter()
                .find(|x| &x.path == path)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            let (uid, gid) = ids(ctx.accounts(target)?, &dir.owner, &dir.group)?;
            let real = target.path(path);
            if change.op == Op::Create {
                if let Some(parent) = real.parent() {
                    ensure_parent(parent)?;
                }
                match fs::create_dir(&real) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists && real.is_dir() => {}
                    Err(e) => return Err(io(&real, "create folder")(e)),
                }
            }
            set_meta(&real, dir.mode, uid, gid)?;
        }
        (ResourceId::Directory(path), Op::Remove) => {
            let real = target.path(path);
            match fs::remove_dir(&real) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                    return Ok(Some(format!(
                        "{} is no longer declared but not empty: kept (kiln no longer manages it)",
                        path.display()
                    )));
                }
                Err(e) => return Err(io(&real, "remove folder")(e)),
            }
        }
        (ResourceId::File(path), Op::Create | Op::Update | Op::TakeOver) => {
            let (content, mode, owner, group) =
                if let Some(f) = d.files.iter().find(|f| &f.path == path) {
                    (&f.content, f.mode, f.owner.as_str(), f.group.as_str())
                } else if let Some(u) = d.units.iter().find(|u| u.has_path(path)) {
                    (&u.content, 0o644, "root", "root")
                } else {
                    return Err(ApplyError::Missing(change.id.to_string()));
                };
            let quadlet = d
                .units
                .iter()
                .any(|u| matches!(u.kind, UnitKind::Quadlet { .. }) && u.has_path(path));
            if quadlet && change.content && real_root {
                check_quadlets_once(target, ctx)?;
            }
            let (uid, gid) = ids(ctx.accounts(target)?, owner, group)?;
            let real = target.path(path);
            let validate = d
                .files
                .iter()
                .find(|f| &f.path == path)
                .and_then(|f| f.validate.as_ref());
            if change.content {
                match validate {
                    Some(check) => {
                        write_file_checked(&real, content.bytes(), mode, uid, gid, |candidate| {
                            validate_candidate(target, path, check, content.bytes(), candidate)
                        })?
                    }
                    None => write_file_atomic(&real, content.bytes(), mode, uid, gid)?,
                }
            } else {
                set_meta(&real, mode, uid, gid)?;
            }
        }
        (ResourceId::File(path) | ResourceId::Symlink(path), Op::Restore) => {
            let original = ctx
                .originals
                .get(path)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            match original {
                Original::File {
                    sha256,
                    mode,
                    owner,
                    group,
                } => {
                    let bytes = read_original(target, path, sha256)?;
                    let (uid, gid) = ids(ctx.accounts(target)?, owner, group)?;
                    write_file_atomic(&target.path(path), &bytes, *mode, uid, gid)?;
                }
                Original::Symlink { target: to } => {
                    write_symlink_atomic(&target.path(path), to)?;
                }
            }
        }
        (ResourceId::File(path) | ResourceId::Symlink(path), Op::Remove) => {
            let real = target.path(path);
            match fs::remove_file(&real) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io(&real, "remove")(e)),
            }
            if let Some(parent) = real.parent() {
                sync_dir(parent)?;
            }
        }
        (ResourceId::Symlink(path), Op::Create | Op::Update | Op::TakeOver) => {
            let s = d
                .symlinks
                .iter()
                .find(|s| &s.path == path)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            write_symlink_atomic(&target.path(path), &s.target)?;
        }
        (ResourceId::Systemd, Op::DaemonReload) => {
            need_real("systemd units")?;
            run_ok(target, &strs(&["systemctl", "daemon-reload"]), &[])?;
            // Enables after this reload (units given back) are a batch of their own.
            ctx.enables_done = None;
        }
        (ResourceId::Unit(name), Op::Enable) => {
            // All enables of a stage in one `systemctl enable`, at its first one: each call
            // reloads the manager (≈ 175 ms each on a lab server), and the planner puts every
            // unit file change and the daemon-reload before any unit state change. The batch
            // ends at the next daemon-reload (units given back after their files are
            // restored); a later stage's units are enabled with their stage (a stage may
            // not be reached, when one before it is unhealthy).
            let stage = unit_stage(d, name);
            if ctx.enables_done != Some(stage) {
                need_real("systemd units")?;
                let mut argv = strs(&["systemctl", "enable", "--"]);
                let batch = plan.changes[index..]
                    .iter()
                    .take_while(|c| c.op != Op::DaemonReload);
                argv.extend(batch.filter_map(|c| match (&c.id, c.op) {
                    (ResourceId::Unit(n), Op::Enable) if unit_stage(d, n) == stage => {
                        Some(n.clone())
                    }
                    _ => None,
                }));
                run_ok(target, &argv, &[])?;
                ctx.enables_done = Some(stage);
            }
        }
        (
            ResourceId::Unit(name),
            op @ (Op::Disable | Op::Start | Op::Stop | Op::Restart | Op::Reload),
        ) => {
            need_real("systemd units")?;
            // A unit planned to start was inactive when observed; something earlier in this
            // apply may have started it since (Debian starts a service when its package is
            // installed) with files this apply then replaced: `restart` starts a stopped
            // unit and restarts a running one, so it always runs with the new files.
            let verb = if op == Op::Start {
                "restart".to_owned()
            } else {
                op.to_string()
            };
            let health = d
                .units
                .iter()
                .find(|u| &u.name == name)
                .and_then(|u| u.health.as_ref())
                .filter(|_| matches!(op, Op::Start | Op::Restart));
            if let Some(health) = health {
                let back = previous_version(d, change, name);
                start_healthy(target, name, &verb, health, back)?;
                ctx.healthy = Some((name.clone(), health.container.clone()));
            } else {
                run_ok(target, &strs(&["systemctl", &verb, "--", name]), &[])?;
                if matches!(op, Op::Start | Op::Restart) {
                    wait_settled(target, name, &verb, &Settle::default())?;
                }
            }
        }
        (ResourceId::Image(reference), Op::Pull) => {
            need_real("images")?;
            let args = crate::podman::pull_argv(reference);
            let service = d
                .images
                .iter()
                .find(|i| &i.reference == reference)
                .and_then(|i| i.service.clone().or_else(|| i.container.clone()));
            let pull_err = |message: String| ApplyError::Pull {
                reference: reference.clone(),
                service: service.clone(),
                message,
            };
            let out = target
                .runner
                .run(&crate::facts::Argv { env: vec![], args })
                .map_err(|e| pull_err(e.to_string()))?;
            if !out.success() {
                return Err(pull_err(out.tail()));
            }
        }
        (ResourceId::Command(name), Op::Run) => {
            need_real("commands")?;
            let c = d
                .commands
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| ApplyError::Missing(change.id.to_string()))?;
            let out = target.shell(&c.run).map_err(|e| ApplyError::Command {
                command: c.run.clone(),
                message: e.to_string(),
            })?;
            if !out.success() {
                return Err(ApplyError::Command {
                    command: c.run.clone(),
                    message: format!(
                        "exit {}: {}",
                        out.code.map_or("signal".into(), |c| c.to_string()),
                        out.tail()
                    ),
                });
            }
        }
        (id, op) => {
            return Err(ApplyError::Missing(format!("{op} {id}")));
        }
    }
    Ok(None)
}

/// Applies `plan` (made from `desired`) to `target`. Returns how many changes were
/// applied and whether all succeeded; every step is reported to `sink`.
pub fn apply(
    target: &mut Target,
    facts: Option<&Facts>,
    desired: &DesiredState,
    old_owned: &Owned,
    plan: &Plan,
    sink: &mut dyn EventSink,
) -> (usize, bool) {
    if plan.changes.is_empty() {
        if *old_owned != plan.owned_after
            && let Err(e) = write_owned(target, &plan.owned_after)
        {
            sink.emit(Event::Error {
                message: format!("cannot write the ownership record: {e}"),
            });
            return (0, false);
        }
        return (0, true);
    }
    // Keep the originals of the files taken over, before the record names them.
    if let Err(e) = keep_originals(target, plan) {
        sink.emit(Event::Error {
            message: format!("host {}: {e}", plan.host),
        });
        return (0, false);
    }
    // Widen the record first: a run killed midway still knows what it may have created.
    let mut during = plan.owned_after.clone();
    during.commands = old_owned.commands.clone();
    let mut during = old_owned.union(&during);
    if let Err(e) = write_owned(target, &during) {
        sink.emit(Event::Error {
            message: format!("cannot write the ownership record: {e}"),
        });
        return (0, false);
    }
    let mut ctx = Ctx {
        desired,
        originals: &old_owned.originals,
        facts,
        accounts: None,
        packages_done: false,
        enables_done: None,
        quadlets_checked: None,
        healthy: None,
    };
    let total = plan.changes.len();
    let mut applied = 0;
    let mut ran: BTreeSet<String> = BTreeSet::new();
    // Changes that failed or were skipped, for the dependency check of later ones.
    let mut broken: Vec<usize> = vec![];
    let mut guards = Guards::new(desired);
    // Set when a unit did not become healthy: nothing more is changed on the host.
    let mut halted: Option<String> = None;
    for (index, change) in plan.changes.iter().enumerate() {
        let group = plan.groups.iter().find(|g| g.changes.contains(&index));
        if let Some(because) = &halted {
            sink.emit(Event::Skipped {
                index,
                id: change.id.clone(),
                op: change.op,
                because: because.clone(),
            });
            broken.push(index);
            guards.after(target, plan, group, index, &broken, sink);
            continue;
        }
        if let Some(&cause) = broken.iter().find(|&&b| {
            depends_on(change, &plan.changes[b], desired)
                || group.is_some_and(|g| g.changes.contains(&b))
        }) {
            let c = &plan.changes[cause];
            sink.emit(Event::Skipped {
                index,
                id: change.id.clone(),
                op: change.op,
                because: format!("{} {}", c.op, c.id),
            });
            broken.push(index);
            guards.after(target, plan, group, index, &broken, sink);
            continue;
        }
        if let Some(g) = group
            && g.changes.first() == Some(&index)
            && let Err(e) = guards.arm(target, &g.name)
        {
            sink.emit(Event::Failed {
                index,
                id: change.id.clone(),
                op: change.op,
                error: e.to_string(),
            });
            broken.push(index);
            guards.after(target, plan, group, index, &broken, sink);
            continue;
        }
        sink.emit(Event::Applying {
            index,
            total,
            id: change.id.clone(),
            op: change.op,
        });
        let start = Instant::now();
        match step(target, &mut ctx, plan, index) {
            Ok(warning) => {
                if let Some(message) = warning {
                    sink.emit(Event::Warning { message });
                }
                if let ResourceId::Command(n) = &change.id {
                    ran.insert(n.clone());
                }
                applied += 1;
                let ms = start.elapsed().as_millis() as u64;
                sink.emit(Event::Applied {
                    index,
                    id: change.id.clone(),
                    op: change.op,
                    ms,
                });
                if let Some((unit, container)) = ctx.healthy.take() {
                    sink.emit(Event::Healthy {
                        unit,
                        container,
                        ms,
                    });
                }
            }
            Err(e) => {
                if let ApplyError::Unhealthy(u) = &e {
                    let unit = &u.unit;
                    halted = Some(format!(
                        "unit {unit} is not healthy: kiln changes nothing more on this host"
                    ));
                }
                sink.emit(Event::Failed {
                    index,
                    id: change.id.clone(),
                    op: change.op,
                    error: e.to_string(),
                });
                broken.push(index);
            }
        }
        guards.after(target, plan, group, index, &broken, sink);
    }
    if !broken.is_empty() {
        // Keep the widened record, plus the commands that did run.
        for n in &ran {
            if let Some(h) = plan.owned_after.commands.get(n) {
                during.commands.insert(n.clone(), h.clone());
            }
        }
        if let Err(e) = write_owned(target, &during) {
            sink.emit(Event::Error {
                message: format!("cannot write the ownership record: {e}"),
            });
        }
        return (applied, false);
    }
    if let Err(e) = write_owned(target, &plan.owned_after) {
        sink.emit(Event::Error {
            message: format!("cannot write the ownership record: {e}"),
        });
        return (applied, false);
    }
    if let Err(e) = prune_originals(target, &plan.owned_after) {
        sink.emit(Event::Warning {
            message: format!("host {}: {e}", plan.host),
        });
    }
    (applied, true)
}

/// Keeps the bytes of every file the plan takes over in [`ORIGINALS_DIR`] (0700, each
/// original 0600, named by its hash), checking that what is there is still what was
/// observed (a symlink's original is its target, in the record itself).
pub fn keep_originals(target: &Target, plan: &Plan) -> Result<(), ApplyError> {
    for c in plan.changes.iter().filter(|c| c.op == Op::TakeOver) {
        let (ResourceId::File(path) | ResourceId::Symlink(path)) = &c.id else {
            continue;
        };
        let original =
            plan.owned_after.originals.get(path).ok_or_else(|| {
                ApplyError::Missing(format!("the original of {}", path.display()))
            })?;
        let real = target.path(path);
        let changed = |expected: String, found: String| ApplyError::ChangedSincePlanned {
            path: path.display().to_string(),
            expected,
            found,
        };
        let sha256 = match original {
            Original::Symlink { target: to } => {
                let found = fs::read_link(&real).map_err(io(&real, "read the original"))?;
                if found != *to {
                    return Err(changed(
                        format!("a symlink to {}", to.display()),
                        format!("a symlink to {}", found.display()),
                    ));
                }
                continue;
            }
            Original::File { sha256, .. } => sha256,
        };
        if fs::symlink_metadata(&real).is_ok_and(|m| !m.is_file()) {
            return Err(changed(
                format!("a file with sha256 {sha256}"),
                "no longer a regular file".into(),
            ));
        }
        let bytes = fs::read(&real).map_err(io(&real, "read the original"))?;
        let found = sha256_hex(&bytes);
        if found != *sha256 {
            return Err(changed(
                format!("a file with sha256 {sha256}"),
                format!("sha256 {found}"),
            ));
        }
        let store = target.path(Path::new(ORIGINALS_DIR));
        fs::create_dir_all(&store).map_err(io(&store, "create folder"))?;
        fs::set_permissions(&store, fs::Permissions::from_mode(0o700))
            .map_err(io(&store, "chmod"))?;
        let kept = target.path(&original_path(sha256));
        if fs::read(&kept).ok().map(|b| sha256_hex(&b)) != Some(found) {
            write_file_atomic(&kept, &bytes, 0o600, 0, 0)?;
        }
    }
    Ok(())
}

/// The bytes kept for `path`, checked against their hash.
fn read_original(target: &Target, path: &Path, sha256: &str) -> Result<Vec<u8>, ApplyError> {
    let kept = target.path(&original_path(sha256));
    let lost = |problem: String| ApplyError::OriginalLost {
        path: path.display().to_string(),
        store: kept.display().to_string(),
        problem,
        record: OWNED_PATH,
    };
    let bytes = fs::read(&kept).map_err(|e| lost(format!("unreadable: {e}")))?;
    if sha256_hex(&bytes) != sha256 {
        return Err(lost("corrupt (its hash differs)".into()));
    }
    Ok(bytes)
}

/// Removes the kept originals no file of the record refers to any more (after a
/// successful apply: a failed one may still have to restore them).
pub fn prune_originals(target: &Target, owned: &Owned) -> Result<(), ApplyError> {
    let store = target.path(Path::new(ORIGINALS_DIR));
    let entries = match fs::read_dir(&store) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&store, "list kept originals")(e)),
    };
    let wanted: BTreeSet<&str> = owned
        .originals
        .values()
        .filter_map(Original::sha256)
        .collect();
    for e in entries {
        let e = e.map_err(io(&store, "list kept originals"))?;
        let name = e.file_name();
        if !wanted.contains(name.to_string_lossy().as_ref()) {
            let p = e.path();
            fs::remove_file(&p).map_err(io(&p, "remove a kept original no longer needed"))?;
        }
    }
    Ok(())
}

/// The guarded groups armed during one apply ([`crate::guard`]).
struct Guards<'a> {
    desired: &'a DesiredState,
    timeout_s: u32,
    /// Group name → (token, when armed).
    armed: std::collections::BTreeMap<String, (String, Instant)>,
}

impl<'a> Guards<'a> {
    fn new(desired: &'a DesiredState) -> Self {
        Guards {
            desired,
            timeout_s: desired
                .guard_timeout_s
                .unwrap_or(crate::guard::DEFAULT_TIMEOUT_S),
            armed: Default::default(),
        }
    }

    /// Before the group's first change: save its state, start the rollback timer.
    fn arm(&mut self, target: &mut Target, group: &str) -> Result<(), crate::guard::GuardError> {
        let token = crate::guard::arm(target, self.desired, group, self.timeout_s)?;
        self.armed.insert(group.to_owned(), (token, Instant::now()));
        Ok(())
    }

    /// After change `index`: when it is its group's last, either ask the laptop to confirm
    /// the group, or (one of its changes failed) roll it back now.
    fn after(
        &mut self,
        target: &mut Target,
        plan: &Plan,
        group: Option<&crate::guard::GuardGroup>,
        index: usize,
        broken: &[usize],
        sink: &mut dyn EventSink,
    ) {
        let Some(g) = group else { return };
        if g.changes.last() != Some(&index) {
            return;
        }
        let Some((token, since)) = self.armed.remove(&g.name) else {
            return; // never armed: nothing was changed
        };
        let failed = g.changes.iter().find(|i| broken.contains(i));
        match failed {
            None => {
                let left = u64::from(self.timeout_s).saturating_sub(since.elapsed().as_secs());
                sink.emit(Event::GuardArmed {
                    group: g.name.clone(),
                    token,
                    deadline_s: left,
                });
            }
            Some(&i) => {
                let c = &plan.changes[i];
                match crate::guard::rollback(target, &token, false) {
                    Ok(done) => {
                        for e in done.iter().flat_map(|d| d.errors.iter()) {
                            sink.emit(Event::Error {
                                message: format!("guarded group {}: rollback: {e}", g.name),
                            });
                        }
                        sink.emit(Event::GuardRolledBack {
                            group: g.name.clone(),
                            token,
                            reason: format!("{} {} failed", c.op, c.id),
                        });
                    }
                    Err(e) => sink.emit(Event::Error {
                        message: format!("{e} (its timer still rolls it back)"),
                    }),
                }
            }
        }
    }
}

/// Whether `later` must not run because `failed` (an earlier change that failed or was
/// skipped) did not happen. Conservative on what breaks for certain, and nothing more:
/// - an account that could not be created: what is owned by it, users in that group;
/// - a package install: the other installs (one transaction), every unit and command
///   (their programs may come from it);
/// - a folder: everything under it;
/// - a file: the unit it is the unit file of, units it notifies, commands it triggers;
/// - `daemon-reload`: every unit state change;
/// - a `systemctl enable`: the other enables (one call);
/// - an image pull: the quadlet file naming it in `Image=` and its unit (the old quadlet
///   and container stay as they are);
/// - a unit start, restart or reload, or a command, of a stage: the commands and unit
///   state changes of every later stage ([`Stage`]: they wait for it).
pub fn depends_on(later: &Change, failed: &Change, desired: &DesiredState) -> bool {
    if stage_barrier(later, failed, desired) {
        return true;
    }
    use ResourceId as R;
    let writes = matches!(
        failed.op,
        Op::Create | Op::Update | Op::TakeOver | Op::Restore
    );
    let owner_group = |id: &ResourceId| -> Option<(&str, &str)> {
        match id {
            R::Directory(p) => desired
                .directories
                .iter()
                .find(|d| &d.path == p)
                .map(|d| (d.owner.as_str(), d.group.as_str())),
            R::File(p) => desired
                .files
                .iter()
                .find(|f| &f.path == p)
                .map(|f| (f.owner.as_str(), f.group.as_str())),
            _ => None,
        }
    };
    match (&failed.id, &later.id) {
        (R::Group(g), R::User(u)) if writes => {
            u == g
                || desired
                    .users
                    .iter()
                    .any(|x| &x.name == u && x.groups.contains(g))
        }
        (R::Group(g), other) if writes => owner_group(other).is_some_and(|(_, gr)| gr == g),
        (R::User(u), other) if writes => owner_group(other).is_some_and(|(o, _)| o == u),
        (R::Package(_), R::Package(_)) => failed.op == Op::Install && later.op == Op::Install,
        (R::Package(_), R::Unit(_) | R::Command(_)) => failed.op == Op::Install,
        (R::Directory(d), R::Directory(p) | R::File(p) | R::Symlink(p)) if writes => {
            p != d && p.starts_with(d)
        }
        (R::File(p), R::Unit(n)) if writes => {
            crate::resource::unit_path(n) == *p
                || desired.units.iter().any(|u| &u.name == n && u.has_path(p))
                || desired
                    .files
                    .iter()
                    .any(|f| &f.path == p && f.notify.iter().any(|x| &x.unit == n))
        }
        (R::File(p), R::Command(c)) if writes => desired
            .commands
            .iter()
            .any(|x| &x.name == c && x.triggered_by.contains(p)),
        (R::Image(r), R::File(p)) => desired.units.iter().any(|u| {
            u.has_path(p) && matches!(u.kind, UnitKind::Quadlet { .. }) && runs_image(desired, u, r)
        }),
        (R::Image(r), R::Unit(n)) => desired
            .units
            .iter()
            .any(|u| &u.name == n && runs_image(desired, u, r)),
        (R::Systemd, R::Unit(_)) => true,
        (R::Unit(_), R::Unit(_)) => failed.op == Op::Enable && later.op == Op::Enable,
        _ => false,
    }
}

/// Whether unit `u` runs image `reference` (its quadlet's `Image=`, or the container the
/// declared image is for).
fn runs_image(desired: &DesiredState, u: &crate::resource::Unit, reference: &str) -> bool {
    crate::podman::unit_key(u.content.bytes(), "Image").as_deref() == Some(reference)
        || desired.images.iter().any(|i| {
            i.reference == reference
                && crate::podman::unit_of_image(desired, i).is_some_and(|x| x.name == u.name)
        })
}

fn unit_stage(desired: &DesiredState, name: &str) -> Stage {
    desired
        .units
        .iter()
        .find(|u| u.name == name)
        .map(|u| u.stage)
        .unwrap_or_default()
}

/// The stage a command or unit state change waits in, if it is one.
fn staged(c: &Change, desired: &DesiredState) -> Option<Stage> {
    match (&c.id, c.op) {
        (ResourceId::Command(n), _) => desired
            .commands
            .iter()
            .find(|x| &x.name == n)
            .map(|x| x.stage),
        (ResourceId::Unit(n), _) if desired.units.iter().any(|u| &u.name == n) => {
            Some(unit_stage(desired, n))
        }
        _ => None,
    }
}

fn stage_barrier(later: &Change, failed: &Change, desired: &DesiredState) -> bool {
    let waited_for = matches!(failed.op, Op::Start | Op::Restart | Op::Reload | Op::Run);
    match (staged(failed, desired), staged(later, desired)) {
        (Some(a), Some(b)) => waited_for && b > a,
        _ => false,
    }
}

/// The version to set back to when `change` (a restart of `unit`) leaves it unhealthy:
/// the image its container ran before, as the planner noted it ([`PREVIOUS_IMAGE`]).
fn previous_version(desired: &DesiredState, change: &Change, unit: &str) -> Option<String> {
    let before = change
        .details
        .iter()
        .find_map(|d| d.strip_prefix(crate::plan::PREVIOUS_IMAGE))?;
    let now = desired
        .images
        .iter()
        .find(|i| crate::podman::unit_of_image(desired, i).is_some_and(|u| u.name == unit));
    Some(match now {
        Some(i) => crate::podman::version_of(before, &i.reference),
        None => before.to_owned(),
    })
}

/// Runs the generator check of the host's quadlets once per apply; every quadlet file
/// write gets its result.
fn check_quadlets_once(target: &mut Target, ctx: &mut Ctx<'_>) -> Result<(), ApplyError> {
    if ctx.quadlets_checked.is_none() {
        let result = if !crate::podman::has_generator(target) {
            Err(ApplyError::QuadletCheck(format!(
                "cannot check the quadlet files: {} is missing (is podman installed? declare the `podman` package)",
                crate::podman::QUADLET_GENERATOR
            )))
        } else {
            match crate::podman::check_quadlets(target, ctx.desired) {
                Ok(()) => Ok(()),
                Err(crate::podman::QuadletCheckError::Refused(r)) => {
                    Err(ApplyError::QuadletRefused(r))
                }
                Err(e) => Err(ApplyError::QuadletCheck(e.to_string())),
            }
        };
        ctx.quadlets_checked = Some(result);
    }
    match &ctx.quadlets_checked {
        Some(Err(ApplyError::QuadletRefused(r))) => Err(ApplyError::QuadletRefused(r.clone())),
        Some(Err(e)) => Err(ApplyError::QuadletCheck(e.to_string())),
        _ => Ok(()),
    }
}

/// How often [`wait_healthy`] asks Podman.
pub const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Starts (`systemctl restart --no-block`) a unit with a health check, waits until it
/// settled (within its health timeout, not the default 10 s: a `Notify=healthy` unit is
/// activating until healthy) and its container is healthy ([`wait_healthy`]). Every
/// failure is [`ApplyError::Unhealthy`].
fn start_healthy(
    target: &mut Target,
    unit: &str,
    verb: &str,
    health: &crate::resource::Health,
    back: Option<String>,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    let timeout = Duration::from_secs(u64::from(health.timeout_s));
    run_ok(
        target,
        &strs(&["systemctl", verb, "--no-block", "--", unit]),
        &[],
    )?;
    let settle = Settle {
        timeout: timeout.max(Settle::default().timeout),
        ..Settle::default()
    };
    let mut last = crate::podman::HealthReport::default();
    let mut sampled: Option<Instant> = None;
    let container = health.container.as_str();
    let settled = wait_settled_with(target, unit, verb, &settle, &mut |t: &mut Target| {
        // While systemd's job runs: the container's health, before it may be removed.
        if sampled.is_none_or(|s| s.elapsed() >= HEALTH_POLL) {
            sampled = Some(Instant::now());
            if let Ok(Some(h)) = inspect_health(t, container) {
                last = h;
            }
        }
    });
    let unhealthy = |target: &mut Target, state: String, last: &crate::podman::HealthReport| {
        ApplyError::Unhealthy(Box::new(Unhealthy {
            unit: unit.to_owned(),
            container: container.to_owned(),
            waited_s: started.elapsed().as_secs(),
            state,
            last_check: format_check(last),
            journal: journal_tail(target, unit),
            back: back.clone(),
        }))
    };
    match settled {
        Ok(()) => {}
        Err(ApplyError::UnitNotActive { state, .. }) => {
            return Err(unhealthy(target, format!("the unit is {state}"), &last));
        }
        Err(e) => return Err(e),
    }
    match wait_healthy(target, unit, container, started + timeout, &mut last) {
        Ok(()) => Ok(()),
        Err(state) => Err(unhealthy(target, state, &last)),
    }
}

fn format_check(h: &crate::podman::HealthReport) -> String {
    match &h.last {
        Some((code, out)) => {
            let mut text = format!(
                "
  last health check (exit {code}):"
            );
            if out.is_empty() {
                text.push_str(" no output");
            }
            for l in out.lines().take(10) {
                text.push_str(
                    "
    ",
                );
                text.push_str(l);
            }
            text
        }
        None => String::new(),
    }
}

/// The container's health (`None`: no such container).
fn inspect_health(
    target: &mut Target,
    container: &str,
) -> Result<Option<crate::podman::HealthReport>, ApplyError> {
    let args = crate::podman::health_argv(container);
    let command = args.join(" ");
    let out = target
        .runner
        .run(&crate::facts::Argv { env: vec![], args })
        .map_err(|e| ApplyError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.success() {
        return Ok(None);
    }
    crate::podman::parse_health(&out.stdout)
        .map(Some)
        .map_err(|message| ApplyError::Command { command, message })
}

/// Polls the container's health every [`HEALTH_POLL`] until `healthy`. Fails (with what
/// it saw) when the container has no health check, when the unit is no longer active
/// (it failed, or systemd removed the container), or at `deadline` (checked at least
/// once). `last` keeps the last report that had one.
pub fn wait_healthy(
    target: &mut Target,
    unit: &str,
    container: &str,
    deadline: Instant,
    last: &mut crate::podman::HealthReport,
) -> Result<(), String> {
    loop {
        match inspect_health(target, container) {
            Ok(Some(h)) if h.status == "healthy" => return Ok(()),
            Ok(Some(h)) if h.status.is_empty() => {
                return Err(format!(
                    "container {container} has no health check (no HealthCmd=)"
                ));
            }
            Ok(Some(h)) => {
                let seen = h.status.clone();
                if h.last.is_some() || last.last.is_none() {
                    *last = h;
                }
                last.status = seen;
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let st = show_unit(target, unit).map_err(|e| e.to_string())?;
        if !matches!(st.active.as_str(), "active" | "activating" | "reloading") {
            return Err(format!("the unit is {}", st.describe()));
        }
        if Instant::now() >= deadline {
            return Err(if last.status.is_empty() {
                format!("container {container} not found")
            } else {
                format!("health {}", last.status)
            });
        }
        std::thread::sleep(HEALTH_POLL);
    }
}

/// How long [`wait_settled`] watches a unit.
#[derive(Debug, Clone)]
pub struct Settle {
    /// A running service counts as started once it stayed active this long (without
    /// automatic restarts in between).
    pub window: Duration,
    /// Give up (and fail) after this long without a settled state.
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            window: Duration::from_millis(1000),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(100),
        }
    }
}

/// One sample of `systemctl show -p Type -p ActiveState -p SubState -p Result -p NRestarts`.
#[derive(Debug, Default, PartialEq, Eq)]
struct UnitState {
    kind: String,
    active: String,
    sub: String,
    result: String,
    restarts: String,
}

impl UnitState {
    fn parse(text: &str) -> UnitState {
        let mut s = UnitState::default();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().to_owned();
                match k {
                    "Type" => s.kind = v,
                    "ActiveState" => s.active = v,
                    "SubState" => s.sub = v,
                    "Result" => s.result = v,
                    "NRestarts" => s.restarts = v,
                    _ => {}
                }
            }
        }
        s
    }

    fn describe(&self) -> String {
        format!("{} ({}), result {}", self.active, self.sub, self.result)
    }
}

/// The `systemctl show` call [`wait_settled`] samples a unit with.
fn settle_show_argv(unit: &str) -> Vec<String> {
    strs(&[
        "systemctl",
        "show",
        "-p",
        "Type",
        "-p",
        "ActiveState",
        "-p",
        "SubState",
        "-p",
        "Result",
        "-p",
        "NRestarts",
        "--",
        unit,
    ])
}

/// After `systemctl start/restart NAME` returned: waits (bounded) until the unit settled.
/// Success: active for [`Settle::window`] with no automatic restart in between, a oneshot
/// that is active or exited successfully, or a service that exited with `RemainAfterExit`.
/// Failure: `failed`, inactive with an unsuccessful result, or no settled state before
/// [`Settle::timeout`]; the error carries the unit's last journal lines.
pub fn wait_settled(
    target: &mut Target,
    unit: &str,
    verb: &str,
    settle: &Settle,
) -> Result<(), ApplyError> {
    wait_settled_with(target, unit, verb, settle, &mut |_: &mut Target| {})
}

/// One sample of the unit's state.
fn show_unit(target: &mut Target, unit: &str) -> Result<UnitState, ApplyError> {
    let args = settle_show_argv(unit);
    let out = target
        .runner
        .run(&crate::facts::Argv { env: vec![], args })
        .map_err(|e| ApplyError::Command {
            command: format!("systemctl show {unit}"),
            message: e.to_string(),
        })?;
    if !out.success() {
        return Err(ApplyError::Command {
            command: format!("systemctl show {unit}"),
            message: out.tail(),
        });
    }
    Ok(UnitState::parse(&out.stdout))
}

/// [`wait_settled`], calling `while_activating` at each sample that finds the unit
/// activating (a health wait samples the container's health meanwhile).
fn wait_settled_with(
    target: &mut Target,
    unit: &str,
    verb: &str,
    settle: &Settle,
    while_activating: &mut dyn FnMut(&mut Target),
) -> Result<(), ApplyError> {
    let start = Instant::now();
    let mut active_since: Option<(Instant, String)> = None;
    let fail = |target: &mut Target, state: String| ApplyError::UnitNotActive {
        unit: unit.to_owned(),
        verb: verb.to_owned(),
        state,
        journal: journal_tail(target, unit),
    };
    loop {
        let st = show_unit(target, unit)?;
        if st.active == "activating" {
            while_activating(target);
        }
        let oneshot = st.kind == "oneshot";
        match st.active.as_str() {
            "failed" => return Err(fail(target, st.describe())),
            "inactive" if oneshot && st.result == "success" => return Ok(()),
            "inactive" => return Err(fail(target, st.describe())),
            "active" if oneshot || st.sub == "exited" => return Ok(()),
            "active" => match &active_since {
                Some((since, restarts)) if *restarts == st.restarts => {
                    if since.elapsed() >= settle.window {
                        return Ok(());
                    }
                }
                _ => active_since = Some((Instant::now(), st.restarts.clone())),
            },
            _ => active_since = None,
        }
        if start.elapsed() >= settle.timeout {
            let state = format!(
                "{}; not settled after {} s",
                st.describe(),
                settle.timeout.as_secs()
            );
            return Err(fail(target, state));
        }
        std::thread::sleep(settle.poll);
    }
}

/// The unit's last journal lines, formatted for an error message (empty when none could
/// be read: the failure itself is what matters).
fn journal_tail(target: &mut Target, unit: &str) -> String {
    let args = strs(&[
        "journalctl",
        "-u",
        unit,
        "-n",
        "10",
        "--no-pager",
        "-o",
        "cat",
    ]);
    match target.runner.run(&crate::facts::Argv { env: vec![], args }) {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => {
            let mut text = String::from("\n  last journal lines:");
            for l in out.stdout.trim_end().lines() {
                text.push_str("\n    ");
                text.push_str(l);
            }
            text
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::facts::Argv;
    use crate::plan::Change;
    use crate::system::{RunOutput, Runner};

    #[test]
    fn a_checks_refusal_quotes_the_line_it_names_and_the_block_it_is_in() {
        let caddyfile = b"# Managed by kiln\n{\n\temail a@b.c\n}\n\n# service www\nwww.x.test {\n\treverse_proxi www:80\n}\n";
        let output = "Error: adapting config using caddyfile: /etc/caddy/Caddyfile:8: unrecognized directive: reverse_proxi";
        assert_eq!(
            named_line(output, "Caddyfile", caddyfile).unwrap(),
            "\nline 8 of the new Caddyfile: `reverse_proxi www:80`, in the block after `# service www`"
        );
        // No line named, or a line past the end: nothing to add.
        assert_eq!(named_line("Error: bad", "Caddyfile", caddyfile), None);
        assert_eq!(named_line("Caddyfile:99: x", "Caddyfile", caddyfile), None);
    }

    /// Records every command and says it succeeded.
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);
    impl Runner for Recorder {
        fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput> {
            self.0.lock().unwrap().push(argv.args.clone());
            Ok(RunOutput {
                code: Some(0),
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    }

    #[test]
    fn enables_are_batched_up_to_the_next_daemon_reload_only() {
        let ran = Arc::new(Mutex::new(vec![]));
        // Only systemctl is run (no file is touched), so the real root is safe here.
        let mut target = Target {
            root: "/".into(),
            runner: Box::new(Recorder(ran.clone())),
        };
        let unit = |n: &str, op| Change::new(ResourceId::Unit(n.into()), op);
        let plan = Plan {
            host: "web".into(),
            changes: vec![
                unit("a.service", Op::Enable),
                unit("b.service", Op::Enable),
                Change::new(ResourceId::Systemd, Op::DaemonReload),
                unit("given-back.service", Op::Enable),
            ],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec![],
        };
        let desired = DesiredState::default();
        let originals = BTreeMap::new();
        let mut ctx = Ctx {
            desired: &desired,
            originals: &originals,
            facts: None,
            accounts: None,
            packages_done: false,
            enables_done: None,
            quadlets_checked: None,
            healthy: None,
        };
        for i in 0..plan.changes.len() {
            step(&mut target, &mut ctx, &plan, i).unwrap();
        }
        let ran = ran.lock().unwrap().clone();
        assert_eq!(
            ran,
            [
                vec!["systemctl", "enable", "--", "a.service", "b.service"],
                vec!["systemctl", "daemon-reload"],
                vec!["systemctl", "enable", "--", "given-back.service"],
            ]
        );
    }
}

/// The settle check and failure propagation (with a scripted runner).
#[cfg(test)]
mod settle_tests {
    use super::*;
    use crate::system::{RunOutput, ScriptedRunner};

    fn show(active: &str, sub: &str, result: &str, kind: &str) -> RunOutput {
        RunOutput {
            code: Some(0),
            stdout: format!(
                "Type={kind}\nNRestarts=0\nResult={result}\nActiveState={active}\nSubState={sub}\n"
            ),
            stderr: String::new(),
        }
    }

    fn show_args(unit: &str) -> Vec<String> {
        settle_show_argv(unit)
    }

    fn fast() -> Settle {
        Settle {
            window: Duration::ZERO,
            timeout: Duration::from_secs(5),
            poll: Duration::ZERO,
        }
    }

    fn target(script: Vec<(Vec<String>, RunOutput)>) -> Target {
        Target {
            root: "/".into(),
            runner: Box::new(ScriptedRunner {
                expected: script.into(),
                ran: vec![],
            }),
        }
    }

    #[test]
    fn a_unit_that_dies_at_once_fails_with_its_journal_lines() {
        let journal = RunOutput {
            code: Some(0),
            stdout: "bad.service: Main process exited, code=exited, status=1/FAILURE\n".into(),
            stderr: String::new(),
        };
        let mut t = target(vec![
            (
                show_args("bad.service"),
                show("active", "running", "success", "simple"),
            ),
            (
                show_args("bad.service"),
                show("failed", "failed", "exit-code", "simple"),
            ),
            (
                strs(&[
                    "journalctl",
                    "-u",
                    "bad.service",
                    "-n",
                    "10",
                    "--no-pager",
                    "-o",
                    "cat",
                ]),
                journal,
            ),
        ]);
        let settle = Settle {
            window: Duration::from_secs(60),
            ..fast()
        };
        let err = wait_settled(&mut t, "bad.service", "restart", &settle)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unit bad.service did not stay active after `systemctl restart`: failed (failed), result exit-code"),
            "{err}"
        );
        assert!(
            err.contains("\n    bad.service: Main process exited"),
            "{err}"
        );
    }

    #[test]
    fn settled_units_and_finished_oneshots_are_started() {
        let mut t = target(vec![
            (
                show_args("a.service"),
                show("active", "running", "success", "simple"),
            ),
            (
                show_args("a.service"),
                show("active", "running", "success", "simple"),
            ),
        ]);
        wait_settled(&mut t, "a.service", "restart", &fast()).unwrap();
        let mut t = target(vec![(
            show_args("once.service"),
            show("inactive", "dead", "success", "oneshot"),
        )]);
        wait_settled(&mut t, "once.service", "restart", &fast()).unwrap();
        let mut t = target(vec![(
            show_args("once.service"),
            show("inactive", "dead", "exit-code", "oneshot"),
        )]);
        assert!(wait_settled(&mut t, "once.service", "restart", &fast()).is_err());
    }

    #[test]
    fn a_unit_whose_file_failed_is_not_restarted_but_others_are() {
        let d: DesiredState = serde_json::from_str(
            r#"{"host":"web",
                "files":[{"path":"/etc/app.conf","content":"x","notify":[{"unit":"app.service","action":"restart"}]}],
                "units":[{"name":"app.service","content":"[Service]"},{"name":"other.service","content":"[Service]"}]}"#,
        )
        .unwrap();
        let ch = |id: ResourceId, op: Op| Change {
            id,
            op,
            details: vec![],
            diff: None,
            reason: None,
            content: true,
        };
        let unit_file = ch(
            ResourceId::File("/etc/systemd/system/app.service".into()),
            Op::Update,
        );
        let conf = ch(ResourceId::File("/etc/app.conf".into()), Op::Update);
        let restart = ch(ResourceId::Unit("app.service".into()), Op::Restart);
        let other = ch(ResourceId::Unit("other.service".into()), Op::Restart);
        assert!(depends_on(&restart, &unit_file, &d));
        assert!(depends_on(&restart, &conf, &d));
        assert!(!depends_on(&other, &conf, &d));
        assert!(!depends_on(&other, &unit_file, &d));
        let reload = ch(ResourceId::Systemd, Op::DaemonReload);
        assert!(depends_on(&other, &reload, &d));
        assert!(!depends_on(&conf, &reload, &d));
    }
}

/// Health waits, pulls, stage dependencies (a fake host answering by command; nothing
/// here writes a file).
#[cfg(test)]
mod health_tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::facts::Argv;
    use crate::resource::{Command, Content, Health, Image, Unit};
    use crate::system::{RunOutput, Runner};

    type Answer = Box<dyn FnMut(&[String]) -> RunOutput + Send>;

    struct Fake {
        ran: Arc<Mutex<Vec<Vec<String>>>>,
        answer: Answer,
    }
    impl Runner for Fake {
        fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput> {
            self.ran.lock().unwrap().push(argv.args.clone());
            Ok((self.answer)(&argv.args))
        }
    }

    fn out(code: i32, stdout: &str) -> RunOutput {
        RunOutput {
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn show(active: &str, sub: &str, result: &str) -> RunOutput {
        out(
            0,
            &format!(
                "Type=notify\nNRestarts=0\nResult={result}\nActiveState={active}\nSubState={sub}\n"
            ),
        )
    }

    fn health(status: &str, last: Option<(i32, &str)>) -> RunOutput {
        let log = match last {
            Some((code, o)) => format!(r#"[{{"ExitCode":{code},"Output":"{o}\n"}}]"#),
            None => "null".into(),
        };
        out(
            0,
            &format!(r#"{{"Status":"{status}","FailingStreak":0,"Log":{log}}}"#),
        )
    }

    fn fake(answer: Answer) -> (Target, Arc<Mutex<Vec<Vec<String>>>>) {
        let ran = Arc::new(Mutex::new(vec![]));
        let t = Target {
            root: "/".into(),
            runner: Box::new(Fake {
                ran: ran.clone(),
                answer,
            }),
        };
        (t, ran)
    }

    fn check(timeout_s: u32) -> Health {
        Health {
            container: "pg".into(),
            timeout_s,
        }
    }

    #[test]
    fn a_health_checked_unit_is_started_without_blocking_and_waited_for_until_healthy() {
        let mut shows = 0;
        let mut inspects = 0;
        let (mut t, ran) = fake(Box::new(move |a| match a[1].as_str() {
            "restart" => out(0, ""),
            "show" => {
                shows += 1;
                // Notify=healthy: activating until the container is healthy.
                if shows < 3 {
                    show("activating", "start", "success")
                } else {
                    show("active", "running", "success")
                }
            }
            "inspect" => {
                inspects += 1;
                if inspects < 2 {
                    health("starting", None)
                } else {
                    health("healthy", Some((0, "accepting connections")))
                }
            }
            _ => out(1, ""),
        }));
        start_healthy(&mut t, "pg.service", "restart", &check(30), None).unwrap();
        let ran = ran.lock().unwrap().clone();
        assert_eq!(
            ran[0],
            ["systemctl", "restart", "--no-block", "--", "pg.service"]
        );
        assert!(ran.contains(&crate::podman::health_argv("pg")), "{ran:?}");
        assert_eq!(
            crate::podman::health_argv("pg")[3],
            "{{json .State.Health}}"
        );
    }

    #[test]
    fn a_container_never_healthy_is_unhealthy_with_its_last_check_journal_and_way_back() {
        let (mut t, _) = fake(Box::new(|a| match (a[0].as_str(), a[1].as_str()) {
            ("systemctl", "restart") => out(0, ""),
            ("systemctl", "show") => show("active", "running", "success"),
            ("podman", "inspect") => health(
                "starting",
                Some((1, "/var/run/postgresql:5432 - no response")),
            ),
            ("journalctl", _) => out(0, "database system is starting up\n"),
            _ => out(1, ""),
        }));
        let start = Instant::now();
        let err = start_healthy(
            &mut t,
            "pg.service",
            "restart",
            &check(1),
            Some("16".into()),
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        let ApplyError::Unhealthy(u) = &err else {
            panic!("{err}")
        };
        assert_eq!(
            (u.unit.as_str(), u.container.as_str()),
            ("pg.service", "pg")
        );
        assert_eq!(u.state, "health starting");
        assert_eq!(
            err.to_string(),
            format!(
                "unit pg.service: container pg is not healthy after {} s (health starting)\n  last health check (exit 1):\n    /var/run/postgresql:5432 - no response\n  last journal lines:\n    database system is starting up\n  hint: to go back: set the service's version back to 16 in kiln.toml and apply again",
                u.waited_s
            )
        );
    }

    #[test]
    fn a_unit_failing_while_activating_is_unhealthy_with_the_check_seen_before() {
        let mut shows = 0;
        let (mut t, _) = fake(Box::new(move |a| match (a[0].as_str(), a[1].as_str()) {
            ("systemctl", "restart") => out(0, ""),
            ("systemctl", "show") => {
                shows += 1;
                if shows < 4 {
                    show("activating", "start", "success")
                } else {
                    // TimeoutStartSec passed; systemd removed the container.
                    show("failed", "failed", "timeout")
                }
            }
            ("podman", "inspect") if shows < 4 => health("starting", Some((1, ""))),
            ("podman", "inspect") => out(125, ""),
            ("journalctl", _) => out(0, "sick.service: Failed with result 'timeout'.\n"),
            _ => out(1, ""),
        }));
        let err = start_healthy(&mut t, "sick.service", "restart", &check(30), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(the unit is failed (failed), result timeout)\n  last health check (exit 1): no output\n  last journal lines:\n    sick.service: Failed with result 'timeout'.\n  hint: `podman healthcheck run pg` and `journalctl -u sick.service` on the host show more"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_pull_names_the_image_and_its_service() {
        let (mut t, ran) = fake(Box::new(|_| RunOutput {
            code: Some(125),
            stdout: String::new(),
            stderr: "Error: initializing source docker://x: manifest unknown\n".into(),
        }));
        let desired = DesiredState {
            images: vec![Image {
                reference: "docker.io/matrixdotorg/synapse:v9".into(),
                service: Some("synapse".into()),
                container: Some("synapse".into()),
            }],
            ..Default::default()
        };
        let plan = Plan {
            host: "app".into(),
            changes: vec![Change::new(
                ResourceId::Image("docker.io/matrixdotorg/synapse:v9".into()),
                Op::Pull,
            )],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec![],
        };
        let originals = BTreeMap::new();
        let mut ctx = Ctx {
            desired: &desired,
            originals: &originals,
            facts: None,
            accounts: None,
            packages_done: false,
            enables_done: None,
            quadlets_checked: None,
            healthy: None,
        };
        let err = step(&mut t, &mut ctx, &plan, 0).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot pull image docker.io/matrixdotorg/synapse:v9 for service synapse: Error: initializing source"),
            "{err}"
        );
        assert_eq!(
            ran.lock().unwrap()[0],
            ["podman", "pull", "--", "docker.io/matrixdotorg/synapse:v9"]
        );
    }

    fn stack() -> DesiredState {
        let mut db = Unit::quadlet(
            "db.container",
            Content::text("[Container]\nImage=docker.io/library/postgres:17\n"),
        )
        .unwrap();
        db.health = Some(Health {
            container: "db".into(),
            timeout_s: 30,
        });
        let mut app = Unit::quadlet(
            "app.container",
            Content::text("[Container]\nImage=docker.io/acme/app:2\nContainerName=app\n"),
        )
        .unwrap();
        app.stage = Stage(2);
        let mut e1 = Unit::file("e1.service", Content::text(""));
        e1.stage = Stage(1);
        DesiredState {
            host: "app".into(),
            units: vec![db, app, e1, Unit::file("e0.service", Content::text(""))],
            commands: vec![Command {
                name: "create-db".into(),
                run: "true".into(),
                unless: None,
                triggered_by: vec![],
                stage: Stage(1),
            }],
            images: vec![Image {
                reference: "docker.io/acme/app:2".into(),
                service: Some("app".into()),
                container: Some("app".into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn later_stages_wait_for_earlier_ones_and_units_for_their_image() {
        let d = stack();
        let ch = |id: ResourceId, op| Change::new(id, op);
        let unit = |n: &str, op| ch(ResourceId::Unit(n.into()), op);
        let db = unit("db.service", Op::Start);
        let create = ch(ResourceId::Command("create-db".into()), Op::Run);
        let app = unit("app.service", Op::Restart);
        assert!(depends_on(&create, &db, &d));
        assert!(depends_on(&app, &db, &d));
        assert!(depends_on(&app, &create, &d));
        assert!(!depends_on(&db, &create, &d), "not backwards");
        assert!(
            !depends_on(&unit("e0.service", Op::Start), &db, &d),
            "same stage"
        );
        assert!(!depends_on(&create, &unit("db.service", Op::Stop), &d));
        let pull = ch(ResourceId::Image("docker.io/acme/app:2".into()), Op::Pull);
        let app_file = ch(
            ResourceId::File("/etc/containers/systemd/app.container".into()),
            Op::Update,
        );
        let db_file = ch(
            ResourceId::File("/etc/containers/systemd/db.container".into()),
            Op::Update,
        );
        assert!(depends_on(&app_file, &pull, &d));
        assert!(depends_on(&app, &pull, &d));
        assert!(!depends_on(&db_file, &pull, &d));
        assert!(!depends_on(&db, &pull, &d));
    }

    #[test]
    fn enables_are_batched_per_stage() {
        let d = stack();
        let (mut t, ran) = fake(Box::new(|_| out(0, "")));
        let unit = |n: &str, op| Change::new(ResourceId::Unit(n.into()), op);
        let plan = Plan {
            host: "app".into(),
            changes: vec![
                unit("e0.service", Op::Enable),
                unit("e1.service", Op::Enable),
            ],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec![],
        };
        let originals = BTreeMap::new();
        let mut ctx = Ctx {
            desired: &d,
            originals: &originals,
            facts: None,
            accounts: None,
            packages_done: false,
            enables_done: None,
            quadlets_checked: None,
            healthy: None,
        };
        step(&mut t, &mut ctx, &plan, 0).unwrap();
        step(&mut t, &mut ctx, &plan, 1).unwrap();
        assert_eq!(
            *ran.lock().unwrap(),
            [
                vec!["systemctl", "enable", "--", "e0.service"],
                vec!["systemctl", "enable", "--", "e1.service"],
            ]
        );
    }

    #[test]
    fn the_way_back_is_the_tag_the_restart_s_detail_names() {
        let mut d = stack();
        d.images[0].reference = "docker.io/acme/app:3".into();
        let mut c = Change::new(ResourceId::Unit("app.service".into()), Op::Restart);
        assert_eq!(previous_version(&d, &c, "app.service"), None);
        c.details.push(format!(
            "{}docker.io/acme/app:2",
            crate::plan::PREVIOUS_IMAGE
        ));
        assert_eq!(
            previous_version(&d, &c, "app.service").as_deref(),
            Some("2")
        );
    }
}
