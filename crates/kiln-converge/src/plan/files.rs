//! Directories, regular files and symlinks: created, updated (content with a unified diff,
//! redacted for sensitive files, or metadata only), and removed when kiln owned them and
//! no longer declares them (deepest directories first, and only if empty). Also the
//! planning of one regular file at a path, which unit files share ([`plan_file`]).
//!
//! A regular file or symlink kiln does not own yet but finds where it declares a file or
//! a symlink is *taken over*
//! ([`take_over`]): the plan records its original (hash, mode, owner) and says
//! [`Op::TakeOver`], apply keeps its bytes before writing, and when the file is no
//! longer declared the plan says [`Op::Restore`] instead of [`Op::Remove`]. Only files
//! and symlinks kiln created are removed. A directory that existed before kiln is not
//! owned, so never removed.
//!
//! Must not replace what it does not understand: a directory, socket or device where a
//! file is declared is a [`PlanError::Conflict`]. Never reads file contents itself:
//! observation hands it hashes and, for diffs, the old text.

use std::path::{Path, PathBuf};

use super::{Change, Diff, Draft, Op, PlanError};
use crate::observe::{Meta, Observed, PathState};
use crate::owned::{Original, sha256_hex};
use crate::resource::{Content, DesiredState, ResourceId};

pub(super) fn fmt_mode(m: u32) -> String {
    format!("{m:04o}")
}

/// Whether account `have` (as observed: a name, or a number without one) is `want` (a
/// name or a number): the same text, or names and numbers of the same id.
fn same_account(ids: &std::collections::BTreeMap<String, u32>, have: &str, want: &str) -> bool {
    let id = |n: &str| ids.get(n).copied().or_else(|| n.parse::<u32>().ok());
    have == want || id(have).is_some_and(|h| Some(h) == id(want))
}

fn meta_details(obs: &Observed, have: &Meta, mode: u32, owner: &str, group: &str) -> Vec<String> {
    let mut d = vec![];
    if have.mode != mode {
        d.push(format!("mode {} → {}", fmt_mode(have.mode), fmt_mode(mode)));
    }
    if !same_account(&obs.uids, &have.owner, owner) {
        d.push(format!("owner {} → {}", have.owner, owner));
    }
    if !same_account(&obs.gids, &have.group, group) {
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

pub(super) fn kind_name(st: &PathState) -> &'static str {
    match st {
        PathState::Absent => "nothing",
        PathState::File { .. } => "regular file",
        PathState::Directory { .. } => "directory",
        PathState::Symlink { .. } => "symlink",
        PathState::Other => "special file",
    }
}

/// Plans a regular file at `path` (declared files and unit files alike). Returns the
/// change, if any (its `content` says whether the content changes, for triggers).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_file(
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
            let mut details = meta_details(obs, meta, mode, owner, group);
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

/// A regular file or symlink at `path` that kiln does not own (`owned` false) but finds
/// on the host is taken over: its original is recorded in the ownership record and the change (an
/// update, or a change of its own when the file already is as declared) becomes a
/// [`Op::TakeOver`]. A file taken over before keeps its original.
pub(super) fn take_over(
    d: &mut Draft<'_>,
    id: ResourceId,
    path: &Path,
    owned: bool,
    change: Option<Change>,
) -> Option<Change> {
    if let Some(o) = d.obs.owned.originals.get(path) {
        d.owned.originals.insert(path.to_owned(), o.clone());
        return change;
    }
    if owned {
        return change;
    }
    let original = match d.obs.paths.get(path) {
        Some(PathState::File { meta, sha256, .. }) => Original::File {
            sha256: sha256.clone(),
            mode: meta.mode,
            owner: meta.owner.clone(),
            group: meta.group.clone(),
        },
        Some(PathState::Symlink { target }) => Original::Symlink {
            target: target.clone(),
        },
        _ => return change,
    };
    d.owned.originals.insert(path.to_owned(), original);
    let mut c = change.unwrap_or_else(|| Change::new(id, Op::TakeOver));
    c.op = Op::TakeOver;
    c.details
        .push("the original is kept and given back when kiln stops managing it".into());
    Some(c)
}

/// Declared directories, shallow first.
pub(super) fn plan_directories(d: &mut Draft<'_>, desired: &DesiredState) -> Result<(), PlanError> {
    let mut dirs: Vec<_> = desired.directories.iter().collect();
    dirs.sort_by_key(|d| (d.path.components().count(), d.path.clone()));
    for dir in dirs {
        let id = ResourceId::Directory(dir.path.clone());
        let st = d.obs.paths.get(&dir.path).unwrap_or(&PathState::Absent);
        // Only a directory kiln creates is kiln's to remove.
        if matches!(st, PathState::Absent) || d.obs.owned.directories.contains(&dir.path) {
            d.owned.directories.insert(dir.path.clone());
        }
        match st {
            PathState::Absent => {
                let mut c = Change::new(id, Op::Create);
                c.details.push(format!(
                    "mode {}, {}:{}",
                    fmt_mode(dir.mode),
                    dir.owner,
                    dir.group
                ));
                d.push(c);
            }
            PathState::Directory { meta } => {
                let det = meta_details(d.obs, meta, dir.mode, &dir.owner, &dir.group);
                if !det.is_empty() {
                    let mut c = Change::new(id, Op::Update);
                    c.details = det;
                    d.push(c);
                }
            }
            other => {
                return Err(PlanError::Conflict {
                    host: d.host.into(),
                    id: id.to_string(),
                    path: dir.path.display().to_string(),
                    found: kind_name(other),
                });
            }
        }
    }
    Ok(())
}

/// Declared regular files; a content change notifies the units the file names.
pub(super) fn plan_files(d: &mut Draft<'_>, desired: &DesiredState) -> Result<(), PlanError> {
    for f in &desired.files {
        d.owned.files.insert(f.path.clone());
        let id = ResourceId::File(f.path.clone());
        let change = plan_file(
            d.host,
            id.clone(),
            &f.path,
            &f.content,
            f.sensitive,
            f.mode,
            &f.owner,
            &f.group,
            d.obs,
        )?;
        let owned = d.obs.owned.files.contains(&f.path);
        if let Some(mut c) = take_over(d, id, &f.path, owned, change) {
            if c.content {
                c.details.extend(f.note.clone());
            }
            if c.content {
                d.changed_files.insert(f.path.clone());
                if let Some(unit) = dropin_of(&f.path) {
                    // systemd reads a drop-in at daemon-reload.
                    d.unit_file_changed.insert(unit);
                }
                for n in &f.notify {
                    let e = d
                        .notified
                        .entry(n.unit.clone())
                        .or_insert((n.action, vec![]));
                    e.0 = e.0.min(n.action); // restart wins over reload
                    e.1.push(format!("{} changed", f.path.display()));
                }
            }
            d.push(c);
        }
    }
    Ok(())
}

/// The unit a systemd drop-in (`/etc/systemd/system/UNIT.d/NAME.conf`) belongs to.
fn dropin_of(path: &Path) -> Option<String> {
    let rest = path.strip_prefix("/etc/systemd/system").ok()?;
    let mut parts = rest.components();
    let dir = parts.next()?.as_os_str().to_str()?;
    let file = parts.next()?.as_os_str().to_str()?;
    (parts.next().is_none() && file.ends_with(".conf"))
        .then(|| dir.strip_suffix(".d"))
        .flatten()
        .map(str::to_owned)
}

/// Declared symlinks.
pub(super) fn plan_symlinks(d: &mut Draft<'_>, desired: &DesiredState) -> Result<(), PlanError> {
    for s in &desired.symlinks {
        d.owned.symlinks.insert(s.path.clone());
        let id = ResourceId::Symlink(s.path.clone());
        let change = match d.obs.paths.get(&s.path).unwrap_or(&PathState::Absent) {
            PathState::Absent => {
                let mut c = Change::new(id.clone(), Op::Create);
                c.details.push(format!("→ {}", s.target.display()));
                Some(c)
            }
            PathState::Symlink { target } if *target == s.target => None,
            PathState::Symlink { target } => {
                let mut c = Change::new(id.clone(), Op::Update);
                c.details.push(format!(
                    "→ {} (was → {})",
                    s.target.display(),
                    target.display()
                ));
                Some(c)
            }
            PathState::File { .. } => {
                let mut c = Change::new(id.clone(), Op::Update);
                c.details.push(format!(
                    "→ {} (replaces a regular file)",
                    s.target.display()
                ));
                Some(c)
            }
            other => {
                return Err(PlanError::Conflict {
                    host: d.host.into(),
                    id: id.to_string(),
                    path: s.path.display().to_string(),
                    found: kind_name(other),
                });
            }
        };
        let owned = d.obs.owned.symlinks.contains(&s.path);
        if let Some(c) = take_over(d, id, &s.path, owned, change) {
            d.push(c);
        }
    }
    Ok(())
}

/// The change that gives back the original of what kiln took over (`id`: what kiln
/// managed there, a file or a symlink).
pub(super) fn restore(id: ResourceId) -> Change {
    let mut c = Change::new(id, Op::Restore);
    c.details.push("the original from before kiln".into());
    c
}

/// Files (restored when taken over, else removed), symlinks, then directories (deepest
/// first, only if empty) that kiln owned and no longer declares.
pub(super) fn plan_removals(d: &mut Draft<'_>) {
    let obs = d.obs;
    for p in obs
        .owned
        .files
        .iter()
        .filter(|p| !d.owned.files.contains(*p))
    {
        if obs.owned.originals.contains_key(p) {
            d.changes.push(restore(ResourceId::File(p.clone())));
        } else if matches!(obs.paths.get(p), Some(PathState::File { .. })) {
            d.changes
                .push(Change::new(ResourceId::File(p.clone()), Op::Remove));
        }
    }
    for p in obs
        .owned
        .symlinks
        .iter()
        .filter(|p| !d.owned.symlinks.contains(*p))
    {
        if obs.owned.originals.contains_key(p) {
            d.changes.push(restore(ResourceId::Symlink(p.clone())));
        } else if matches!(obs.paths.get(p), Some(PathState::Symlink { .. })) {
            d.changes
                .push(Change::new(ResourceId::Symlink(p.clone()), Op::Remove));
        }
    }
    let mut gone_dirs: Vec<&PathBuf> = obs
        .owned
        .directories
        .iter()
        .filter(|p| !d.owned.directories.contains(*p))
        .filter(|p| matches!(obs.paths.get(*p), Some(PathState::Directory { .. })))
        .collect();
    gone_dirs.sort_by_key(|p| std::cmp::Reverse((p.components().count(), (*p).clone())));
    for p in gone_dirs {
        let mut c = Change::new(ResourceId::Directory(p.clone()), Op::Remove);
        c.details.push("only if empty".into());
        d.push(c);
    }
}
