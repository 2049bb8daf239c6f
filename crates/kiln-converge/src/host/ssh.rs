//! The real transport: the system OpenSSH client (so users' ~/.ssh/config, agents and
//! ProxyJump work), one ControlMaster connection per host per run, `BatchMode=yes`, and
//! `StrictHostKeyChecking=yes` against a known_hosts file written from the keys pinned in
//! kiln.toml — nothing is ever trusted silently. A refused host key becomes
//! [`HostError::HostKeyChanged`] naming the pinned and presented fingerprints.
//!
//! [`Host::fresh_connection`] gives a host with the same target, keys, identity and
//! BatchMode but `ControlMaster=no`, `ControlPath=none`: each of its commands is a new
//! SSH login, which is what a guarded group must prove ([`crate::guard`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::keys::{HostKey, known_hosts, parse_keyscan};
use super::{ExecOutput, Host, HostError, Privilege, run_child};

/// Where and how to reach a host.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// The role, for messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Pinned OpenSSH public key lines.
    pub host_keys: Vec<String>,
    /// A private key to use (the lab's), else whatever ssh would use.
    pub identity_file: Option<PathBuf>,
    pub connect_timeout_s: u32,
    /// Tests only: ship the agent to this folder instead of /var/lib/kiln/bin, and have it
    /// converge `agent_root` instead of `/` (a loopback sshd on the test machine).
    pub test_paths: Option<(String, PathBuf)>,
    /// The environment the host belongs to (for hints).
    pub env: Option<String>,
}

impl SshTarget {
    /// The command that checks and pins this host's keys.
    pub fn trust_command(&self) -> String {
        match &self.env {
            Some(e) => format!("kiln trust {} --env {e}", self.name),
            None => format!("kiln trust {}", self.name),
        }
    }
}

/// A host reached over SSH. The control socket and known_hosts file live in a private
/// temporary folder removed (after closing the master connection) on drop.
pub struct SshHost {
    target: SshTarget,
    privilege: Privilege,
    pinned: Vec<HostKey>,
    dir: tempfile::TempDir,
    /// Commands share one ControlMaster connection (false: every command logs in anew).
    multiplex: bool,
}

impl SshHost {
    pub fn new(target: SshTarget, privilege: Privilege) -> Result<SshHost, HostError> {
        if target.host_keys.is_empty() {
            return Err(HostError::NoHostKey {
                host: target.name.clone(),
                trust: target.trust_command(),
            });
        }
        let pinned = target
            .host_keys
            .iter()
            .map(|l| HostKey::parse(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HostError::BadHostKey {
                host: target.name.clone(),
                message: e.to_string(),
            })?;
        let io = |action| {
            let host = target.name.clone();
            move |source| HostError::Io {
                host,
                action,
                source,
            }
        };
        // Short path: ControlPath must fit in a unix socket address.
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh-")
            .tempdir_in("/tmp")
            .map_err(io("create a private folder"))?;
        std::fs::write(
            dir.path().join("known_hosts"),
            known_hosts(&target.address, target.port, &pinned),
        )
        .map_err(io("write known_hosts"))?;
        Ok(SshHost {
            target,
            privilege,
            pinned,
            dir,
            multiplex: true,
        })
    }

    /// A host whose every command is a new SSH login (no ControlMaster).
    pub fn unmultiplexed(target: SshTarget, privilege: Privilege) -> Result<SshHost, HostError> {
        let mut h = SshHost::new(target, privilege)?;
        h.multiplex = false;
        Ok(h)
    }

    fn control_path(&self) -> PathBuf {
        self.dir.path().join("cm")
    }

    /// The ssh argv before the remote command.
    pub fn ssh_args(&self) -> Vec<String> {
        let kh = self.dir.path().join("known_hosts");
        let mut a: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", kh.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "UpdateHostKeys=no".into(),
            "-o".into(),
            "CheckHostIP=no".into(),
        ];
        if self.multiplex {
            a.extend([
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}", self.control_path().display()),
                "-o".into(),
                "ControlPersist=120".into(),
            ]);
        } else {
            a.extend([
                "-o".into(),
                "ControlMaster=no".into(),
                "-o".into(),
                "ControlPath=none".into(),
            ]);
        }
        a.extend([
            "-o".into(),
            format!("ConnectTimeout={}", self.target.connect_timeout_s),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-p".into(),
            self.target.port.to_string(),
            "-l".into(),
            self.target.user.clone(),
        ]);
        if let Some(id) = &self.target.identity_file {
            a.extend([
                "-i".into(),
                id.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        a
    }

    fn key_refused(stderr: &str) -> bool {
        stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("host key is known for")
            || stderr.contains("No matching host key")
    }
}

/// Asks `address:port` for its host keys with ssh-keyscan.
pub fn keyscan(
    name: &str,
    address: &str,
    port: u16,
    timeout_s: u32,
) -> Result<Vec<HostKey>, HostError> {
    let out = Command::new("ssh-keyscan")
        .args([
            "-T",
            &timeout_s.to_string(),
            "-p",
            &port.to_string(),
            "--",
            address,
        ])
        .output()
        .map_err(|source| HostError::Io {
            host: name.to_owned(),
            action: "run ssh-keyscan",
            source,
        })?;
    let keys = parse_keyscan(&String::from_utf8_lossy(&out.stdout));
    if keys.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(HostError::Connect {
            host: name.to_owned(),
            message: format!("ssh-keyscan got no host key from {address}:{port} {err}"),
            hint: "is the address right, the server up, and sshd listening on that port?".into(),
        });
    }
    Ok(keys)
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.name
    }
    fn agent_dir(&self) -> String {
        match &self.target.test_paths {
            Some((dir, _)) => dir.clone(),
            None => super::AGENT_DIR.to_owned(),
        }
    }
    fn agent_extra_args(&self) -> Vec<String> {
        match &self.target.test_paths {
            Some((_, root)) => vec!["--root".into(), root.display().to_string()],
            None => vec![],
        }
    }
    fn privilege(&self) -> &Privilege {
        &self.privilege
    }
    fn fresh_connection(&mut self) -> Result<Box<dyn Host>, HostError> {
        Ok(Box::new(SshHost::unmultiplexed(
            self.target.clone(),
            self.privilege.clone(),
        )?))
    }
    fn exec(
        &mut self,
        command: &str,
        stdin: &[u8],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, HostError> {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args())
            .arg("--")
            .arg(&self.target.address)
            .arg(command);
        let out = run_child(&self.target.name, cmd, stdin, on_line)?;
        if out.code == Some(255) {
            if Self::key_refused(&out.stderr) {
                let presented =
                    keyscan(&self.target.name, &self.target.address, self.target.port, 5)
                        .map(|keys| keys.iter().map(|k| k.describe()).collect())
                        .unwrap_or_default();
                return Err(HostError::HostKeyChanged {
                    host: self.target.name.clone(),
                    expected: self.pinned.iter().map(|k| k.describe()).collect(),
                    presented,
                    trust: self.target.trust_command(),
                });
            }
            return Err(HostError::Connect {
                host: self.target.name.clone(),
                message: if out.stderr.trim().is_empty() {
                    "ssh exited with status 255 without a message (the connection was closed)"
                        .to_owned()
                } else {
                    out.stderr.trim().to_owned()
                },
                hint: format!(
                    "check that {}@{} port {} accepts your SSH key (BatchMode: no password prompts)",
                    self.target.user, self.target.address, self.target.port
                ),
            });
        }
        Ok(out)
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        if self.multiplex && Path::new(&self.control_path()).exists() {
            let _ = Command::new("ssh")
                .args([
                    "-o",
                    &format!("ControlPath={}", self.control_path().display()),
                    "-O",
                    "exit",
                    "--",
                ])
                .arg(&self.target.address)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
