//! The cached base image: a Debian 13 (trixie) minbase tree with systemd, OpenSSH, sudo and
//! python3, the admin user and the lab's apt proxy configured, built once with debootstrap from
//! the host's own Debian mirror and kept read-only under the cache folder. Servers are overlayfs
//! clones of it. Host keys and machine ids are removed here and made per server.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::event::LabEvent;
use crate::layout::{ADMIN_USER, PROXY_ADDR, PROXY_PORT, Roots};
use crate::mirror::AptMirror;

pub const SUITE: &str = "trixie";
/// Packages on top of minbase: enough for systemd to boot, SSH, sudo and kiln's agent.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "sudo",
    "python3",
    "iputils-ping",
    "ca-certificates",
    "debian-archive-keyring",
    "procps",
    "less",
    // The kernel here has no WireGuard device: wg-quick falls back to this userspace
    // implementation by itself (the lab host's fact, not another configuration).
    "wireguard-go",
];
/// Bump when the recipe below changes: the cache key includes it.
const RECIPE_VERSION: &str = "1";

/// Stable 64-bit FNV-1a, for cache keys (not security).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Folder of the base image for this recipe and mirror.
pub fn base_dir(roots: &Roots, mirror: &AptMirror) -> PathBuf {
    let key = format!(
        "{RECIPE_VERSION}|{SUITE}|{}|{}|{:?}",
        PACKAGES.join(","),
        mirror.debian,
        mirror.security
    );
    roots.cache.join("base").join(format!(
        "{SUITE}-{:012x}",
        fnv1a(key.as_bytes()) & 0xffff_ffff_ffff
    ))
}

/// The root tree of the base image, building it first when missing. Concurrent callers wait for
/// one build (file lock). Returns the tree and whether it was built now.
pub fn ensure_base(
    roots: &Roots,
    mirror: &AptMirror,
    log: &dyn Fn(&LabEvent),
) -> Result<(PathBuf, bool)> {
    let dir = base_dir(roots, mirror);
    let root = dir.join("root");
    let done = dir.join("complete");
    if done.exists() {
        return Ok((root, false));
    }
    std::fs::create_dir_all(roots.cache.join("base"))
        .map_err(io("creating", roots.cache.join("base")))?;
    let lock_path = roots.cache.join("base").join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
    lock.lock().map_err(io("locking", &lock_path))?;
    if done.exists() {
        return Ok((root, false));
    }
    let started = Instant::now();
    let tmp = dir.with_extension("building");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("removing a half-built image", &tmp))?;
    }
    let tmp_root = tmp.join("root");
    std::fs::create_dir_all(&tmp_root).map_err(io("creating", &tmp_root))?;
    log(&LabEvent::BuildingBaseImage {
        suite: SUITE.into(),
        mirror: mirror.debian.clone(),
    });
    let mut deb = cmd::command("debootstrap");
    deb.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&tmp_root)
        .arg(&mirror.debian);
    cmd::run_hint(
        &mut deb,
        Some("check that this machine reaches its Debian mirror (apt-get update works)"),
    )?;
    customize(&tmp_root, &mirror.plain_http())?;
    publish(&tmp, &dir, started)?;
    log(&LabEvent::BaseImageReady {
        path: dir.clone(),
        elapsed: started.elapsed(),
    });
    Ok((root, true))
}

fn write(root: &Path, rel: &str, content: &str) -> Result<()> {
    let path = root.join(rel.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    // Remove first: the target may be a symlink (resolv.conf) pointing outside the tree.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, content).map_err(io("writing", &path))
}

/// The servers' apt sources: the host's mirror (plain http, through the proxy).
pub fn sources(mirror: &AptMirror) -> String {
    let mut s = format!(
        "Types: deb\nURIs: {}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        mirror.debian
    );
    if let Some(sec) = &mirror.security {
        s.push_str(&format!(
            "\nTypes: deb\nURIs: {sec}\nSuites: {SUITE}-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ));
    }
    s
}

fn customize(root: &Path, mirror: &AptMirror) -> Result<()> {
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
    write(
        root,
        "/etc/apt/sources.list.d/debian.sources",
        &sources(mirror),
    )?;
    write(
        root,
        "/etc/apt/apt.conf.d/01kiln-lab-proxy",
        &format!(
            "// The lab's only way out: the apt proxy on the host.\nAcquire::http::Proxy \"http://{PROXY_ADDR}:{PROXY_PORT}/\";\n"
        ),
    )?;
    // No DNS in the lab.
    write(root, "/etc/resolv.conf", "")?;
    write(
        root,
        "/etc/containers/containers.conf.d/kiln-lab.conf",
        "[containers]\npids_limit = 0\n",
    )?;
    write(
        root,
        "/etc/sudoers.d/kiln",
        &format!("{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n"),
    )?;
    let script = format!(
        r#"set -e
useradd --create-home --shell /bin/bash --groups sudo {u}
usermod -p '*' {u}
install -d -m 700 -o {u} -g {u} /home/{u}/.ssh
chmod 0440 /etc/sudoers.d/kiln
rm -f /etc/ssh/ssh_host_* /var/lib/dbus/machine-id
: > /etc/machine-id
for t in apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null /etc/systemd/system/$t; done
mkdir -p /etc/systemd/system/multi-user.target.wants /var/lib/containers
ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log
"#,
        u = kiln_shell::quote(ADMIN_USER)
    );
    let mut c = cmd::command("chroot");
    c.arg(root)
        .args(["/bin/sh", "-c", &script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd::run(&mut c).map(|_| ()).map_err(|e| LabError::Image {
        image: "base".into(),
        message: e.to_string(),
    })
}

/// Marks a tree built in `tmp` complete and moves it to `dir` (replacing an incomplete one):
/// a cached image is used only when its `complete` marker exists, so a build killed midway
/// is rebuilt, never used.
pub(crate) fn publish(tmp: &Path, dir: &Path, started: Instant) -> Result<()> {
    let marker = tmp.join("complete");
    std::fs::write(
        &marker,
        format!("built in {:.0} s\n", started.elapsed().as_secs_f64()),
    )
    .map_err(io("writing", &marker))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io("removing an incomplete image", dir))?;
    }
    std::fs::rename(tmp, dir).map_err(io("moving the built image into place", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_marks_complete_and_replaces_an_incomplete_tree() {
        let base = std::env::temp_dir().join(format!("kiln-publish-{}", std::process::id()));
        let (tmp, dir) = (base.join("img.tmp"), base.join("img"));
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::write(dir.join("root/stale"), "from a killed build").unwrap();
        std::fs::create_dir_all(tmp.join("root")).unwrap();
        std::fs::write(tmp.join("root/new"), "built").unwrap();

        publish(&tmp, &dir, Instant::now()).unwrap();

        assert!(!tmp.exists());
        assert!(dir.join("complete").is_file());
        assert!(dir.join("root/new").is_file());
        assert!(!dir.join("root/stale").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn sources_use_the_given_mirror_and_security_archive() {
        let m = AptMirror {
            debian: "http://m.example/debian".into(),
            security: Some("http://m.example/debian-security".into()),
        };
        let s = sources(&m);
        assert!(
            s.contains("URIs: http://m.example/debian\nSuites: trixie trixie-updates"),
            "{s}"
        );
        assert!(s.contains("Suites: trixie-security"), "{s}");
        let no_sec = sources(&AptMirror {
            security: None,
            ..m.clone()
        });
        assert!(!no_sec.contains("security"), "{no_sec}");
    }

    #[test]
    fn cache_key_changes_with_the_mirror() {
        let roots = Roots::default();
        let a = AptMirror {
            debian: "http://a.example/debian".into(),
            security: None,
        };
        let b = AptMirror {
            debian: "http://b.example/debian".into(),
            security: None,
        };
        assert_ne!(base_dir(&roots, &a), base_dir(&roots, &b));
        assert_eq!(base_dir(&roots, &a), base_dir(&roots, &a.clone()));
    }
}
