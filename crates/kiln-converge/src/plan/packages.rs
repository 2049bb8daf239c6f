//! Distribution packages: one change per missing package (apply batches them into one
//! transaction), and an uninstall for each package kiln installed and no longer declares.
//! A package that was installed before kiln is never owned, so never removed.
//!
//! Must not run the package manager or guess names per distribution: the desired state
//! carries the names, apply and [`crate::facts`] run the commands.

use super::{Change, Draft, Op};
use crate::resource::{DesiredState, ResourceId};

/// Declared packages.
pub(super) fn plan(d: &mut Draft<'_>, desired: &DesiredState) {
    let obs = d.obs;
    for p in &desired.packages {
        if !obs.packages.contains(&p.name) {
            d.push(Change::new(
                ResourceId::Package(p.name.clone()),
                Op::Install,
            ));
            d.owned.packages.insert(p.name.clone());
        } else if obs.owned.packages.contains(&p.name) {
            d.owned.packages.insert(p.name.clone());
        }
    }
}

/// Packages kiln installed and no longer declares.
pub(super) fn plan_removals(d: &mut Draft<'_>) {
    let obs = d.obs;
    for p in obs
        .owned
        .packages
        .iter()
        .filter(|p| !d.owned.packages.contains(*p))
    {
        if obs.packages.contains(p) {
            d.changes
                .push(Change::new(ResourceId::Package(p.clone()), Op::Uninstall));
        }
    }
}
