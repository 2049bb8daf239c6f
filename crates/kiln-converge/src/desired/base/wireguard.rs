//! WireGuard's part of the base: `/etc/wireguard/wg0.conf` for `wg-quick@wg0` (the
//! interface's address in the mesh, its port and private key, every other host of the
//! environment as a peer with its /32). The file holds the private key: mode 0600,
//! sensitive. The same file serves the kernel module and `wireguard-go` (the lab: no
//! module), which wg-quick picks itself.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;
use kiln_secrets::Secret;
use serde_json::json;

use super::{BaseFile, Renderer};
use crate::desired::DesiredError;

/// The interface.
pub const INTERFACE: &str = "wg0";
/// Its wg-quick unit.
pub const UNIT: &str = "wg-quick@wg0.service";
/// Its configuration.
pub const CONF: &str = "/etc/wireguard/wg0.conf";

/// Where a peer is reached: an address or a DNS name, and its WireGuard port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Another host of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its role (a comment in the file, and named in errors).
    pub name: String,
    pub public_key: String,
    /// Its address in the mesh (`AllowedIPs` is this /32).
    pub address: Ipv4Addr,
    pub endpoint: Endpoint,
}

/// What the file is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardParams {
    /// The host's address in the mesh, and the mesh's prefix length.
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub port: u16,
    pub private_key: Secret,
    pub peers: Vec<Peer>,
    /// `PersistentKeepalive`, seconds; `None` for none.
    pub keepalive: Option<u16>,
}

/// A WireGuard key: 32 bytes in base64.
fn is_key(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|b| b.len() == 32)
}

/// `wg0.conf` ([`CONF`], 0600, sensitive).
pub fn wireguard_files(
    r: &Renderer<'_>,
    p: &WireguardParams,
) -> Result<Vec<BaseFile>, DesiredError> {
    const PART: &str = "WireGuard interface";
    if p.prefix == 0 || p.prefix > 32 {
        return Err(r.err(PART, format!("/{} is not an IPv4 prefix length", p.prefix)));
    }
    if p.port == 0 {
        return Err(r.err(PART, "port 0 is not a port"));
    }
    if !is_key(p.private_key.expose()) {
        // Never the value: it is a secret.
        return Err(r.err(
            PART,
            "the private key is not a WireGuard key (32 bytes in base64)",
        ));
    }
    for peer in &p.peers {
        r.word(PART, "peer", &peer.name)?;
        if !is_key(&peer.public_key) {
            return Err(r.err(
                PART,
                format!(
                    "peer {}: public key {:?} is not a WireGuard key (32 bytes in base64)",
                    peer.name, peer.public_key
                ),
            ));
        }
        r.word(
            PART,
            &format!("peer {}: endpoint", peer.name),
            &peer.endpoint.host,
        )?;
        if peer.address == p.address {
            return Err(r.err(
                PART,
                format!(
                    "peer {} has this host's own address {}",
                    peer.name, p.address
                ),
            ));
        }
    }
    let ctx = json!({
        "address": p.address.to_string(),
        "prefix": p.prefix,
        "port": p.port,
        "private_key": p.private_key.expose(),
        "peers": p.peers.iter().map(|peer| json!({
            "name": peer.name,
            "public_key": peer.public_key,
            "address": peer.address.to_string(),
            "endpoint": peer.endpoint.to_string(),
        })).collect::<Vec<_>>(),
        "keepalive": p.keepalive.filter(|k| *k > 0),
    });
    let mut f = r.file(CONF, 0o600, "wg0.conf.j2", ctx)?;
    f.sensitive = true;
    Ok(vec![f])
}
