//! The firewall feature: per host, firewalld (RHEL and Debian) with kiln's `public` zone
//! opening SSH on the host's port, the proxy's 80/443 where the proxy runs (from the
//! environment's route table), WireGuard's port on every host of the mesh and the ports
//! `[base.firewall] extra_ports` adds; and a trusted `kiln` zone for `wg0`, so internal
//! traffic (metrics, databases between hosts) comes over the mesh only. Its files, the
//! package's unit and their reload form the guarded group [`GUARD`] (they can cut the
//! operator off).
//!
//! Must not decide what runs where: it reads the routes and the mesh of the
//! [`EnvironmentContext`].

use kiln_model::Host;

use super::base::firewall::{self as render, FirewallParams, OpenPort, Protocol};
use super::base::{Renderer, wireguard::INTERFACE};
use super::{DesiredError, EnvironmentContext};
use crate::resource::{Command, DesiredState, Notify, Package, Trigger, Unit};

/// The guarded group of the firewall's changes.
pub const GUARD: &str = "firewall";
/// firewalld's unit (the same name on both families).
pub const UNIT: &str = "firewalld.service";

/// The firewall's parameters on `host` (`None` when `firewall = false`).
pub fn params(env: &EnvironmentContext<'_>, host: &Host) -> Option<FirewallParams> {
    let fw = host.base.firewall.as_ref()?;
    Some(FirewallParams {
        ssh_port: host.ssh_port,
        proxy: env.routes.proxy_hosts().contains(&host.role),
        wireguard_port: env.mesh.member(&host.role).map(|m| m.endpoint.port),
        wireguard_interface: INTERFACE.into(),
        extra: fw
            .extra_ports
            .iter()
            .map(|p| OpenPort {
                port: p.port,
                protocol: match p.protocol {
                    kiln_model::Protocol::Tcp => Protocol::Tcp,
                    kiln_model::Protocol::Udp => Protocol::Udp,
                },
                why: "[base.firewall] extra_ports".into(),
            })
            .collect(),
        // As the stock zone: an IPv6 address may come from DHCPv6 whatever the model says.
        dhcpv6_client: true,
    })
}

/// kiln's rules are in the `public` zone, which firewalld gives every interface no zone
/// claims only while it is the default zone (the stock `firewalld.conf` says so on both
/// families): a host configured otherwise gets a failing step, shown in the plan, that
/// says what to change, rather than rules that silently do not apply.
fn default_zone_check() -> Command {
    const CONF: &str = "/etc/firewalld/firewalld.conf";
    Command {
        name: "firewalld-default-zone".into(),
        run: format!(
            "echo \"firewalld's default zone is not public ($(grep -E '^DefaultZone=' {CONF})): kiln's rules are in the public zone; set DefaultZone=public in {CONF}\" >&2; exit 1"
        ),
        unless: Some(format!(
            "! grep -Eqs '^DefaultZone=' {CONF} || grep -qx 'DefaultZone=public' {CONF}"
        )),
        triggered_by: vec![],
        stage: Default::default(),
    }
}

/// The firewall's resources on `host`: firewalld, its two zones, all guarded.
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let Some(params) = params(env, host) else {
        return Ok(DesiredState::default());
    };
    let renderer = Renderer::new(env.model.base_dir(), &host.role);
    let reload = Notify {
        unit: UNIT.into(),
        action: Trigger::Reload,
    };
    let mut d = DesiredState {
        packages: vec![Package {
            name: "firewalld".into(),
        }],
        ..Default::default()
    };
    d.files.extend(
        render::firewall_files(&renderer, &params)?
            .into_iter()
            .map(|f| f.into_guarded(GUARD, std::slice::from_ref(&reload))),
    );
    let mut unit = Unit::packaged(UNIT);
    unit.guard = Some(GUARD.into());
    d.units.push(unit);
    d.commands.push(default_zone_check());
    Ok(d)
}
