//! The agent's main loop, run on the host as `kiln agent`: read the desired state from
//! stdin, detect facts, observe, plan, apply (unless plan-only), and report everything as
//! events. The CLI wraps this with stdin/stdout; tests call it with a temporary root.

use std::path::Path;
use std::time::Instant;

use crate::event::{Event, EventSink};
use crate::facts::Facts;
use crate::resource::DesiredState;
use crate::system::Target;

/// The line that precedes the JSON desired state on the agent's stdin. Anything before it
/// (e.g. a sudo password line that sudo did not need to read) is skipped, never parsed.
pub const INPUT_MARKER: &str = "KILN-AGENT-INPUT-V1";

/// Exit code of the remote wrapper when the agent binary is not on the host yet.
pub const AGENT_MISSING_EXIT: i32 = 97;

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

/// Runs the agent on `target`. Returns true when everything succeeded.
pub fn run(target: &mut Target, stdin: &[u8], plan_only: bool, sink: &mut dyn EventSink) -> bool {
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
    let observed = match crate::observe::observe(target, facts.as_ref(), &desired) {
        Ok(o) => o,
        Err(e) => {
            sink.emit(Event::Error {
                message: format!("host {}: observing: {e}", desired.host),
            });
            return finish(sink, 0, true);
        }
    };
    let plan = match crate::plan::plan(&desired, &observed) {
        Ok(p) => p,
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
    let (applied, ok) = crate::apply::apply(
        target,
        facts.as_ref(),
        &desired,
        &observed.owned,
        &plan,
        sink,
    );
    finish(sink, applied, !ok)
}
