//! Host prerequisites: which tools the lab needs, why, and from which Debian package; checking
//! them, and installing the missing ones with apt (Debian/Ubuntu, as root, after consent).

use crate::cmd;
use crate::error::{LabError, Result};
use crate::event::LabEvent;

/// One tool the lab runs on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub program: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

/// What the lab needs for which feature.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub s3: bool,
    pub vm: bool,
    /// The ACME server (Pebble) and the lab DNS.
    pub acme: bool,
}

pub fn requirements(needs: Needs) -> Vec<Requirement> {
    let mut r = vec![
        Requirement {
            program: "debootstrap",
            package: "debootstrap",
            why: "builds the servers' Debian base image",
        },
        Requirement {
            program: "systemd-nspawn",
            package: "systemd-container",
            why: "boots each server's systemd",
        },
        Requirement {
            program: "ip",
            package: "iproute2",
            why: "network namespaces, veths and the lab bridge",
        },
        Requirement {
            program: "nft",
            package: "nftables",
            why: "keeps lab interfaces from reaching anything but the proxy",
        },
        Requirement {
            program: "ssh",
            package: "openssh-client",
            why: "reaches the servers",
        },
        Requirement {
            program: "ssh-keygen",
            package: "openssh-client",
            why: "operator key and per-server host keys",
        },
        Requirement {
            program: "apt-cacher-ng",
            package: "apt-cacher-ng",
            why: "the servers' only way out: an apt proxy",
        },
        Requirement {
            program: "setsid",
            package: "util-linux",
            why: "starts servers detached",
        },
        Requirement {
            program: "mount",
            package: "mount",
            why: "overlayfs clones of the base image",
        },
        Requirement {
            program: "kill",
            package: "procps",
            why: "stops lab processes",
        },
        Requirement {
            program: "zstd",
            package: "zstd",
            why: "compresses cached container images",
        },
    ];
    if needs.s3 {
        r.push(Requirement {
            program: "python3",
            package: "python3-venv",
            why: "runs the S3 server (moto) in a venv",
        });
    }
    if needs.acme {
        r.push(Requirement {
            program: "pebble",
            package: "pebble",
            why: "the lab's ACME server (certificates for the reverse proxies)",
        });
        r.push(Requirement {
            program: "pebble-challtestsrv",
            package: "pebble",
            why: "the lab's DNS, where the ACME server looks names up",
        });
    }
    if needs.vm {
        r.push(Requirement {
            program: "qemu-system-x86_64",
            package: "qemu-system-x86",
            why: "VM servers (software emulation)",
        });
        r.push(Requirement {
            program: "mkfs.ext4",
            package: "e2fsprogs",
            why: "makes a VM server's root disk from its tree",
        });
    }
    r
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The requirements whose program is not found.
pub fn missing(needs: Needs) -> Vec<Requirement> {
    let mut m: Vec<Requirement> = requirements(needs)
        .into_iter()
        .filter(|r| cmd::which(r.program).is_none())
        .collect();
    // Kernel features: overlayfs and network namespaces.
    m.dedup_by_key(|r| r.package);
    m
}

pub fn is_debian_like() -> bool {
    std::path::Path::new("/etc/debian_version").exists() && cmd::which("apt-get").is_some()
}

/// Checks the prerequisites; installs the missing ones when `install` (consent given) on a
/// Debian-like host; otherwise returns an error listing what is missing and why.
pub fn ensure(needs: Needs, install: bool, log: &dyn Fn(&LabEvent)) -> Result<()> {
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    ensure_packages(needs, install, log)?;
    if needs.s3 && crate::s3::moto_binary().is_none() {
        if !install {
            return Err(LabError::MissingPrerequisites {
                missing: vec!["moto_server (PyPI moto[server]): the lab's S3 server with Object Lock".into()],
                hint: "`kiln lab up --yes` installs it in /opt/kiln-lab/venv (as .ci/install-lab.sh does)".into(),
            });
        }
        log(&LabEvent::InstallingMoto {
            venv: MOTO_VENV.into(),
        });
        cmd::run(cmd::command("python3").args(["-m", "venv", MOTO_VENV]))?;
        cmd::run(cmd::command(&format!("{MOTO_VENV}/bin/pip")).args([
            "install",
            "-q",
            "moto[server]>=5.1,<6",
        ]))?;
    }
    Ok(())
}

/// Where `--yes` (and .ci/install-lab.sh) installs moto.
pub const MOTO_VENV: &str = "/opt/kiln-lab/venv";

fn ensure_packages(needs: Needs, install: bool, log: &dyn Fn(&LabEvent)) -> Result<()> {
    let missing = missing(needs);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|r| format!("{} (package {}): {}", r.program, r.package, r.why))
        .collect();
    if !install || !is_debian_like() {
        let hint = if is_debian_like() {
            "run `kiln lab up --yes` to install them with apt, or `.ci/install-lab.sh`".to_string()
        } else {
            "install them with your distribution's package manager (names given for Debian)"
                .to_string()
        };
        return Err(LabError::MissingPrerequisites {
            missing: lines,
            hint,
        });
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|r| r.package).collect();
    pkgs.sort();
    pkgs.dedup();
    log(&LabEvent::InstallingPackages {
        packages: pkgs.iter().map(|p| p.to_string()).collect(),
    });
    cmd::run(
        cmd::command("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        cmd::command("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    disable_system_acng();
    let still = self::missing(needs);
    if still.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingPrerequisites {
            missing: still
                .iter()
                .map(|r| format!("{} (package {})", r.program, r.package))
                .collect(),
            hint: "apt installed the packages but the programs are still not found in PATH".into(),
        })
    }
}

/// The apt-cacher-ng package starts a system service on every address; the lab runs its own
/// instance bound to the lab address only, so the system one must not hold the port.
pub fn disable_system_acng() {
    if std::path::Path::new("/run/systemd/system").exists() {
        let _ = cmd::output(cmd::command("systemctl").args(["disable", "--now", "apt-cacher-ng"]));
    } else if cmd::which("service").is_some() {
        let _ = cmd::output(cmd::command("service").args(["apt-cacher-ng", "stop"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_requirement_says_why_and_vm_adds_qemu() {
        let base = requirements(Needs::default());
        assert!(base.iter().all(|r| !r.why.is_empty()));
        assert!(!base.iter().any(|r| r.program.starts_with("qemu")));
        let vm = requirements(Needs {
            vm: true,
            ..Default::default()
        });
        assert!(vm.iter().any(|r| r.package == "qemu-system-x86"));
        assert!(!base.iter().any(|r| r.package == "pebble"));
        let acme = requirements(Needs {
            acme: true,
            ..Default::default()
        });
        let pebble: Vec<&str> = acme
            .iter()
            .filter(|r| r.package == "pebble")
            .map(|r| r.program)
            .collect();
        assert_eq!(pebble, ["pebble", "pebble-challtestsrv"]);
    }
}
