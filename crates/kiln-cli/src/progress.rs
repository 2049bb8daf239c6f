//! Live per-host progress of an apply: bars on a terminal, plain lines on stderr
//! otherwise, JSON lines (each with a "host" field) on stdout with `--json`.

use std::collections::BTreeMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_converge::event::Event;
use kiln_converge::run::HostUpdate;

use crate::printer::Printer;

/// How apply progress is shown.
pub enum Renderer {
    Json(Printer),
    Plain(Printer),
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
}

impl Renderer {
    /// JSON lines with `json`; bars on a terminal; plain lines otherwise.
    pub fn new(printer: Printer, json: bool) -> Renderer {
        if json {
            Renderer::Json(printer)
        } else if printer.stderr_is_terminal() {
            Renderer::Bars {
                multi: MultiProgress::new(),
                bars: BTreeMap::new(),
            }
        } else {
            Renderer::Plain(printer)
        }
    }

    fn event(&mut self, host: &str, update: &HostUpdate) {
        match self {
            Renderer::Json(p) => {
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
                p.outln(v);
            }
            Renderer::Plain(p) => match update {
                HostUpdate::Started => p.note(format_args!("[{host}] connecting")),
                HostUpdate::Event(Event::Applying {
                    index,
                    total,
                    id,
                    op,
                }) => p.note(format_args!("[{host}] ({}/{total}) {op} {id}", index + 1)),
                HostUpdate::Event(Event::Failed { id, op, error, .. }) => {
                    p.note(format_args!("[{host}] FAILED {op} {id}: {error}"))
                }
                HostUpdate::Event(Event::Warning { message }) => {
                    p.note(format_args!("[{host}] warning: {message}"))
                }
                HostUpdate::Event(Event::Healthy { unit, ms, .. }) => p.note(format_args!(
                    "[{host}] {unit} is healthy ({:.1} s)",
                    *ms as f64 / 1000.0
                )),
                HostUpdate::Event(
                    e @ (Event::GuardArmed { .. }
                    | Event::GuardConfirmed { .. }
                    | Event::GuardUnconfirmed { .. }
                    | Event::GuardRolledBack { .. }
                    | Event::GuardWaiting { .. }
                    | Event::GuardRestored { .. }),
                ) => {
                    if let Some(line) = guard_line(e) {
                        p.note(format_args!("[{host}] {line}"))
                    }
                }
                HostUpdate::Event(e @ Event::Certificates { .. }) => {
                    for line in certificate_lines(e) {
                        p.note(format_args!("[{host}] {line}"))
                    }
                }
                HostUpdate::Event(e @ Event::Mesh { .. }) => {
                    for line in mesh_lines(e) {
                        p.note(format_args!("[{host}] {line}"))
                    }
                }
                HostUpdate::Event(Event::Error { message }) => {
                    p.note(format_args!("[{host}] error: {message}"))
                }
                HostUpdate::Event(Event::Finished { applied, ms, .. }) => p.note(format_args!(
                    "[{host}] done: {applied} change(s) in {ms} ms"
                )),
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
                    HostUpdate::Event(Event::Healthy { unit, ms, .. }) => {
                        let _ = multi.println(format!(
                            "[{host}] {unit} is healthy ({:.1} s)",
                            *ms as f64 / 1000.0
                        ));
                    }
                    HostUpdate::Event(e @ Event::Certificates { .. }) => {
                        for line in certificate_lines(e) {
                            let _ = multi.println(format!("[{host}] {line}"));
                        }
                    }
                    HostUpdate::Event(e @ Event::Mesh { .. }) => {
                        for line in mesh_lines(e) {
                            let _ = multi.println(format!("[{host}] {line}"));
                        }
                    }
                    HostUpdate::Event(e) if guard_line(e).is_some() => {
                        if let Some(line) = guard_line(e) {
                            let _ = multi.println(format!("[{host}] {line}"));
                        }
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

/// What the mesh check after an apply says: one line per WireGuard peer.
fn mesh_lines(e: &Event) -> Vec<String> {
    let Event::Mesh { peers } = e else {
        return vec![];
    };
    peers
        .iter()
        .map(|p| match p.handshake_age_s {
            Some(age) => format!(
                "WireGuard: handshake with {} ({}) {age} s ago",
                p.name, p.address
            ),
            None => format!(
                "WireGuard: NO handshake with {} ({}, public key {})",
                p.name, p.address, p.public_key
            ),
        })
        .collect()
}

/// What an apply says of the proxy's certificates: each name it waited for, and every
/// name still pending (nothing when all were already there).
fn certificate_lines(e: &Event) -> Vec<String> {
    let Event::Certificates {
        certificates,
        waited_ms,
        issued_now,
    } = e
    else {
        return vec![];
    };
    let now = kiln_converge::certs::now();
    certificates
        .iter()
        .filter(|c| !c.valid_at(now) || issued_now.contains(&c.name))
        .map(|c| {
            let l = crate::render::certs::line(c, now);
            if c.valid_at(now) {
                format!("certificate {l}")
            } else {
                format!("warning: certificate {l}")
            }
        })
        .chain((*waited_ms > 0).then(|| {
            format!(
                "certificates settled in {:.1} s",
                *waited_ms as f64 / 1000.0
            )
        }))
        .collect()
}

/// What a guarded group's events say, in one line.
fn guard_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::GuardArmed {
            group, deadline_s, ..
        } => format!(
            "guarded {group}: applied, rollback armed ({deadline_s} s to prove a fresh login)"
        ),
        Event::GuardConfirmed { group, .. } => {
            format!("guarded {group}: a fresh SSH login works, changes kept")
        }
        Event::GuardUnconfirmed { group, error, .. } => format!(
            "guarded {group}: NOT confirmed ({error}); the host rolls it back at its deadline"
        ),
        Event::GuardRolledBack { group, reason, .. } => {
            format!("guarded {group}: rolled back ({reason})")
        }
        Event::GuardWaiting { group, deadline_s } => format!(
            "guarded {group}: waiting for the host to roll it back (deadline {deadline_s} s after it was applied)"
        ),
        Event::GuardRestored {
            group, after_ms, ..
        } => format!(
            "guarded {group}: ROLLED BACK by the host; a fresh SSH login works again, {:.1} s after it was applied",
            *after_ms as f64 / 1000.0
        ),
        _ => return None,
    })
}

impl kiln_ops::session::SessionSink for Renderer {
    fn update(&mut self, host: &str, update: &HostUpdate) {
        self.event(host, update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::certs::{CertificateState, Issued};

    fn state(name: &str, issued: bool) -> CertificateState {
        CertificateState {
            name: name.into(),
            issued: issued.then(|| Issued {
                issuer: "Pebble Intermediate CA 1a".into(),
                not_after: kiln_converge::certs::now() + 86_400 * 6 + 60,
                staging: false,
            }),
            staging_seen: false,
            error: (!issued).then(|| "connection refused".into()),
        }
    }

    #[test]
    fn apply_names_the_certificates_it_got_and_those_still_pending_only() {
        let e = Event::Certificates {
            certificates: vec![state("a.x", true), state("b.x", true), state("c.x", false)],
            waited_ms: 0,
            issued_now: vec!["b.x".into()],
        };
        assert_eq!(
            certificate_lines(&e),
            [
                "certificate b.x: issued by Pebble Intermediate CA 1a, expires in 6d 0h",
                "warning: certificate c.x: pending: connection refused",
            ]
        );
        let quiet = Event::Certificates {
            certificates: vec![state("a.x", true)],
            waited_ms: 0,
            issued_now: vec![],
        };
        assert!(certificate_lines(&quiet).is_empty());
    }
}
