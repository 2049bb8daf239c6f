//! The pure planner: `plan(desired, observed) -> Plan`, an ordered list of typed changes
//! with unified diffs (redacted for sensitive files) and the ownership record to keep.
//!
//! No I/O, no clock, no randomness: everything it knows comes in as arguments. A change
//! carries ids and descriptions, never file contents, so a plan is safe to print and send.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::observe::{Meta, Observed, PathState};
use crate::owned::{Owned, sha256_hex};
use crate::resource::{Content, DesiredState, ResourceId, Trigger, unit_path};

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Create,
    Update,
    Remove,
    Install,
    Uninstall,
    Enable,
    Disable,
    Start,
    Stop,
    Restart,
    Reload,
    DaemonReload,
    Run,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Remove => "remove",
            Op::Install => "install",
            Op::Uninstall => "uninstall",
            Op::Enable => "enable",
            Op::Disable => "disable",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Restart => "restart",
            Op::Reload => "reload",
            Op::DaemonReload => "daemon-reload",
            Op::Run => "run",
        };
        f.write_str(s)
    }
}

/// How a file's content change is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Diff {
    /// A unified diff (old → new).
    Unified { text: String },
    /// The file holds a secret: only the fact that it changed is shown.
    Redacted,
    /// Not text, or too large to show.
    Opaque { new_bytes: usize },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: ResourceId,
    pub op: Op,
    /// Attribute changes, e.g. `mode 0644 → 0600`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
    /// Why a restart/run happens (`/etc/app.conf changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For file updates: whether the content must be rewritten (else metadata only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content: bool,
}

impl Change {
    fn new(id: ResourceId, op: Op) -> Self {
        Change {
            id,
            op,
            details: vec![],
            diff: None,
            reason: None,
            content: false,
        }
    }
}

/// Ordered changes for one host, plus the ownership record after a full apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub host: String,
    pub changes: Vec<Change>,
    pub owned_after: Owned,
    /// Guarded groups and the indices of their changes ([`crate::guard`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::guard::GuardGroup>,
}

impl Plan {
    /// A short hash of the changes (ids, operations, details, diffs), so an apply can
    /// check it carries out the plan that was shown.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(&self.changes).unwrap_or_default();
        sha256_hex(&bytes)[..16].to_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (creates, changes, removes) counts for summaries.
    pub fn counts(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.op {
                Op::Create | Op::Install => s.create += 1,
                Op::Remove | Op::Uninstall => s.remove += 1,
                _ => s.change += 1,
            }
        }
        s
    }
}

/// Counts of a plan's changes by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub remove: usize,
}

/// The desired state cannot be reached without destroying something kiln does not own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "host {host}: {id}: {path} is a {found}; kiln will not replace it\n  hint: move it away on the host, or declare another path"
    )]
    Conflict {
        host: String,
        id: String,
        path: String,
        found: &'static str,
    },
}

fn fmt_mode(m: u32) -> String {
    format!("{m:04o}")
}

fn meta_details(have: &Meta, mode: u32, owner: &str, group: &str) -> Vec<String> {
    let mut d = vec![];
    if have.mode != mode {
        d.push(format!("mode {} → {}", fmt_mode(have.mode), fmt_mode(mode)));
    }
    if have.owner != owner {
        d.push(format!("owner {} → {}", have.owner, owner));
    }
    if have.group != group {
        d.push(format!("group {} → {}", have.group, group));
    }
    d
}

/// What the host has at a file's path, for diffs.
#[derive(Debug, Clone, Copy)]
pub enum OldContent<'a> {
    Absent,
    Text(&'a str),
    /// Present, but not kept (binary, large, or sensitive).
    Unknown,
}

/// Renders a unified diff of a file's content (or says why it cannot be shown).
pub fn content_diff(path: &Path, old: OldContent<'_>, new: &Content, sensitive: bool) -> Diff {
    if sensitive {
        return Diff::Redacted;
    }
    let new_text = std::str::from_utf8(new.bytes())
        .ok()
        .filter(|t| t.len() <= crate::observe::DIFF_LIMIT);
    let old = match old {
        OldContent::Absent => Some(""),
        OldContent::Text(t) => Some(t),
        OldContent::Unknown => None,
    };
    match (old, new_text) {
        (Some(old), Some(new)) => {
            let name = path.display().to_string();
            let text = similar::TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(&format!("a{name}"), &format!("b{name}"))
                .to_string();
            Diff::Unified { text }
        }
        _ => Diff::Opaque {
            new_bytes: new.bytes().len(),
        },
    }
}

fn kind_name(st: &PathState) -> &'static str {
    match st {
        PathState::Absent => "nothing",
        PathState::File { .. } => "regular file",
        PathState::Directory { .. } => "directory",
        PathState::Symlink { .. } => "symlink",
        PathState::Other => "special file",
    }
}

/// Plans a regular file at `path` (declared files and unit files alike). Returns the
/// change, if any, and whether the content changes (for triggers).
#[allow(clippy::too_many_arguments)]
fn plan_file(
    host: &str,
    id: ResourceId,
    path: &Path,
    content: &Content,
    sensitive: bool,
    mode: u32,
    owner: &str,
    group: &str,
    obs: &Observed,
) -> Result<Option<Change>, PlanError> {
    let st = obs.paths.get(path).unwrap_or(&PathState::Absent);
    match st {
        PathState::Absent | PathState::Symlink { .. } => {
            let mut c = Change::new(id, Op::Create);
            c.content = true;
            c.details.push(format!(
                "mode {}, {owner}:{group}, {} bytes",
                fmt_mode(mode),
                content.bytes().len()
            ));
            c.diff = Some(content_diff(path, OldContent::Absent, content, sensitive));
            if matches!(st, PathState::Symlink { .. }) {
                c.op = Op::Update;
                c.details.push("replaces a symlink".into());
            }
            Ok(Some(c))
        }
        PathState::File { meta, sha256, text } => {
            let mut details = meta_details(meta, mode, owner, group);
            let changed = *sha256 != sha256_hex(content.bytes());
            if !changed && details.is_empty() {
                return Ok(None);
            }
            let mut c = Change::new(id, Op::Update);
            if changed {
                c.content = true;
                let old = text
                    .as_deref()
                    .map_or(OldContent::Unknown, OldContent::Text);
                c.diff = Some(content_diff(path, old, content, sensitive));
                details.insert(0, "content".into());
            }
            c.details = details;
            Ok(Some(c))
        }
        other => Err(PlanError::Conflict {
            host: host.into(),
            id: id.to_string(),
            path: path.display().to_string(),
            found: kind_name(other),
        }),
    }
}

/// The pure planner.
pub fn plan(desired: &DesiredState, obs: &Observed) -> Result<Plan, PlanError> {
    let host = desired.host.as_str();
    let mut changes: Vec<Change> = vec![];
    let mut owned = Owned::default();

    // 1. Groups, users.
    for g in &desired.groups {
        if !obs.groups.contains(&g.name) {
            let mut c = Change::new(ResourceId::Group(g.name.clone()), Op::Create);
            if g.system {
                c.details.push("system group".into());
            }
            changes.push(c);
            owned.groups.insert(g.name.clone());
        } else if obs.owned.groups.contains(&g.name) {
            owned.groups.insert(g.name.clone());
        }
    }
    for u in &desired.users {
        let want_groups: BTreeSet<String> = u.groups.iter().cloned().collect();
        match obs.users.get(&u.name) {
            None => {
                let mut c = Change::new(ResourceId::User(u.name.clone()), Op::Create);
                if u.system {
                    c.details.push("system user".into());
                }
                if let Some(h) = &u.home {
                    c.details.push(format!("home {}", h.display()));
                }
                if let Some(s) = &u.shell {
                    c.details.push(format!("shell {}", s.display()));
                }
                if !u.groups.is_empty() {
                    c.details.push(format!("groups {}", u.groups.join(",")));
                }
                changes.push(c);
                owned.users.insert(u.name.clone());
            }
            Some(have) => {
                if obs.owned.users.contains(&u.name) {
                    owned.users.insert(u.name.clone());
                }
                let mut d = vec![];
                if let Some(h) = &u.home
                    && *h != have.home
                {
                    d.push(format!("home {} → {}", have.home.display(), h.display()));
                }
                if let Some(s) = &u.shell
                    && *s != have.shell
                {
                    d.push(format!("shell {} → {}", have.shell.display(), s.display()));
                }
                if want_groups != have.groups {
                    let fmt =
                        |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
                    d.push(format!(
                        "groups [{}] → [{}]",
                        fmt(&have.groups),
                        fmt(&want_groups)
                    ));
                }
                if !d.is_empty() {
                    let mut c = Change::new(ResourceId::User(u.name.clone()), Op::Update);
                    c.details = d;
                    changes.push(c);
                }
            }
        }
    }

    // 2. Packages (one change per package; apply batches them into one install).
    for p in &desired.packages {
        if !obs.packages.contains(&p.name) {
            changes.push(Change::new(
                ResourceId::Package(p.name.clone()),
                Op::Install,
            ));
            owned.packages.insert(p.name.clone());
        } else if obs.owned.packages.contains(&p.name) {
            owned.packages.insert(p.name.clone());
        }
    }

    // 3. Directories, shallow first.
    let mut dirs: Vec<_> = desired.directories.iter().collect();
    dirs.sort_by_key(|d| (d.path.components().count(), d.path.clone()));
    for d in dirs {
        owned.directories.insert(d.path.clone());
        let id = ResourceId::Directory(d.path.clone());
        match obs.paths.get(&d.path).unwrap_or(&PathState::Absent) {
            PathState::Absent => {
                let mut c = Change::new(id, Op::Create);
                c.details.push(format!(
                    "mode {}, {}:{}",
                    fmt_mode(d.mode),
                    d.owner,
                    d.group
                ));
                changes.push(c);
            }
            PathState::Directory { meta } => {
                let det = meta_details(meta, d.mode, &d.owner, &d.group);
                if !det.is_empty() {
                    let mut c = Change::new(id, Op::Update);
                    c.details = det;
                    changes.push(c);
                }
            }
            other => {
                return Err(PlanError::Conflict {
                    host: host.into(),
                    id: id.to_string(),
                    path: d.path.display().to_string(),
                    found: kind_name(other),
                });
            }
        }
    }

    // 4. Files and symlinks.
    let mut changed_files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut restarts: BTreeMap<String, (Trigger, Vec<String>)> = BTreeMap::new();
    for f in &desired.files {
        owned.files.insert(f.path.clone());
        let id = ResourceId::File(f.path.clone());
        if let Some(c) = plan_file(
            host,
            id,
            &f.path,
            &f.content,
            f.sensitive,
            f.mode,
            &f.owner,
            &f.group,
            obs,
        )? {
            if c.content {
                changed_files.insert(f.path.clone());
                for n in &f.notify {
                    let e = restarts.entry(n.unit.clone()).or_insert((n.action, vec![]));
                    e.0 = e.0.min(n.action); // restart wins over reload
                    e.1.push(format!("{} changed", f.path.display()));
                }
            }
            changes.push(c);
        }
    }
    for s in &desired.symlinks {
        owned.symlinks.insert(s.path.clone());
        let id = ResourceId::Symlink(s.path.clone());
        match obs.paths.get(&s.path).unwrap_or(&PathState::Absent) {
            PathState::Absent => {
                let mut c = Change::new(id, Op::Create);
                c.details.push(format!("→ {}", s.target.display()));
                changes.push(c);
            }
            PathState::Symlink { target } if *target == s.target => {}
            PathState::Symlink { target } => {
                let mut c = Change::new(id, Op::Update);
                c.details.push(format!(
                    "→ {} (was → {})",
                    s.target.display(),
                    target.display()
                ));
                changes.push(c);
            }
            PathState::File { .. } => {
                let mut c = Change::new(id, Op::Update);
                c.details.push(format!(
                    "→ {} (replaces a regular file)",
                    s.target.display()
                ));
                changes.push(c);
            }
            other => {
                return Err(PlanError::Conflict {
                    host: host.into(),
                    id: id.to_string(),
                    path: s.path.display().to_string(),
                    found: kind_name(other),
                });
            }
        }
    }

    // 5. Unit files, daemon-reload.
    let mut unit_file_changed: BTreeSet<String> = BTreeSet::new();
    for u in &desired.units {
        owned.units.insert(u.name.clone());
        let path = u.path();
        let id = ResourceId::File(path.clone());
        if let Some(c) = plan_file(
            host,
            id,
            &path,
            &u.content,
            u.sensitive,
            0o644,
            "root",
            "root",
            obs,
        )? {
            if c.content {
                changed_files.insert(path.clone());
                unit_file_changed.insert(u.name.clone());
            }
            changes.push(c);
        }
    }
    let removed_units: Vec<&String> = obs
        .owned
        .units
        .iter()
        .filter(|u| !owned.units.contains(*u))
        .collect();
    let removed_unit_files: Vec<&String> = removed_units
        .iter()
        .copied()
        .filter(|u| matches!(obs.paths.get(&unit_path(u)), Some(PathState::File { .. })))
        .collect();
    if !unit_file_changed.is_empty() {
        changes.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }

    // 6. Commands: when their guard fails, when a file they depend on changed, or (no
    //    guard) when they never ran with this text.
    for c in &desired.commands {
        let hash = sha256_hex(c.run.as_bytes());
        let triggers: Vec<String> = c
            .triggered_by
            .iter()
            .filter(|p| changed_files.contains(*p))
            .map(|p| format!("{} changed", p.display()))
            .collect();
        let reason = if !triggers.is_empty() {
            Some(triggers.join(", "))
        } else if let Some(passed) = obs.guards.get(&c.name) {
            (!passed).then(|| "its `unless` check failed".to_owned())
        } else if c.unless.is_none() {
            match obs.owned.commands.get(&c.name) {
                None => Some("never ran".to_owned()),
                Some(h) if *h != hash => Some("its command changed".to_owned()),
                Some(_) => None,
            }
        } else {
            None
        };
        if let Some(reason) = reason {
            let mut ch = Change::new(ResourceId::Command(c.name.clone()), Op::Run);
            ch.reason = Some(reason);
            ch.details.push(c.run.clone());
            changes.push(ch);
            owned.commands.insert(c.name.clone(), hash);
        } else if let Some(h) = obs.owned.commands.get(&c.name) {
            owned.commands.insert(c.name.clone(), h.clone());
        }
    }

    // 7. Unit state, then restarts/reloads of running units whose inputs changed.
    for u in &desired.units {
        let st = obs
            .units
            .get(&u.name)
            .copied()
            .unwrap_or(crate::observe::UnitStatus {
                enabled: false,
                active: false,
            });
        let id = ResourceId::Unit(u.name.clone());
        if u.enabled && !st.enabled {
            changes.push(Change::new(id.clone(), Op::Enable));
        } else if !u.enabled && st.enabled {
            changes.push(Change::new(id.clone(), Op::Disable));
        }
        if u.started && !st.active {
            changes.push(Change::new(id.clone(), Op::Start));
        } else if !u.started && st.active {
            changes.push(Change::new(id.clone(), Op::Stop));
        } else if u.started && st.active {
            let mut reasons = vec![];
            let mut action = Trigger::Reload;
            if unit_file_changed.contains(&u.name) {
                reasons.push(format!("{} changed", u.path().display()));
                action = Trigger::Restart;
            }
            if let Some((a, r)) = restarts.get(&u.name) {
                reasons.extend(r.iter().cloned());
                action = action.min(*a);
            }
            if !reasons.is_empty() {
                let op = if action == Trigger::Restart {
                    Op::Restart
                } else {
                    Op::Reload
                };
                let mut c = Change::new(id, op);
                c.reason = Some(reasons.join(", "));
                changes.push(c);
            }
        }
    }

    // 8. Removals: what kiln owned and no longer declares.
    for u in &removed_units {
        let st = obs
            .units
            .get(*u)
            .copied()
            .unwrap_or(crate::observe::UnitStatus {
                enabled: false,
                active: false,
            });
        if st.active {
            changes.push(Change::new(ResourceId::Unit((*u).clone()), Op::Stop));
        }
        if st.enabled {
            changes.push(Change::new(ResourceId::Unit((*u).clone()), Op::Disable));
        }
    }
    for u in &removed_unit_files {
        changes.push(Change::new(ResourceId::File(unit_path(u)), Op::Remove));
    }
    if !removed_unit_files.is_empty() && unit_file_changed.is_empty() {
        changes.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }
    for p in obs.owned.files.iter().filter(|p| !owned.files.contains(*p)) {
        if matches!(obs.paths.get(p), Some(PathState::File { .. })) {
            changes.push(Change::new(ResourceId::File(p.clone()), Op::Remove));
        }
    }
    for p in obs
        .owned
        .symlinks
        .iter()
        .filter(|p| !owned.symlinks.contains(*p))
    {
        if matches!(obs.paths.get(p), Some(PathState::Symlink { .. })) {
            changes.push(Change::new(ResourceId::Symlink(p.clone()), Op::Remove));
        }
    }
    let mut gone_dirs: Vec<&PathBuf> = obs
        .owned
        .directories
        .iter()
        .filter(|p| !owned.directories.contains(*p))
        .filter(|p| matches!(obs.paths.get(*p), Some(PathState::Directory { .. })))
        .collect();
    gone_dirs.sort_by_key(|p| std::cmp::Reverse((p.components().count(), (*p).clone())));
    for p in gone_dirs {
        let mut c = Change::new(ResourceId::Directory(p.clone()), Op::Remove);
        c.details.push("only if empty".into());
        changes.push(c);
    }
    for u in obs.owned.users.iter().filter(|u| !owned.users.contains(*u)) {
        if obs.users.contains_key(u) {
            changes.push(Change::new(ResourceId::User(u.clone()), Op::Remove));
        }
    }
    for g in obs
        .owned
        .groups
        .iter()
        .filter(|g| !owned.groups.contains(*g))
    {
        if obs.groups.contains(g) {
            changes.push(Change::new(ResourceId::Group(g.clone()), Op::Remove));
        }
    }
    for p in obs
        .owned
        .packages
        .iter()
        .filter(|p| !owned.packages.contains(*p))
    {
        if obs.packages.contains(p) {
            changes.push(Change::new(ResourceId::Package(p.clone()), Op::Uninstall));
        }
    }

    let groups = crate::guard::groups(&changes, desired);
    Ok(Plan {
        host: host.to_owned(),
        changes,
        owned_after: owned,
        groups,
    })
}

#[cfg(test)]
mod tests;
