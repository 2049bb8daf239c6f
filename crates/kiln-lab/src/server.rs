//! One lab server: an overlayfs clone of the base image with its own host keys, machine id,
//! hostname and the operator's key for the admin user, booted by `systemd-nspawn -b` in its own
//! network namespace and cgroup; plus waiting for its SSH and running commands over it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::layout::{self, ADMIN_USER, Roots};
use crate::process::{self, Restart};

/// A running lab server, as the tests and kiln see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: IpAddr,
    pub ssh_port: u16,
    pub admin_user: String,
    /// OpenSSH public key lines (`type base64`), as pinned in kiln.toml.
    pub host_keys: Vec<String>,
    /// The operator's private key the lab generated (authorized for `admin_user`).
    pub identity_file: PathBuf,
    /// A known_hosts file holding exactly the lab's recorded host keys.
    pub known_hosts: PathBuf,
}

impl Server {
    /// The server `s` of lab `lab` as recorded in its state file, reached with the lab's
    /// operator key and known_hosts.
    pub fn from_state(roots: &Roots, lab: &str, s: &layout::ServerState) -> Server {
        Server {
            name: s.name.clone(),
            address: IpAddr::V4(s.address),
            ssh_port: 22,
            admin_user: ADMIN_USER.into(),
            host_keys: s.host_keys.clone(),
            identity_file: roots.identity_file(lab),
            known_hosts: roots.known_hosts(lab),
        }
    }

    /// `ssh` with pinned host keys (StrictHostKeyChecking=yes, BatchMode), no user config,
    /// up to and including the destination: append the remote command.
    pub fn ssh_command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(ssh_args(
            &self.identity_file,
            &self.known_hosts,
            self.ssh_port,
        ));
        c.arg(format!("{}@{}", self.admin_user, self.address));
        c
    }

    /// `ssh` that runs `argv` on the server with every word arriving intact, as `podman exec`
    /// or `kubectl exec` do (ssh hands the server's shell one string: each word is quoted
    /// once, by [`remote_command`]). With no words: an interactive login shell. Standard
    /// input and output are left to the caller.
    pub fn ssh_argv_command(&self, argv: &[String]) -> Command {
        let mut c = self.ssh_command();
        if !argv.is_empty() {
            c.arg("--").arg(remote_command(argv));
        }
        c
    }

    /// Runs `argv` (each word intact, no shell syntax interpreted) as the admin user; returns
    /// its output whatever its exit status. An empty `argv` runs nothing and is refused.
    pub fn exec_argv(&self, argv: &[String]) -> Result<Output> {
        if argv.is_empty() {
            return Err(LabError::Command {
                command: format!("ssh {}", self.name),
                status: "not run".into(),
                stderr: String::new(),
                hint: Some("give the program to run and its arguments".into()),
            });
        }
        cmd::output(&mut self.ssh_argv_command(argv))
    }

    /// Runs `command` (a shell command line) as the admin user; returns its output whatever
    /// its exit status.
    pub fn exec(&self, command: &str) -> Result<Output> {
        let mut c = self.ssh_command();
        c.arg("--").arg(command);
        cmd::output(&mut c)
    }

    /// Runs `command`; a non-zero exit is an error naming the server. Returns stdout.
    pub fn exec_ok(&self, command: &str) -> Result<String> {
        let mut c = self.ssh_command();
        c.arg("--").arg(command);
        let out = cmd::run_hint(
            &mut c,
            Some(&format!("on lab server `{}` ({})", self.name, self.address)),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The command line a remote shell reads back as exactly `argv`: each word quoted once with
/// `kiln_shell` (`echo 'a b' 'c;d'` stays three words and runs no `d`).
pub fn remote_command<S: AsRef<str>>(argv: &[S]) -> String {
    kiln_shell::join(argv)
}

pub fn ssh_args(identity: &Path, known_hosts: &Path, port: u16) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        identity.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "ConnectTimeout=30".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ]
}

/// Whether `dir` (or something below it) is a mount point, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is needed to create one server.
pub struct NewServer<'a> {
    pub roots: &'a Roots,
    pub lab: &'a str,
    pub index: u8,
    pub name: &'a str,
    pub server_index: u8,
    pub base_root: &'a Path,
    pub operator_pub: &'a str,
    /// Other servers of the lab (name, address) for /etc/hosts.
    pub peers: &'a [(String, Ipv4Addr)],
}

fn write_file(root: &Path, rel: &str, content: &str) -> Result<PathBuf> {
    let path = root.join(rel.trim_start_matches('/'));
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, content).map_err(io("writing", &path))?;
    Ok(path)
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io("reading", "/dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Looks up a user's uid and gid in the tree's /etc/passwd.
fn user_ids(root: &Path, user: &str) -> Result<(u32, u32)> {
    let path = root.join("etc/passwd");
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .ok_or_else(|| LabError::Image {
            image: "base".into(),
            message: format!("no user `{user}` in {}", path.display()),
        })
}

/// Creates the server's tree, keys and network; returns its address and host keys.
pub fn create(s: &NewServer) -> Result<(Ipv4Addr, Vec<String>)> {
    let dir = s.roots.server_dir(s.lab, s.name);
    if !mounts_under(&dir).is_empty() {
        return Err(LabError::AlreadyRunning { lab: s.lab.into() });
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("removing a stale server folder", &dir))?;
    }
    let (upper, work, root, containers) = (
        dir.join("upper"),
        dir.join("work"),
        dir.join("root"),
        dir.join("containers"),
    );
    for d in [&upper, &work, &root, &containers] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        s.base_root.display(),
        upper.display(),
        work.display()
    );
    cmd::run(
        cmd::command("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&root),
    )?;

    let name = s.name;
    write_file(&root, "/etc/hostname", &format!("{name}\n"))?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    for (peer, addr) in s.peers {
        hosts.push_str(&format!("{addr}\t{peer}\n"));
    }
    write_file(&root, "/etc/hosts", &hosts)?;
    write_file(&root, "/etc/machine-id", &format!("{}\n", random_hex(16)?))?;
    let (uid, gid) = user_ids(&root, ADMIN_USER)?;
    let ak = write_file(
        &root,
        &format!("/home/{ADMIN_USER}/.ssh/authorized_keys"),
        &format!("{}\n", s.operator_pub.trim()),
    )?;
    std::os::unix::fs::chown(&ak, Some(uid), Some(gid)).map_err(io("chown", &ak))?;

    // Host keys, generated concurrently. No RSA key: generating one takes about a second and
    // kiln pins whatever keys the host has; sshd is told which keys exist.
    write_file(
        &root,
        "/etc/ssh/sshd_config.d/kiln-lab-hostkeys.conf",
        "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n",
    )?;
    // Every connection into the lab comes from the host's lab address: OpenSSH's per-source
    // penalties (a refused host key counts as "noauth") would lock kiln and the tests out for
    // a while. Exempt the lab's own range only.
    write_file(
        &root,
        "/etc/ssh/sshd_config.d/kiln-lab-penalties.conf",
        "PerSourcePenaltyExemptList 10.77.0.0/16\n",
    )?;
    let mut children = Vec::new();
    for (t, bits) in [("ed25519", None), ("ecdsa", Some("256"))] {
        let key = root.join(format!("etc/ssh/ssh_host_{t}_key"));
        let mut c = cmd::command("ssh-keygen");
        c.args(["-q", "-t", t, "-N", "", "-C", &format!("root@{name}"), "-f"])
            .arg(&key);
        if let Some(b) = bits {
            c.args(["-b", b]);
        }
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let display = cmd::display(&c);
        let child = c.spawn().map_err(|source| LabError::Spawn {
            program: "ssh-keygen".into(),
            source,
            hint: None,
        })?;
        children.push((display, child, key));
    }
    let mut host_keys = Vec::new();
    for (display, child, key) in children {
        let out = child.wait_with_output().map_err(|source| LabError::Spawn {
            program: "ssh-keygen".into(),
            source,
            hint: None,
        })?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: display,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
                hint: None,
            });
        }
        let pubpath = key.with_extension("pub");
        let line = std::fs::read_to_string(&pubpath).map_err(io("reading", &pubpath))?;
        let mut words = line.split_whitespace();
        if let (Some(t), Some(k)) = (words.next(), words.next()) {
            host_keys.push(format!("{t} {k}"));
        }
    }
    let addr = crate::net::create_server(s.lab, s.index, name, s.server_index)?;
    Ok((addr, host_keys))
}

/// Boots the server: systemd-nspawn -b in the server's netns and cgroup, restarted on reboot.
pub fn boot(roots: &Roots, lab: &str, name: &str) -> Result<Child> {
    let dir = roots.server_dir(lab, name);
    let argv: Vec<String> = vec![
        "systemd-nspawn".into(),
        "--boot".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--console=passive".into(),
        "--link-journal=no".into(),
        "--resolv-conf=off".into(),
        "--timezone=off".into(),
        "-D".into(),
        dir.join("root").display().to_string(),
        "-M".into(),
        name.into(),
        format!("--hostname={name}"),
        format!(
            "--network-namespace-path=/run/netns/{}",
            layout::netns_server(lab, name)
        ),
        "--capability=all".into(),
        "--drop-capability=CAP_SYS_MODULE".into(),
        "--system-call-filter=add_key keyctl bpf".into(),
        "--bind=/dev/net/tun".into(),
        format!(
            "--bind={}:/var/lib/containers",
            dir.join("containers").display()
        ),
    ];
    let env = [
        ("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1"),
        ("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network"),
    ];
    process::spawn_in_cgroups(
        &layout::cgroup_dirs(lab, name),
        &argv,
        &env,
        &dir.join("console.log"),
        Restart::OnExitCode(133),
    )
}

/// Waits until the server answers a command over SSH with its pinned keys.
pub fn wait_ssh(
    server: &Server,
    child: Option<&mut Child>,
    log: &Path,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let sock = SocketAddr::new(server.address, server.ssh_port);
    let mut child = child;
    let tail = || {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n    ")
    };
    loop {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(LabError::Timeout {
                server: server.name.clone(),
                what: format!("boot (systemd-nspawn exited: {status})"),
                seconds: 0,
                hint: Some(format!("console log {}:\n    {}", log.display(), tail())),
            });
        }
        if TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_ok() {
            let out = server.exec("true")?;
            if out.status.success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                server: server.name.clone(),
                what: "SSH login".into(),
                seconds: timeout.as_secs(),
                hint: Some(format!("console log {}:\n    {}", log.display(), tail())),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn remote_command_keeps_every_word_and_runs_no_injected_command() {
        let argv = words(&["printf", "<%s>\\n", "a b", "c;d", "$(touch x)", "it's", ""]);
        let line = remote_command(&argv);
        // What the server's shell does with the line ssh hands it.
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "<a b>\n<c;d>\n<$(touch x)>\n<it's>\n<>\n",
            "{line}"
        );
        assert!(out.stderr.is_empty(), "{line}: {out:?}");
        assert_eq!(
            remote_command(&words(&["echo", "a b", "c;d"])),
            "echo 'a b' 'c;d'"
        );
    }

    #[test]
    fn ssh_argv_passes_one_quoted_command_or_none_for_a_shell() {
        let s = Server {
            name: "web".into(),
            address: "10.77.1.11".parse().unwrap(),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: Vec::new(),
            identity_file: "/k".into(),
            known_hosts: "/kh".into(),
        };
        let args = |c: &Command| -> Vec<String> {
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let with = args(&s.ssh_argv_command(&words(&["echo", "a b", "c;d"])));
        assert_eq!(
            with[with.len() - 3..],
            words(&["kiln@10.77.1.11", "--", "echo 'a b' 'c;d'"])
        );
        let shell = args(&s.ssh_argv_command(&[]));
        assert_eq!(shell.last().map(String::as_str), Some("kiln@10.77.1.11"));
        assert!(s.exec_argv(&[]).is_err());
    }

    #[test]
    fn ssh_pins_host_keys_and_ignores_user_config() {
        let a = ssh_args(Path::new("/k"), Path::new("/kh"), 22).join(" ");
        assert!(a.contains("StrictHostKeyChecking=yes"), "{a}");
        assert!(a.contains("UserKnownHostsFile=/kh"), "{a}");
        assert!(a.contains("BatchMode=yes"), "{a}");
        assert!(a.starts_with("-F /dev/null"), "{a}");
    }
}
