//! Commands: run when their `unless` guard failed, when a file they are triggered by
//! changes in this plan, or (no guard) when they never ran with this text. The ownership
//! record keeps the hash of the text of each command that ran. Planned one stage at a
//! time ([`crate::resource::Stage`]), before that stage's unit state changes.
//!
//! Must not run anything: guards are run by observation, commands by apply.

use super::{Change, Draft, Op};
use crate::owned::sha256_hex;
use crate::resource::{DesiredState, ResourceId, Stage};

/// Declared commands of `stage` (after files and unit files, whose changes trigger them).
pub(super) fn plan(d: &mut Draft<'_>, desired: &DesiredState, stage: Stage) {
    let obs = d.obs;
    for c in desired.commands.iter().filter(|c| c.stage == stage) {
        let hash = sha256_hex(c.run.as_bytes());
        let triggers: Vec<String> = c
            .triggered_by
            .iter()
            .filter(|p| d.changed_files.contains(*p))
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
            d.push(ch);
            d.owned.commands.insert(c.name.clone(), hash);
        } else if let Some(h) = obs.owned.commands.get(&c.name) {
            d.owned.commands.insert(c.name.clone(), h.clone());
        }
    }
}
