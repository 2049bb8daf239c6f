//! The apt proxy shared by all labs: an apt-cacher-ng of the lab's own (its own config, cache and
//! cgroup, never the system service) listening only on the host's lab proxy address. It is the
//! servers' only way out: apt through it works, nothing else is routed.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result, io};
use crate::layout::{self, PROXY_ADDR, PROXY_PORT, Roots};
use crate::process::{self, Restart};

/// Pseudo lab name owning the proxy's cgroup (not a valid lab name, so never clashes).
pub const PROXY_OWNER: &str = "_proxy";

pub fn address() -> SocketAddr {
    SocketAddr::from((PROXY_ADDR, PROXY_PORT))
}

pub fn is_up() -> bool {
    TcpStream::connect_timeout(&address(), Duration::from_millis(300)).is_ok()
}

fn config(roots: &Roots) -> String {
    let dir = roots.proxy_dir();
    format!(
        "# kiln lab's apt proxy (generated)\nCacheDir: {cache}\nLogDir: {log}\nSupportDir: /usr/lib/apt-cacher-ng\nPort: {PROXY_PORT}\nBindAddress: {PROXY_ADDR}\nPidFile: {pid}\nSocketPath: {sock}\nForeGround: 1\nExThreshold: 4\nVerboseLog: 1\n",
        cache = roots.cache.join("apt-cacher-ng").display(),
        log = dir.join("log").display(),
        pid = dir.join("acng.pid").display(),
        sock = dir.join("acng.socket").display(),
    )
}

fn binary() -> Option<PathBuf> {
    crate::cmd::which("apt-cacher-ng")
}

/// Starts the proxy when it is not already answering.
pub fn ensure(roots: &Roots) -> Result<()> {
    if is_up() {
        return Ok(());
    }
    // The proxy is shared by all labs: its cache lives in the default cache folder, whatever
    // cache folder the lab starting it uses for images.
    let roots = &Roots {
        state: roots.state.clone(),
        cache: Roots::default().cache,
    };
    let bin = binary().ok_or_else(|| LabError::MissingPrerequisites {
        missing: vec![
            "apt-cacher-ng (package apt-cacher-ng): the servers' only way to install packages"
                .into(),
        ],
        hint: "`kiln lab up --yes` installs it (Debian/Ubuntu, as root)".into(),
    })?;
    let dir = roots.proxy_dir();
    let conf = dir.join("conf");
    for d in [&conf, &dir.join("log"), &roots.cache.join("apt-cacher-ng")] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    std::fs::write(conf.join("acng.conf"), config(roots))
        .map_err(io("writing", conf.join("acng.conf")))?;
    // Stale processes of a previous proxy would hold the port.
    let _ = process::kill_and_remove_cgroups(&layout::cgroup_lab_dirs(PROXY_OWNER));
    let argv = vec![
        bin.display().to_string(),
        "-c".into(),
        conf.display().to_string(),
    ];
    let mut child = process::spawn_in_cgroups(
        &layout::cgroup_dirs(PROXY_OWNER, "acng"),
        &argv,
        &[],
        &dir.join("acng.out"),
        Restart::Never,
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !is_up() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = std::fs::read_to_string(dir.join("acng.out")).unwrap_or_default();
            return Err(LabError::Command {
                command: format!("{} -c {}", bin.display(), conf.display()),
                status: status.to_string(),
                stderr: out,
                hint: Some(format!(
                    "is something else listening on port {PROXY_PORT} (e.g. the apt-cacher-ng system service)? stop it: it must not hold this port"
                )),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                server: "(host)".into(),
                what: format!("apt proxy listening on {}", address()),
                seconds: 15,
                hint: Some(format!("see {}", dir.join("acng.out").display())),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Detached on purpose: the proxy outlives this process and is stopped with the last lab.
    std::mem::drop(child);
    Ok(())
}

/// Stops the proxy (its cgroup).
pub fn stop() -> Result<usize> {
    let (killed, _) = process::kill_and_remove_cgroups(&layout::cgroup_lab_dirs(PROXY_OWNER))?;
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_binds_only_the_proxy_address_and_uses_lab_folders() {
        let c = config(&Roots {
            state: "/s".into(),
            cache: "/c".into(),
        });
        assert!(c.contains("BindAddress: 10.77.0.1\n"), "{c}");
        assert!(c.contains("Port: 3142\n"), "{c}");
        assert!(c.contains("CacheDir: /c/apt-cacher-ng\n"), "{c}");
        assert!(c.contains("SocketPath: /s/_proxy/acng.socket\n"), "{c}");
    }
}
