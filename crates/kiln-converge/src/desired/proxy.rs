//! The reverse proxy feature (seam, contributes nothing yet): the environment's route table
//! (public hostname → host and container port, from every service with a subdomain),
//! computed once for the environment in [`Routes::for_environment`], and on the proxy's
//! host the proxy itself: its package or container, its configuration (Caddy by default,
//! Traefik as an option, both rendered from the one route table) with the environment's
//! ACME CA, and the unit that runs it.
//!
//! Must not open firewall ports (that is [`super::firewall`]'s, which reads the routes).

use kiln_model::{Environment, Host, Model};

use super::{DesiredError, EnvironmentContext};
use crate::resource::DesiredState;

/// Every public route of an environment (empty until the proxy feature lands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {}

impl Routes {
    /// The environment-wide pass: routes from every service of every host.
    pub fn for_environment(_model: &Model, _env: &Environment) -> Result<Routes, DesiredError> {
        Ok(Routes::default())
    }
}

/// The proxy's resources on `host` (none yet).
pub(super) fn contribute(
    _env: &EnvironmentContext<'_>,
    _host: &Host,
) -> Result<DesiredState, DesiredError> {
    Ok(DesiredState::default())
}
