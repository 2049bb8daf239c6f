//! The WireGuard mesh check: after an apply, every host of the mesh proves a recent
//! handshake with each of its peers. A peer whose public key is wrong (on either side)
//! never completes one, and neither does a peer that is down or whose port is blocked, so
//! the check names that peer; SSH does not go over the mesh and is not affected.
//!
//! Run from the laptop once every host of the environment was applied (a host applied
//! first would otherwise wait for peers still installing), over the host's existing
//! connection: [`check`] pings each peer's mesh address (which makes WireGuard handshake)
//! and reads `wg show <interface> latest-handshakes`, until every peer answered or the
//! time is up. [`command`] and [`parse`] are pure.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::{Host, HostError};

/// What a host's mesh check looks at (part of its [`crate::DesiredState`], not used by
/// the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshCheck {
    /// The WireGuard interface (`wg0`).
    pub interface: String,
    pub peers: Vec<MeshPeer>,
}

/// A peer as this host's configuration has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshPeer {
    /// Its role.
    pub name: String,
    /// Its address in the mesh.
    pub address: Ipv4Addr,
    /// The public key this host has for it.
    pub public_key: String,
}

/// A handshake older than this no longer counts: WireGuard renews a live session's
/// handshake every two minutes, and gives a session up after three.
pub const FRESH_S: u64 = 180;

/// One peer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub name: String,
    pub address: Ipv4Addr,
    pub public_key: String,
    /// Seconds since the last handshake, `None` for none in the last [`FRESH_S`].
    pub handshake_age_s: Option<u64>,
}

/// The shell command of one round: ping every peer once (in parallel), then print the
/// host's clock and the interface's latest handshakes.
pub fn command(check: &MeshCheck) -> String {
    let pings: String = check
        .peers
        .iter()
        .map(|p| format!("ping -c 1 -W 1 {} >/dev/null 2>&1 & ", p.address))
        .collect();
    format!(
        "{pings}wait; date +%s; wg show {} latest-handshakes",
        check.interface
    )
}

/// Each peer's state from one round's output (`command`'s): the clock, then `KEY\tSECONDS`
/// lines. `None` when the output is not that.
pub fn parse(check: &MeshCheck, stdout: &str) -> Option<Vec<PeerState>> {
    let mut lines = stdout.lines();
    let now: u64 = lines.next()?.trim().parse().ok()?;
    let mut seen = std::collections::BTreeMap::new();
    for l in lines {
        let (key, at) = l.split_once('\t')?;
        seen.insert(key.trim().to_owned(), at.trim().parse::<u64>().ok()?);
    }
    Some(
        check
            .peers
            .iter()
            .map(|p| {
                let age = seen
                    .get(&p.public_key)
                    .filter(|at| **at > 0)
                    .map(|at| now.saturating_sub(*at))
                    .filter(|age| *age < FRESH_S);
                PeerState {
                    name: p.name.clone(),
                    address: p.address,
                    public_key: p.public_key.clone(),
                    handshake_age_s: age,
                }
            })
            .collect(),
    )
}

/// Runs rounds of [`command`] on `host` (as root) until every peer has a fresh handshake
/// or `timeout` passed; returns the last round's states.
pub fn check(
    host: &mut dyn Host,
    check: &MeshCheck,
    timeout: Duration,
) -> Result<Vec<PeerState>, HostError> {
    let script = command(check);
    let (cmd, prefix) = host
        .privilege()
        .wrap(&["sh".to_owned(), "-c".to_owned(), script]);
    let start = Instant::now();
    loop {
        let mut text = String::new();
        let out = host.exec(&cmd, &prefix, &mut |line| {
            text.push_str(line);
            text.push('\n');
        })?;
        let states = match (out.code, parse(check, &text)) {
            (Some(0), Some(s)) => s,
            _ => {
                return Err(HostError::Check {
                    host: host.name().to_owned(),
                    what: format!("the WireGuard check (wg show {})", check.interface),
                    message: format!(
                        "exit {}: {}",
                        out.code.map_or("by signal".into(), |c| c.to_string()),
                        out.stderr_tail()
                    ),
                });
            }
        };
        if states.iter().all(|s| s.handshake_age_s.is_some()) || start.elapsed() >= timeout {
            return Ok(states);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The message for a peer without a fresh handshake, seen from `host`.
pub fn no_handshake(host: &str, peer: &PeerState, timeout: Duration) -> String {
    let secret = kiln_model::wireguard_secret(&peer.name);
    format!(
        "host {host}: WireGuard peer {} ({}, public key {}): no handshake within {} s\n  \
         either the public key {host} has for {} (vault secret {secret}_public) is not the one of {}'s private key ({secret}), \
         or {} is down, not applied yet, or its WireGuard port is blocked; SSH does not go over WireGuard and is not affected",
        peer.name,
        peer.address,
        peer.public_key,
        timeout.as_secs(),
        peer.name,
        peer.name,
        peer.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> MeshCheck {
        MeshCheck {
            interface: "wg0".into(),
            peers: vec![
                MeshPeer {
                    name: "monitoring".into(),
                    address: Ipv4Addr::new(10, 101, 0, 1),
                    public_key: "AAA=".into(),
                },
                MeshPeer {
                    name: "db".into(),
                    address: Ipv4Addr::new(10, 101, 0, 3),
                    public_key: "BBB=".into(),
                },
            ],
        }
    }

    #[test]
    fn a_round_pings_every_peer_then_reads_the_handshakes() {
        assert_eq!(
            command(&mesh()),
            "ping -c 1 -W 1 10.101.0.1 >/dev/null 2>&1 & ping -c 1 -W 1 10.101.0.3 >/dev/null 2>&1 & wait; date +%s; wg show wg0 latest-handshakes"
        );
    }

    #[test]
    fn only_a_recent_handshake_with_the_configured_key_counts() {
        let states = parse(&mesh(), "1000\nAAA=\t990\nBBB=\t0\n").unwrap();
        assert_eq!(states[0].handshake_age_s, Some(10));
        assert_eq!(states[1].handshake_age_s, None, "never");
        let stale = parse(&mesh(), "1000\nAAA=\t700\n").unwrap();
        assert_eq!(stale[0].handshake_age_s, None, "older than three minutes");
        assert_eq!(stale[1].handshake_age_s, None, "not configured");
        assert_eq!(parse(&mesh(), "garbage"), None);
        assert_eq!(parse(&mesh(), "1000\nAAA= 990\n"), None);
    }

    #[test]
    fn the_message_names_the_peer_its_key_and_the_secrets_to_compare() {
        let s = &parse(&mesh(), "1000\n").unwrap()[0];
        let m = no_handshake("services", s, Duration::from_secs(15));
        assert!(m.starts_with(
            "host services: WireGuard peer monitoring (10.101.0.1, public key AAA=): no handshake within 15 s"
        ));
        assert!(m.contains("vault secret wireguard_monitoring_public"));
        assert!(m.contains("SSH does not go over WireGuard and is not affected"));
    }
}
