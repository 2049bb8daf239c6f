//! systemd units: their unit files (planned as regular files at the unit's path), one
//! daemon-reload after unit files changed, then their state (enable/disable,
//! start/stop) and the restarts or reloads their changed inputs ask for; and, for units
//! kiln owned and no longer declares, stop, disable, removal of the unit file and a
//! daemon-reload. Quadlet units ([`UnitKind::Quadlet`]) are the same but for their file
//! (`/etc/containers/systemd/NAME.container`) and for enablement, which they never get.
//!
//! Unit state is planned one stage at a time ([`crate::resource::Stage`]). A restart whose
//! container changes image says so first in its reason (`synapse v1.117.0 → v1.118.0`) and
//! carries the image it ran before as a detail ([`PREVIOUS_IMAGE`]), for apply's "how to
//! go back" when the new one is unhealthy.
//!
//! Must not plan an enable before every unit file and the daemon-reload: apply batches
//! the enables of a stage into one `systemctl enable` at its first one.

use super::files::{plan_file, restore, take_over};
use super::{Change, Draft, Op, PlanError};
use crate::observe::{PathState, UnitStatus};
use crate::owned::BorrowedUnit;
use crate::resource::{DesiredState, ResourceId, Stage, Trigger, UnitKind};

/// Prefix of the detail of a restart that names the image the unit's container ran
/// before (`previous image docker.io/matrixdotorg/synapse:v1.117.0`).
pub const PREVIOUS_IMAGE: &str = "previous image ";

/// Units kiln owned and no longer declares, found while planning unit files.
pub(super) struct Removed {
    units: Vec<String>,
    /// Those whose unit file is still on the host.
    files: Vec<String>,
}

fn status(d: &Draft<'_>, name: &str) -> UnitStatus {
    d.obs.units.get(name).copied().unwrap_or(UnitStatus {
        enabled: false,
        active: false,
    })
}

/// Declared unit files, then one daemon-reload if any of them changes.
pub(super) fn plan_files(d: &mut Draft<'_>, desired: &DesiredState) -> Result<Removed, PlanError> {
    for u in &desired.units {
        d.owned.units.insert(u.name.clone());
        if let UnitKind::Quadlet { file } = &u.kind {
            d.owned.quadlets.insert(u.name.clone(), file.clone());
        }
        let Some(path) = u.path() else {
            // A packaged unit: no file of kiln's; its state from before kiln is kept to
            // give it back once it is no longer declared.
            d.owned.packaged.insert(u.name.clone());
            if !d.obs.owned.units.contains(&u.name)
                && !d.obs.owned.borrowed_units.contains_key(&u.name)
            {
                let st = status(d, &u.name);
                d.owned.borrowed_units.insert(
                    u.name.clone(),
                    BorrowedUnit {
                        enabled: st.enabled,
                        active: st.active,
                    },
                );
            } else if let Some(b) = d.obs.owned.borrowed_units.get(&u.name) {
                d.owned.borrowed_units.insert(u.name.clone(), *b);
            }
            continue;
        };
        let id = ResourceId::File(path.clone());
        let change = plan_file(
            d.host,
            id.clone(),
            &path,
            &u.content,
            u.sensitive,
            0o644,
            "root",
            "root",
            d.obs,
        )?;
        let owned = d.obs.owned.units.contains(&u.name);
        if let Some(b) = d.obs.owned.borrowed_units.get(&u.name) {
            d.owned.borrowed_units.insert(u.name.clone(), *b);
        } else if !owned
            && (matches!(
                d.obs.paths.get(&path),
                Some(PathState::File { .. } | PathState::Symlink { .. })
            ) || d.obs.vendor_units.contains(&u.name))
        {
            // It existed before kiln: remember its state, to give it back.
            let st = status(d, &u.name);
            d.owned.borrowed_units.insert(
                u.name.clone(),
                BorrowedUnit {
                    enabled: st.enabled,
                    active: st.active,
                },
            );
        }
        if let Some(c) = take_over(d, id, &path, owned, change) {
            if c.content {
                d.changed_files.insert(path.clone());
                d.unit_file_changed.insert(u.name.clone());
            }
            d.push(c);
        }
    }
    let units: Vec<String> = d
        .obs
        .owned
        .units
        .iter()
        .filter(|u| !d.owned.units.contains(*u))
        .cloned()
        .collect();
    let files: Vec<String> = units
        .iter()
        // A packaged unit's file (if any) is the package's or the admin's, never kiln's.
        .filter(|u| !d.obs.owned.packaged.contains(*u))
        .filter(|u| {
            let path = d.obs.owned.unit_file(u);
            d.obs.owned.originals.contains_key(&path)
                || matches!(d.obs.paths.get(&path), Some(PathState::File { .. }))
        })
        .cloned()
        .collect();
    if !d.unit_file_changed.is_empty() {
        d.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }
    Ok(Removed { units, files })
}

/// Declared units' state, then restarts/reloads of running units whose inputs changed,
/// for the units of `stage`.
pub(super) fn plan_state(d: &mut Draft<'_>, desired: &DesiredState, stage: Stage) {
    for u in desired.units.iter().filter(|u| u.stage == stage) {
        let st = status(d, &u.name);
        let id = ResourceId::Unit(u.name.clone());
        if !u.enablable() {
            // A generated unit: what wants it comes from its quadlet's [Install].
        } else if u.enabled && !st.enabled {
            d.push(Change::new(id.clone(), Op::Enable));
        } else if !u.enabled && st.enabled {
            d.push(Change::new(id.clone(), Op::Disable));
        }
        if u.started && !st.active {
            d.push(Change::new(id.clone(), Op::Start));
        } else if !u.started && st.active {
            d.push(Change::new(id.clone(), Op::Stop));
        } else if u.started && st.active {
            let mut reasons = vec![];
            let mut action = Trigger::Reload;
            let mut previous = None;
            if d.unit_file_changed.contains(&u.name) {
                if let Some((text, before)) = d.image_changes.get(&u.name) {
                    reasons.push(text.clone());
                    previous = Some(format!("{PREVIOUS_IMAGE}{before}"));
                }
                reasons.push(match u.path() {
                    Some(p) if d.changed_files.contains(&p) => format!("{} changed", p.display()),
                    _ => "a drop-in changed".to_owned(),
                });
                action = Trigger::Restart;
            }
            if let Some((a, r)) = d.notified.get(&u.name) {
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
                c.details.extend(previous);
                d.push(c);
            }
        }
    }
}

/// Units kiln owned and no longer declares: stopped, disabled, their files removed, and
/// a daemon-reload unless one is already planned. A borrowed unit (it existed before
/// kiln) is given back instead: its original unit file restored (or the package's one
/// uncovered), a daemon-reload, and the state it had before kiln.
pub(super) fn plan_removals(d: &mut Draft<'_>, removed: &Removed) {
    let obs = d.obs;
    let borrowed = |u: &str| obs.owned.borrowed_units.get(u).copied();
    let quadlet = |u: &str| obs.owned.quadlets.contains_key(u);
    for u in &removed.units {
        let st = status(d, u);
        let before = borrowed(u);
        if st.active && !before.is_some_and(|b| b.active) {
            d.push(Change::new(ResourceId::Unit(u.clone()), Op::Stop));
        }
        if st.enabled && !quadlet(u) && !before.is_some_and(|b| b.enabled) {
            d.push(Change::new(ResourceId::Unit(u.clone()), Op::Disable));
        }
    }
    for u in &removed.files {
        let path = obs.owned.unit_file(u);
        if obs.owned.originals.contains_key(&path) {
            d.push(restore(ResourceId::File(path)));
        } else {
            d.push(Change::new(ResourceId::File(path), Op::Remove));
        }
    }
    let any_borrowed = removed.files.iter().any(|u| borrowed(u).is_some());
    if !removed.files.is_empty() && (d.unit_file_changed.is_empty() || any_borrowed) {
        d.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }
    for u in &removed.units {
        let Some(before) = borrowed(u) else { continue };
        let st = status(d, u);
        let id = ResourceId::Unit(u.clone());
        if before.enabled && !st.enabled && !quadlet(u) {
            d.push(Change::new(id.clone(), Op::Enable));
        }
        if before.active && !st.active {
            d.push(Change::new(id, Op::Start));
        } else if before.active && removed.files.contains(u) {
            let mut c = Change::new(id, Op::Restart);
            c.reason = Some("its unit file from before kiln is back".into());
            d.push(c);
        }
    }
}
