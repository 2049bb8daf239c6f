//! The agent's event stream: one JSON object per line on its stdout, read by the laptop
//! and rendered by the CLI (progress, summaries, `--json`). Never carries file contents.

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::plan::{Op, Plan};
use crate::resource::ResourceId;

/// What the agent reports while it works.
// `Planned` is much larger than the rest (a plan with its ownership record) but is sent
// once per run; boxing it would change every match on it for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The agent started and read its input.
    Started {
        version: String,
        facts: Option<Facts>,
    },
    /// Plan-only runs: what observation found of the declared units and the host's
    /// containers (`kiln status` renders it), before the plan.
    Observed {
        units: std::collections::BTreeMap<String, crate::observe::UnitStatus>,
        containers: std::collections::BTreeMap<String, crate::observe::ContainerState>,
    },
    /// Observation and planning are done.
    Planned { plan: Plan, observe_ms: u64 },
    /// Change `index` (0-based, of `total`) is being applied.
    Applying {
        index: usize,
        total: usize,
        id: ResourceId,
        op: Op,
    },
    /// Change `index` was applied.
    Applied {
        index: usize,
        id: ResourceId,
        op: Op,
        ms: u64,
    },
    /// Change `index` failed. The agent goes on with the changes that do not depend on it.
    Failed {
        index: usize,
        id: ResourceId,
        op: Op,
        error: String,
    },
    /// Change `index` was not attempted: it depends on `because` (`"{op} {id}"` of a change
    /// that failed or was itself skipped), e.g. a unit whose file could not be written is
    /// not restarted. After a unit did not become healthy, every later change of the host
    /// is skipped with `because` naming that unit (`unit pg.service is not healthy: …`).
    Skipped {
        index: usize,
        id: ResourceId,
        op: Op,
        because: String,
    },
    /// Guarded group `group` was applied with its rollback armed ([`crate::guard`]): unless
    /// `agent disarm TOKEN` runs over a fresh connection within `deadline_s` seconds, the
    /// host restores the group's previous files. The laptop does that on this event.
    GuardArmed {
        group: String,
        token: String,
        deadline_s: u64,
    },
    /// A change of guarded group `group` failed (`reason`): the agent rolled the whole
    /// group back at once (or, from the timer, the group was not confirmed in time).
    GuardRolledBack {
        group: String,
        token: String,
        reason: String,
    },
    /// Printed by `agent disarm TOKEN`: the rollback is cancelled.
    GuardDisarmed { token: String },
    /// Laptop side ([`crate::host::Host::run_agent`]): the group was proven over a fresh
    /// connection and disarmed; its changes stay.
    GuardConfirmed { group: String, token: String },
    /// Laptop side: the fresh connection or the disarm failed (`error`); the host rolls
    /// the group back at its deadline.
    GuardUnconfirmed {
        group: String,
        token: String,
        error: String,
    },
    /// Laptop side: kiln waits for the host to roll group `group` back (at most
    /// `deadline_s` seconds after it was applied, then a grace period).
    GuardWaiting { group: String, deadline_s: u64 },
    /// Laptop side: the host rolled group `group` back by itself and a fresh connection
    /// proved it reachable on its previous settings, `after_ms` after the group was applied.
    GuardRestored {
        group: String,
        token: String,
        after_ms: u64,
    },
    /// Laptop side, after an apply: the host's WireGuard handshakes with its peers
    /// ([`crate::mesh`]).
    Mesh { peers: Vec<crate::mesh::PeerState> },
    /// The unit just started or restarted passed its container's health check, `ms` after
    /// the start was asked for.
    Healthy {
        unit: String,
        container: String,
        ms: u64,
    },
    /// The reverse proxy's certificates, one per name of its routes ([`crate::certs`]):
    /// in plan-only runs as observed, after an apply once they settled (`waited_ms`: how
    /// long the agent waited for those still missing).
    Certificates {
        certificates: Vec<crate::certs::CertificateState>,
        waited_ms: u64,
        /// After an apply: the names that had no valid certificate before it and have one
        /// now.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        issued_now: Vec<String>,
    },
    /// Something worth telling that is not a failure (e.g. a directory kept because not empty).
    Warning { message: String },
    /// The agent could not do its work at all (bad input, unreadable host state).
    Error { message: String },
    /// Last event: how many changes were applied, whether everything succeeded.
    Finished {
        applied: usize,
        failed: bool,
        plan_only: bool,
        ms: u64,
    },
}

/// Where events go (stdout in the agent, a channel or a vector in tests).
pub trait EventSink {
    fn emit(&mut self, event: Event);
}

impl EventSink for Vec<Event> {
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}

impl<F: FnMut(Event)> EventSink for F {
    fn emit(&mut self, event: Event) {
        self(event)
    }
}
