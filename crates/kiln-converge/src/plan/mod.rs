//! The pure planner: `plan(desired, observed) -> Plan`, an ordered list of typed changes
//! with unified diffs (redacted for sensitive files) and the ownership record to keep.
//!
//! No I/O, no clock, no randomness: everything it knows comes in as arguments. A change
//! carries ids and descriptions, never file contents, so a plan is safe to print and send.
//!
//! This module owns the plan's types, its fingerprint, and the order of the phases; each
//! resource kind is planned by its own module, which appends to one `Draft`:
//! `accounts` (groups, users), `packages`, `images` (pulls, version changes: before files,
//! whose checks may run an image), `files` (directories, files, symlinks), `units` (unit files, daemon-reload, unit state,
//! restarts), `commands`. Commands and unit state changes come in stages
//! ([`crate::resource::Stage`]): for each stage in increasing order, its commands, then
//! its units' state changes; everything else comes before the first stage. Removals of
//! what kiln owned and no longer declares come last: units (stopped before their files
//! go), files, accounts, packages. A module must not look at another kind's resources
//! except through what the `Draft` says (changed files, notified units, image changes).
//!
//! Before any of that, the plan refuses what it must not do: a precondition the host's
//! data contradicts, quadlet files the host's generator refused.

mod accounts;
mod commands;
mod files;
mod images;
mod packages;
mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::observe::Observed;
use crate::owned::{Owned, sha256_hex};
use crate::resource::{DesiredState, ResourceId, Stage, Trigger};

pub use files::{OldContent, content_diff};
pub use units::PREVIOUS_IMAGE;

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
    /// Start managing a file that existed before kiln: its original is kept first, then
    /// it is written like an update.
    TakeOver,
    /// Put back the original of a file kiln took over and no longer manages.
    Restore,
    /// `podman pull` an image the host does not hold.
    Pull,
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
            Op::TakeOver => "take-over",
            Op::Restore => "restore",
            Op::Pull => "pull",
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
    pub(crate) fn new(id: ResourceId, op: Op) -> Self {
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub host: String,
    pub changes: Vec<Change>,
    pub owned_after: Owned,
    /// Guarded groups and the indices of their changes ([`crate::guard`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::guard::GuardGroup>,
    /// What deserves a word before applying, without being a change (e.g. a first order
    /// to Let's Encrypt's production CA for names its staging CA never issued). Not part
    /// of the fingerprint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
                Op::Create | Op::Install | Op::Pull => s.create += 1,
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
    /// A precondition's file holds something else than expected: `refusal` (written by
    /// the feature that declared it) names the service and says what to do.
    #[error("host {host}: {refusal}")]
    Precondition { host: String, refusal: String },
    #[error(
        "host {host}: unit {unit}: quadlet file {file} is refused by podman's quadlet generator on the host: {message}\n  hint: fix the file's keys (podman-systemd.unit(5) lists them); nothing was installed"
    )]
    Quadlet {
        host: String,
        unit: String,
        file: String,
        message: String,
    },
}

/// The plan being built: the changes so far, the ownership record after them, and what
/// earlier phases tell later ones.
pub(crate) struct Draft<'a> {
    pub host: &'a str,
    pub obs: &'a Observed,
    pub changes: Vec<Change>,
    pub owned: Owned,
    /// Paths whose content changes (for commands' triggers).
    pub changed_files: BTreeSet<PathBuf>,
    /// Unit → what its changed files ask for, and why.
    pub notified: BTreeMap<String, (Trigger, Vec<String>)>,
    /// Units whose unit file changes (they restart).
    pub unit_file_changed: BTreeSet<String>,
    /// Unit → its container's image change: the plan's wording
    /// (`synapse v1.117.0 → v1.118.0`) and the reference it ran before.
    pub image_changes: BTreeMap<String, (String, String)>,
}

impl Draft<'_> {
    pub fn push(&mut self, c: Change) {
        self.changes.push(c);
    }
}

/// The pure planner.
pub fn plan(desired: &DesiredState, obs: &Observed) -> Result<Plan, PlanError> {
    refusals(desired, obs)?;
    let mut d = Draft {
        host: desired.host.as_str(),
        obs,
        changes: vec![],
        owned: Owned::default(),
        changed_files: BTreeSet::new(),
        notified: BTreeMap::new(),
        unit_file_changed: BTreeSet::new(),
        image_changes: BTreeMap::new(),
    };
    // What is declared, in dependency order.
    accounts::plan(&mut d, desired);
    packages::plan(&mut d, desired);
    // Images before files: a file's check may run the image (`caddy validate`).
    images::plan(&mut d, desired);
    files::plan_directories(&mut d, desired)?;
    files::plan_files(&mut d, desired)?;
    files::plan_symlinks(&mut d, desired)?;
    let removed_units = units::plan_files(&mut d, desired)?;
    for stage in stages(desired) {
        commands::plan(&mut d, desired, stage);
        units::plan_state(&mut d, desired, stage);
    }
    // What kiln owned and no longer declares.
    units::plan_removals(&mut d, &removed_units);
    files::plan_removals(&mut d);
    accounts::plan_removals(&mut d);
    packages::plan_removals(&mut d);
    let groups = crate::guard::groups(&d.changes, desired);
    Ok(Plan {
        host: d.host.to_owned(),
        changes: d.changes,
        owned_after: d.owned,
        groups,
        warnings: vec![],
    })
}
/// The stages the desired state's commands and units are in, in increasing order (stage
/// 0 always: a plan without stages is one stage).
fn stages(desired: &DesiredState) -> BTreeSet<Stage> {
    let mut s: BTreeSet<Stage> = desired
        .commands
        .iter()
        .map(|c| c.stage)
        .chain(desired.units.iter().map(|u| u.stage))
        .collect();
    s.insert(Stage::default());
    s
}

/// What the plan refuses outright: a precondition's file with other content than
/// expected (trimmed), quadlet files the host's generator refused.
fn refusals(desired: &DesiredState, obs: &Observed) -> Result<(), PlanError> {
    for p in &desired.preconditions {
        if let Some(found) = obs.preconditions.get(&p.path)
            && found.trim() != p.expect.trim()
        {
            return Err(PlanError::Precondition {
                host: desired.host.clone(),
                refusal: p.refusal.clone(),
            });
        }
    }
    if let Some(r) = &obs.quadlet_refused {
        let (unit, file) = r.refused.first().cloned().unwrap_or_default();
        return Err(PlanError::Quadlet {
            host: desired.host.clone(),
            unit,
            file: crate::resource::quadlet_path(&file).display().to_string(),
            message: r.message.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
