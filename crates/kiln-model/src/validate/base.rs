//! The hardened base: every `base` table (top level, environment, host) checked where it
//! is written, then layered host over environment over top level over the defaults into
//! each host's [`Base`]; the environments' WireGuard ranges (private, big enough, never
//! shared, not holding a host's own address); and warnings for settings that do nothing
//! (a reboot window without automatic reboots, an extra port kiln opens anyway).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net};

use super::{Ctx, DUPLICATE, INVALID, NO_EFFECT};
use crate::checks;
use crate::diagnostic::suggest;
use crate::model::*;
use crate::raw::*;

/// Where a `base` table sits, for what it may set and how errors name it.
#[derive(Clone, Copy)]
enum Level<'a> {
    Top,
    Environment,
    Host { env: &'a str, role: &'a str },
}

/// One `base` table's settings, checked; `None` where it says nothing (the upper level
/// decides). Spans are kept where a later check points back at the value.
#[derive(Clone, Default)]
struct Layer {
    sshd: Option<bool>,
    allow_groups: Option<Vec<String>>,
    penalties_exempt: Option<Vec<IpNet>>,
    firewall: Option<bool>,
    extra_ports: Option<Vec<(PortSpec, Range<usize>)>>,
    updates: Option<bool>,
    reboot: Option<Reboot>,
    reboot_window: Option<(RebootWindow, Range<usize>)>,
    time: Option<bool>,
    node_exporter: Option<bool>,
    wireguard: Option<bool>,
    range: Option<(Ipv4Net, Range<usize>)>,
    port: Option<u16>,
    keepalive: Option<u16>,
    rollback_seconds: Option<u64>,
}

impl Layer {
    /// `self` over `upper`: every setting `self` makes wins, the others are `upper`'s.
    fn over(self, upper: &Layer) -> Layer {
        macro_rules! over {
            ($($field:ident),* $(,)?) => {
                Layer { $($field: self.$field.or_else(|| upper.$field.clone()),)* }
            };
        }
        over!(
            sshd,
            allow_groups,
            penalties_exempt,
            firewall,
            extra_ports,
            updates,
            reboot,
            reboot_window,
            time,
            node_exporter,
            wireguard,
            range,
            port,
            keepalive,
            rollback_seconds,
        )
    }

    /// The host's base: this (fully layered) table over the defaults.
    fn resolve(&self, range: Ipv4Net) -> Base {
        Base {
            sshd: self.sshd.unwrap_or(true).then(|| SshdBase {
                allow_groups: self.allow_groups.clone().unwrap_or_default(),
                penalties_exempt: self.penalties_exempt.clone().unwrap_or_default(),
            }),
            firewall: self.firewall.unwrap_or(true).then(|| FirewallBase {
                extra_ports: self.extra_ports.iter().flatten().map(|(p, _)| *p).collect(),
            }),
            updates: self.updates.unwrap_or(true).then(|| UpdatesBase {
                reboot: self.reboot.unwrap_or_default(),
                reboot_window: self.reboot_window.as_ref().map(|(w, _)| *w),
            }),
            time: self.time.unwrap_or(true),
            node_exporter: self.node_exporter.unwrap_or(true),
            wireguard: self.wireguard.unwrap_or(true).then_some(WireguardBase {
                range,
                port: self.port.unwrap_or(DEFAULT_WIREGUARD_PORT),
                keepalive: self.keepalive.unwrap_or(DEFAULT_WIREGUARD_KEEPALIVE),
            }),
            rollback_seconds: self.rollback_seconds.unwrap_or(DEFAULT_ROLLBACK_SECONDS),
        }
    }
}

/// An environment's mesh, for the checks between environments.
struct Mesh<'a> {
    env: &'a str,
    range: Ipv4Net,
    /// The `range` value when written, else the environment's name (a default range).
    span: Range<usize>,
    written: bool,
}

/// A warning about one value, and the hosts (role, environment) it concerns: a
/// top-level value concerns many.
struct NoEffect {
    span: Range<usize>,
    message: String,
    label: &'static str,
    help: &'static str,
    hosts: Vec<(String, String)>,
}

/// Warnings by the span and text they point at, in file order.
type Grouped = BTreeMap<(usize, usize, String), NoEffect>;

/// Resolves every host's base into `environments` (built from `raw` in the same order)
/// and each environment's WireGuard range; reports bad values, ranges that clash, and
/// settings without effect (warnings).
pub(super) fn base(
    cx: &mut Ctx<'_>,
    top: Option<&S<RawBase>>,
    raw: &[(S<String>, RawEnvironment)],
    environments: &mut [Environment],
    services: &[Service],
) {
    let top = layer(cx, top, Level::Top);
    let mut meshes: Vec<Mesh<'_>> = Vec::new();
    let mut warnings: Grouped = BTreeMap::new();
    for (index, ((name, raw_env), env)) in raw.iter().zip(environments.iter_mut()).enumerate() {
        let ename = name.get_ref().as_str();
        let env_layer = layer(cx, raw_env.base.as_ref(), Level::Environment).over(&top);
        let mesh = match &env_layer.range {
            Some((range, span)) => Some(Mesh {
                env: ename,
                range: *range,
                span: span.clone(),
                written: true,
            }),
            None => default_range(index).map(|range| Mesh {
                env: ename,
                range,
                span: name.span(),
                written: false,
            }),
        };
        if mesh.is_none() {
            let e = cx
                .at(name.span(), INVALID, format!("environment `{ename}` has no default WireGuard range: only the first {} environments do", 256 - usize::from(WIREGUARD_RANGE_FIRST_OCTET)))
                .label("no `10.X.0.0/24` left for it")
                .help(format!("set `range = \"10.50.0.0/24\"` (a private range of your choice) in `[environments.{ename}.base.wireguard]`"));
            cx.push(e);
        }
        // Only reported once; an unused placeholder keeps the hosts' bases typed.
        let range = mesh.as_ref().map_or(Ipv4Net::default(), |m| m.range);
        let http_roles: Vec<&str> = services
            .iter()
            .filter(|s| s.subdomain.is_some())
            .map(|s| s.host.as_str())
            .collect();
        let mut in_mesh = 0;
        for (role, raw_host) in &raw_env.hosts {
            let Some(raw_host) = raw_host else { continue };
            let rname = role.get_ref().as_str();
            let level = Level::Host {
                env: ename,
                role: rname,
            };
            let host_layer = layer(cx, raw_host.get_ref().base.as_ref(), level).over(&env_layer);
            let base = host_layer.resolve(range);
            let Some(host) = env.hosts.get_mut(rname) else {
                continue;
            };
            host.base = base;
            no_effect(
                &mut warnings,
                ename,
                host,
                &host_layer,
                http_roles.contains(&rname),
            );
            if host.base.wireguard.is_some() {
                in_mesh += 1;
                if let (Some(mesh), HostAddress::Ip(IpAddr::V4(address))) = (&mesh, &host.address)
                    && mesh.range.contains(address)
                {
                    let e = cx
                        .at(raw_host.get_ref().address.span(), INVALID, format!("host `{rname}` of environment `{ename}` has address {address}, inside the environment's WireGuard range {}", mesh.range))
                        .label("in the WireGuard range")
                        .help(format!("the mesh would capture the traffic to the host's own address: give environment `{ename}` another range, `range = \"…\"` in `[environments.{ename}.base.wireguard]`"));
                    cx.push(e);
                }
            }
        }
        let Some(mesh) = mesh else { continue };
        if in_mesh == 0 {
            // No host joins the mesh: its range is unused, and clashes with nothing.
            continue;
        }
        env.wireguard_range = Some(mesh.range);
        let room = (1u64 << (32 - mesh.range.prefix_len())) - 2;
        let hosts = raw_env.hosts.len() as u64;
        if hosts > room {
            let e = cx
                .at(mesh.span.clone(), INVALID, format!("WireGuard range {} of environment `{ename}` has room for {room} hosts, the environment has {hosts}", mesh.range))
                .label("too small for the environment's hosts")
                .help(format!("give a larger range (a shorter prefix), like `{}`", widen(mesh.range, hosts)));
            cx.push(e);
        }
        meshes.push(mesh);
    }
    clashes(cx, &meshes);
    for w in warnings.into_values() {
        let on = match w.hosts.as_slice() {
            [(role, env)] => format!("host `{role}` of environment `{env}`"),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|(role, env)| format!("`{role}` of `{env}`"))
                    .collect();
                format!("hosts {}", list.join(", "))
            }
        };
        let w = cx
            .at(w.span, NO_EFFECT, format!("{} on {on}", w.message))
            .label(w.label)
            .help(w.help);
        cx.warn(w);
    }
}

/// `10.<101 + index>.0.0/24`, while the second octet lasts.
fn default_range(index: usize) -> Option<Ipv4Net> {
    let octet = u8::try_from(usize::from(WIREGUARD_RANGE_FIRST_OCTET) + index).ok()?;
    Ipv4Net::new(Ipv4Addr::new(10, octet, 0, 0), 24).ok()
}

/// `range` with a prefix short enough for `hosts` (plus network and broadcast).
fn widen(range: Ipv4Net, hosts: u64) -> Ipv4Net {
    let mut prefix = range.prefix_len();
    while prefix > 8 && (1u64 << (32 - prefix)) - 2 < hosts {
        prefix -= 1;
    }
    Ipv4Net::new(range.network(), prefix).map_or(range, |n| n.trunc())
}

/// Two environments never share WireGuard addresses.
fn clashes(cx: &mut Ctx<'_>, meshes: &[Mesh<'_>]) {
    for (i, later) in meshes.iter().enumerate() {
        let Some(earlier) = meshes[..i]
            .iter()
            .find(|m| m.range.contains(&later.range) || later.range.contains(&m.range))
        else {
            continue;
        };
        let how = if earlier.range == later.range {
            format!("the same WireGuard range {}", later.range)
        } else {
            format!(
                "overlapping WireGuard ranges ({} and {})",
                earlier.range, later.range
            )
        };
        let shared = earlier.span == later.span;
        let label = if shared {
            "one range for every environment".to_string()
        } else if later.written {
            "range set here".to_string()
        } else {
            format!("default range {}", later.range)
        };
        let mut e = cx
            .at(
                later.span.clone(),
                DUPLICATE,
                format!(
                    "environments `{}` and `{}` have {how}",
                    earlier.env, later.env
                ),
            )
            .label(label);
        if !shared {
            let other = if earlier.written {
                format!("range of `{}`", earlier.env)
            } else {
                format!("`{}` has the default {}", earlier.env, earlier.range)
            };
            e = e.also(other, earlier.span.clone());
        }
        let free = (0..)
            .filter_map(default_range)
            .find(|r| {
                !meshes
                    .iter()
                    .any(|m| m.range.contains(r) || r.contains(&m.range))
            })
            .map_or_else(|| "10.50.0.0/24".to_string(), |r| r.to_string());
        let e = e.help(if shared {
            "set `range` per environment, in `[environments.<env>.base.wireguard]`, not for all of them (or remove it: each environment gets its own `10.X.0.0/24`)".to_string()
        } else {
            format!(
                "give each environment its own range: `range = \"{free}\"` in `[environments.{}.base.wireguard]`",
                later.env
            )
        });
        cx.push(e);
    }
}

/// Warnings for settings the host ignores, grouped by the value they point at (a
/// top-level value concerns many hosts).
fn no_effect(warnings: &mut Grouped, env: &str, host: &Host, layer: &Layer, proxied: bool) {
    let mut add = |span: &Range<usize>, message: String, label, help| {
        warnings
            .entry((span.start, span.end, message.clone()))
            .or_insert_with(|| NoEffect {
                span: span.clone(),
                message,
                label,
                help,
                hosts: Vec::new(),
            })
            .hosts
            .push((host.role.clone(), env.to_string()));
    };
    if let (Some(updates), Some((window, span))) = (&host.base.updates, &layer.reboot_window)
        && updates.reboot == Reboot::Never
    {
        add(
            span,
            format!("reboot_window `{window}` has no effect with `reboot = \"never\"`"),
            "only used with reboot = \"when-needed\"",
            "add `reboot = \"when-needed\"` beside it to let the host reboot in this window, or remove `reboot_window`",
        );
    }
    if host.base.firewall.is_some() {
        for (port, span) in layer.extra_ports.iter().flatten() {
            let why = if port.protocol == Protocol::Tcp && port.port == host.ssh_port {
                Some("the SSH port")
            } else if proxied && port.protocol == Protocol::Tcp && matches!(port.port, 80 | 443) {
                Some("a port of the reverse proxy")
            } else if host
                .base
                .wireguard
                .is_some_and(|w| port.protocol == Protocol::Udp && port.port == w.port)
            {
                Some("the WireGuard port")
            } else {
                None
            };
            if let Some(why) = why {
                add(
                    span,
                    format!("extra port `{port}` is {why}, which kiln opens anyway,"),
                    "already opened by kiln",
                    "remove it from `extra_ports`: the firewall opens this port there anyway",
                );
            }
        }
    }
}

/// Checks one `base` table.
fn layer(cx: &mut Ctx<'_>, raw: Option<&S<RawBase>>, level: Level<'_>) -> Layer {
    let mut l = Layer::default();
    let Some(raw) = raw else { return l };
    let b = raw.get_ref();
    if let Some(part) = &b.sshd {
        match part.get_ref() {
            Switch::Bool(on) => l.sshd = Some(*on),
            Switch::Table(t) => {
                l.sshd = t.enabled.as_ref().map(|e| *e.get_ref());
                l.allow_groups = t.allow_groups.as_ref().map(|groups| {
                    groups
                        .get_ref()
                        .iter()
                        .filter(|g| {
                            cx.check(
                                g,
                                "group",
                                checks::unix_name,
                                "give the name of a group on the host, like `ops`",
                            )
                        })
                        .map(|g| g.get_ref().clone())
                        .collect()
                });
                l.penalties_exempt = t.penalties_exempt.as_ref().map(|list| {
                    list.get_ref()
                        .iter()
                        .filter_map(|a| penalty_exempt(cx, a))
                        .collect()
                });
            }
        }
    }
    if let Some(part) = &b.firewall {
        match part.get_ref() {
            Switch::Bool(on) => l.firewall = Some(*on),
            Switch::Table(t) => {
                l.firewall = t.enabled.as_ref().map(|e| *e.get_ref());
                l.extra_ports = t.extra_ports.as_ref().map(|list| {
                    list.get_ref()
                        .iter()
                        .filter_map(|p| port_spec(cx, p).map(|spec| (spec, p.span())))
                        .collect()
                });
            }
        }
    }
    if let Some(part) = &b.updates {
        match part.get_ref() {
            Switch::Bool(on) => l.updates = Some(*on),
            Switch::Table(t) => {
                l.updates = t.enabled.as_ref().map(|e| *e.get_ref());
                l.reboot = t.reboot.as_ref().and_then(|r| reboot(cx, r));
                l.reboot_window = t
                    .reboot_window
                    .as_ref()
                    .and_then(|w| reboot_window(cx, w).map(|window| (window, w.span())));
            }
        }
    }
    l.time = b.time.as_ref().map(|t| *t.get_ref());
    l.node_exporter = b.node_exporter.as_ref().map(|t| *t.get_ref());
    if let Some(part) = &b.wireguard {
        match part.get_ref() {
            Switch::Bool(on) => l.wireguard = Some(*on),
            Switch::Table(t) => {
                l.wireguard = t.enabled.as_ref().map(|e| *e.get_ref());
                if let Some(r) = &t.range {
                    if let Level::Host { env, role } = level {
                        let e = cx
                            .at(r.span(), INVALID, format!("host `{role}` of environment `{env}` sets a WireGuard range: the range is the environment's"))
                            .label("an environment setting")
                            .help(format!("move `range` to `[environments.{env}.base.wireguard]`; the host's address in it follows from its role (`.1`, `.2`, … by role name)"));
                        cx.push(e);
                    } else {
                        l.range = wireguard_range(cx, r).map(|range| (range, r.span()));
                    }
                }
                l.port = t.port.as_ref().and_then(|p| {
                    integer(
                        cx,
                        p,
                        "WireGuard port",
                        1,
                        65535,
                        "a UDP port is between 1 and 65535 (WireGuard's default is 51820)",
                    )
                    .and_then(|p| u16::try_from(p).ok())
                });
                l.keepalive = t.keepalive.as_ref().and_then(|k| {
                    integer(
                        cx,
                        k,
                        "WireGuard keepalive",
                        0,
                        65535,
                        "seconds between keepalive packets, 0 for none (default 25)",
                    )
                    .and_then(|k| u16::try_from(k).ok())
                });
            }
        }
    }
    l.rollback_seconds = b.rollback_seconds.as_ref().and_then(|r| {
        integer(
            cx,
            r,
            "rollback_seconds",
            MIN_ROLLBACK_SECONDS as i64,
            MAX_ROLLBACK_SECONDS as i64,
            &format!("between {MIN_ROLLBACK_SECONDS} and {MAX_ROLLBACK_SECONDS} seconds: long enough for kiln to open a fresh SSH connection, short enough to be back in quickly (default {DEFAULT_ROLLBACK_SECONDS})"),
        )
        .and_then(|r| u64::try_from(r).ok())
    });
    l
}

/// An integer setting within `min..=max`.
fn integer(
    cx: &mut Ctx<'_>,
    value: &S<i64>,
    what: &str,
    min: i64,
    max: i64,
    help: &str,
) -> Option<i64> {
    let v = *value.get_ref();
    if (min..=max).contains(&v) {
        return Some(v);
    }
    let e = cx
        .at(value.span(), INVALID, format!("{what} {v} is out of range"))
        .label(format!("not between {min} and {max}"))
        .help(help);
    cx.push(e);
    None
}

/// `reboot = "never" | "when-needed"`.
fn reboot(cx: &mut Ctx<'_>, value: &S<String>) -> Option<Reboot> {
    let r = Reboot::parse(value.get_ref());
    if r.is_none() {
        let help = suggest(value.get_ref(), "values", Reboot::NAMES.iter().copied());
        let e = cx
            .at(
                value.span(),
                INVALID,
                format!("unknown reboot policy `{}`", value.get_ref()),
            )
            .label("not `never` or `when-needed`")
            .help(help);
        cx.push(e);
    }
    r
}

/// `reboot_window = "HH:MM-HH:MM"`, start and end different.
fn reboot_window(cx: &mut Ctx<'_>, value: &S<String>) -> Option<RebootWindow> {
    let text = value.get_ref();
    let window = RebootWindow::parse(text);
    if window.is_none() {
        let empty = text
            .split_once('-')
            .and_then(|(a, b)| Some((TimeOfDay::parse(a)?, TimeOfDay::parse(b)?)))
            .is_some_and(|(a, b)| a == b);
        let (message, label) = if empty {
            (
                format!("reboot_window `{text}` starts when it ends"),
                "an empty window",
            )
        } else {
            (
                format!("reboot_window `{text}` is not a time range"),
                "not `HH:MM-HH:MM`",
            )
        };
        let e = cx
            .at(value.span(), INVALID, message)
            .label(label)
            .help("write the start and end, 24-hour clock, two digits each: `\"04:00-05:00\"` (`\"23:30-01:00\"` crosses midnight)");
        cx.push(e);
    }
    window
}

/// `"8448/tcp"`.
fn port_spec(cx: &mut Ctx<'_>, value: &S<String>) -> Option<PortSpec> {
    let text = value.get_ref();
    let parsed = text.split_once('/').map(|(port, proto)| {
        (
            port.parse::<u16>().ok().filter(|p| *p > 0),
            Protocol::parse(proto),
            proto,
        )
    });
    let reason = match parsed {
        Some((Some(port), Some(protocol), _)) => return Some(PortSpec { port, protocol }),
        None => format!("has no protocol: write `{text}/tcp` or `{text}/udp`"),
        Some((None, _, _)) => "is not a port between 1 and 65535 (one port, not a range)".into(),
        Some((Some(_), None, proto)) => format!("has protocol `{proto}`, not `tcp` or `udp`"),
    };
    let e = cx
        .at(
            value.span(),
            INVALID,
            format!("extra port `{text}` {reason}"),
        )
        .label("not `port/tcp` or `port/udp`")
        .help("write each port with its protocol, like `\"8448/tcp\"` or `\"3478/udp\"`");
    cx.push(e);
    None
}

/// An address or a CIDR range (`203.0.113.7`, `2001:db8::/48`).
fn penalty_exempt(cx: &mut Ctx<'_>, value: &S<String>) -> Option<IpNet> {
    let text = value.get_ref();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    let (message, help) = match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => return Some(net),
        Ok(net) => (
            format!("penalties_exempt `{text}` has bits set after its prefix"),
            format!("write the range's first address: `{}`", net.trunc()),
        ),
        Err(_) => (
            format!("penalties_exempt `{text}` is not an address or a CIDR range"),
            "write an IP address like `203.0.113.7` or a range like `203.0.113.0/24` or `2001:db8::/48`".to_string(),
        ),
    };
    let e = cx
        .at(value.span(), INVALID, message)
        .label("invalid address")
        .help(help);
    cx.push(e);
    None
}

/// A mesh range: IPv4, private, written as its network, a /30 or larger.
fn wireguard_range(cx: &mut Ctx<'_>, value: &S<String>) -> Option<Ipv4Net> {
    let text = value.get_ref();
    const PRIVATE: [(Ipv4Addr, u8); 3] = [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
    ];
    let problem = match text.parse::<Ipv4Net>() {
        Err(_) if text.parse::<IpNet>().is_ok() || text.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()) => {
            Some(("is not IPv4".to_string(), "write an IPv4 range like `10.50.0.0/24`".to_string()))
        }
        Err(_) if text.parse::<Ipv4Addr>().is_ok() => Some((
            "has no prefix length".to_string(),
            format!("write the range with its prefix length, like `{text}/24`"),
        )),
        Err(_) => Some((
            "is not an IPv4 range".to_string(),
            "write a private IPv4 range like `10.50.0.0/24`".to_string(),
        )),
        Ok(net) if net.trunc() != net => Some((
            "has bits set after its prefix".to_string(),
            format!("write the range's first address: `{}`", net.trunc()),
        )),
        Ok(net)
            if !PRIVATE.iter().any(|(a, p)| {
                Ipv4Net::new(*a, *p).is_ok_and(|block| block.contains(&net))
            }) =>
        {
            Some((
                "is not a private range".to_string(),
                "take it from 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918), like `10.50.0.0/24`".to_string(),
            ))
        }
        Ok(net) if net.prefix_len() > 30 => Some((
            format!("is a /{}: too small for a mesh", net.prefix_len()),
            "a mesh needs a /30 or larger (a /24 holds 254 hosts)".to_string(),
        )),
        Ok(net) => return Some(net),
    };
    if let Some((reason, help)) = problem {
        let e = cx
            .at(
                value.span(),
                INVALID,
                format!("WireGuard range `{text}` {reason}"),
            )
            .label("invalid WireGuard range")
            .help(help);
        cx.push(e);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ranges_follow_the_environments_order() {
        assert_eq!(default_range(0).unwrap().to_string(), "10.101.0.0/24");
        assert_eq!(default_range(2).unwrap().to_string(), "10.103.0.0/24");
        assert_eq!(default_range(154).unwrap().to_string(), "10.255.0.0/24");
        assert!(default_range(155).is_none());
    }

    #[test]
    fn widen_finds_a_range_big_enough() {
        let r: Ipv4Net = "10.50.0.0/30".parse().unwrap();
        assert_eq!(widen(r, 3).to_string(), "10.50.0.0/29");
        assert_eq!(widen(r, 2), r);
    }
}
