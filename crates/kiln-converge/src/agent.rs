//! The agent, run on the host as `kiln agent`: read the desired state from stdin, detect
//! facts, observe, plan, apply (unless plan-only), and report everything as events.
//!
//! [`main`] is the one entry point of every agent binary (the `kiln agent` command and the
//! standalone `kiln-converge-agent` the transport tests ship): it takes parsed [`Options`]
//! and the process's stdin/stdout and returns the exit status. The CLI only maps its clap
//! arguments onto [`Options`]; [`parse_args`] does the same for the standalone binary.
//! Tests call [`run`] directly with a temporary root.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::{Event, EventSink};
use crate::facts::Facts;
use crate::resource::DesiredState;
use crate::system::Target;

/// The line that precedes the JSON desired state on the agent's stdin. Anything before it
/// (e.g. a sudo password line that sudo did not need to read) is skipped, never parsed.
pub const INPUT_MARKER: &str = "KILN-AGENT-INPUT-V1";

/// Exit code of the remote wrapper when the agent binary is not on the host yet.
pub const AGENT_MISSING_EXIT: i32 = 97;

/// Exit status of a successful agent run.
pub const EXIT_OK: u8 = 0;
/// Exit status when the agent reported a failure (its events say which).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for arguments the agent does not understand.
pub const EXIT_USAGE: u8 = 2;

/// What the agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Observe, plan and (unless `plan_only`) apply the desired state read from stdin.
    Run { plan_only: bool },
    /// Confirm a guarded group ([`crate::guard::disarm`]); run by the laptop over a fresh
    /// connection after [`Event::GuardArmed`].
    Disarm { token: String },
    /// Roll a guarded group back ([`crate::guard::rollback`]); run by its timer.
    Rollback { token: String },
}

/// The agent's parsed command line (`agent [--plan-only] [--root DIR]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    /// Converge this folder as if it were `/` (tests: files, directories, symlinks only).
    pub root: PathBuf,
    /// `user@laptop` of who started the run, recorded in the host's lock.
    pub operator: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Run { plan_only: false },
            root: PathBuf::from("/"),
            operator: None,
        }
    }
}

/// Usage of the agent's command line, for the standalone binary's errors.
pub const USAGE: &str = "usage: agent [--plan-only] [--root DIR] [--operator USER@HOST] [disarm TOKEN | rollback TOKEN]";

/// How long a rollback waits for the host lock (an apply still running on the host).
pub const ROLLBACK_LOCK_WAIT: Duration = Duration::from_secs(15 * 60);

/// Parses the words after `agent` (the standalone binary; the CLI uses clap).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut plan_only = false;
    let mut mode = None;
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "disarm" | "rollback" if mode.is_none() => {
                let Some(token) = args.next() else {
                    return Err(format!("{a} needs a TOKEN"));
                };
                mode = Some(if a == "disarm" {
                    Mode::Disarm { token }
                } else {
                    Mode::Rollback { token }
                });
            }
            "--plan-only" => plan_only = true,
            "--root" => match args.next() {
                Some(r) => opts.root = r.into(),
                None => return Err("--root needs a folder".into()),
            },
            "--operator" => match args.next() {
                Some(o) => opts.operator = Some(o),
                None => return Err("--operator needs USER@HOST".into()),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    opts.mode = match mode {
        Some(_) if plan_only => return Err("--plan-only goes with no disarm/rollback".into()),
        Some(m) => m,
        None => Mode::Run { plan_only },
    };
    Ok(opts)
}

/// Writes each event as one JSON line, flushed at once (the laptop renders them live).
/// Write errors are ignored: the laptop may have gone away, and the run goes on regardless.
pub struct JsonLines<'a>(pub &'a mut dyn Write);

impl EventSink for JsonLines<'_> {
    fn emit(&mut self, event: Event) {
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// Points [`crate::host::AGENT_LINK`] at this very agent (when it is a shipped one, under
/// [`crate::host::AGENT_DIR`]): what the host's own timers (backups) run, always the
/// agent of the last apply.
fn link_current_agent() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot tell which agent runs: {e}"))?;
    let dir = std::path::Path::new(crate::host::AGENT_DIR);
    if exe.parent() != Some(dir) {
        return Ok(());
    }
    let link = std::path::Path::new(crate::host::AGENT_LINK);
    if std::fs::read_link(link).ok().as_deref() == Some(exe.as_path()) {
        return Ok(());
    }
    let tmp = dir.join(".kiln.link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp)
        .and_then(|()| std::fs::rename(&tmp, link))
        .map_err(|e| format!("cannot point {} at {}: {e}", link.display(), exe.display()))
}

/// The agent binary's main: runs `opts` with the process's `stdin` and `stdout` and
/// returns the exit status ([`EXIT_OK`], [`EXIT_FAILED`]). Every outcome, including a
/// stdin that cannot be read, is reported as events on `stdout`.
pub fn main(opts: &Options, stdin: &mut dyn Read, stdout: &mut dyn Write) -> u8 {
    let mut sink = JsonLines(stdout);
    let ok = match &opts.mode {
        Mode::Run { plan_only } => {
            let mut input = Vec::new();
            if let Err(e) = stdin.read_to_end(&mut input) {
                sink.emit(Event::Error {
                    message: format!("cannot read the desired state on stdin: {e}"),
                });
                sink.emit(Event::Finished {
                    applied: 0,
                    failed: true,
                    plan_only: *plan_only,
                    ms: 0,
                });
                return EXIT_FAILED;
            }
            if !*plan_only
                && opts.root == std::path::Path::new("/")
                && let Err(message) = link_current_agent()
            {
                sink.emit(Event::Warning { message });
            }
            let mut target = Target {
                root: opts.root.clone(),
                runner: Box::new(crate::system::SystemRunner),
            };
            let run_opts = RunOptions {
                plan_only: *plan_only,
                operator: opts.operator.clone(),
                ..RunOptions::default()
            };
            run_with(&mut target, &input, &run_opts, &mut sink)
        }
        Mode::Disarm { token } => {
            let mut target = Target {
                root: opts.root.clone(),
                runner: Box::new(crate::system::SystemRunner),
            };
            match crate::guard::disarm(&mut target, token) {
                Ok(warning) => {
                    if let Some(message) = warning {
                        sink.emit(Event::Warning { message });
                    }
                    sink.emit(Event::GuardDisarmed {
                        token: token.clone(),
                    });
                    true
                }
                Err(e) => {
                    sink.emit(Event::Error {
                        message: e.to_string(),
                    });
                    false
                }
            }
        }
        Mode::Rollback { token } => {
            let mut target = Target {
                root: opts.root.clone(),
                runner: Box::new(crate::system::SystemRunner),
            };
            rollback_from_timer(&mut target, token, opts.operator.clone(), &mut sink)
        }
    };
    if ok { EXIT_OK } else { EXIT_FAILED }
}

/// The rollback timer's run: under the host lock (waiting up to [`ROLLBACK_LOCK_WAIT`]
/// for an apply still running), roll `token` back unless it was disarmed meanwhile. When
/// the lock cannot be had it rolls back anyway, with a warning: a host the operator is
/// locked out of is worse than a rollback alongside another run.
pub fn rollback_from_timer(
    target: &mut Target,
    token: &str,
    operator: Option<String>,
    sink: &mut dyn EventSink,
) -> bool {
    rollback_with_wait(target, token, operator, ROLLBACK_LOCK_WAIT, sink)
}

fn rollback_with_wait(
    target: &mut Target,
    token: &str,
    operator: Option<String>,
    wait: Duration,
    sink: &mut dyn EventSink,
) -> bool {
    let holder = crate::lock::Holder::now("rollback", operator);
    let _lock = match crate::lock::acquire(target, &holder, wait) {
        Ok(l) => Some(l),
        Err(e) => {
            sink.emit(Event::Warning {
                message: format!("rollback {token}: rolling back without the host lock: {e}"),
            });
            None
        }
    };
    match crate::guard::rollback(target, token, true) {
        Ok(Some(done)) => {
            for e in &done.errors {
                sink.emit(Event::Error {
                    message: format!("guarded group {}: rollback: {e}", done.group),
                });
            }
            sink.emit(Event::GuardRolledBack {
                group: done.group.clone(),
                token: token.to_owned(),
                reason: "not confirmed over a fresh connection in time".into(),
            });
            done.errors.is_empty()
        }
        Ok(None) => {
            sink.emit(Event::Warning {
                message: format!("guard {token}: nothing to roll back (it was confirmed)"),
            });
            true
        }
        Err(e) => {
            sink.emit(Event::Error {
                message: e.to_string(),
            });
            false
        }
    }
}

/// Extracts the JSON document that follows [`INPUT_MARKER`].
pub fn parse_input(stdin: &[u8]) -> Result<DesiredState, String> {
    let text = std::str::from_utf8(stdin).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let mut rest = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == INPUT_MARKER {
            rest = Some(&text[offset..]);
            break;
        }
    }
    let json = rest.ok_or_else(|| format!("input has no {INPUT_MARKER} line"))?;
    let desired: DesiredState =
        serde_json::from_str(json).map_err(|e| format!("invalid desired state: {e}"))?;
    desired.validate().map_err(|e| e.to_string())?;
    Ok(desired)
}

/// Frames a desired state for the agent's stdin.
pub fn frame_input(desired: &DesiredState) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = format!("{INPUT_MARKER}\n").into_bytes();
    serde_json::to_writer(&mut out, desired)?;
    out.push(b'\n');
    Ok(out)
}

fn detect(target: &Target) -> Option<Facts> {
    let text = std::fs::read_to_string(target.path(Path::new("/etc/os-release")))
        .or_else(|_| std::fs::read_to_string(target.path(Path::new("/usr/lib/os-release"))))
        .ok()?;
    Facts::from_os_release(&text)
}

/// How [`run_with`] runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan_only: bool,
    /// Recorded in the host's lock (apply only).
    pub operator: Option<String>,
    /// How long an apply waits for another run's lock before it is refused.
    pub lock_wait: Duration,
    /// How long an apply waits for the proxy's missing certificates ([`crate::certs`]).
    pub certificate_wait: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            plan_only: false,
            operator: None,
            lock_wait: crate::lock::DEFAULT_WAIT,
            certificate_wait: crate::certs::SETTLE_WAIT,
        }
    }
}

/// Runs the agent on `target`. Returns true when everything succeeded.
pub fn run(target: &mut Target, stdin: &[u8], plan_only: bool, sink: &mut dyn EventSink) -> bool {
    let opts = RunOptions {
        plan_only,
        ..RunOptions::default()
    };
    run_with(target, stdin, &opts, sink)
}

/// Runs the agent on `target` with `opts`. An apply holds the host's lock
/// ([`crate::lock`]) from before it observes until it is done; a plan takes none.
pub fn run_with(
    target: &mut Target,
    stdin: &[u8],
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> bool {
    let plan_only = opts.plan_only;
    let start = Instant::now();
    let finish = |sink: &mut dyn EventSink, applied, failed| {
        sink.emit(Event::Finished {
            applied,
            failed,
            plan_only,
            ms: start.elapsed().as_millis() as u64,
        });
        !failed
    };
    let desired = match parse_input(stdin) {
        Ok(d) => d,
        Err(message) => {
            sink.emit(Event::Error { message });
            return finish(sink, 0, true);
        }
    };
    let facts = detect(target);
    sink.emit(Event::Started {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        facts: facts.clone(),
    });
    if let (Some(want), Some(have)) = (desired.os, facts.as_ref())
        && want != have.os
    {
        sink.emit(Event::Error {
            message: format!(
                "host {}: kiln.toml says os {:?} but the host runs {} ({:?})",
                desired.host, want, have.pretty_name, have.os
            ),
        });
        return finish(sink, 0, true);
    }
    // One writer per host: taken before observing, so the plan checked against the
    // confirmed one below is the state this run then changes.
    let _lock = if plan_only {
        None
    } else {
        let holder = crate::lock::Holder::now("apply", opts.operator.clone());
        match crate::lock::acquire(target, &holder, opts.lock_wait) {
            Ok(l) => Some(l),
            Err(e) => {
                sink.emit(Event::Error {
                    message: format!("host {}: {e}", desired.host),
                });
                return finish(sink, 0, true);
            }
        }
    };
    let observed = match crate::observe::observe(target, facts.as_ref(), &desired) {
        Ok(o) => o,
        Err(e) => {
            sink.emit(Event::Error {
                message: format!("host {}: observing: {e}", desired.host),
            });
            return finish(sink, 0, true);
        }
    };
    if plan_only {
        sink.emit(Event::Observed {
            units: desired
                .units
                .iter()
                .filter_map(|u| observed.units.get(&u.name).map(|s| (u.name.clone(), *s)))
                .collect(),
            containers: observed.containers.clone(),
        });
    }
    let certificates = desired
        .certificates
        .as_ref()
        .map(|watch| (watch, crate::certs::observe(target, watch)));
    if plan_only && let Some((_, states)) = &certificates {
        sink.emit(Event::Certificates {
            certificates: states.clone(),
            waited_ms: 0,
            issued_now: vec![],
        });
    }
    let plan = match crate::plan::plan(&desired, &observed) {
        Ok(mut p) => {
            if let Some((watch, states)) = &certificates {
                p.warnings
                    .extend(crate::certs::staging_warning(watch, states));
            }
            p
        }
        Err(e) => {
            sink.emit(Event::Error {
                message: e.to_string(),
            });
            return finish(sink, 0, true);
        }
    };
    sink.emit(Event::Planned {
        plan: plan.clone(),
        observe_ms: start.elapsed().as_millis() as u64,
    });
    if plan_only {
        return finish(sink, 0, false);
    }
    for message in &plan.warnings {
        sink.emit(Event::Warning {
            message: message.clone(),
        });
    }
    if let Some(expected) = &desired.expect_plan
        && *expected != plan.fingerprint()
    {
        sink.emit(Event::Error {
            message: format!(
                "host {}: its state changed since the plan was shown (plan {} expected, {} now); nothing applied\n  hint: run `kiln apply` again to see the new plan",
                desired.host,
                expected,
                plan.fingerprint()
            ),
        });
        return finish(sink, 0, true);
    }
    let applied_at = std::time::SystemTime::now();
    let (applied, ok) = crate::apply::apply(
        target,
        facts.as_ref(),
        &desired,
        &observed.owned,
        &plan,
        sink,
    );
    if let Some((watch, before)) = certificates {
        // A new or reloaded proxy orders what it lacks: give it the time to (or to say why
        // not). Without a change, what was observed is the answer.
        let (states, waited) = if applied > 0 {
            crate::certs::settle(target, watch, applied_at, opts.certificate_wait)
        } else {
            (before.clone(), std::time::Duration::ZERO)
        };
        let t = crate::certs::now();
        let issued_now = states
            .iter()
            .filter(|s| s.valid_at(t))
            .filter(|s| !before.iter().any(|b| b.name == s.name && b.valid_at(t)))
            .map(|s| s.name.clone())
            .collect();
        sink.emit(Event::Certificates {
            certificates: states,
            waited_ms: waited.as_millis() as u64,
            issued_now,
        });
    }
    finish(sink, applied, !ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parse_args_reads_the_flags_and_refuses_others() {
        let o = parse_args(words("--plan-only --root /tmp/r")).unwrap();
        assert_eq!(o.mode, Mode::Run { plan_only: true });
        assert_eq!(o.root, PathBuf::from("/tmp/r"));
        assert_eq!(parse_args(words("")).unwrap(), Options::default());
        assert!(parse_args(words("--root")).is_err());
        assert!(
            parse_args(words("--frobnicate"))
                .unwrap_err()
                .contains("--frobnicate")
        );
    }

    #[test]
    fn a_rollback_that_cannot_have_the_lock_still_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target {
            root: dir.path().to_owned(),
            runner: Box::new(crate::system::ScriptedRunner::default()),
        };
        let d: DesiredState = serde_json::from_str(
            r#"{"host":"web","files":[{"path":"/etc/ssh/kiln.conf","content":"x","guard":"ssh"}]}"#,
        )
        .unwrap();
        let token = crate::guard::arm(&mut t, &d, "ssh", 5).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssh")).unwrap();
        std::fs::write(dir.path().join("etc/ssh/kiln.conf"), "Port 2222\n").unwrap();
        let _other =
            crate::lock::acquire(&t, &crate::lock::Holder::now("apply", None), Duration::ZERO)
                .unwrap();
        let mut events = vec![];
        assert!(rollback_with_wait(
            &mut t,
            &token,
            None,
            Duration::ZERO,
            &mut events
        ));
        assert!(
            matches!(&events[0], Event::Warning { message } if message.contains("without the host lock")),
            "{events:?}"
        );
        assert!(matches!(events[1], Event::GuardRolledBack { .. }));
        assert!(!dir.path().join("etc/ssh/kiln.conf").exists());
    }

    #[test]
    fn a_plan_reports_the_proxys_certificates_and_warns_before_a_first_production_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target {
            root: dir.path().to_owned(),
            runner: Box::new(crate::system::ScriptedRunner::default()),
        };
        let desired = |ca: &str| {
            format!(
                r#"{{"host":"web","certificates":{{"container":"kiln-proxy","store":{{"kind":"caddy","dir":"/data/caddy/certificates"}},"ca":"{ca}","names":["a.example.org"]}}}}"#
            )
        };
        let run = |t: &mut Target, ca: &str| {
            let input = frame_input(&parse_input_json(&desired(ca))).unwrap();
            let mut events: Vec<Event> = vec![];
            assert!(run(t, &input, true, &mut events), "{events:?}");
            events
        };
        let events = run(&mut t, "letsencrypt");
        let Some(Event::Certificates { certificates, .. }) = events
            .iter()
            .find(|e| matches!(e, Event::Certificates { .. }))
        else {
            panic!("{events:?}")
        };
        assert_eq!(certificates.len(), 1);
        assert!(certificates[0].issued.is_none());
        let Some(Event::Planned { plan, .. }) =
            events.iter().find(|e| matches!(e, Event::Planned { .. }))
        else {
            panic!("{events:?}")
        };
        assert_eq!(plan.warnings.len(), 1, "{plan:?}");
        assert!(plan.warnings[0].contains("staging CA never issued: a.example.org"));
        // The staging CA itself: no warning.
        let events = run(&mut t, "letsencrypt-staging");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Planned { plan, .. } if plan.warnings.is_empty()))
        );
    }

    fn parse_input_json(json: &str) -> DesiredState {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn main_reports_bad_input_as_events_and_a_failure_status() {
        let mut out = Vec::new();
        let code = main(&Options::default(), &mut &b"no marker here\n"[..], &mut out);
        assert_eq!(code, EXIT_FAILED);
        let events: Vec<Event> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            matches!(&events[0], Event::Error { message } if message.contains(INPUT_MARKER)),
            "{events:?}"
        );
        assert!(matches!(
            events.last(),
            Some(Event::Finished { failed: true, .. })
        ));
    }
}
