//! Runs the agent on many hosts in parallel with bounded concurrency. Each host's
//! progress goes over a channel as [`HostUpdate`]s to one renderer (the CLI). A failing
//! host does not stop the others.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::Sender;

use crate::event::Event;
use crate::host::ssh::{SshHost, SshTarget};
use crate::host::{AgentBinary, AgentOutcome, Host, HostError, LocalHost, Privilege};
use crate::resource::DesiredState;

/// How to reach a host.
#[derive(Clone, Debug)]
pub enum Connect {
    Ssh(SshTarget),
    /// This machine (optionally under a root prefix).
    Local {
        root: Option<PathBuf>,
    },
}

/// One host's work.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub connect: Connect,
    pub privilege: Privilege,
    pub desired: DesiredState,
}

/// What the renderer receives.
#[derive(Debug)]
pub enum HostUpdate {
    Started,
    Event(Event),
    Done(Result<AgentOutcome, HostError>),
}

/// A job and, once connected, its host, kept so that the plan shown before confirmation
/// and the apply after it share one SSH connection.
pub struct Slot {
    pub job: Job,
    host: Option<Box<dyn Host>>,
}

impl Slot {
    pub fn new(job: Job) -> Slot {
        Slot { job, host: None }
    }
}

/// Runs the agent for every slot with at most `parallel` hosts at once; returns when all
/// are done. Each host's agent refuses to apply a plan other than the one in `slot.job.desired.expect_plan` (the one the user confirmed).
pub fn run_slots(
    slots: &mut [Slot],
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    tx: Sender<(String, HostUpdate)>,
) {
    let queue = Mutex::new(slots.iter_mut());
    let workers = parallel.max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || {
                loop {
                    let slot = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    let Some(slot) = slot else { break };
                    let name = slot.job.name.clone();
                    let _ = tx.send((name.clone(), HostUpdate::Started));
                    let result = run_one(slot, binary, plan_only, &mut |e| {
                        let _ = tx.send((name.clone(), HostUpdate::Event(e.clone())));
                    });
                    let _ = tx.send((name, HostUpdate::Done(result)));
                }
            });
        }
    });
}

/// [`run_slots`] for one-shot use.
pub fn run_all(
    jobs: Vec<Job>,
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    tx: Sender<(String, HostUpdate)>,
) {
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    run_slots(&mut slots, binary, plan_only, parallel, tx);
    close_all(slots);
}

/// Closes every host's connection at once (closing an SSH master takes a round trip).
pub fn close_all(slots: Vec<Slot>) {
    std::thread::scope(|s| {
        for slot in slots {
            s.spawn(move || drop(slot));
        }
    });
}

fn run_one(
    slot: &mut Slot,
    binary: &AgentBinary,
    plan_only: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<AgentOutcome, HostError> {
    if slot.host.is_none() {
        let job = &slot.job;
        let host: Box<dyn Host> = match &job.connect {
            Connect::Ssh(t) => Box::new(SshHost::new(t.clone(), job.privilege.clone())?),
            Connect::Local { root } => Box::new(LocalHost {
                name: job.name.clone(),
                root: root.clone(),
                privilege: job.privilege.clone(),
            }),
        };
        slot.host = Some(host);
    }
    match slot.host.as_mut() {
        Some(host) => host.run_agent(binary, &slot.job.desired, plan_only, on_event),
        None => Err(HostError::Unexpected {
            host: slot.job.name.clone(),
            command: "no connection".into(),
        }),
    }
}
