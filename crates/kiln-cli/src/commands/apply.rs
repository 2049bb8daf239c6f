//! `kiln apply`: shows the plan, asks for confirmation (or `--yes`), then converges all
//! hosts in parallel with bounded concurrency, with live per-host progress (bars on a
//! terminal, plain lines otherwise, JSON lines with `--json`). A failing host does not stop
//! the others; the summary says what failed where and why, and the exit code is non-zero.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_converge::Plan;
use kiln_converge::event::Event;
use kiln_converge::host::AgentBinary;
use kiln_converge::run::{HostUpdate, Slot, close_all, run_slots};

use super::plan::{Targeting, agent_binary, render_plan, select_jobs};
use super::plan::{out, outln};
use crate::GlobalArgs;
use crate::error::{self, CliError, CmdResult};

/// Bring hosts to the declared state.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Targeting,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the agents' events as JSON lines (each with a "host" field), nothing else.
    #[arg(long)]
    pub json: bool,
}

enum Renderer {
    Json,
    Plain,
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
}

impl Renderer {
    fn event(&mut self, host: &str, update: &HostUpdate) {
        match self {
            Renderer::Json => {
                let mut v = match update {
                    HostUpdate::Event(e) => serde_json::to_value(e).unwrap_or_default(),
                    HostUpdate::Started => serde_json::json!({ "event": "connecting" }),
                    HostUpdate::Done(Ok(_)) => serde_json::json!({ "event": "host-done" }),
                    HostUpdate::Done(Err(e)) => {
                        serde_json::json!({ "event": "host-failed", "error": e.to_string() })
                    }
                };
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("host".into(), host.into());
                }
                outln!("{v}");
            }
            Renderer::Plain => match update {
                HostUpdate::Started => eprintln!("[{host}] connecting"),
                HostUpdate::Event(Event::Applying {
                    index,
                    total,
                    id,
                    op,
                }) => {
                    eprintln!("[{host}] ({}/{total}) {op} {id}", index + 1)
                }
                HostUpdate::Event(Event::Failed { id, op, error, .. }) => {
                    eprintln!("[{host}] FAILED {op} {id}: {error}")
                }
                HostUpdate::Event(Event::Warning { message }) => {
                    eprintln!("[{host}] warning: {message}")
                }
                HostUpdate::Event(Event::Error { message }) => {
                    eprintln!("[{host}] error: {message}")
                }
                HostUpdate::Event(Event::Finished { applied, ms, .. }) => {
                    eprintln!("[{host}] done: {applied} change(s) in {ms} ms")
                }
                _ => {}
            },
            Renderer::Bars { multi, bars } => {
                let bar = bars.entry(host.to_owned()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix(host.to_owned());
                    b
                });
                match update {
                    HostUpdate::Started => bar.set_message("connecting"),
                    HostUpdate::Event(Event::Planned { plan, .. }) => {
                        bar.set_length(plan.changes.len() as u64);
                        bar.set_message("applying");
                    }
                    HostUpdate::Event(Event::Applying { id, op, .. }) => {
                        bar.set_message(format!("{op} {id}"))
                    }
                    HostUpdate::Event(Event::Applied { .. }) => bar.inc(1),
                    HostUpdate::Event(Event::Warning { message }) => {
                        let _ = multi.println(format!("[{host}] warning: {message}"));
                    }
                    HostUpdate::Event(Event::Failed { id, op, .. }) => {
                        bar.set_message(format!("FAILED {op} {id}"))
                    }
                    HostUpdate::Done(Ok(o)) if !o.failed => bar.finish_with_message("done"),
                    HostUpdate::Done(_) => bar.abandon_with_message("failed"),
                    _ => {}
                }
            }
        }
    }
}

fn confirm() -> Result<bool, CliError> {
    eprint!("Apply these changes? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(miette::miette!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Plans every host over its slot's connection (kept for the apply that follows) and pins
/// each host's plan: the agent then applies exactly that plan, or refuses. Returns the plans
/// in slot order; any host that could not be planned fails the whole step.
pub fn plan_pinned(
    slots: &mut [Slot],
    binary: &AgentBinary,
    parallel: usize,
) -> Result<Vec<(String, Plan)>, CliError> {
    let (tx, rx) = mpsc::channel();
    let mut results = BTreeMap::new();
    std::thread::scope(|s| {
        s.spawn(|| run_slots(slots, binary, true, parallel, tx));
        for (name, update) in rx {
            if let HostUpdate::Done(r) = update {
                results.insert(name, r);
            }
        }
    });
    let mut plans = vec![];
    let mut failures = vec![];
    for slot in slots.iter_mut() {
        let name = slot.job.name.clone();
        match results.remove(&name) {
            Some(Ok(o)) if !o.failed => match o.plan {
                Some(p) => {
                    // Apply exactly this plan, or nothing.
                    slot.job.desired.expect_plan = Some(p.fingerprint());
                    plans.push((name, p));
                }
                None => failures.push(format!("{name}: the agent reported no plan")),
            },
            Some(Ok(o)) => failures.push(format!("{name}: {}", o.errors.join("; "))),
            Some(Err(e)) => failures.push(e.to_string()),
            None => failures.push(format!("{name}: no result (internal error)")),
        }
    }
    if !failures.is_empty() {
        return Err(CliError::failed(miette::miette!(
            "planning failed, nothing was applied:\n{}",
            failures.join("\n")
        )));
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
    /// One line per failed host: `  host: why`.
    pub failed: Vec<String>,
    pub elapsed: Duration,
}

/// Applies every slot's desired state with live per-host progress on stderr (bars on a
/// terminal, plain lines otherwise; JSON lines on stdout with `json`).
pub fn apply_slots(
    slots: &mut [Slot],
    binary: &AgentBinary,
    parallel: usize,
    json: bool,
) -> ApplyReport {
    let names: Vec<String> = slots.iter().map(|s| s.job.name.clone()).collect();
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut renderer = if json {
        Renderer::Json
    } else if std::io::stderr().is_terminal() {
        Renderer::Bars {
            multi: MultiProgress::new(),
            bars: BTreeMap::new(),
        }
    } else {
        Renderer::Plain
    };
    let mut results = BTreeMap::new();
    std::thread::scope(|s| {
        s.spawn(|| run_slots(slots, binary, false, parallel, tx));
        for (host, update) in rx {
            renderer.event(&host, &update);
            if let HostUpdate::Done(r) = update {
                results.insert(host, r);
            }
        }
    });
    let mut failed = vec![];
    let mut changed = 0;
    for name in &names {
        match results.get(name) {
            Some(Ok(o)) if !o.failed => changed += o.applied,
            Some(Ok(o)) => failed.push(format!("  {name}: {}", o.errors.join("; "))),
            Some(Err(e)) => failed.push(format!("  {e}")),
            None => failed.push(format!("  {name}: no result (internal error)")),
        }
    }
    ApplyReport {
        changed,
        hosts: names.len(),
        failed,
        elapsed: start.elapsed(),
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> CmdResult {
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !tty {
        return Err(CliError::invalid(miette::miette!(
            "kiln apply needs confirmation: not on a terminal, so pass --yes (after checking `kiln plan`)"
        )));
    }
    let jobs = select_jobs(global, &args.target)?;
    let binary = agent_binary()?;
    // One slot per host: the plan shown and the apply share one SSH connection.
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    if !args.yes {
        let plans = plan_pinned(&mut slots, &binary, args.target.jobs)?;
        let mut any = false;
        for (name, p) in &plans {
            out!("{}", render_plan(name, p));
            any |= !p.is_empty();
        }
        if !any {
            outln!("Nothing to do.");
            return Ok(ExitCode::from(error::SUCCESS));
        }
        if !confirm()? {
            outln!("Nothing applied.");
            return Ok(ExitCode::from(error::SUCCESS));
        }
    }

    let report = apply_slots(&mut slots, &binary, args.target.jobs, args.json);
    close_all(slots);
    if !args.json {
        outln!(
            "Applied {} change(s) on {} host(s) in {:.1} s; {} failed.",
            report.changed,
            report.hosts - report.failed.len(),
            report.elapsed.as_secs_f64(),
            report.failed.len()
        );
    }
    if report.failed.is_empty() {
        Ok(ExitCode::from(error::SUCCESS))
    } else {
        Err(CliError::failed(miette::miette!(
            "{} host(s) failed:\n{}",
            report.failed.len(),
            report.failed.join("\n")
        )))
    }
}
