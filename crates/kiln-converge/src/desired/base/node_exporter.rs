//! node-exporter's part of the base: the package's environment file, so that it listens
//! on the host's WireGuard address only and exports the textfile collector's directory,
//! and a drop-in tying its unit to the WireGuard interface (the address exists only once
//! `wg0` is up).
//!
//! - Debian: package `prometheus-node-exporter`, unit `prometheus-node-exporter.service`,
//!   which reads `/etc/default/prometheus-node-exporter` and passes `$ARGS` (checked in
//!   Debian 13's package); textfile directory `/var/lib/prometheus/node-exporter`, which
//!   the package creates and its compiled-in default already points at.
//! - RHEL: EPEL's `golang-github-prometheus-node-exporter`, unit `node_exporter.service`,
//!   reading `/etc/sysconfig/node_exporter` with `$OPTIONS`. Not verified: neither the
//!   package nor its unit could be read from here (and some EPEL 9 mirrors are reported
//!   not to carry it); the rendered file says so. Textfile directory
//!   `/var/lib/node_exporter/textfile_collector` (the upstream convention; RHEL's
//!   `/var/lib/prometheus` is the Prometheus server package's data directory), which the
//!   wiring must create (0755 root).

use std::net::Ipv4Addr;

use serde_json::json;

use super::{BaseFile, Renderer, os_name, wireguard};
use crate::desired::DesiredError;
use crate::facts::OsFamily;

/// The port node-exporter listens on.
pub const PORT: u16 = 9100;

/// Where node-exporter's textfile collector reads `*.prom` files (the base's update
/// metrics, later the backups').
pub fn textfile_dir(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "/var/lib/prometheus/node-exporter",
        OsFamily::Rhel => "/var/lib/node_exporter/textfile_collector",
    }
}

/// The package that brings node-exporter.
pub fn package(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "prometheus-node-exporter",
        OsFamily::Rhel => "golang-github-prometheus-node-exporter",
    }
}

/// node-exporter's unit.
pub fn unit(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "prometheus-node-exporter.service",
        OsFamily::Rhel => "node_exporter.service",
    }
}

/// The package's environment file.
pub fn environment_file(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "/etc/default/prometheus-node-exporter",
        OsFamily::Rhel => "/etc/sysconfig/node_exporter",
    }
}

/// What the files are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExporterParams {
    pub os: OsFamily,
    /// The host's WireGuard address.
    pub address: Ipv4Addr,
    pub port: u16,
}

/// The environment file and the unit drop-in (0644).
pub fn node_exporter_files(
    r: &Renderer<'_>,
    p: &NodeExporterParams,
) -> Result<Vec<BaseFile>, DesiredError> {
    let ctx = json!({
        "os": os_name(p.os),
        "listen": format!("{}:{}", p.address, p.port),
        "textfile_dir": textfile_dir(p.os),
        "wg_unit": wireguard::UNIT,
    });
    Ok(vec![
        r.file(
            environment_file(p.os),
            0o644,
            "prometheus-node-exporter.j2",
            ctx.clone(),
        )?,
        r.file(
            format!(
                "/etc/systemd/system/{}.d/50-kiln-wireguard.conf",
                unit(p.os)
            ),
            0o644,
            "node-exporter-wg.conf.j2",
            ctx,
        )?,
    ])
}
