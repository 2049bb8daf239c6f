//! The lab as the rest of kiln sees it: which servers a kiln.toml's `lab` environment asks
//! for, and recording the started servers (addresses, SSH ports, admin user, host keys)
//! back into that environment.
//!
//! Owns: the mapping between the model's `lab` environment and kiln-lab's servers.
//! Must not: boot or tear down servers itself (kiln-lab does), edit kiln.toml other than
//! through `kiln_model::edit`, or print.

use std::path::Path;

use kiln_model::Model;
use kiln_model::edit::{EditError, LAB_ENVIRONMENT, LabHost};

/// The host roles of the model's `lab` environment (empty when it has none), in the
/// model's order (sorted by role).
pub fn roles(model: &Model) -> Vec<String> {
    model
        .environment(LAB_ENVIRONMENT)
        .map(|e| e.hosts.keys().cloned().collect())
        .unwrap_or_default()
}

/// Records `servers` as the hosts of kiln.toml's `lab` environment (comments kept).
pub fn record(config: &Path, servers: &[kiln_lab::Server]) -> Result<(), EditError> {
    let hosts: Vec<LabHost> = servers
        .iter()
        .map(|s| LabHost {
            role: s.name.clone(),
            address: s.address.to_string(),
            ssh_port: s.ssh_port,
            admin_user: s.admin_user.clone(),
            host_keys: s.host_keys.clone(),
        })
        .collect();
    kiln_model::edit::record_lab_hosts(config, &hosts)
}
