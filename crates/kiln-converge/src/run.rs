//! Runs the agent on many hosts in parallel with bounded concurrency. Each host's
//! progress goes over a channel as [`HostUpdate`]s to one renderer (the CLI). A failing
//! host does not stop the others.
//!
//! [`run_ordered`] (and [`run_jobs`]) is the one way to get host outcomes: one result per
//! job, in job order, with a host that panicked or never answered reported as an error
//! naming it, never left out.

use std::path::PathBuf;
use std::sync::Mutex;

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

    /// A slot whose host is already connected (or a test double: [`crate::host::FakeHost`]).
    pub fn with_host(job: Job, host: Box<dyn Host>) -> Slot {
        Slot {
            job,
            host: Some(host),
        }
    }
}

/// One host's name and how its agent run went.
pub type HostResult = (String, Result<AgentOutcome, HostError>);

/// Runs the agent for every slot (at most `parallel` hosts at once) and returns exactly
/// one result per slot, in slot order, whatever happened: a host whose run panicked, or
/// that never reported a result, gets an error naming it ([`HostError::Internal`]).
/// `on_update` sees every host's updates on the calling thread as they arrive (the
/// renderer); each host's `Done` update comes before the results are returned.
pub fn run_ordered(
    slots: &mut [Slot],
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    on_update: &mut dyn FnMut(&str, &HostUpdate),
) -> Vec<HostResult> {
    let names: Vec<String> = slots.iter().map(|s| s.job.name.clone()).collect();
    let mut results: Vec<Option<Result<AgentOutcome, HostError>>> =
        (0..slots.len()).map(|_| None).collect();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String, HostUpdate)>();
    let mut worker_panic = None;
    std::thread::scope(|s| {
        let runner = s.spawn(move || {
            let send = |i: usize, name: &str, update: HostUpdate| {
                let _ = tx.send((i, name.to_owned(), update));
            };
            run_workers(slots, binary, plan_only, parallel, &send)
        });
        for (i, name, update) in rx {
            on_update(&name, &update);
            if let HostUpdate::Done(r) = update
                && let Some(slot) = results.get_mut(i)
            {
                *slot = Some(r);
            }
        }
        worker_panic = match runner.join() {
            Ok(p) => p,
            Err(payload) => Some(panic_message(payload.as_ref())),
        };
    });
    names
        .into_iter()
        .zip(results)
        .map(|(name, r)| {
            let r = r.unwrap_or_else(|| {
                Err(HostError::Internal {
                    host: name.clone(),
                    message: match &worker_panic {
                        Some(p) => format!("no result: a worker thread panicked ({p})"),
                        None => "no result: the run ended without reporting this host".into(),
                    },
                })
            });
            (name, r)
        })
        .collect()
}

/// [`run_ordered`] for one-shot use: connects, runs, closes every connection.
pub fn run_jobs(
    jobs: Vec<Job>,
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    on_update: &mut dyn FnMut(&str, &HostUpdate),
) -> Vec<HostResult> {
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    let results = run_ordered(&mut slots, binary, plan_only, parallel, on_update);
    close_all(slots);
    results
}

/// Where workers send `(slot index, host name, update)`.
type Send3<'s> = dyn Fn(usize, &str, HostUpdate) + Sync + 's;

/// Starts `parallel` workers over `slots` and waits for them; returns the message of a
/// worker that panicked outside a host's run (its hosts then have no result).
fn run_workers(
    slots: &mut [Slot],
    binary: &AgentBinary,
    plan_only: bool,
    parallel: usize,
    send: &Send3<'_>,
) -> Option<String> {
    let queue = Mutex::new(slots.iter_mut().enumerate());
    let workers = parallel.max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let queue = &queue;
                s.spawn(move || work(queue, binary, plan_only, send))
            })
            .collect();
        let mut panicked = None;
        for h in handles {
            if let Err(payload) = h.join() {
                panicked = Some(panic_message(payload.as_ref()));
            }
        }
        panicked
    })
}

/// The text a panic carried (`panic!("…")`), for errors that name it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// One worker: takes the next slot from `queue` until none is left. A host whose run
/// panics gets an error result; a poisoned queue (another worker panicked while taking a
/// slot) gives every host left an error result rather than none.
fn work<'a, I: Iterator<Item = (usize, &'a mut Slot)>>(
    queue: &Mutex<I>,
    binary: &AgentBinary,
    plan_only: bool,
    send: &Send3<'_>,
) {
    loop {
        let next = match queue.lock() {
            Ok(mut q) => q.next(),
            Err(poisoned) => {
                for (i, slot) in poisoned.into_inner().by_ref() {
                    let name = slot.job.name.clone();
                    let error = HostError::Internal {
                        host: name.clone(),
                        message:
                            "not run: another worker panicked while taking a host from the queue"
                                .into(),
                    };
                    send(i, &name, HostUpdate::Done(Err(error)));
                }
                return;
            }
        };
        let Some((i, slot)) = next else { break };
        let name = slot.job.name.clone();
        send(i, &name, HostUpdate::Started);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_one(slot, binary, plan_only, &mut |e| {
                send(i, &name, HostUpdate::Event(e.clone()));
            })
        }))
        .unwrap_or_else(|payload| {
            Err(HostError::Internal {
                host: name.clone(),
                message: format!("its run panicked: {}", panic_message(payload.as_ref())),
            })
        });
        send(i, &name, HostUpdate::Done(result));
    }
}

/// Closes every host's connection at once (closing an SSH master takes a round trip).
pub fn close_all(slots: Vec<Slot>) {
    std::thread::scope(|s| {
        for slot in slots {
            s.spawn(move || drop(slot));
        }
    });
}

/// Checks the WireGuard mesh ([`crate::mesh::check`]) from every connected slot that has
/// one, all at once, each for at most `timeout`; one result per such slot, in slot order.
pub fn check_meshes(
    slots: &mut [Slot],
    timeout: std::time::Duration,
) -> Vec<(String, Result<Vec<crate::mesh::PeerState>, HostError>)> {
    std::thread::scope(|s| {
        let runs: Vec<_> = slots
            .iter_mut()
            .filter_map(|slot| {
                let check = slot.job.desired.mesh.clone()?;
                let host = slot.host.as_mut()?;
                let name = slot.job.name.clone();
                Some((
                    name,
                    s.spawn(move || crate::mesh::check(host.as_mut(), &check, timeout)),
                ))
            })
            .collect();
        runs.into_iter()
            .map(|(name, run)| {
                let result = run.join().unwrap_or_else(|p| {
                    Err(HostError::Internal {
                        host: name.clone(),
                        message: panic_message(p.as_ref()),
                    })
                });
                (name, result)
            })
            .collect()
    })
}

/// A connection to the job's host (for SSH, the multiplexed one).
pub fn connect(job: &Job) -> Result<Box<dyn Host>, HostError> {
    Ok(match &job.connect {
        Connect::Ssh(t) => Box::new(SshHost::new(t.clone(), job.privilege.clone())?),
        Connect::Local { root } => Box::new(LocalHost {
            name: job.name.clone(),
            root: root.clone(),
            privilege: job.privilege.clone(),
        }),
    })
}

fn run_one(
    slot: &mut Slot,
    binary: &AgentBinary,
    plan_only: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<AgentOutcome, HostError> {
    if slot.host.is_none() {
        slot.host = Some(connect(&slot.job)?);
    }
    match slot.host.as_mut() {
        Some(host) => {
            let mut outcome = host.run_agent(binary, &slot.job.desired, plan_only, on_event)?;
            for pending in outcome.rollbacks.clone() {
                on_event(&Event::GuardWaiting {
                    group: pending.group.clone(),
                    deadline_s: pending.deadline_s,
                });
                let members = crate::guard::members(&slot.job.desired, &pending.group);
                let what = members
                    .files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                match crate::host::wait_rollback(host.as_mut(), &pending) {
                    Ok(crate::host::RollbackOutcome::Kept) => outcome.errors.push(format!(
                        "host {}: guarded group {} ({what}) could not be confirmed at first, yet it was disarmed (a confirmation went through on a connection that failed afterwards): the change is kept and a fresh login works",
                        slot.job.name, pending.group
                    )),
                    Ok(crate::host::RollbackOutcome::RolledBack(after)) => {
                        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                        outcome.errors.push(format!(
                            "host {}: the change to {what} (guarded group {}) would have locked you out: the host rolled it back by itself, and a fresh SSH login works again on the previous settings, {:.1} s after it was applied",
                            slot.job.name,
                            pending.group,
                            after.as_secs_f64()
                        ));
                        on_event(&Event::GuardRestored {
                            group: pending.group.clone(),
                            token: pending.token.clone(),
                            after_ms,
                        });
                    }
                    Err(why) => outcome.errors.push(format!(
                        "host {}: guarded group {} ({what}) was not confirmed, and the host still cannot be reached {} s after its rollback deadline: {why}\n  hint: log in through your provider's console and look at `journalctl -u 'kiln-rollback-*'`",
                        slot.job.name,
                        pending.group,
                        crate::host::ROLLBACK_GRACE.as_secs()
                    )),
                }
            }
            Ok(outcome)
        }
        None => Err(HostError::Unexpected {
            host: slot.job.name.clone(),
            command: "no connection".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{ExecOutput, Expect, FakeHost};
    use std::collections::VecDeque;

    fn binary() -> AgentBinary {
        AgentBinary::from_bytes(vec![], "/nonexistent")
    }

    fn job(name: &str) -> Job {
        Job {
            name: name.into(),
            connect: Connect::Local {
                root: Some("/nonexistent".into()),
            },
            privilege: Privilege::Root,
            desired: DesiredState::default(),
        }
    }

    #[test]
    fn a_poisoned_queue_is_an_error_for_every_host_left_not_a_silent_stop() {
        let mut slots = [Slot::new(job("a")), Slot::new(job("b"))];
        let queue = Mutex::new(slots.iter_mut().enumerate());
        // Another worker panicked while holding the queue.
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = queue.lock();
                panic!("worker bug");
            })
            .join()
        });
        assert!(queue.is_poisoned());
        let (tx, rx) = std::sync::mpsc::channel();
        let send = |_: usize, name: &str, u: HostUpdate| {
            let _ = tx.send((name.to_owned(), u));
        };
        work(&queue, &binary(), true, &send);
        drop(tx);
        let done: Vec<(String, String)> = rx
            .into_iter()
            .filter_map(|(name, u)| match u {
                HostUpdate::Done(Err(e)) => Some((name, e.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(done[0].0, "a");
        assert!(done[0].1.starts_with("host a: "), "{done:?}");
        assert!(done[1].1.contains("panicked"), "{done:?}");
    }

    /// A host whose transport has a bug.
    struct Panicking;
    impl Host for Panicking {
        fn name(&self) -> &str {
            "boom"
        }
        fn privilege(&self) -> &Privilege {
            &Privilege::Root
        }
        fn exec(
            &mut self,
            _: &str,
            _: &[u8],
            _: &mut dyn FnMut(&str),
        ) -> Result<ExecOutput, HostError> {
            panic!("transport bug")
        }
    }

    fn finishing_host(name: &str) -> Box<dyn Host> {
        let finished = serde_json::to_string(&Event::Finished {
            applied: 0,
            failed: false,
            plan_only: true,
            ms: 1,
        })
        .unwrap();
        Box::new(FakeHost {
            name: name.into(),
            privilege: Privilege::Root,
            script: VecDeque::from([Expect {
                contains: vec![],
                stdout: vec![finished],
                code: 0,
                stderr: String::new(),
            }]),
            received: vec![],
            fresh: Default::default(),
        })
    }

    #[test]
    fn run_ordered_returns_every_host_in_job_order_and_a_panic_as_that_hosts_error() {
        for parallel in [1, 3] {
            let mut slots = vec![
                Slot::with_host(job("c"), finishing_host("c")),
                Slot::with_host(job("boom"), Box::new(Panicking)),
                Slot::with_host(job("a"), finishing_host("a")),
            ];
            let mut seen = vec![];
            let results = run_ordered(&mut slots, &binary(), true, parallel, &mut |h, u| {
                if matches!(u, HostUpdate::Done(_)) {
                    seen.push(h.to_owned());
                }
            });
            let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["c", "boom", "a"]);
            assert!(results[0].1.is_ok() && results[2].1.is_ok(), "{results:?}");
            let err = results[1].1.as_ref().unwrap_err().to_string();
            assert!(
                err.starts_with("host boom: ") && err.contains("transport bug"),
                "{err}"
            );
            seen.sort();
            assert_eq!(seen, ["a", "boom", "c"]);
        }
    }
}
