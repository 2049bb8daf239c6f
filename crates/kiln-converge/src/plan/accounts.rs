//! Groups and users: created when missing, updated when their home, shell or
//! supplementary groups differ, and removed when kiln created them and they are no
//! longer declared. An account that existed before kiln is never owned, so never removed.
//!
//! Must not touch files or home directories (declare those as directories).

use std::collections::BTreeSet;

use super::{Change, Draft, Op};
use crate::resource::{DesiredState, ResourceId};

/// Declared groups, then users (a user's groups exist before it).
pub(super) fn plan(d: &mut Draft<'_>, desired: &DesiredState) {
    let obs = d.obs;
    for g in &desired.groups {
        if !obs.groups.contains(&g.name) {
            let mut c = Change::new(ResourceId::Group(g.name.clone()), Op::Create);
            if g.system {
                c.details.push("system group".into());
            }
            d.push(c);
            d.owned.groups.insert(g.name.clone());
        } else if obs.owned.groups.contains(&g.name) {
            d.owned.groups.insert(g.name.clone());
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
                d.push(c);
                d.owned.users.insert(u.name.clone());
            }
            Some(have) => {
                if obs.owned.users.contains(&u.name) {
                    d.owned.users.insert(u.name.clone());
                }
                let mut det = vec![];
                if let Some(h) = &u.home
                    && *h != have.home
                {
                    det.push(format!("home {} → {}", have.home.display(), h.display()));
                }
                if let Some(s) = &u.shell
                    && *s != have.shell
                {
                    det.push(format!("shell {} → {}", have.shell.display(), s.display()));
                }
                if want_groups != have.groups {
                    let fmt =
                        |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
                    det.push(format!(
                        "groups [{}] → [{}]",
                        fmt(&have.groups),
                        fmt(&want_groups)
                    ));
                }
                if !det.is_empty() {
                    let mut c = Change::new(ResourceId::User(u.name.clone()), Op::Update);
                    c.details = det;
                    d.push(c);
                }
            }
        }
    }
}

/// Users, then groups, that kiln created and no longer declares.
pub(super) fn plan_removals(d: &mut Draft<'_>) {
    let obs = d.obs;
    for u in obs
        .owned
        .users
        .iter()
        .filter(|u| !d.owned.users.contains(*u))
    {
        if obs.users.contains_key(u) {
            d.changes
                .push(Change::new(ResourceId::User(u.clone()), Op::Remove));
        }
    }
    for g in obs
        .owned
        .groups
        .iter()
        .filter(|g| !d.owned.groups.contains(*g))
    {
        if obs.groups.contains(g) {
            d.changes
                .push(Change::new(ResourceId::Group(g.clone()), Op::Remove));
        }
    }
}
