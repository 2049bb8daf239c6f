//! The WireGuard feature: the mesh between the hosts of an environment, computed once in
//! [`Mesh::for_environment`] (every host's address in the mesh, its port and endpoint),
//! and per host the `wg-quick` configuration (a sensitive file: it holds the private key
//! from the vault, `wireguard_<role>`; each peer's public key is the vault's derived
//! `wireguard_<role>_public`), the package and the `wg-quick@wg0` unit. Its changes form
//! the guarded group [`GUARD`] (they can cut the operator off).
//!
//! The same file serves the kernel module and `wireguard-go`: `wg-quick` falls back to
//! the userspace implementation by itself when the kernel has no WireGuard device and
//! `wireguard-go` is installed (the lab's servers: a fact of the host, not another
//! configuration).
//!
//! Must not open the firewall port (that is [`super::firewall`]'s, which reads the mesh).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use kiln_model::{Environment, Host, Model};

use super::base::Renderer;
use super::base::wireguard::{self as render, Endpoint, Peer, WireguardParams};
use super::{DesiredError, EnvironmentContext};
use crate::resource::{DesiredState, Notify, Package, Trigger, Unit};

/// The guarded group of the mesh's changes.
pub const GUARD: &str = "wireguard";

/// One host's place in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: String,
    /// Its address in the mesh.
    pub address: Ipv4Addr,
    /// The mesh's prefix length.
    pub prefix: u8,
    /// Where the other hosts reach it.
    pub endpoint: Endpoint,
    /// `PersistentKeepalive` towards its peers, seconds (0: none).
    pub keepalive: u16,
}

/// Every host's place in an environment's WireGuard mesh (hosts with `wireguard = false`
/// are not in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mesh {
    members: BTreeMap<String, Member>,
}

impl Mesh {
    /// The environment-wide pass: every member's address and endpoint.
    pub fn for_environment(_model: &Model, env: &Environment) -> Result<Mesh, DesiredError> {
        let mut members = BTreeMap::new();
        for host in env.hosts.values() {
            let Some(wg) = &host.base.wireguard else {
                continue;
            };
            let address = env
                .wireguard_address(&host.role)
                .ok_or_else(|| DesiredError::Base {
                    host: host.role.clone(),
                    part: "WireGuard interface",
                    message: format!("no address left for it in the mesh's range {}", wg.range),
                })?;
            members.insert(
                host.role.clone(),
                Member {
                    role: host.role.clone(),
                    address,
                    prefix: wg.range.prefix_len(),
                    endpoint: Endpoint {
                        host: host.address.to_string(),
                        port: wg.port,
                    },
                    keepalive: wg.keepalive,
                },
            );
        }
        Ok(Mesh { members })
    }

    /// The member playing `role`, if it is in the mesh.
    pub fn member(&self, role: &str) -> Option<&Member> {
        self.members.get(role)
    }

    /// Every member, by role.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
}

/// The mesh's resources on `host`: the package, `wg0.conf` and its unit, all guarded.
pub(super) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let Some(me) = env.mesh.member(&host.role) else {
        return Ok(DesiredState::default());
    };
    let secret = |name: String| {
        env.secrets.secret(&name).map_err(|message| DesiredError::Base {
            host: host.role.clone(),
            part: "WireGuard interface",
            message: format!(
                "{message}\n  hint: `kiln secrets generate --env {}` creates the mesh's key pairs",
                env.env.name
            ),
        })
    };
    let private_key = secret(kiln_model::wireguard_secret(&host.role))?;
    let mut peers = vec![];
    for m in env.mesh.members().filter(|m| m.role != host.role) {
        let public = secret(format!("{}_public", kiln_model::wireguard_secret(&m.role)))?;
        peers.push(Peer {
            name: m.role.clone(),
            public_key: public.expose().trim().to_owned(),
            address: m.address,
            endpoint: m.endpoint.clone(),
        });
    }
    let mesh = crate::mesh::MeshCheck {
        interface: render::INTERFACE.into(),
        peers: peers
            .iter()
            .map(|p| crate::mesh::MeshPeer {
                name: p.name.clone(),
                address: p.address,
                public_key: p.public_key.clone(),
            })
            .collect(),
    };
    let params = WireguardParams {
        address: me.address,
        prefix: me.prefix,
        port: me.endpoint.port,
        private_key,
        peers,
        keepalive: Some(me.keepalive),
    };
    let renderer = Renderer::new(env.model.base_dir(), &host.role);
    let files = render::wireguard_files(&renderer, &params)?;
    let mut d = DesiredState {
        packages: vec![Package {
            name: "wireguard-tools".into(),
        }],
        mesh: Some(mesh),
        ..Default::default()
    };
    let notify = Notify {
        unit: render::UNIT.into(),
        action: Trigger::Restart,
    };
    d.files.extend(
        files
            .into_iter()
            .map(|f| f.into_guarded(GUARD, std::slice::from_ref(&notify))),
    );
    let mut unit = Unit::packaged(render::UNIT);
    unit.guard = Some(GUARD.into());
    d.units.push(unit);
    Ok(d)
}
