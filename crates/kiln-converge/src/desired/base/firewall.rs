//! firewalld's part of the base (Debian and RHEL alike): two zone files under
//! `/etc/firewalld/zones/`.
//!
//! - `public.xml`: kiln's version of the `public` zone, which firewalld reads instead of
//!   its own `/usr/lib/firewalld/zones/public.xml`. It opens SSH on the configured port,
//!   80 and 443 on hosts running the reverse proxy, the WireGuard port, and the extra
//!   ports given; its target is `default` (everything else refused, ICMP allowed).
//! - `kiln.xml`: a trusted zone (`target="ACCEPT"`) naming `wg0`.
//!
//! How the public interface gets the public zone: it is named nowhere. firewalld puts every
//! interface that no zone (and no NetworkManager connection) claims into its default
//! zone, and the default zone of both Debian's and RHEL's stock `firewalld.conf` is
//! `public`. So kiln replaces the `public` zone rather than adding a zone of its own and
//! changing `DefaultZone=`: firewalld.conf has no conf.d, so changing one line means
//! taking the package's whole file over, and naming the interface (`eth0`, `ens3`...)
//! would need a fact kiln does not have and would fight NetworkManager's
//! `connection.zone` on RHEL. The wiring should still observe that the default zone is
//! `public` (`firewall-cmd --get-default-zone`) and refuse to go on otherwise.
//!
//! Ports are listed as ports, not as firewalld services: `ssh` is 22 only, and a port
//! list reads the same whatever services the installed firewalld defines.

use serde_json::json;

use super::{BaseFile, Renderer};
use crate::desired::DesiredError;

/// kiln's public zone.
pub const PUBLIC_ZONE: &str = "/etc/firewalld/zones/public.xml";
/// The trusted zone of the WireGuard mesh.
pub const KILN_ZONE: &str = "/etc/firewalld/zones/kiln.xml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port the public zone opens, and why (shown in a comment of the zone file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPort {
    pub port: u16,
    pub protocol: Protocol,
    pub why: String,
}

/// What the zones are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallParams {
    pub ssh_port: u16,
    /// The host runs the reverse proxy: 80/tcp and 443/tcp.
    pub proxy: bool,
    /// The WireGuard port (UDP), when the host is in the mesh.
    pub wireguard_port: Option<u16>,
    /// The WireGuard interface, trusted (`wg0`).
    pub wireguard_interface: String,
    /// Further ports, e.g. a service published on the host.
    pub extra: Vec<OpenPort>,
    /// Keep DHCPv6 replies coming in (hosts whose IPv6 address comes from DHCPv6; the
    /// stock public zone allows them).
    pub dhcpv6_client: bool,
}

impl FirewallParams {
    /// The public zone's ports, in order, each once (the first reason given wins).
    pub fn ports(&self) -> Vec<OpenPort> {
        let mut all = vec![OpenPort {
            port: self.ssh_port,
            protocol: Protocol::Tcp,
            why: "SSH".into(),
        }];
        if self.proxy {
            for port in [80, 443] {
                all.push(OpenPort {
                    port,
                    protocol: Protocol::Tcp,
                    why: "the reverse proxy".into(),
                });
            }
        }
        if let Some(port) = self.wireguard_port {
            all.push(OpenPort {
                port,
                protocol: Protocol::Udp,
                why: "WireGuard".into(),
            });
        }
        all.extend(self.extra.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|p| seen.insert((p.port, p.protocol)));
        all
    }
}

/// The two zone files ([`PUBLIC_ZONE`], [`KILN_ZONE`], 0644).
pub fn firewall_files(r: &Renderer<'_>, p: &FirewallParams) -> Result<Vec<BaseFile>, DesiredError> {
    const PART: &str = "firewall";
    r.word(PART, "WireGuard interface", &p.wireguard_interface)?;
    let ports = p.ports();
    for o in &ports {
        if o.port == 0 {
            return Err(r.err(PART, format!("port 0 ({}) is not a port", o.why)));
        }
        // The reason goes into an XML comment: no markup, no "--".
        if o.why.contains("--")
            || o.why
                .chars()
                .any(|c| matches!(c, '<' | '>' | '&') || c.is_control())
        {
            return Err(r.err(
                PART,
                format!(
                    "the reason {:?} for port {} cannot go into a comment",
                    o.why, o.port
                ),
            ));
        }
    }
    let public = json!({
        "ports": ports.iter().map(|o| json!({
            "port": o.port,
            "protocol": o.protocol.as_str(),
            "why": o.why,
        })).collect::<Vec<_>>(),
        "dhcpv6_client": p.dhcpv6_client,
    });
    let kiln = json!({ "interface": p.wireguard_interface });
    Ok(vec![
        r.file(PUBLIC_ZONE, 0o644, "firewalld-zone-public.xml.j2", public)?,
        r.file(KILN_ZONE, 0o644, "firewalld-zone-kiln.xml.j2", kiln)?,
    ])
}
