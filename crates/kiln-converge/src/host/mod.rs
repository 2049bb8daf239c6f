//! The transport: a [`Host`] runs shell command lines with some stdin and streams stdout
//! lines back. Implementations: [`ssh::SshHost`] (system OpenSSH, one multiplexed
//! connection per host), [`LocalHost`] (this machine, optionally under a root prefix, for
//! tests and `--local` use), and [`FakeHost`] (strict scripted fake for protocol tests).
//!
//! The composite operation — ship the agent if missing, run it with the desired state on
//! stdin, collect its events — is a default method, [`Host::run_agent`], written once.
//! Every value interpolated into a command line goes through [`kiln_shell::quote`].
//!
//! Guarded groups ([`crate::guard`]): when the agent reports
//! [`Event::GuardArmed`], `run_agent` proves the host is still reachable over a
//! [`Host::fresh_connection`] (outside the ControlMaster) by running `agent disarm TOKEN`
//! there, and reports [`Event::GuardConfirmed`] or, failing that,
//! [`Event::GuardUnconfirmed`] and a failed host (the host's timer then rolls back).

pub mod keys;
pub mod ssh;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use kiln_secrets::Secret;

use crate::agent::{AGENT_MISSING_EXIT, frame_input};
use crate::event::Event;
use crate::owned::sha256_hex;
use crate::plan::Plan;
use crate::resource::DesiredState;
use kiln_shell::{join, quote};

/// Where shipped agents live on hosts.
pub const AGENT_DIR: &str = "/var/lib/kiln/bin";
/// The agent of the last apply (a symlink the agent keeps), what the host's own timers run.
pub const AGENT_LINK: &str = "/var/lib/kiln/bin/kiln";

const UPLOAD_MARKER: &str = "KILN-UPLOAD-V1";

/// Blank lines sent after a sudo password (more than sudo's `passwd_tries`, 3 by default).
const SUDO_FILLER_LINES: usize = 9;

/// How commands get root on the host.
#[derive(Clone, Debug)]
pub enum Privilege {
    /// Already root.
    Root,
    /// `sudo -n` (NOPASSWD).
    Sudo,
    /// `sudo -S` with this password sent as the first line of stdin (never in argv).
    SudoPassword(Secret),
}

impl Privilege {
    /// Prefix words for a command line, and bytes to send before the command's own stdin.
    pub fn wrap(&self, words: &[String]) -> (String, Vec<u8>) {
        match self {
            Privilege::Root => (join(words), vec![]),
            Privilege::Sudo => (format!("sudo -n -- {}", join(words)), vec![]),
            Privilege::SudoPassword(p) => {
                let mut stdin = p.expose().as_bytes().to_vec();
                // Blank lines after the password: if it is wrong, sudo's further attempts
                // read these, never the desired state that follows (the agent and the upload
                // script skip everything before their marker line).
                stdin.extend_from_slice(&[b'\n'; SUDO_FILLER_LINES + 1]);
                (
                    format!(
                        "sudo -S -p {} -- {}",
                        quote("[kiln] sudo password: "),
                        join(words)
                    ),
                    stdin,
                )
            }
        }
    }
}

/// What a finished remote command returned.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub code: Option<i32>,
    pub stderr: String,
}

impl ExecOutput {
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }
}

/// Transport failures, each naming the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("host {host}: cannot connect: {message}\n  hint: {hint}")]
    Connect {
        host: String,
        message: String,
        hint: String,
    },
    #[error(
        "host {host}: its SSH host key changed — refusing to connect\n  expected (pinned in kiln.toml): {}\n  presented by the host:          {}\n  hint: if the server was reinstalled, check the new key on the provider's console and run `{trust}`; otherwise someone may be intercepting the connection",
        expected.join(", "), if presented.is_empty() { "(could not be read)".to_owned() } else { presented.join(", ") }
    )]
    HostKeyChanged {
        host: String,
        expected: Vec<String>,
        presented: Vec<String>,
        /// The command that checks and re-pins the keys (`kiln trust ROLE --env ENV`).
        trust: String,
    },
    #[error(
        "host {host}: no SSH host key is pinned in kiln.toml\n  hint: run `{trust}` to check and pin it"
    )]
    NoHostKey { host: String, trust: String },
    #[error("host {host}: {message}")]
    BadHostKey { host: String, message: String },
    #[error(
        "host {host}: sudo failed: {message}\n  hint: kiln needs root, passwordless sudo, or `--ask-sudo-password`"
    )]
    Sudo { host: String, message: String },
    #[error("host {host}: uploading the agent failed: {message}")]
    Upload { host: String, message: String },
    #[error("host {host}: the agent failed (exit {code}): {message}")]
    Agent {
        host: String,
        code: String,
        message: String,
    },
    #[error("host {host}: {action}: {source}")]
    Io {
        host: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A bug in kiln itself (a panicked run, a host left without a result).
    #[error(
        "host {host}: internal error: {message}\n  hint: this is a bug in kiln; the host may not have been worked on"
    )]
    Internal { host: String, message: String },
    /// A check kiln runs on the host after an apply could not run.
    #[error("host {host}: {what}: {message}")]
    Check {
        host: String,
        what: String,
        message: String,
    },
    #[error("host {host}: unexpected command (strict fake): {command}")]
    Unexpected { host: String, command: String },
}

/// This very binary, content-addressed. Its bytes are read only when an upload needs
/// them (most runs find the agent on the host already).
#[derive(Clone, Debug)]
pub struct AgentBinary {
    pub sha256: String,
    bytes: Arc<std::sync::OnceLock<Arc<Vec<u8>>>>,
    /// Where it is on this machine (LocalHost runs it from there).
    pub local_path: PathBuf,
}

impl AgentBinary {
    /// A binary from its bytes (`local_path` is where it would run locally).
    pub fn from_bytes(bytes: Vec<u8>, local_path: impl Into<PathBuf>) -> AgentBinary {
        let lock = std::sync::OnceLock::new();
        let sha256 = sha256_hex(&bytes);
        let _ = lock.set(Arc::new(bytes));
        AgentBinary {
            sha256,
            bytes: Arc::new(lock),
            local_path: local_path.into(),
        }
    }

    pub fn from_path(path: &Path) -> std::io::Result<AgentBinary> {
        Ok(Self::from_bytes(std::fs::read(path)?, path))
    }

    /// Its bytes, read from `local_path` on first use and checked against its hash (a
    /// binary rebuilt since the hash was taken is an error, not a wrong upload).
    pub fn bytes(&self) -> std::io::Result<Arc<Vec<u8>>> {
        if let Some(b) = self.bytes.get() {
            return Ok(b.clone());
        }
        let read = std::fs::read(&self.local_path)?;
        if sha256_hex(&read) != self.sha256 {
            return Err(std::io::Error::other(format!(
                "{} changed since kiln started (rebuilt?): run kiln again",
                self.local_path.display()
            )));
        }
        Ok(self.bytes.get_or_init(|| Arc::new(read)).clone())
    }

    /// The running executable (`std::env::current_exe`), its hash remembered in the
    /// user's cache folder ([`Self::from_path_cached`]).
    pub fn current() -> std::io::Result<AgentBinary> {
        let path = std::env::current_exe()?;
        match cache_dir() {
            Some(dir) => Self::from_path_cached(&path, &dir),
            None => Self::from_path(&path),
        }
    }

    /// [`Self::from_path`], neither reading nor hashing the file when `cache`'s record of
    /// it (device, inode, size and modification time) matches: hashing kiln's own 16 MB
    /// took 40-60 ms of every run, a third of a no-change apply's own time, and reading it
    /// is needed only for an upload ([`Self::bytes`], which checks the hash). A cache that
    /// cannot be read or written is ignored.
    pub fn from_path_cached(path: &Path, cache: &Path) -> std::io::Result<AgentBinary> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path)?;
        let key = format!(
            "{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        );
        let record = cache.join("agent-sha256");
        let cached = std::fs::read_to_string(&record).ok().and_then(|t| {
            let (k, sha) = t.trim().split_once(' ')?;
            (k == key && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| sha.to_owned())
        });
        if let Some(sha256) = cached {
            return Ok(AgentBinary {
                sha256,
                bytes: Arc::new(std::sync::OnceLock::new()),
                local_path: path.to_owned(),
            });
        }
        let binary = Self::from_path(path)?;
        // Written aside then renamed: a reader sees the old record or the new one.
        let tmp = cache.join(format!(".agent-sha256.{}", std::process::id()));
        let _ = std::fs::create_dir_all(cache)
            .and_then(|()| std::fs::write(&tmp, format!("{key} {}\n", binary.sha256)))
            .and_then(|()| std::fs::rename(&tmp, &record));
        Ok(binary)
    }

    /// Its content-addressed path in `dir` on a host.
    pub fn remote_path(&self, dir: &str) -> String {
        format!("{dir}/kiln-{}", self.sha256)
    }
}

/// kiln's cache folder: `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kiln"))
}

/// How the agent is started on a host.
#[derive(Clone, Debug)]
pub enum AgentLocation {
    /// Content-addressed under [`AGENT_DIR`], uploaded when missing.
    Shipped,
    /// Already here (local host): run this path with these extra arguments.
    Local { path: PathBuf, args: Vec<String> },
}

/// What one agent run produced.
#[derive(Debug, Clone, Default)]
pub struct AgentOutcome {
    pub plan: Option<Plan>,
    /// Plan-only runs: the declared units' and the containers' state.
    pub observed: Option<HostObserved>,
    pub applied: usize,
    /// The agent reported a failure (a change failed, or it could not observe/plan).
    pub failed: bool,
    /// Error and failure messages the agent reported.
    pub errors: Vec<String>,
    pub uploaded: bool,
    /// Guarded groups proven over a fresh connection and disarmed.
    pub confirmed: Vec<String>,
    /// Guarded groups that could not be confirmed: the host rolls them back.
    pub unconfirmed: Vec<String>,
    /// The rollbacks to wait for (one per unconfirmed group), see [`wait_rollback`].
    pub rollbacks: Vec<PendingRollback>,
    /// The reverse proxy's certificates (hosts with routes), as last reported.
    pub certificates: Option<Vec<crate::certs::CertificateState>>,
}

/// A guarded group that was not confirmed: the host's timer restores it at its deadline.
#[derive(Debug, Clone)]
pub struct PendingRollback {
    pub group: String,
    pub token: String,
    pub deadline_s: u64,
    /// When the laptop heard that the group was applied and armed.
    pub armed_at: std::time::Instant,
}

/// How long after the deadline kiln keeps trying to reach a host that rolls back.
pub const ROLLBACK_GRACE: std::time::Duration = std::time::Duration::from_secs(45);

/// What became of a group that was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The host rolled it back (its marker is there), this long after it was armed.
    RolledBack(std::time::Duration),
    /// Its saved state is gone without a rollback: a disarm went through after all (on a
    /// connection that failed afterwards), so the change is kept.
    Kept,
}

/// Waits for the host to roll `pending` back, then proves over a fresh connection that it
/// did: the host answers again and the rollback's marker is there
/// ([`crate::guard::rolled_back_marker`]). It waits until the group's deadline, then (the
/// timer waits for the host lock, so no sooner than the agent's end) keeps trying for
/// [`ROLLBACK_GRACE`] more, at least once.
pub fn wait_rollback(
    host: &mut dyn Host,
    pending: &PendingRollback,
) -> Result<RollbackOutcome, String> {
    use std::time::{Duration, Instant};
    let saved = format!("{}/{}.json", crate::guard::GUARD_DIR, pending.token);
    let marker = crate::guard::rolled_back_marker(&pending.token);
    // 0: rolled back; 1: still armed; 2: neither (disarmed).
    let script = format!(
        "if [ -e {m} ]; then exit 0; elif [ -e {s} ]; then exit 1; else exit 2; fi",
        m = quote(&marker),
        s = quote(&saved)
    );
    let (command, prefix) = host
        .privilege()
        .wrap(&["sh".to_owned(), "-c".to_owned(), script]);
    let deadline = pending.armed_at + Duration::from_secs(pending.deadline_s);
    if let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let until = Instant::now().max(deadline) + ROLLBACK_GRACE;
    let mut last: String;
    loop {
        match host.fresh_connection() {
            Ok(mut fresh) => match fresh.exec(&command, &prefix, &mut |_| {}) {
                Ok(out) if out.code == Some(0) => {
                    return Ok(RollbackOutcome::RolledBack(pending.armed_at.elapsed()));
                }
                Ok(out) if out.code == Some(2) => return Ok(RollbackOutcome::Kept),
                Ok(out) if out.code == Some(1) => last = "its rollback has not run yet".into(),
                Ok(out) => last = out.stderr_tail(),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= until {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// "start unit b: skipped because start unit a failed", or, when the agent stopped
/// touching the host after an unhealthy service, the agent's own reason.
fn skipped_message(op: crate::plan::Op, id: &crate::resource::ResourceId, because: &str) -> String {
    if because.contains(" is not healthy") {
        format!("{op} {id}: skipped: {because}")
    } else {
        format!("{op} {id}: skipped because {because} failed")
    }
}

/// What a plan-only run observed of a host's units and containers ([`Event::Observed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostObserved {
    pub units: std::collections::BTreeMap<String, crate::observe::UnitStatus>,
    pub containers: std::collections::BTreeMap<String, crate::observe::ContainerState>,
    /// The reverse proxy's certificates, on a host with routes.
    pub certificates: Vec<crate::certs::CertificateState>,
}

/// A machine kiln converges.
pub trait Host: Send {
    /// The name used in messages (the host's role).
    fn name(&self) -> &str;
    fn privilege(&self) -> &Privilege;
    /// Runs `command` (a complete, already quoted `sh` command line), feeding `stdin`,
    /// calling `on_line` for each stdout line as it arrives.
    fn exec(
        &mut self,
        command: &str,
        stdin: &[u8],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, HostError>;

    fn agent_location(&self, _binary: &AgentBinary) -> AgentLocation {
        AgentLocation::Shipped
    }

    /// Folder where shipped agents live on this host.
    fn agent_dir(&self) -> String {
        AGENT_DIR.to_owned()
    }

    /// Extra arguments for the shipped agent (tests: `--root DIR`).
    fn agent_extra_args(&self) -> Vec<String> {
        vec![]
    }

    /// A new connection to the same host that shares nothing with this one's multiplexed
    /// connection (for SSH: no ControlMaster), so that it proves a new login still works:
    /// the check of a guarded group ([`crate::guard`]). Opening it may be lazy; its first
    /// `exec` is what connects.
    fn fresh_connection(&mut self) -> Result<Box<dyn Host>, HostError> {
        Err(HostError::Connect {
            host: self.name().to_owned(),
            message: "this kind of host cannot open a fresh connection".into(),
            hint: "guarded groups need an SSH or local host".into(),
        })
    }

    /// The command line (and stdin prefix) that runs the agent with `args` after `agent`:
    /// through the privilege wrapper, and for a shipped agent, exiting
    /// [`AGENT_MISSING_EXIT`] when it is not on the host.
    fn agent_command(&self, binary: &AgentBinary, args: &[String]) -> (String, Vec<u8>) {
        let location = self.agent_location(binary);
        let remote = binary.remote_path(&self.agent_dir());
        let mut words: Vec<String> = match &location {
            AgentLocation::Shipped => {
                let mut w = vec![remote.clone(), "agent".into()];
                w.extend(self.agent_extra_args());
                w
            }
            AgentLocation::Local { path, args } => {
                let mut w = vec![path.display().to_string(), "agent".into()];
                w.extend(args.iter().cloned());
                w
            }
        };
        words.extend(args.iter().cloned());
        let (wrapped, prefix) = self.privilege().wrap(&words);
        let command = match &location {
            AgentLocation::Shipped => format!(
                "if [ -x {p} ]; then exec {wrapped}; else exit {AGENT_MISSING_EXIT}; fi",
                p = quote(&remote)
            ),
            AgentLocation::Local { .. } => wrapped,
        };
        (command, prefix)
    }

    /// Ships the agent (when missing) and runs it with `desired` on stdin. Events are
    /// passed to `on_event` as they arrive. One command in the usual case (agent already
    /// there); two more when the binary must be uploaded first.
    fn run_agent(
        &mut self,
        binary: &AgentBinary,
        desired: &DesiredState,
        plan_only: bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<AgentOutcome, HostError> {
        let host = self.name().to_owned();
        let input = frame_input(desired).map_err(|e| HostError::Io {
            host: host.clone(),
            action: "encode the desired state",
            source: std::io::Error::other(e),
        })?;
        let location = self.agent_location(binary);
        let mut args: Vec<String> = vec![];
        if plan_only {
            args.push("--plan-only".into());
        } else {
            args.extend(["--operator".into(), operator_id()]);
        }
        let (command, prefix) = self.agent_command(binary, &args);
        let mut stdin = prefix.clone();
        stdin.extend_from_slice(&input);
        // Guarded groups are confirmed over a fresh connection while the agent goes on.
        let guarded = !plan_only
            && (desired.files.iter().any(|f| f.guard.is_some())
                || desired.units.iter().any(|u| u.guard.is_some()));
        let mut fresh = if guarded {
            let (template, prefix) =
                self.agent_command(binary, &["disarm".to_owned(), TOKEN_SLOT.to_owned()]);
            Some(Fresh {
                host: self.fresh_connection(),
                template,
                prefix,
            })
        } else {
            None
        };

        let mut uploaded = false;
        loop {
            let mut outcome = AgentOutcome {
                uploaded,
                ..Default::default()
            };
            let mut finished = false;
            let mut unreadable = Unreadable::default();
            let mut on_line = |line: &str| {
                let event = match serde_json::from_str::<Event>(line) {
                    Ok(e) => e,
                    Err(_) => {
                        unreadable.push(line);
                        return;
                    }
                };
                match &event {
                    Event::Started { version, .. } if version != AGENT_VERSION => {
                        outcome.failed = true;
                        outcome.errors.push(format!(
                            "host {host}: the agent reports kiln {version}, this kiln is {AGENT_VERSION}: refusing its results\n  hint: the agent shipped is not this kiln's own binary"
                        ));
                    }
                    Event::Planned { plan, .. } => outcome.plan = Some(plan.clone()),
                    Event::Observed { units, containers } => {
                        outcome.observed = Some(HostObserved {
                            units: units.clone(),
                            containers: containers.clone(),
                            certificates: outcome.certificates.clone().unwrap_or_default(),
                        })
                    }
                    Event::Certificates { certificates, .. } => {
                        outcome.certificates = Some(certificates.clone());
                        if let Some(o) = outcome.observed.as_mut() {
                            o.certificates = certificates.clone();
                        }
                    }
                    Event::Failed { id, op, error, .. } => {
                        outcome.failed = true;
                        outcome.errors.push(format!("{op} {id}: {error}"));
                    }
                    Event::Skipped {
                        id, op, because, ..
                    } => {
                        outcome.failed = true;
                        outcome.errors.push(skipped_message(*op, id, because));
                    }
                    Event::Error { message } => {
                        outcome.failed = true;
                        outcome.errors.push(message.clone());
                    }
                    Event::Finished {
                        applied, failed, ..
                    } => {
                        finished = true;
                        outcome.applied = *applied;
                        outcome.failed |= *failed;
                    }
                    _ => {}
                }
                on_event(&event);
                if let Event::GuardArmed {
                    group,
                    token,
                    deadline_s,
                } = &event
                {
                    let armed_at = std::time::Instant::now();
                    let confirmation = match fresh.as_mut() {
                        Some(f) => f.disarm(token),
                        None => Err("the desired state has no guarded group".to_owned()),
                    };
                    match confirmation {
                        Ok(()) => {
                            outcome.confirmed.push(group.clone());
                            on_event(&Event::GuardConfirmed {
                                group: group.clone(),
                                token: token.clone(),
                            });
                        }
                        Err(error) => {
                            outcome.failed = true;
                            outcome.unconfirmed.push(group.clone());
                            outcome.rollbacks.push(PendingRollback {
                                group: group.clone(),
                                token: token.clone(),
                                deadline_s: *deadline_s,
                                armed_at,
                            });
                            outcome.errors.push(format!(
                                "host {host}: guarded group {group} could not be confirmed over a fresh connection: {error}\n  the host rolls it back within {deadline_s} s (timer {}.timer); check that a new SSH login works",
                                crate::guard::timer_unit(token)
                            ));
                            on_event(&Event::GuardUnconfirmed {
                                group: group.clone(),
                                token: token.clone(),
                                error,
                            });
                        }
                    }
                }
            };
            let out = self.exec(&command, &stdin, &mut on_line)?;
            if out.code == Some(AGENT_MISSING_EXIT)
                && !uploaded
                && matches!(location, AgentLocation::Shipped)
            {
                self.upload(binary)?;
                uploaded = true;
                continue;
            }
            if finished {
                if let Some(message) = unreadable.describe() {
                    outcome.failed = true;
                    outcome.errors.push(format!("host {host}: {message}"));
                }
                return Ok(outcome);
            }
            let mut tail = out.stderr_tail();
            if let Some(message) = unreadable.describe() {
                if !tail.is_empty() {
                    tail.push('\n');
                }
                tail.push_str(&message);
            }
            if sudo_refused(&tail) {
                return Err(HostError::Sudo {
                    host,
                    message: tail,
                });
            }
            return Err(HostError::Agent {
                host,
                code: out.code.map_or("by signal".into(), |c| c.to_string()),
                message: if tail.is_empty() {
                    "it stopped before reporting its result".into()
                } else {
                    tail
                },
            });
        }
    }

    /// Uploads the agent to its content-addressed path: written to a temporary name,
    /// checked against its sha256, made executable, renamed into place.
    fn upload(&mut self, binary: &AgentBinary) -> Result<(), HostError> {
        let bytes = binary.bytes().map_err(|source| HostError::Io {
            host: self.name().to_owned(),
            action: "read kiln's own binary to ship it",
            source,
        })?;
        let dir = self.agent_dir();
        let remote = binary.remote_path(&dir);
        let script = format!(
            "set -e; umask 022; mkdir -p {dir}; \
             while IFS= read -r l; do [ \"$l\" = {marker} ] && break; done; \
             head -c {len} > {tmp}; \
             echo {sha}'  '{tmp} | sha256sum -c --quiet -; \
             chmod 755 {tmp}; mv -f {tmp} {dest}; \
             find {dir} -maxdepth 1 -name 'kiln-*' ! -name {name} -mtime +7 -delete 2>/dev/null || true",
            dir = quote(&dir),
            marker = UPLOAD_MARKER,
            len = bytes.len(),
            tmp = format!("{}.tmp.$$", quote(&remote)),
            sha = quote(&binary.sha256),
            dest = quote(&remote),
            name = quote(&format!("kiln-{}", binary.sha256)),
        );
        let (command, prefix) = self
            .privilege()
            .wrap(&["sh".to_owned(), "-c".to_owned(), script]);
        let mut stdin = prefix;
        stdin.extend_from_slice(format!("{UPLOAD_MARKER}\n").as_bytes());
        stdin.extend_from_slice(&bytes);
        let host = self.name().to_owned();
        let out = self.exec(&command, &stdin, &mut |_| {})?;
        if out.code == Some(0) {
            Ok(())
        } else if sudo_refused(&out.stderr) {
            Err(HostError::Sudo {
                host,
                message: out.stderr_tail(),
            })
        } else {
            Err(HostError::Upload {
                host,
                message: out.stderr_tail(),
            })
        }
    }
}

/// Where the token goes in the disarm command template (quoted when filled in).
const TOKEN_SLOT: &str = "KILNGUARDTOKEN";

/// The fresh connection of one agent run, and the disarm command to send over it.
struct Fresh {
    host: Result<Box<dyn Host>, HostError>,
    template: String,
    prefix: Vec<u8>,
}

impl Fresh {
    /// Runs `agent disarm TOKEN` over the fresh connection; Ok once the agent there said
    /// it disarmed.
    fn disarm(&mut self, token: &str) -> Result<(), String> {
        // sshd re-executes itself on a reload (and restarts on a restart): for a moment
        // nothing listens, which is not a lockout. Such a refusal is retried for a while.
        let start = std::time::Instant::now();
        loop {
            match self.disarm_once(token) {
                Err(e) if transient(&e) && start.elapsed() < FRESH_RETRY => {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
                other => return other,
            }
        }
    }

    fn disarm_once(&mut self, token: &str) -> Result<(), String> {
        let host = self.host.as_mut().map_err(|e| e.to_string())?;
        let command = self.template.replace(TOKEN_SLOT, &quote(token));
        let mut disarmed = false;
        let mut said = vec![];
        let out = host
            .exec(
                &command,
                &self.prefix,
                &mut |line| match serde_json::from_str::<Event>(line) {
                    Ok(Event::GuardDisarmed { token: t }) if t == token => disarmed = true,
                    Ok(Event::Error { message }) => said.push(message),
                    _ => {}
                },
            )
            .map_err(|e| e.to_string())?;
        if disarmed && out.code == Some(0) {
            return Ok(());
        }
        let mut why = said.join("; ");
        if why.is_empty() {
            why = out.stderr_tail();
        }
        Err(format!(
            "`agent disarm` exited {}: {}",
            out.code.map_or("by signal".into(), |c| c.to_string()),
            if why.is_empty() { "no message" } else { &why }
        ))
    }
}

/// How long a fresh connection refused while sshd restarts is retried.
const FRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(8);

/// A failure of the fresh connection that a restarting sshd gives (nothing listening yet,
/// or the old process closing the connection), not a refusal of the login itself.
fn transient(error: &str) -> bool {
    [
        "Connection refused",
        "Connection reset",
        "Connection closed",
        "kex_exchange_identification",
    ]
    .iter()
    .any(|m| error.contains(m))
}

/// `user@machine` of whoever runs kiln here, recorded in the host's lock by an apply.
pub fn operator_id() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let machine = if machine.is_empty() {
        "unknown".to_owned()
    } else {
        machine
    };
    format!("{user}@{machine}")
}

/// The version an agent built from this source reports in [`Event::Started`].
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Agent stdout lines that are not events (another agent version, a shell that prints on
/// login): counted, and the first few kept for the error message.
#[derive(Default)]
struct Unreadable {
    count: usize,
    first: Vec<String>,
}

impl Unreadable {
    const KEEP: usize = 3;

    fn push(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.count += 1;
        if self.first.len() < Self::KEEP {
            let mut l: String = line.chars().take(200).collect();
            if l.len() < line.len() {
                l.push('…');
            }
            self.first.push(l);
        }
    }

    fn describe(&self) -> Option<String> {
        (self.count > 0).then(|| {
            format!(
                "the agent printed {} line(s) that are not kiln events (a different agent version?), first: {}",
                self.count,
                self.first
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// Whether stderr says sudo refused (password needed or wrong, not allowed).
fn sudo_refused(stderr: &str) -> bool {
    stderr.contains("sudo")
        && (stderr.contains("password")
            || stderr.contains("not in the sudoers")
            || stderr.contains("not allowed"))
}

/// Runs a child process: writes `stdin` from a thread, streams stdout lines to `on_line`,
/// collects stderr.
pub(crate) fn run_child(
    host: &str,
    mut cmd: Command,
    stdin: &[u8],
    on_line: &mut dyn FnMut(&str),
) -> Result<ExecOutput, HostError> {
    let io = |action| {
        let host = host.to_owned();
        move |source| HostError::Io {
            host,
            action,
            source,
        }
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(io("start ssh"))?;
    let mut child_in = child
        .stdin
        .take()
        .ok_or_else(|| io("open stdin")(std::io::Error::other("no pipe")))?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that exits early closes its stdin: that is not our error to report.
        let _ = child_in.write_all(&data);
    });
    let mut child_err = child
        .stderr
        .take()
        .ok_or_else(|| io("open stderr")(std::io::Error::other("no pipe")))?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = child_err.read_to_string(&mut s);
        s
    });
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => on_line(&l),
                Err(_) => break,
            }
        }
    }
    let status = child.wait().map_err(io("wait for ssh"))?;
    let _ = writer.join();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(ExecOutput {
        code: status.code(),
        stderr,
    })
}

/// This machine. With a root prefix, the agent converges that folder instead of `/`
/// (files, directories and symlinks only: tests).
pub struct LocalHost {
    pub name: String,
    pub root: Option<PathBuf>,
    pub privilege: Privilege,
}

impl Host for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }
    fn privilege(&self) -> &Privilege {
        &self.privilege
    }
    fn exec(
        &mut self,
        command: &str,
        stdin: &[u8],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, HostError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        run_child(&self.name, cmd, stdin, on_line)
    }
    fn fresh_connection(&mut self) -> Result<Box<dyn Host>, HostError> {
        Ok(Box::new(LocalHost {
            name: self.name.clone(),
            root: self.root.clone(),
            privilege: self.privilege.clone(),
        }))
    }
    fn agent_location(&self, binary: &AgentBinary) -> AgentLocation {
        let path = binary.local_path.clone();
        let args = match &self.root {
            Some(r) => vec!["--root".to_owned(), r.display().to_string()],
            None => vec![],
        };
        AgentLocation::Local { path, args }
    }
}

/// One scripted exchange for [`FakeHost`].
#[derive(Clone, Debug)]
pub struct Expect {
    /// The command must contain all of these.
    pub contains: Vec<String>,
    pub stdout: Vec<String>,
    pub code: i32,
    pub stderr: String,
}

/// A strict fake: answers each command from a script in order, and fails on any command
/// it did not expect (so protocol changes cannot go unnoticed).
pub struct FakeHost {
    pub name: String,
    pub privilege: Privilege,
    pub script: VecDeque<Expect>,
    /// Every (command, stdin) received.
    pub received: Vec<(String, Vec<u8>)>,
    /// The script of its fresh connections ([`Host::fresh_connection`]).
    pub fresh: FreshScript,
}

/// The script shared by a [`FakeHost`]'s fresh connections, and what they received.
#[derive(Clone, Debug, Default)]
pub struct FreshScript(Arc<Mutex<(VecDeque<Expect>, Vec<String>)>>);

impl FreshScript {
    pub fn new(script: Vec<Expect>) -> FreshScript {
        FreshScript(Arc::new(Mutex::new((script.into(), vec![]))))
    }
    /// Every command the fresh connections received.
    pub fn received(&self) -> Vec<String> {
        self.0.lock().map(|g| g.1.clone()).unwrap_or_default()
    }
}

/// A fresh connection of a [`FakeHost`]: as strict as the fake itself.
struct FakeFresh {
    name: String,
    privilege: Privilege,
    script: FreshScript,
}

impl Host for FakeFresh {
    fn name(&self) -> &str {
        &self.name
    }
    fn privilege(&self) -> &Privilege {
        &self.privilege
    }
    fn exec(
        &mut self,
        command: &str,
        _stdin: &[u8],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, HostError> {
        let unexpected = || HostError::Unexpected {
            host: self.name.clone(),
            command: format!("(fresh connection) {command}"),
        };
        let next = {
            let mut g = self.script.0.lock().map_err(|_| unexpected())?;
            g.1.push(command.to_owned());
            g.0.pop_front()
        };
        let next = next.ok_or_else(unexpected)?;
        if !next.contains.iter().all(|c| command.contains(c.as_str())) {
            return Err(unexpected());
        }
        if next.code == 255 {
            return Err(HostError::Connect {
                host: self.name.clone(),
                message: next.stderr,
                hint: "(fake) the fresh connection failed".into(),
            });
        }
        for l in &next.stdout {
            on_line(l);
        }
        Ok(ExecOutput {
            code: Some(next.code),
            stderr: next.stderr,
        })
    }
}

impl Host for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }
    fn privilege(&self) -> &Privilege {
        &self.privilege
    }
    fn fresh_connection(&mut self) -> Result<Box<dyn Host>, HostError> {
        Ok(Box::new(FakeFresh {
            name: self.name.clone(),
            privilege: self.privilege.clone(),
            script: self.fresh.clone(),
        }))
    }
    fn exec(
        &mut self,
        command: &str,
        stdin: &[u8],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput, HostError> {
        self.received.push((command.to_owned(), stdin.to_vec()));
        let unexpected = || HostError::Unexpected {
            host: self.name.clone(),
            command: command.to_owned(),
        };
        let next = self.script.pop_front().ok_or_else(unexpected)?;
        if !next.contains.iter().all(|c| command.contains(c.as_str())) {
            return Err(unexpected());
        }
        for l in &next.stdout {
            on_line(l);
        }
        Ok(ExecOutput {
            code: Some(next.code),
            stderr: next.stderr,
        })
    }
}

#[cfg(test)]
mod tests;
