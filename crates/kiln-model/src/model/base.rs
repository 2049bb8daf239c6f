//! The hardened base of a host as resolved from `[base]`, `[environments.<env>.base]` and
//! `[environments.<env>.hosts.<role>.base]` (host over environment over top level over
//! defaults): which parts are on and their settings. Plain values, no spans, no I/O; what
//! the base turns into on a host (drop-ins, zones, units) is the planner's.

use std::fmt;

use ipnet::{IpNet, Ipv4Net};
use serde::{Serialize, Serializer};

/// The hardened base of one host: each part `None` (or `false`) when kiln.toml turns it
/// off. Resolved at validation time and stored as [`crate::Host::base`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Base {
    /// The hardened sshd drop-in, `None` when `sshd = false`.
    pub sshd: Option<SshdBase>,
    /// firewalld, `None` when `firewall = false`.
    pub firewall: Option<FirewallBase>,
    /// Automatic security updates, `None` when `updates = false`.
    pub updates: Option<UpdatesBase>,
    /// Time sync (chrony) and the host name.
    pub time: bool,
    /// Prometheus node exporter on the WireGuard address.
    pub node_exporter: bool,
    /// The host's place in its environment's WireGuard mesh, `None` when
    /// `wireguard = false` (its address: [`crate::Environment::wireguard_address`]).
    pub wireguard: Option<WireguardBase>,
    /// Deadline of the lockout guard, in seconds (20 to 600, default 60): a change to
    /// sshd, the firewall or WireGuard is rolled back by the host unless a fresh SSH
    /// connection proves it harmless within this time.
    pub rollback_seconds: u64,
}

impl Base {
    /// What validation stores before the base is resolved (every part off).
    pub(crate) fn unresolved() -> Base {
        Base {
            sshd: None,
            firewall: None,
            updates: None,
            time: false,
            node_exporter: false,
            wireguard: None,
            rollback_seconds: crate::raw::DEFAULT_ROLLBACK_SECONDS,
        }
    }
}

/// The units the base declares on a host whose matching part is on (both families'
/// names): a role's file may notify them, e.g. an sshd drop-in reloading `ssh.service`.
pub const BASE_UNITS: &[&str] = &[
    "ssh.service",
    "sshd.service",
    "firewalld.service",
    "wg-quick@wg0.service",
    "chrony.service",
    "chronyd.service",
    "prometheus-node-exporter.service",
    "node_exporter.service",
    "dnf-automatic.timer",
];

/// `[base.sshd]`: key-only login for the admin user, no root login. Password and
/// keyboard-interactive login are always off: there is no setting for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SshdBase {
    /// Groups allowed to log in besides the admin user (`AllowGroups`), in file order.
    pub allow_groups: Vec<String>,
    /// Addresses and ranges exempt from `PerSourcePenalties` (OpenSSH ≥ 9.8); a single
    /// address is a /32 or /128 network.
    pub penalties_exempt: Vec<IpNet>,
}

/// `[base.firewall]`: firewalld's public zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirewallBase {
    /// Ports opened besides those kiln derives (SSH, 80/443 for the proxy, WireGuard).
    pub extra_ports: Vec<PortSpec>,
}

/// A port and its protocol, written `8448/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// 1 to 65535.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The transport protocol of a [`PortSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The spellings accepted after the `/` of a port.
    pub const NAMES: &'static [&'static str] = &["tcp", "udp"];

    /// Parses a kiln.toml spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The kiln.toml (and firewalld) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[base.updates]`: automatic security updates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdatesBase {
    /// Whether the host reboots by itself when an update needs it.
    pub reboot: Reboot,
    /// When it may (only meaningful with [`Reboot::WhenNeeded`]); any time when `None`.
    pub reboot_window: Option<RebootWindow>,
}

/// Whether a host reboots by itself after an update that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reboot {
    /// Never (the default): monitoring is told a reboot is pending.
    #[default]
    Never,
    /// When an update needs it, inside the reboot window if there is one.
    WhenNeeded,
}

impl Reboot {
    /// The spellings accepted in kiln.toml.
    pub const NAMES: &'static [&'static str] = &["never", "when-needed"];

    /// Parses a kiln.toml spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "never" => Some(Reboot::Never),
            "when-needed" => Some(Reboot::WhenNeeded),
            _ => None,
        }
    }

    /// The kiln.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reboot::Never => "never",
            Reboot::WhenNeeded => "when-needed",
        }
    }
}

impl fmt::Display for Reboot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time of day, minute precision (the host's local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
}

impl TimeOfDay {
    /// Parses `HH:MM` (two digits each, 00:00 to 23:59).
    pub fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.split_once(':')?;
        let two_digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return None;
        }
        let (hour, minute) = (h.parse().ok()?, m.parse().ok()?);
        (hour < 24 && minute < 60).then_some(TimeOfDay { hour, minute })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// When a host may reboot after an update, `HH:MM-HH:MM`; `end` before `start` crosses
/// midnight. `start` and `end` always differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RebootWindow {
    /// Start of the window.
    pub start: TimeOfDay,
    /// End of the window.
    pub end: TimeOfDay,
}

impl RebootWindow {
    /// Parses `HH:MM-HH:MM`; `None` when malformed or empty (start = end).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('-')?;
        let (start, end) = (TimeOfDay::parse(a)?, TimeOfDay::parse(b)?);
        (start != end).then_some(RebootWindow { start, end })
    }

    /// Whether the window crosses midnight (`23:30-01:00`).
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// Length of the window in minutes (1 to 1439).
    pub fn minutes(&self) -> u32 {
        let m = |t: TimeOfDay| u32::from(t.hour) * 60 + u32::from(t.minute);
        (m(self.end) + 24 * 60 - m(self.start)) % (24 * 60)
    }
}

impl fmt::Display for RebootWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for RebootWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[base.wireguard]`: the host's side of its environment's mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireguardBase {
    /// The environment's mesh range (the same for all its hosts:
    /// [`crate::Environment::wireguard_range`]).
    pub range: Ipv4Net,
    /// UDP port the host listens on (default 51820).
    pub port: u16,
    /// `PersistentKeepalive` towards its peers in seconds, 0 for none (default 25).
    pub keepalive: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_windows_parse_strictly() {
        let w = RebootWindow::parse("04:00-05:30").unwrap();
        assert_eq!(w.to_string(), "04:00-05:30");
        assert_eq!(w.minutes(), 90);
        assert!(!w.crosses_midnight());
        let night = RebootWindow::parse("23:30-01:00").unwrap();
        assert!(night.crosses_midnight());
        assert_eq!(night.minutes(), 90);
        for bad in [
            "04:00-04:00",
            "4:00-05:00",
            "24:00-01:00",
            "04:60-05:00",
            "04:00",
            "04:00-05:00-06:00",
            "04h00-05h00",
            "+4:00-05:00",
            "",
        ] {
            assert!(RebootWindow::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ports_and_windows_serialize_as_written() {
        let p = PortSpec {
            port: 8448,
            protocol: Protocol::Tcp,
        };
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"8448/tcp\"");
        let w = RebootWindow::parse("04:00-05:00").unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"04:00-05:00\"");
        assert_eq!(
            serde_json::to_string(&Reboot::WhenNeeded).unwrap(),
            "\"when-needed\""
        );
    }
}
