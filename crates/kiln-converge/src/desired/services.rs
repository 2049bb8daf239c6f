//! The services feature (seam, contributes nothing yet): each `[services.<name>]` placed on
//! a host becomes its catalog recipe's resources there — the container as a Podman
//! quadlet ([`crate::resource::UnitKind::Quadlet`], never `systemctl enable`d), its data directories and volumes,
//! its configuration files and the secrets they need (sensitive files), and its health
//! check.
//!
//! Must not declare the proxy's routes, firewall openings or WireGuard peers: those come
//! from [`super::proxy`], [`super::firewall`] and [`super::wireguard`], which read the
//! services themselves.

use kiln_model::Host;

use super::{DesiredError, EnvironmentContext};
use crate::resource::DesiredState;

/// The resources of the services placed on `host` (none yet).
pub(super) fn contribute(
    _env: &EnvironmentContext<'_>,
    _host: &Host,
) -> Result<DesiredState, DesiredError> {
    Ok(DesiredState::default())
}
