//! Finding a running lab from outside it: which lab a set of server addresses belongs to,
//! with the operator key and known_hosts that reach its servers, read from the labs' state
//! files. This is how `kiln plan/apply/status/trust --env lab` log in without the demo and
//! without a key of the user's own. Reads state and cgroups; changes nothing.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::{LabError, Result};
use crate::layout::{self, LabState, Roots};
use crate::process;
use crate::server::Server;

/// A lab whose servers are running, as another process needs it to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningLab {
    /// The lab's name (`kiln lab status`, `--lab NAME`).
    pub name: String,
    /// The operator's private key the lab generated, authorized for the admin user
    /// ([`crate::layout::ADMIN_USER`]) on every server.
    pub identity_file: PathBuf,
    /// A known_hosts file holding exactly the servers' recorded host keys.
    pub known_hosts: PathBuf,
    /// Every server of the lab (not only those asked for), as recorded.
    pub servers: Vec<Server>,
}

/// The running lab whose servers include every address in `addresses` (the lab may have
/// more servers), or `None` when no lab has them all, when one of them is not running, or
/// when `addresses` is empty. An error when two labs match (a stale state file), or when no
/// lab matches and a state file could not be read (it might have been the one).
pub fn lab_for_addresses(roots: &Roots, addresses: &[IpAddr]) -> Result<Option<RunningLab>> {
    lab_for_addresses_with(roots, addresses, &|lab, server| {
        layout::cgroup_dirs(lab, server)
            .iter()
            .any(|d| !process::pids_in(d).is_empty())
    })
}

/// [`lab_for_addresses`] with the liveness check given (`alive(lab, server)`).
fn lab_for_addresses_with(
    roots: &Roots,
    addresses: &[IpAddr],
    alive: &dyn Fn(&str, &str) -> bool,
) -> Result<Option<RunningLab>> {
    if addresses.is_empty() {
        return Ok(None);
    }
    let mut found: Vec<LabState> = Vec::new();
    let mut unreadable = None;
    for lab in roots.labs() {
        let state = match LabState::load(roots, &lab) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                unreadable.get_or_insert(e);
                continue;
            }
        };
        let has = |a: &IpAddr| {
            state
                .servers
                .iter()
                .any(|s| IpAddr::V4(s.address) == *a && alive(&lab, &s.name))
        };
        if addresses.iter().all(has) {
            found.push(state);
        }
    }
    match (found.len(), unreadable) {
        (0, Some(e)) => Err(e),
        (0, None) => Ok(None),
        (1, _) => {
            let state = found.remove(0);
            Ok(Some(RunningLab {
                identity_file: roots.identity_file(&state.name),
                known_hosts: roots.known_hosts(&state.name),
                servers: state
                    .servers
                    .iter()
                    .map(|s| Server::from_state(roots, &state.name, s))
                    .collect(),
                name: state.name,
            }))
        }
        _ => Err(LabError::AmbiguousLab {
            addresses: addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            labs: found
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ServerKind, ServerState};

    struct TempRoots(Roots);
    impl TempRoots {
        fn new(tag: &str) -> TempRoots {
            let base =
                std::env::temp_dir().join(format!("kiln-lab-running-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            TempRoots(Roots {
                state: base.join("state"),
                cache: base.join("cache"),
            })
        }
        fn lab(&self, name: &str, index: u8, servers: &[&str]) {
            std::fs::create_dir_all(self.0.lab_dir(name)).unwrap();
            LabState {
                name: name.into(),
                index,
                base_image: "/b".into(),
                servers: servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ServerState {
                        name: s.to_string(),
                        server_index: i as u8 + 1,
                        address: layout::server_addr(index, i as u8 + 1),
                        host_keys: vec![format!("ssh-ed25519 KEY{index}{i}")],
                        kind: ServerKind::Container,
                    })
                    .collect(),
                s3: None,
                acme: None,
            }
            .save(&self.0)
            .unwrap();
        }
    }
    impl Drop for TempRoots {
        fn drop(&mut self) {
            if let Some(base) = self.0.state.parent() {
                let _ = std::fs::remove_dir_all(base);
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn finds_the_lab_that_has_every_address_with_its_key_and_servers() {
        let t = TempRoots::new("find");
        t.lab("demo", 3, &["web", "db"]);
        t.lab("other", 4, &["web"]);
        let all = |_: &str, _: &str| true;
        let found = lab_for_addresses_with(&t.0, &[ip("10.77.3.12")], &all)
            .unwrap()
            .expect("lab demo has 10.77.3.12");
        assert_eq!(found.name, "demo");
        assert_eq!(found.identity_file, t.0.lab_dir("demo").join("id_ed25519"));
        assert_eq!(found.known_hosts, t.0.lab_dir("demo").join("known_hosts"));
        let names: Vec<&str> = found.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(found.servers[1].address, ip("10.77.3.12"));
        assert_eq!(found.servers[1].identity_file, found.identity_file);
        assert_eq!(found.servers[1].host_keys, ["ssh-ed25519 KEY31"]);
        assert_eq!(found.servers[1].admin_user, layout::ADMIN_USER);

        // Every address must be the lab's: one from another lab, or none known, is no match.
        let mixed = [ip("10.77.3.11"), ip("10.77.4.11")];
        assert_eq!(lab_for_addresses_with(&t.0, &mixed, &all).unwrap(), None);
        assert_eq!(
            lab_for_addresses_with(&t.0, &[ip("192.0.2.1")], &all).unwrap(),
            None
        );
        assert_eq!(lab_for_addresses_with(&t.0, &[], &all).unwrap(), None);
    }

    #[test]
    fn a_lab_whose_servers_are_not_running_is_not_found() {
        let t = TempRoots::new("dead");
        t.lab("demo", 3, &["web", "db"]);
        let only_web = |_: &str, server: &str| server == "web";
        let addrs = [ip("10.77.3.11"), ip("10.77.3.12")];
        assert_eq!(
            lab_for_addresses_with(&t.0, &addrs, &only_web).unwrap(),
            None
        );
        assert!(
            lab_for_addresses_with(&t.0, &addrs[..1], &only_web)
                .unwrap()
                .is_some()
        );
        // The real liveness check: nothing of this test lab runs on this machine.
        assert_eq!(lab_for_addresses(&t.0, &addrs).unwrap(), None);
    }

    #[test]
    fn two_labs_with_the_address_or_an_unreadable_state_are_errors() {
        let t = TempRoots::new("err");
        t.lab("one", 3, &["web"]);
        t.lab("two", 3, &["web"]);
        let all = |_: &str, _: &str| true;
        let err = lab_for_addresses_with(&t.0, &[ip("10.77.3.11")], &all)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one, two") && err.contains("10.77.3.11"),
            "{err}"
        );

        let t = TempRoots::new("corrupt");
        t.lab("good", 5, &["web"]);
        std::fs::create_dir_all(t.0.lab_dir("bad")).unwrap();
        std::fs::write(t.0.state_file("bad"), "{not json").unwrap();
        // A match elsewhere is still found; no match reports the unreadable file.
        assert!(
            lab_for_addresses_with(&t.0, &[ip("10.77.5.11")], &all)
                .unwrap()
                .is_some()
        );
        let err = lab_for_addresses_with(&t.0, &[ip("10.77.6.11")], &all)
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
