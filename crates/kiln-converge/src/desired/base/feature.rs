//! The base as a feature of the desired state: what `[base]` turns on for a host, as the
//! typed resources the planner knows (packages, files, the packages' units, one command).
//! The firewall and the WireGuard mesh are their own features
//! ([`crate::desired::firewall`], [`crate::desired::wireguard`]); this one brings sshd,
//! automatic security updates, time and host name, and node-exporter.
//!
//! - **sshd**: the drop-in is in the guarded group [`SSH_GUARD`], checked with `sshd -t`
//!   before it is installed, and reloads sshd (whose own `ExecReload` checks the whole
//!   configuration again). The OpenSSH version its keywords are gated on is the one the
//!   host's release ships ([`openssh_of`]); a host running another one still gets a file
//!   that `sshd -t` refuses rather than a broken sshd.
//! - **updates**: unattended-upgrades (Debian) or dnf-automatic (RHEL), and the hourly
//!   metrics of pending security updates and reboot-required.
//! - **time**: chrony with the family's pool, `/etc/hostname` (the host's role) and the
//!   running host name set from it.
//! - **node-exporter**: listening on the host's WireGuard address (loopback when the host
//!   is not in the mesh), started after `wg0`, with its textfile directory.
//!
//! Files the operator declares elsewhere (`[roles.*] files`) under `/etc/ssh`,
//! `/etc/firewalld`, `/etc/wireguard` or the network's folders join the matching guarded
//! group ([`guard_for_path`]): a role cannot cut the owner off either.

use std::net::Ipv4Addr;
use std::path::Path;

use kiln_model::Host;

use super::Renderer;
use super::node_exporter::{self, NodeExporterParams};
use super::sshd::{self, OpensshVersion, SshdParams};
use super::time::{self, ChronyParams};
use super::updates::{self, RebootWindow, UpdatesParams};
use crate::desired::{DesiredError, EnvironmentContext, os_family};
use crate::facts::OsFamily;
use crate::resource::{Command, Content, DesiredState, Directory, Notify, Package, Trigger, Unit};

/// The guarded group of sshd's changes.
pub const SSH_GUARD: &str = "ssh";
/// The guarded group of changes to the network's configuration.
pub const NETWORK_GUARD: &str = "network";

/// The guarded group a file at `path` belongs to by where it is (sshd's, firewalld's,
/// WireGuard's or the network's folders), if any.
pub fn guard_for_path(path: &Path) -> Option<&'static str> {
    const GROUPS: &[(&str, &str)] = &[
        ("/etc/ssh", SSH_GUARD),
        ("/etc/firewalld", crate::desired::firewall::GUARD),
        ("/etc/wireguard", crate::desired::wireguard::GUARD),
        ("/etc/network", NETWORK_GUARD),
        ("/etc/netplan", NETWORK_GUARD),
        ("/etc/systemd/network", NETWORK_GUARD),
        ("/etc/NetworkManager", NETWORK_GUARD),
        ("/etc/sysconfig/network-scripts", NETWORK_GUARD),
    ];
    GROUPS
        .iter()
        .find(|(dir, _)| path.starts_with(dir))
        .map(|(_, g)| *g)
}

/// The OpenSSH release each supported OS release ships (its sshd's keywords).
pub fn openssh_of(os: kiln_model::OsFamily) -> OpensshVersion {
    let (major, minor) = match os {
        kiln_model::OsFamily::Debian12 => (9, 2),
        kiln_model::OsFamily::Debian13 => (10, 0),
        kiln_model::OsFamily::Rhel9 => (8, 7),
        kiln_model::OsFamily::Rhel10 => (9, 9),
    };
    OpensshVersion { major, minor }
}

/// sshd's unit.
pub fn ssh_unit(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "ssh.service",
        OsFamily::Rhel => "sshd.service",
    }
}

/// chrony's unit.
fn chrony_unit(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "chrony.service",
        OsFamily::Rhel => "chronyd.service",
    }
}

/// Whether any part of the base is on for `host`.
fn any_part(host: &Host) -> bool {
    let b = &host.base;
    b.sshd.is_some()
        || b.firewall.is_some()
        || b.updates.is_some()
        || b.time
        || b.node_exporter
        || b.wireguard.is_some()
}

/// The host's release, which the base needs (its files differ by family).
pub(crate) fn release(host: &Host) -> Result<Option<kiln_model::OsFamily>, DesiredError> {
    match host.os {
        Some(os) => Ok(Some(os)),
        None if any_part(host) => Err(DesiredError::Base {
            host: host.role.clone(),
            part: "base",
            message: "kiln.toml does not say which system the host runs\n  hint: add `os = \"debian13\"` (or rhel9, rhel10, debian12) to the host, or turn the base off with `[base]` sshd = false, firewall = false, ...".into(),
        }),
        None => Ok(None),
    }
}

fn restart(unit: &str) -> Notify {
    Notify {
        unit: unit.into(),
        action: Trigger::Restart,
    }
}

fn package(name: &str) -> Package {
    Package { name: name.into() }
}

/// The base's share of `host` (sshd, updates, time, node-exporter).
pub(in crate::desired) fn contribute(
    env: &EnvironmentContext<'_>,
    host: &Host,
) -> Result<DesiredState, DesiredError> {
    let Some(release) = release(host)? else {
        return Ok(DesiredState::default());
    };
    let os = os_family(release);
    let r = Renderer::new(env.model.base_dir(), &host.role);
    let mut d = DesiredState::default();
    let b = &host.base;

    if let Some(s) = &b.sshd {
        let unit = ssh_unit(os);
        let params = SshdParams {
            port: host.ssh_port,
            admin_user: host.admin_user.clone(),
            allow_groups: s.allow_groups.clone(),
            os,
            openssh: openssh_of(release),
            penalties_exempt: s.penalties_exempt.clone(),
        };
        d.packages.push(package("openssh-server"));
        for f in sshd::sshd_files(&r, &params)? {
            let mut file = f.into_guarded(
                SSH_GUARD,
                &[Notify {
                    unit: unit.into(),
                    action: Trigger::Reload,
                }],
            );
            file.note = Some(match os {
                OsFamily::Debian => format!(
                    "algorithms chosen by kiln for OpenSSH {}: post-quantum key exchange only, so the admin's ssh client needs OpenSSH 8.5 or newer",
                    params.openssh
                ),
                OsFamily::Rhel => "algorithms left to the system crypto-policy (update-crypto-policies): this drop-in sets none".into(),
            });
            file.validate = Some(crate::resource::Validate {
                name: "sshd -t".into(),
                argv: ["/usr/sbin/sshd", "-t", "-f", "{}"]
                    .map(str::to_owned)
                    .to_vec(),
            });
            d.files.push(file);
        }
        let mut u = Unit::packaged(unit);
        u.guard = Some(SSH_GUARD.into());
        d.units.push(u);
    }

    if let Some(u) = &b.updates {
        let reboot_window = match u.reboot {
            kiln_model::Reboot::Never => None,
            // "When needed" with no window: at 04:00 (dnf-automatic's window is its
            // timer's time, unattended-upgrades' its reboot time).
            kiln_model::Reboot::WhenNeeded => {
                let at = u.reboot_window.map(|w| w.start);
                RebootWindow::new(at.map_or(4, |t| t.hour), at.map_or(0, |t| t.minute))
            }
        };
        let params = UpdatesParams { os, reboot_window };
        d.packages.push(package(match os {
            OsFamily::Debian => "unattended-upgrades",
            OsFamily::Rhel => "dnf-automatic",
        }));
        if os == OsFamily::Rhel {
            d.units
                .push(Unit::packaged(updates::DNF_AUTOMATIC_TIMER.to_owned()));
        }
        textfile_dir(&mut d, os);
        for f in updates::updates_files(&r, &params)? {
            let name = f
                .path
                .strip_prefix("/etc/systemd/system")
                .ok()
                .and_then(|p| p.to_str())
                .filter(|n| !n.contains('/'))
                .map(str::to_owned);
            match name {
                Some(name) => {
                    let mut unit = Unit::file(name.clone(), Content::text(f.content));
                    if name == updates::METRICS_SERVICE {
                        // Run by its timer, not at boot by itself.
                        unit.enabled = false;
                        unit.started = false;
                    }
                    d.units.push(unit);
                }
                None if f.path.starts_with("/etc/systemd/system") => {
                    // A drop-in of a packaged timer: restart it to take the new time.
                    d.files
                        .push(f.into_resource(&[restart(updates::DNF_AUTOMATIC_TIMER)]));
                }
                None => d.files.push(f.into_resource(&[])),
            }
        }
    }

    if b.time {
        let unit = chrony_unit(os);
        d.packages.push(package("chrony"));
        let params = ChronyParams {
            os,
            pools: time::default_pools(os),
            servers: vec![],
        };
        d.files.extend(
            time::chrony_files(&r, &params)?
                .into_iter()
                .map(|f| f.into_resource(&[restart(unit)])),
        );
        d.units.push(Unit::packaged(unit));
        d.files
            .push(time::hostname_file(&r, &host.role)?.into_resource(&[]));
        d.commands.push(Command {
            name: "hostname".into(),
            run: "hostname -F /etc/hostname".into(),
            unless: Some("test \"$(hostname)\" = \"$(cat /etc/hostname)\"".into()),
            triggered_by: vec!["/etc/hostname".into()],
            stage: Default::default(),
        });
    }

    if b.node_exporter {
        let unit = node_exporter::unit(os);
        let member = env.mesh.member(&host.role);
        let params = NodeExporterParams {
            os,
            address: member.map_or(Ipv4Addr::LOCALHOST, |m| m.address),
            port: node_exporter::PORT,
        };
        d.packages.push(package(node_exporter::package(os)));
        textfile_dir(&mut d, os);
        for f in node_exporter::node_exporter_files(&r, &params)? {
            let dropin = f.path.starts_with("/etc/systemd/system");
            if dropin && member.is_none() {
                // Not in the mesh: nothing to wait for.
                continue;
            }
            d.files.push(f.into_resource(&[restart(unit)]));
        }
        d.units.push(Unit::packaged(unit));
    }
    Ok(d)
}

/// node-exporter's textfile directory, declared once by whichever part needs it first.
fn textfile_dir(d: &mut DesiredState, os: OsFamily) {
    let path = std::path::PathBuf::from(node_exporter::textfile_dir(os));
    if !d.directories.iter().any(|x| x.path == path) {
        d.directories.push(Directory {
            path,
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        });
    }
}

#[cfg(test)]
mod tests_support {
    use std::path::Path;
    use std::sync::Arc;

    use kiln_secrets::Secret;

    use crate::desired::{SecretSource, desired_for_host, test_wireguard_key};
    use crate::resource::DesiredState;

    /// Every WireGuard key is a valid key naming its secret's host.
    struct Keys;
    impl SecretSource for Keys {
        fn secret(&self, name: &str) -> Result<Secret, String> {
            let tag: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
            Ok(Secret::new(test_wireguard_key(&tag)))
        }
    }

    /// The desired state of `role` in the reference's environment `env`.
    pub(super) fn reference(env: &str, role: &str) -> DesiredState {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference/kiln.toml");
        let m = kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)));
        let env = m.environment(env).unwrap();
        desired_for_host(&m, env, env.host(role).unwrap(), Arc::new(Keys)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::desired::test_wireguard_key;
    use crate::resource::{DesiredState, File, Trigger, UnitKind};

    use super::tests_support::reference;

    fn file<'a>(d: &'a DesiredState, path: &str) -> &'a File {
        d.files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("no file {path}"))
    }

    fn text(f: &File) -> &str {
        std::str::from_utf8(f.content.bytes()).unwrap()
    }

    #[test]
    fn every_host_gets_the_base_as_guarded_resources_derived_from_the_model() {
        let d = reference("lab", "services");
        assert_eq!(d.guard_timeout_s, Some(60), "[base] rollback_seconds");
        let sshd = file(&d, "/etc/ssh/sshd_config.d/00-kiln.conf");
        assert_eq!(sshd.guard.as_deref(), Some("ssh"));
        assert_eq!(
            sshd.validate.as_ref().unwrap().argv[..2],
            ["/usr/sbin/sshd", "-t"]
        );
        assert_eq!(
            (sshd.notify[0].unit.as_str(), sshd.notify[0].action),
            ("ssh.service", Trigger::Reload)
        );
        assert!(text(sshd).contains("AllowUsers kiln\n"), "{}", text(sshd));
        let ssh = d.units.iter().find(|u| u.name == "ssh.service").unwrap();
        assert_eq!(
            (ssh.kind.clone(), ssh.guard.as_deref()),
            (UnitKind::Packaged, Some("ssh"))
        );

        // The firewall opens what the model says this host serves.
        let public = file(&d, "/etc/firewalld/zones/public.xml");
        assert_eq!(public.guard.as_deref(), Some("firewall"));
        let zone = text(public);
        for port in [
            "port=\"22\" protocol=\"tcp\"",
            "port=\"443\" protocol=\"tcp\"",
            "port=\"51820\" protocol=\"udp\"",
        ] {
            assert!(zone.contains(port), "{port}: {zone}");
        }
        let monitoring = reference("lab", "monitoring");
        let zone = text(file(&monitoring, "/etc/firewalld/zones/public.xml"));
        assert!(!zone.contains("port=\"443\""), "no proxy there: {zone}");

        // WireGuard: the vault's keys, the other host as the peer, the file sensitive.
        let wg = file(&d, "/etc/wireguard/wg0.conf");
        assert!(wg.sensitive && wg.mode == 0o600);
        assert_eq!(wg.guard.as_deref(), Some("wireguard"));
        let conf = text(wg);
        assert!(
            conf.contains(&test_wireguard_key("wireguardservices")),
            "{conf}"
        );
        assert!(
            conf.contains(&test_wireguard_key("wireguardmonitoringpublic")),
            "{conf}"
        );
        assert!(
            !conf.contains(&test_wireguard_key("wireguardservicespublic")),
            "{conf}"
        );
        assert!(conf.contains("Address = 10.103.0.2/24"), "{conf}");
        // node-exporter listens on the mesh address only.
        let ne = text(file(&d, "/etc/default/prometheus-node-exporter"));
        assert!(ne.contains("--web.listen-address=10.103.0.2:9100"), "{ne}");
        for p in [
            "firewalld",
            "wireguard-tools",
            "chrony",
            "unattended-upgrades",
        ] {
            assert!(d.packages.iter().any(|x| x.name == p), "{p}");
        }
    }

    #[test]
    fn a_roles_file_under_sshds_folder_joins_the_ssh_guard() {
        assert_eq!(
            super::guard_for_path(Path::new("/etc/ssh/sshd_config.d/10-x.conf")),
            Some("ssh")
        );
        assert_eq!(
            super::guard_for_path(Path::new("/etc/firewalld/policies/p.xml")),
            Some("firewall")
        );
        assert_eq!(super::guard_for_path(Path::new("/etc/sshfoo")), None);
        assert_eq!(super::guard_for_path(Path::new("/etc/app.conf")), None);
    }
}

#[cfg(test)]
mod units {
    use super::tests_support::reference;
    use crate::resource::UnitKind;

    #[test]
    fn the_models_list_of_base_units_names_every_packaged_unit_of_both_families() {
        for (env, role) in [("lab", "services"), ("production", "services")] {
            let d = reference(env, role);
            for u in d.units.iter().filter(|u| u.kind == UnitKind::Packaged) {
                assert!(
                    kiln_model::BASE_UNITS.contains(&u.name.as_str()),
                    "{env}: {} missing from kiln_model::BASE_UNITS",
                    u.name
                );
            }
        }
    }
}
