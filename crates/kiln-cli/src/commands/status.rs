//! `kiln status`: per host and service, the unit's state, the container's health, the
//! version running against the one pinned in kiln.toml, and how long it has been up, with
//! one SSH round trip per host (a plan-only agent run, which also says whether changes
//! are pending).
//!
//! Arguments and rendering only: the hosts come from `kiln_ops::jobs`, the observation
//! from a `kiln_ops::session` plan.

use std::collections::BTreeMap;
use std::process::ExitCode;

use kiln_converge::certs::CertificateState;
use kiln_converge::host::HostObserved;
use kiln_converge::resource::DesiredState;
use serde::Serialize;

use crate::args::Targeting;
use crate::context::Context;
use crate::error::{CliError, CmdResult};
use crate::render::duration;
use crate::render::table::align;

/// Show whether each service runs, is healthy, and runs the pinned version.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every service runs and is healthy, 3 some service \
is not (or runs another version than kiln.toml pins) or a certificate of the reverse proxy is
pending or expired, 1 a host could not be reached, 2 bad input.

Examples:
  kiln status --env production     every host and service of production
  kiln status --env lab --json     machine-readable, one object per host"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Targeting,
    /// Print one JSON object per host.
    #[arg(long)]
    pub json: bool,
}

/// One service as `kiln status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub unit: String,
    /// `active`, `inactive` (systemd's view of the unit).
    pub unit_state: &'static str,
    /// `healthy`, `unhealthy`, `starting`, `no check`, or `not running`.
    pub health: String,
    /// The image the container runs (`None`: no container).
    pub running: Option<String>,
    /// The image kiln.toml pins.
    pub pinned: String,
    /// When the container started (Unix seconds).
    pub started_at: Option<i64>,
}

impl ServiceStatus {
    /// Running, healthy (or without a check), on the pinned version.
    pub fn ok(&self) -> bool {
        self.unit_state == "active"
            && matches!(self.health.as_str(), "healthy" | "no check")
            && self.running.as_deref() == Some(self.pinned.as_str())
    }
}

/// The services of a desired state, as observed.
pub fn services(desired: &DesiredState, seen: &HostObserved) -> Vec<ServiceStatus> {
    desired
        .images
        .iter()
        .filter_map(|image| {
            let service = image.service.clone()?;
            let container = image.container.clone()?;
            let unit = format!("{container}.service");
            let active = seen.units.get(&unit).is_some_and(|u| u.active);
            let c = seen.containers.get(&container);
            let running = c.filter(|c| c.state == "running");
            let health = match running {
                None => "not running".to_owned(),
                Some(c) => c.health.clone().unwrap_or_else(|| "no check".to_owned()),
            };
            Some(ServiceStatus {
                service,
                unit,
                unit_state: if active { "active" } else { "inactive" },
                health,
                running: running.map(|c| c.image.clone()),
                pinned: image.reference.clone(),
                started_at: running.and_then(|c| c.started_at),
            })
        })
        .collect()
}

/// The tag of an image reference, for the table (`docker.io/x/synapse:v1.2` → `v1.2`).
fn tag(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map_or(reference, |(_, t)| t)
}

/// The table of one host.
pub fn render_host(
    host: &str,
    rows: &[ServiceStatus],
    certificates: &[CertificateState],
    pending: usize,
    now: i64,
) -> String {
    let mut out = format!("{host}\n");
    if rows.is_empty() {
        out.push_str("  no services\n");
    } else {
        let mut table = vec![["SERVICE", "UNIT", "HEALTH", "VERSION", "UP"].map(String::from)];
        for r in rows {
            let version = match &r.running {
                Some(run) if *run == r.pinned => tag(run).to_owned(),
                Some(run) => format!("{} (kiln.toml pins {})", tag(run), tag(&r.pinned)),
                None => format!("- (kiln.toml pins {})", tag(&r.pinned)),
            };
            table.push([
                r.service.clone(),
                r.unit_state.to_owned(),
                r.health.clone(),
                version,
                r.started_at
                    .map_or_else(|| "-".to_owned(), |t| duration(now - t)),
            ]);
        }
        for line in align(&table, "  ").lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !certificates.is_empty() {
        out.push_str(&crate::render::certs::table(certificates, now));
    }
    if pending > 0 {
        out.push_str(&format!(
            "  {pending} change(s) pending: `kiln plan` shows them, `kiln apply` makes them\n"
        ));
    }
    out
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    let jobs = args.target.jobs(ctx)?;
    let desired: BTreeMap<String, DesiredState> = jobs
        .iter()
        .map(|j| (j.name.clone(), j.desired.clone()))
        .collect();
    let binary = kiln_ops::session::agent_binary()?;
    let report = kiln_ops::session::plan(
        jobs,
        &binary,
        args.target.jobs,
        &mut kiln_ops::session::no_progress(),
    )?;
    let now = kiln_converge::certs::now();
    let mut all_ok = true;
    let mut failures = vec![];
    for h in &report.hosts {
        let Some(seen) = &h.observed else {
            if let Err(f) = &h.plan {
                failures.push(f.to_string());
            }
            continue;
        };
        let rows = desired
            .get(&h.host)
            .map(|d| services(d, seen))
            .unwrap_or_default();
        let pending = h.plan.as_ref().map_or(0, |plan| plan.changes.len());
        all_ok &= rows.iter().all(ServiceStatus::ok);
        all_ok &= seen.certificates.iter().all(|c| c.valid_at(now));
        if args.json {
            p.outln(serde_json::json!({
                "host": h.host,
                "services": rows,
                "certificates": seen.certificates,
                "pending_changes": pending,
            }));
        } else {
            p.out(render_host(
                &h.host,
                &rows,
                &seen.certificates,
                pending,
                now,
            ));
        }
        if let Err(f) = &h.plan {
            // Observed, but not plannable (a refusal): said, not fatal for the status.
            p.note(format_args!("{}: {f}", h.host));
        }
    }
    if !failures.is_empty() {
        return Err(CliError::failed(miette::miette!(
            "no status from {} host(s):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::observe::{ContainerState, UnitStatus};
    use kiln_converge::resource::Image;

    fn desired() -> DesiredState {
        let image = |service: &str, reference: &str| Image {
            reference: reference.into(),
            service: Some(service.into()),
            container: Some(service.into()),
        };
        DesiredState {
            images: vec![
                image("postgres", "docker.io/library/postgres:17"),
                image("synapse", "docker.io/matrixdotorg/synapse:v1.163.2"),
                image("hedgedoc", "quay.io/hedgedoc/hedgedoc:1.10.3"),
            ],
            ..Default::default()
        }
    }

    fn container(image: &str, health: Option<&str>, started: i64) -> ContainerState {
        ContainerState {
            image: image.into(),
            state: "running".into(),
            health: health.map(String::from),
            started_at: Some(started),
            id: "x".into(),
            unit: None,
        }
    }

    #[test]
    fn each_service_shows_unit_health_version_and_uptime() {
        let active = UnitStatus {
            enabled: false,
            active: true,
        };
        let seen = HostObserved {
            units: [
                ("postgres.service".to_string(), active),
                ("synapse.service".to_string(), active),
                (
                    "hedgedoc.service".to_string(),
                    UnitStatus {
                        enabled: false,
                        active: false,
                    },
                ),
            ]
            .into(),
            containers: [
                (
                    "postgres".to_string(),
                    container("docker.io/library/postgres:17", Some("healthy"), 1000),
                ),
                (
                    "synapse".to_string(),
                    container(
                        "docker.io/matrixdotorg/synapse:v1.162.0",
                        Some("unhealthy"),
                        4000,
                    ),
                ),
            ]
            .into(),
            certificates: vec![],
        };
        let rows = services(&desired(), &seen);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].ok());
        assert!(!rows[1].ok() && !rows[2].ok());
        let text = render_host("services", &rows, &[], 2, 1000 + 2 * 86_400 + 3 * 3600);
        assert_eq!(
            text,
            "services\n  \
             SERVICE   UNIT      HEALTH       VERSION                             UP\n  \
             postgres  active    healthy      17                                  2d 3h\n  \
             synapse   active    unhealthy    v1.162.0 (kiln.toml pins v1.163.2)  2d 2h\n  \
             hedgedoc  inactive  not running  - (kiln.toml pins 1.10.3)           -\n  \
             2 change(s) pending: `kiln plan` shows them, `kiln apply` makes them\n"
        );
    }
}
