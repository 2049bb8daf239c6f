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

/// Runs `jobs` with at most `parallel` hosts at once; returns when all are done.
pub fn run_all(
    jobs: Vec<Job>,
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    tx: Sender<(String, HostUpdate)>,
) {
    let queue = Mutex::new(jobs.into_iter());
    let workers = parallel.max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { break };
                    let name = job.name.clone();
                    let _ = tx.send((name.clone(), HostUpdate::Started));
                    let result = run_one(job, binary, plan_only, &mut |e| {
                        let _ = tx.send((name.clone(), HostUpdate::Event(e.clone())));
                    });
                    let _ = tx.send((name, HostUpdate::Done(result)));
                }
            });
        }
    });
}

fn run_one(
    job: Job,
    binary: &AgentBinary,
    plan_only: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<AgentOutcome, HostError> {
    let mut host: Box<dyn Host> = match job.connect {
        Connect::Ssh(t) => Box::new(SshHost::new(t, job.privilege)?),
        Connect::Local { root } => Box::new(LocalHost {
            name: job.name,
            root,
            privilege: job.privilege,
        }),
    };
    host.run_agent(binary, &job.desired, plan_only, on_event)
}
