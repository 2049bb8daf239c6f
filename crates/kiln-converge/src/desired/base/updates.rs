//! Automatic security updates, part of the base, and the metrics monitoring alerts on.
//!
//! - Debian: unattended-upgrades. `/etc/apt/apt.conf.d/20auto-upgrades` turns the daily
//!   run on; `/etc/apt/apt.conf.d/52kiln-unattended-upgrades` (read after the package's
//!   `50unattended-upgrades`) clears its origins and keeps the security archive only, and
//!   reboots at the window's time (`Automatic-Reboot-Time`) when there is a window.
//! - RHEL: dnf-automatic (`dnf-automatic.timer`), `/etc/dnf/automatic.conf` with
//!   `upgrade_type = security`, `apply_updates = yes` and `reboot = when-needed` when
//!   there is a window, `never` otherwise. dnf-automatic reboots right after it applied
//!   updates, so the window is expressed by running it then: a timer drop-in
//!   (`dnf-automatic.timer.d/50-kiln.conf`) moves its run to the window's time, without
//!   the random delay and without catching up a missed run at boot (which would reboot
//!   outside the window).
//! - Both: `/usr/local/libexec/kiln/updates-metrics`, run hourly by
//!   `kiln-updates-metrics.timer`, writes `kiln_updates_pending{kind="security"}`,
//!   `kiln_reboot_required` and `kiln_updates_metrics_timestamp_seconds` (to alert when it
//!   stops) to `kiln_updates.prom` in node-exporter's textfile directory
//!   ([`super::node_exporter::textfile_dir`]).

use std::fmt;

use serde_json::json;

use super::{BaseFile, Renderer, node_exporter, os_name};
use crate::desired::DesiredError;
use crate::facts::OsFamily;

/// The metrics script.
pub const SCRIPT: &str = "/usr/local/libexec/kiln/updates-metrics";
/// Its service and timer.
pub const METRICS_SERVICE: &str = "kiln-updates-metrics.service";
pub const METRICS_TIMER: &str = "kiln-updates-metrics.timer";
/// dnf-automatic's timer (RHEL).
pub const DNF_AUTOMATIC_TIMER: &str = "dnf-automatic.timer";

/// When a host may reboot for an update: a local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebootWindow {
    hour: u8,
    minute: u8,
}

impl RebootWindow {
    /// `None` unless `hour` < 24 and `minute` < 60.
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(RebootWindow { hour, minute })
    }
}

impl fmt::Display for RebootWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// What the files are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatesParams {
    pub os: OsFamily,
    /// When the host may reboot for an update; `None`: never on its own.
    pub reboot_window: Option<RebootWindow>,
}

/// The package manager's files, the metrics script (0755) and its service and timer
/// (under /etc/systemd/system).
pub fn updates_files(r: &Renderer<'_>, p: &UpdatesParams) -> Result<Vec<BaseFile>, DesiredError> {
    let ctx = json!({
        "os": os_name(p.os),
        "reboot_time": p.reboot_window.map(|w| w.to_string()),
        "textfile_dir": node_exporter::textfile_dir(p.os),
        "script": SCRIPT,
    });
    let mut files = match p.os {
        OsFamily::Debian => vec![
            r.file(
                "/etc/apt/apt.conf.d/20auto-upgrades",
                0o644,
                "20auto-upgrades.j2",
                ctx.clone(),
            )?,
            r.file(
                "/etc/apt/apt.conf.d/52kiln-unattended-upgrades",
                0o644,
                "52kiln-unattended-upgrades.j2",
                ctx.clone(),
            )?,
        ],
        OsFamily::Rhel => {
            let mut v = vec![r.file(
                "/etc/dnf/automatic.conf",
                0o644,
                "dnf-automatic.conf.j2",
                ctx.clone(),
            )?];
            if p.reboot_window.is_some() {
                v.push(r.file(
                    "/etc/systemd/system/dnf-automatic.timer.d/50-kiln.conf",
                    0o644,
                    "dnf-automatic-timer.conf.j2",
                    ctx.clone(),
                )?);
            }
            v
        }
    };
    files.push(r.file(SCRIPT, 0o755, "updates-metrics.sh.j2", ctx.clone())?);
    files.push(r.file(
        format!("/etc/systemd/system/{METRICS_SERVICE}"),
        0o644,
        "kiln-updates-metrics.service.j2",
        ctx.clone(),
    )?);
    files.push(r.file(
        format!("/etc/systemd/system/{METRICS_TIMER}"),
        0o644,
        "kiln-updates-metrics.timer.j2",
        ctx,
    )?);
    Ok(files)
}
