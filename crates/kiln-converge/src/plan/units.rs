//! systemd units: their unit files (planned as regular files at the unit's path), one
//! daemon-reload after unit files changed, then their state (enable/disable,
//! start/stop) and the restarts or reloads their changed inputs ask for; and, for units
//! kiln owned and no longer declares, stop, disable, removal of the unit file and a
//! daemon-reload. Quadlet units ([`UnitKind::Quadlet`]) are the same but for their file
//! (`/etc/containers/systemd/NAME.container`) and for enablement, which they never get.
//!
//! Must not plan an enable before every unit file and the daemon-reload: apply batches
//! every enable into one `systemctl enable` at the first one.

use super::files::plan_file;
use super::{Change, Draft, Op, PlanError};
use crate::observe::{PathState, UnitStatus};
use crate::resource::{DesiredState, ResourceId, Trigger, UnitKind};

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
        let path = u.path();
        let id = ResourceId::File(path.clone());
        if let Some(c) = plan_file(
            d.host,
            id,
            &path,
            &u.content,
            u.sensitive,
            0o644,
            "root",
            "root",
            d.obs,
        )? {
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
        .filter(|u| {
            matches!(
                d.obs.paths.get(&d.obs.owned.unit_file(u)),
                Some(PathState::File { .. })
            )
        })
        .cloned()
        .collect();
    if !d.unit_file_changed.is_empty() {
        d.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }
    Ok(Removed { units, files })
}

/// Declared units' state, then restarts/reloads of running units whose inputs changed.
pub(super) fn plan_state(d: &mut Draft<'_>, desired: &DesiredState) {
    for u in &desired.units {
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
            if d.unit_file_changed.contains(&u.name) {
                reasons.push(format!("{} changed", u.path().display()));
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
                d.push(c);
            }
        }
    }
}

/// Units kiln owned and no longer declares: stopped, disabled, their files removed, and
/// a daemon-reload unless one is already planned.
pub(super) fn plan_removals(d: &mut Draft<'_>, removed: &Removed) {
    for u in &removed.units {
        let st = status(d, u);
        if st.active {
            d.push(Change::new(ResourceId::Unit(u.clone()), Op::Stop));
        }
        if st.enabled && !d.obs.owned.quadlets.contains_key(u) {
            d.push(Change::new(ResourceId::Unit(u.clone()), Op::Disable));
        }
    }
    for u in &removed.files {
        let path = d.obs.owned.unit_file(u);
        d.push(Change::new(ResourceId::File(path), Op::Remove));
    }
    if !removed.files.is_empty() && d.unit_file_changed.is_empty() {
        d.push(Change::new(ResourceId::Systemd, Op::DaemonReload));
    }
}
