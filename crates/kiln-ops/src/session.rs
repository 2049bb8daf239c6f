//! Plan and apply sessions: running the agent on every job's host (bounded concurrency,
//! one connection per host shared by a pinned plan and the apply that follows), and
//! turning the per-host answers into typed results, in job order.
//!
//! Owns: turning kiln-converge's `run_ordered` results (one per job, in job order) into
//! typed plans and failures, checked once more in ONE private function (`drive`: a host
//! without an answer or a panicked runner is an error, never left out); pinning a plan so
//! the agent applies exactly it; the apply report.
//! Must not: render (every [`HostUpdate`] goes to the caller's sink; bars, plain lines and
//! JSON lines are the CLI's), prompt for confirmation, or choose hosts ([`crate::jobs`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_converge::host::{AgentBinary, AgentOutcome, HostError};
use kiln_converge::plan::Summary;
use kiln_converge::run::{HostResult, HostUpdate, Job, Slot, close_all, run_ordered};
use kiln_converge::{Event, Plan};

/// Receives every host's progress as it happens (for a renderer).
pub trait SessionSink {
    fn update(&mut self, host: &str, update: &HostUpdate);
}

impl<F: FnMut(&str, &HostUpdate)> SessionSink for F {
    fn update(&mut self, host: &str, update: &HostUpdate) {
        self(host, update)
    }
}

/// A sink that drops everything.
pub fn no_progress() -> impl SessionSink {
    |_: &str, _: &HostUpdate| {}
}

/// Why one host has no plan, or its apply failed.
#[derive(Debug, thiserror::Error)]
pub enum HostFailure {
    /// Reaching the host or running its agent failed (the error names the host).
    #[error("{0}")]
    Host(HostError),
    /// The agent ran and reported errors.
    #[error("{host}: {}", .errors.join("; "))]
    Agent { host: String, errors: Vec<String> },
    /// The agent finished without the plan it was asked for.
    #[error("{host}: the agent reported no plan")]
    NoPlan { host: String },
    /// No answer came back for this host.
    #[error("{host}: no result (internal error)")]
    NoAnswer { host: String },
}

/// A session could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot read kiln's own binary to ship it: {0}")]
    AgentBinary(#[source] std::io::Error),
    #[error("planning failed, nothing was applied:\n{}", lines(.0))]
    PlanningFailed(Vec<HostFailure>),
    /// A worker thread panicked: a bug, never a host's result.
    #[error(
        "the host workers stopped unexpectedly ({message}); hosts without an answer: {}",
        if .missing.is_empty() { "none".to_owned() } else { .missing.join(", ") }
    )]
    WorkerPanicked {
        message: String,
        missing: Vec<String>,
    },
}

fn lines(failures: &[HostFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The agent binary to ship: this very executable.
pub fn agent_binary() -> Result<AgentBinary, SessionError> {
    AgentBinary::current().map_err(SessionError::AgentBinary)
}

/// One host's plan, or why there is none.
#[derive(Debug)]
pub struct HostPlan {
    pub host: String,
    pub plan: Result<Plan, HostFailure>,
    /// What the agent observed of the host's declared units and containers (`kiln
    /// status`); `None` when it could not observe.
    pub observed: Option<kiln_converge::host::HostObserved>,
}

/// The answers of a plan session, in job order.
#[derive(Debug, Default)]
pub struct PlanReport {
    pub hosts: Vec<HostPlan>,
}

impl PlanReport {
    /// The plans that were made, with their host.
    pub fn plans(&self) -> impl Iterator<Item = (&str, &Plan)> {
        self.hosts
            .iter()
            .filter_map(|h| h.plan.as_ref().ok().map(|p| (h.host.as_str(), p)))
    }
    /// The hosts that could not be planned.
    pub fn failures(&self) -> impl Iterator<Item = &HostFailure> {
        self.hosts.iter().filter_map(|h| h.plan.as_ref().err())
    }
    /// The plans' counts, added up.
    pub fn total(&self) -> Summary {
        total(self.plans().map(|(_, p)| p))
    }
    /// Hosts with changes pending.
    pub fn pending(&self) -> Vec<&str> {
        self.plans()
            .filter(|(_, p)| !p.is_empty())
            .map(|(h, _)| h)
            .collect()
    }
}

/// Adds up plans' counts.
pub fn total<'p>(plans: impl IntoIterator<Item = &'p Plan>) -> Summary {
    let mut t = Summary::default();
    for p in plans {
        let c = p.counts();
        t.create += c.create;
        t.change += c.change;
        t.remove += c.remove;
    }
    t
}

/// Runs the agent on the slots, handing every update to the callback; returns the hosts'
/// results (kiln-converge's `run_ordered`, or a test's stand-in).
type Runner<'a> =
    dyn FnOnce(&mut [Slot], &mut dyn FnMut(&str, &HostUpdate)) -> Vec<HostResult> + 'a;

/// Plans every job on fresh connections (closed afterwards); one result per host.
pub fn plan(
    jobs: Vec<Job>,
    binary: &AgentBinary,
    parallel: usize,
    sink: &mut dyn SessionSink,
) -> Result<PlanReport, SessionError> {
    plan_with(
        jobs,
        Box::new(|slots, on| run_ordered(slots, binary, true, parallel, on)),
        sink,
    )
}

fn plan_with(
    jobs: Vec<Job>,
    run: Box<Runner<'_>>,
    sink: &mut dyn SessionSink,
) -> Result<PlanReport, SessionError> {
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    let answers = drive(&mut slots, run, sink);
    close_all(slots);
    let answers = answers?;
    Ok(PlanReport {
        hosts: answers
            .into_iter()
            .map(|(host, r)| {
                let observed = r.as_ref().ok().and_then(|o| o.observed.clone());
                let plan = plan_of(&host, r);
                HostPlan {
                    host,
                    plan,
                    observed,
                }
            })
            .collect(),
    })
}

fn plan_of(host: &str, r: Answer) -> Result<Plan, HostFailure> {
    match r {
        Ok(o) if !o.failed => o.plan.ok_or_else(|| HostFailure::NoPlan {
            host: host.to_owned(),
        }),
        Ok(o) => Err(HostFailure::Agent {
            host: host.to_owned(),
            errors: o.errors,
        }),
        Err(f) => Err(f),
    }
}

/// Plans every host over its slot's connection (kept for the apply that follows) and pins
/// each host's plan: the agent then applies exactly that plan, or refuses. Returns the plans
/// in slot order; any host that could not be planned fails the whole step.
pub fn plan_pinned(
    slots: &mut [Slot],
    binary: &AgentBinary,
    parallel: usize,
    sink: &mut dyn SessionSink,
) -> Result<Vec<(String, Plan)>, SessionError> {
    plan_pinned_with(
        slots,
        Box::new(|slots, on| run_ordered(slots, binary, true, parallel, on)),
        sink,
    )
}

fn plan_pinned_with(
    slots: &mut [Slot],
    run: Box<Runner<'_>>,
    sink: &mut dyn SessionSink,
) -> Result<Vec<(String, Plan)>, SessionError> {
    let answers = drive(slots, run, sink)?;
    let mut plans = vec![];
    let mut failures = vec![];
    for (slot, (name, answer)) in slots.iter_mut().zip(answers) {
        match plan_of(&name, answer) {
            Ok(p) => {
                // Apply exactly this plan, or nothing.
                slot.job.desired.expect_plan = Some(p.fingerprint());
                plans.push((name, p));
            }
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(SessionError::PlanningFailed(failures));
    }
    Ok(plans)
}

/// How an apply went.
#[derive(Debug)]
pub struct ApplyReport {
    /// Changes applied, over all hosts (failed ones included: their other steps went on).
    pub changed: usize,
    /// Hosts worked on.
    pub hosts: usize,
    /// The hosts that failed, and why.
    pub failed: Vec<HostFailure>,
    pub elapsed: Duration,
    /// Names the hosts' reverse proxies have no valid certificate for yet, by host, with
    /// the proxy's last error line about each (pending: the proxy keeps trying).
    pub pending_certificates: Vec<(String, kiln_converge::certs::CertificateState)>,
}

/// Applies every slot's desired state (the pinned plan, when [`plan_pinned`] ran first).
pub fn apply(
    slots: &mut [Slot],
    binary: &AgentBinary,
    parallel: usize,
    sink: &mut dyn SessionSink,
) -> Result<ApplyReport, SessionError> {
    let mut report = apply_with(
        slots,
        Box::new(|slots, on| run_ordered(slots, binary, false, parallel, on)),
        sink,
    )?;
    if report.changed > 0 {
        check_meshes(slots, &mut report, sink);
    }
    Ok(report)
}

/// How long each host waits for its WireGuard peers' handshakes after an apply.
pub const MESH_TIMEOUT: Duration = Duration::from_secs(15);

/// After an apply that changed something: every host of a WireGuard mesh proves a fresh
/// handshake with each peer ([`kiln_converge::mesh`]); a peer without one fails the host.
fn check_meshes(slots: &mut [Slot], report: &mut ApplyReport, sink: &mut dyn SessionSink) {
    for (host, result) in kiln_converge::run::check_meshes(slots, MESH_TIMEOUT) {
        match result {
            Ok(peers) => {
                let errors: Vec<String> = peers
                    .iter()
                    .filter(|p| p.handshake_age_s.is_none())
                    .map(|p| kiln_converge::mesh::no_handshake(&host, p, MESH_TIMEOUT))
                    .collect();
                sink.update(&host, &HostUpdate::Event(Event::Mesh { peers }));
                if !errors.is_empty() {
                    report.fail(&host, errors);
                }
            }
            Err(e) => report.fail(&host, vec![e.to_string()]),
        }
    }
}

impl ApplyReport {
    /// Adds `errors` to `host`'s failure.
    fn fail(&mut self, host: &str, errors: Vec<String>) {
        for f in &mut self.failed {
            if let HostFailure::Agent { host: h, errors: e } = f
                && h == host
            {
                e.extend(errors);
                return;
            }
        }
        self.failed.push(HostFailure::Agent {
            host: host.to_owned(),
            errors,
        });
    }
}

fn apply_with(
    slots: &mut [Slot],
    run: Box<Runner<'_>>,
    sink: &mut dyn SessionSink,
) -> Result<ApplyReport, SessionError> {
    let start = Instant::now();
    let answers = drive(slots, run, sink)?;
    let hosts = answers.len();
    let mut failed = vec![];
    let mut changed = 0;
    let mut pending_certificates = vec![];
    let now = kiln_converge::certs::now();
    for (name, answer) in answers {
        if let Ok(o) = &answer {
            for c in o.certificates.iter().flatten() {
                if !c.valid_at(now) {
                    pending_certificates.push((name.clone(), c.clone()));
                }
            }
        }
        match answer {
            Ok(o) if !o.failed => changed += o.applied,
            Ok(o) => {
                // A failed host still made the changes that went through before and
                // after its failure (independent steps carry on).
                changed += o.applied;
                failed.push(HostFailure::Agent {
                    host: name,
                    errors: o.errors,
                })
            }
            Err(f) => failed.push(f),
        }
    }
    Ok(ApplyReport {
        changed,
        hosts,
        failed,
        elapsed: start.elapsed(),
        pending_certificates,
    })
}

/// One host's final answer.
type Answer = Result<AgentOutcome, HostFailure>;

/// Runs `run` on the slots, hands every update to `sink`, and returns one answer for
/// EVERY slot, in slot order. kiln-converge's `run_ordered` already guarantees a result per
/// host (a panicked run is a `HostError::Internal` naming it); this checks it again, so a
/// host that still has none gets [`HostFailure::NoAnswer`], and a runner that panics is
/// [`SessionError::WorkerPanicked`] naming the hosts that had not finished.
fn drive(
    slots: &mut [Slot],
    run: Box<Runner<'_>>,
    sink: &mut dyn SessionSink,
) -> Result<Vec<(String, Answer)>, SessionError> {
    let names: Vec<String> = slots.iter().map(|s| s.job.name.clone()).collect();
    let mut finished: Vec<String> = vec![];
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(slots, &mut |host: &str, update: &HostUpdate| {
            if matches!(update, HostUpdate::Done(_)) {
                finished.push(host.to_owned());
            }
            sink.update(host, update)
        })
    }));
    let results = match ran {
        Ok(r) => r,
        Err(payload) => {
            return Err(SessionError::WorkerPanicked {
                message: kiln_converge::run::panic_message(payload.as_ref()),
                missing: names
                    .into_iter()
                    .filter(|n| !finished.contains(n))
                    .collect(),
            });
        }
    };
    let mut results: BTreeMap<String, Result<AgentOutcome, HostError>> =
        results.into_iter().rev().collect();
    Ok(names
        .into_iter()
        .map(|name| {
            let answer = match results.remove(&name) {
                Some(r) => r.map_err(HostFailure::Host),
                None => Err(HostFailure::NoAnswer { host: name.clone() }),
            };
            (name, answer)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::host::Privilege;
    use kiln_converge::run::Connect;

    fn job(name: &str) -> Job {
        Job {
            name: name.into(),
            connect: Connect::Local { root: None },
            privilege: Privilege::Root,
            desired: Default::default(),
        }
    }

    type On<'a> = &'a mut dyn FnMut(&str, &HostUpdate);

    /// A host's run as `run_ordered` reports it: Started, Done, and its result.
    fn answer(on: On<'_>, host: &str) -> HostResult {
        let outcome = AgentOutcome {
            plan: Some(Plan {
                host: host.into(),
                changes: vec![],
                ..Default::default()
            }),
            ..Default::default()
        };
        on(host, &HostUpdate::Started);
        on(host, &HostUpdate::Done(Ok(outcome.clone())));
        (host.into(), Ok(outcome))
    }

    #[test]
    fn a_host_without_an_answer_is_a_failure_naming_it() {
        let mut seen = vec![];
        let report = plan_with(
            vec![job("web"), job("db"), job("mail")],
            // Answers out of order, and never for `db`.
            Box::new(|_slots: &mut [Slot], on: On<'_>| vec![answer(on, "mail"), answer(on, "web")]),
            &mut |host: &str, _: &HostUpdate| seen.push(host.to_owned()),
        )
        .unwrap();
        let hosts: Vec<_> = report.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(
            hosts,
            ["web", "db", "mail"],
            "every selected host, in job order"
        );
        let failures: Vec<String> = report.failures().map(ToString::to_string).collect();
        assert_eq!(failures, ["db: no result (internal error)"]);
        assert_eq!(
            seen,
            ["mail", "mail", "web", "web"],
            "the sink saw every update"
        );
    }

    #[test]
    fn a_panicked_worker_is_an_error() {
        let result = plan_with(
            vec![job("web"), job("db")],
            Box::new(|_slots: &mut [Slot], on: On<'_>| {
                let _ = answer(on, "web");
                panic!("worker bug");
            }),
            &mut no_progress(),
        );
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the host workers stopped unexpectedly (worker bug); hosts without an answer: db"
        );
    }

    #[test]
    fn a_pinned_plan_is_what_the_apply_must_find_and_every_host_must_answer() {
        let mut slots: Vec<Slot> = vec![Slot::new(job("web")), Slot::new(job("db"))];
        let plans = plan_pinned_with(
            &mut slots,
            Box::new(|_slots: &mut [Slot], on: On<'_>| vec![answer(on, "db"), answer(on, "web")]),
            &mut no_progress(),
        )
        .unwrap();
        let hosts: Vec<_> = plans.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["web", "db"]);
        for (slot, (_, plan)) in slots.iter().zip(&plans) {
            assert_eq!(slot.job.desired.expect_plan, Some(plan.fingerprint()));
        }
        let err = plan_pinned_with(
            &mut slots,
            Box::new(|_slots: &mut [Slot], on: On<'_>| vec![answer(on, "web")]),
            &mut no_progress(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "planning failed, nothing was applied:\ndb: no result (internal error)"
        );
    }

    #[test]
    fn an_apply_reports_every_failed_host_in_job_order() {
        let mut slots: Vec<Slot> = vec![
            Slot::new(job("web")),
            Slot::new(job("db")),
            Slot::new(job("mail")),
        ];
        let report = apply_with(
            &mut slots,
            Box::new(|_slots: &mut [Slot], _on: On<'_>| {
                let failed = AgentOutcome {
                    failed: true,
                    applied: 2,
                    errors: vec!["start unit bad.service: failed".into()],
                    ..Default::default()
                };
                let ok = AgentOutcome {
                    applied: 3,
                    ..Default::default()
                };
                vec![("mail".into(), Ok(failed)), ("web".into(), Ok(ok))]
            }),
            &mut no_progress(),
        )
        .unwrap();
        // The failed host's two applied changes count: they happened.
        assert_eq!((report.changed, report.hosts), (5, 3));
        let failed: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
        assert_eq!(
            failed,
            [
                "db: no result (internal error)",
                "mail: start unit bad.service: failed"
            ]
        );
    }
}
