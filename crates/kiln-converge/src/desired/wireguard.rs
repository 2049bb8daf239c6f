//! The WireGuard feature (seam, contributes nothing yet): the mesh between the hosts of an
//! environment, computed once in [`Mesh::for_environment`] (every host's address in the
//! mesh, its public key, its peers), and per host the `wg-quick` configuration (a sensitive
//! file: it holds the private key from the vault), the package and the unit. Its changes
//! form a guarded group (they can cut the operator off).
//!
//! Must not open the firewall port (that is [`super::firewall`]'s, which reads the mesh).

use kiln_model::{Environment, Host, Model};

use super::{DesiredError, EnvironmentContext};
use crate::resource::DesiredState;

/// Every host's place in an environment's WireGuard mesh (empty until the feature lands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mesh {}

impl Mesh {
    /// The environment-wide pass: peers from every host of the environment.
    pub fn for_environment(_model: &Model, _env: &Environment) -> Result<Mesh, DesiredError> {
        Ok(Mesh::default())
    }
}

/// The mesh's resources on `host` (none yet).
pub(super) fn contribute(
    _env: &EnvironmentContext<'_>,
    _host: &Host,
) -> Result<DesiredState, DesiredError> {
    Ok(DesiredState::default())
}
