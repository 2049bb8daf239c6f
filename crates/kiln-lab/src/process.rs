//! Lab processes (server launchers, the apt proxy, the S3 server): started detached in their own
//! session, placed in the lab's cgroups before they exec, so teardown finds and kills every
//! descendant through the cgroup, even after the starting process died.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{LabError, Result, io};

/// How the launched program is supervised by its `sh` parent.
pub enum Restart {
    /// exec the program (the shell goes away).
    Never,
    /// Run it again when it exits with this code (systemd-nspawn: 133 = the server rebooted).
    OnExitCode(i32),
}

/// Starts `argv` detached (new session), stdin null, stdout/stderr to `log`, inside `cgroups`.
pub fn spawn_in_cgroups(
    cgroups: &[PathBuf],
    argv: &[String],
    env: &[(&str, &str)],
    log: &Path,
    restart: Restart,
) -> Result<Child> {
    for cg in cgroups {
        std::fs::create_dir_all(cg).map_err(io("creating cgroup", cg))?;
    }
    let mut script = String::new();
    for cg in cgroups {
        script.push_str(&format!(
            "echo $$ > {} || exit 97\n",
            kiln_shell::quote(&cg.join("cgroup.procs").to_string_lossy())
        ));
    }
    match restart {
        Restart::Never => script.push_str("exec \"$@\"\n"),
        Restart::OnExitCode(code) => script.push_str(&format!(
            "while :; do \"$@\"; rc=$?; [ \"$rc\" = {code} ] || exit \"$rc\"; done\n"
        )),
    }
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("opening log", log))?;
    let logf2 = logf.try_clone().map_err(io("opening log", log))?;
    let mut c = cmd::command("setsid");
    c.args(["sh", "-c", &script, "sh"])
        .args(argv)
        .envs(env.iter().copied());
    c.stdin(Stdio::null()).stdout(logf).stderr(logf2);
    c.spawn().map_err(|source| LabError::Spawn {
        program: argv.first().cloned().unwrap_or_default(),
        source,
        hint: Some("`setsid` comes with util-linux".into()),
    })
}

/// Every cgroup directory under `root`, deepest first.
fn cgroup_tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    if root.is_dir() {
        walk(root, &mut out);
    }
    out
}

/// Pids in the cgroup subtree `root` (any hierarchy).
/// Waits until `sock` accepts TCP connections, within `timeout`; fails early, with its log,
/// when `child` (started with `argv`, logging to `log`) exits. `what` names the server in
/// the timeout error.
pub fn wait_listening(
    child: &mut Child,
    argv: &[String],
    sock: std::net::SocketAddr,
    log: &Path,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Command {
                command: argv.join(" "),
                status: status.to_string(),
                stderr: std::fs::read_to_string(log).unwrap_or_default(),
                hint: None,
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                server: "(host)".into(),
                what: format!("{what} listening on {sock}"),
                seconds: timeout.as_secs(),
                hint: Some(format!("see {}", log.display())),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn pids_in(root: &Path) -> Vec<u32> {
    cgroup_tree(root)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Kills every process in the cgroup subtrees `roots` and removes the cgroups. Returns the
/// number of processes killed and cgroups removed.
pub fn kill_and_remove_cgroups(roots: &[PathBuf]) -> Result<(usize, usize)> {
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pids: Vec<u32> = roots
            .iter()
            .flat_map(|r| pids_in(r))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if pids.is_empty() {
            break;
        }
        for r in roots {
            // cgroup v2: one write kills the whole subtree.
            let kill = r.join("cgroup.kill");
            if kill.exists() {
                let _ = std::fs::write(&kill, "1");
            }
        }
        let mut c = cmd::command("kill");
        c.arg("-KILL").args(pids.iter().map(|p| p.to_string()));
        let _ = cmd::output(&mut c);
        killed = killed.max(pids.len());
        if Instant::now() > deadline {
            return Err(LabError::Command {
                command: format!("kill -KILL {pids:?}"),
                status: "processes still alive after 15 s".into(),
                stderr: String::new(),
                hint: Some(
                    "a process in uninterruptible sleep? check `ps -o pid,stat,cmd -p ...`".into(),
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut removed = 0;
    for r in roots {
        for d in cgroup_tree(r) {
            // Emptied cgroups may take a moment to become removable.
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => {
                        removed += 1;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tries < 50 => {
                        let _ = e;
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(io("removing cgroup", &d)(e)),
                }
            }
        }
    }
    Ok((killed, removed))
}

/// Proportional set size (KiB) of the processes in the cgroup subtrees `roots`: a server's
/// real memory cost (shared pages of the base image split between the servers using them).
pub fn pss_kib(roots: &[PathBuf]) -> u64 {
    let pids: std::collections::BTreeSet<u32> = roots.iter().flat_map(|r| pids_in(r)).collect();
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}
