//! Plan and apply sessions: running the agent on every job's host (bounded concurrency,
//! one connection per host shared by a pinned plan and the apply that follows), and
//! turning the per-host answers into typed results, in job order.
//!
//! Owns: collecting every host's answer and checking that each selected host answered
//! (in ONE private function, [`drive`]); pinning a plan so the agent applies exactly it;
//! the apply report.
//! Must not: render (every [`HostUpdate`] goes to the caller's sink; bars, plain lines and
//! JSON lines are the CLI's), prompt for confirmation, or choose hosts ([`crate::jobs`]).

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use kiln_converge::Plan;
use kiln_converge::host::{AgentBinary, AgentOutcome, HostError};
use kiln_converge::plan::Summary;
use kiln_converge::run::{HostUpdate, Job, Slot, close_all, run_slots};

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

type Runner<'a> = dyn FnOnce(&mut [Slot], Sender<(String, HostUpdate)>) + Send + 'a;

/// Plans every job on fresh connections (closed afterwards); one result per host.
pub fn plan(
    jobs: Vec<Job>,
    binary: &AgentBinary,
    parallel: usize,
    sink: &mut dyn SessionSink,
) -> PlanReport {
    plan_with(
        jobs,
        Box::new(|slots, tx| run_slots(slots, binary, true, parallel, tx)),
        sink,
    )
}

fn plan_with(jobs: Vec<Job>, run: Box<Runner<'_>>, sink: &mut dyn SessionSink) -> PlanReport {
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    let answers = drive(&mut slots, run, sink);
    close_all(slots);
    PlanReport {
        hosts: answers
            .into_iter()
            .map(|(host, r)| {
                let plan = plan_of(&host, r);
                HostPlan { host, plan }
            })
            .collect(),
    }
}

fn plan_of(host: &str, r: Result<AgentOutcome, HostError>) -> Result<Plan, HostFailure> {
    match r {
        Ok(o) if !o.failed => o.plan.ok_or_else(|| HostFailure::NoPlan {
            host: host.to_owned(),
        }),
        Ok(o) => Err(HostFailure::Agent {
            host: host.to_owned(),
            errors: o.errors,
        }),
        Err(e) => Err(HostFailure::Host(e)),
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
    let mut results: BTreeMap<String, _> = drive(
        slots,
        Box::new(|slots, tx| run_slots(slots, binary, true, parallel, tx)),
        sink,
    )
    .into_iter()
    .collect();
    let mut plans = vec![];
    let mut failures = vec![];
    for slot in slots.iter_mut() {
        let name = slot.job.name.clone();
        match results.remove(&name) {
            Some(r) => match plan_of(&name, r) {
                Ok(p) => {
                    // Apply exactly this plan, or nothing.
                    slot.job.desired.expect_plan = Some(p.fingerprint());
                    plans.push((name, p));
                }
                Err(f) => failures.push(f),
            },
            None => failures.push(HostFailure::NoAnswer { host: name }),
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
    /// Changes applied, over all hosts.
    pub changed: usize,
    /// Hosts worked on.
    pub hosts: usize,
    /// The hosts that failed, and why.
    pub failed: Vec<HostFailure>,
    pub elapsed: Duration,
}

/// Applies every slot's desired state (the pinned plan, when [`plan_pinned`] ran first).
pub fn apply(
    slots: &mut [Slot],
    binary: &AgentBinary,
    parallel: usize,
    sink: &mut dyn SessionSink,
) -> ApplyReport {
    let names: Vec<String> = slots.iter().map(|s| s.job.name.clone()).collect();
    let start = Instant::now();
    let mut results: BTreeMap<String, _> = drive(
        slots,
        Box::new(|slots, tx| run_slots(slots, binary, false, parallel, tx)),
        sink,
    )
    .into_iter()
    .collect();
    let mut failed = vec![];
    let mut changed = 0;
    for name in &names {
        match results.remove(name) {
            Some(Ok(o)) if !o.failed => changed += o.applied,
            Some(Ok(o)) => failed.push(HostFailure::Agent {
                host: name.clone(),
                errors: o.errors,
            }),
            Some(Err(e)) => failed.push(HostFailure::Host(e)),
            None => failed.push(HostFailure::NoAnswer { host: name.clone() }),
        }
    }
    ApplyReport {
        changed,
        hosts: names.len(),
        failed,
        elapsed: start.elapsed(),
    }
}

/// Runs `run` on the slots in a worker thread, hands every update to `sink`, and returns
/// the hosts' final answers in slot order.
// SWITCH: once kiln-converge's run.rs returns every host's result in job order (erroring
// for hosts with no answer), this is the one function to replace.
fn drive(
    slots: &mut [Slot],
    run: Box<Runner<'_>>,
    sink: &mut dyn SessionSink,
) -> Vec<(String, Result<AgentOutcome, HostError>)> {
    let names: Vec<String> = slots.iter().map(|s| s.job.name.clone()).collect();
    let (tx, rx) = mpsc::channel();
    let mut results = vec![];
    std::thread::scope(|s| {
        let worker = s.spawn(move || run(slots, tx));
        for (name, update) in rx {
            sink.update(&name, &update);
            if let HostUpdate::Done(r) = update {
                results.push((name, r));
            }
        }
        let _ = worker.join();
    });
    results.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
    results
}
