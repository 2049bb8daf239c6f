//! The firewall feature (seam, contributes nothing yet): per host, the zone and the ports
//! it opens — SSH always, the proxy's 80/443 where the proxy runs, WireGuard's port on
//! every host of the mesh, metrics only from the mesh — as firewalld (RHEL, Debian) files.
//! Its files and their reload form a guarded group (they can cut the operator off).
//!
//! Must not decide what runs where: it reads the services, routes and mesh of the
//! [`EnvironmentContext`].

use kiln_model::Host;

use super::{DesiredError, EnvironmentContext};
use crate::resource::DesiredState;

/// The firewall's resources on `host` (none yet).
pub(super) fn contribute(
    _env: &EnvironmentContext<'_>,
    _host: &Host,
) -> Result<DesiredState, DesiredError> {
    Ok(DesiredState::default())
}
