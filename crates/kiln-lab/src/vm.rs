//! Lab servers that are qemu VMs under software emulation (TCG) with Debian's own kernel, for
//! what the nspawn servers cannot do (device-mapper: LVM volumes and snapshots).
//!
//! A cached VM base is the lab's base tree plus `linux-image-amd64`, `lvm2` and `udev`. Each VM
//! gets the same per-server files as an nspawn server (overlay of the base, host keys, admin
//! key, sshd settings) plus a systemd-networkd file with its static address; its root disk is an
//! ext4 image made from that tree with `mkfs.ext4 -d` (nothing is mounted as a block device), a
//! second sparse raw disk is `/dev/vdb` for LVM. qemu runs in the lab's bridge namespace on a tap
//! device attached to the bridge, inside the server's cgroup, so the lab's teardown kills it
//! and deleting the bridge namespace deletes the tap; the images live in the server's folder.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::event::LabEvent;
use crate::layout::{self, PROXY_ADDR, Roots};
use crate::process::{self, Restart};

/// Packages added to the lab's base tree for a VM.
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "kmod",
    "udev",
    "lvm2",
    "e2fsprogs",
];
/// Bump when the recipe below changes: the cache key includes it.
const RECIPE_VERSION: &str = "2";
/// Guest memory (MiB); the Debian kernel with systemd, sshd and LVM is comfortable in it.
pub const MEMORY_MIB: u32 = 1536;
/// Size of the root disk image (sparse) and of the data disk `/dev/vdb` (sparse).
const ROOT_DISK: &str = "4G";
const DATA_DISK_BYTES: u64 = 1 << 30;

/// Folder of the cached VM base derived from the base tree `base_root`.
pub fn vm_base_dir(roots: &Roots, base_root: &Path) -> PathBuf {
    let key = format!(
        "{RECIPE_VERSION}|{}|{}",
        base_root.display(),
        PACKAGES.join(",")
    );
    roots.cache.join("vm").join(format!(
        "{:012x}",
        crate::image::fnv1a(key.as_bytes()) & 0xffff_ffff_ffff
    ))
}

struct ChrootMounts<'a> {
    root: &'a Path,
    mounted: Vec<PathBuf>,
}

impl ChrootMounts<'_> {
    fn mount(&mut self, args: &[&str], rel: &str) -> Result<()> {
        let target = self.root.join(rel);
        cmd::run(cmd::command("mount").args(args).arg(&target))?;
        self.mounted.push(target);
        Ok(())
    }
}

impl Drop for ChrootMounts<'_> {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            if cmd::run(cmd::command("umount").arg(m)).is_err() {
                let _ = cmd::run(cmd::command("umount").arg("-l").arg(m));
            }
        }
    }
}

/// The VM base tree (the base tree plus a kernel, udev, lvm2 and mkfs), built once from the host's
/// Debian mirror and cached. Returns the tree's root.
pub fn ensure_vm_base(roots: &Roots, base_root: &Path, log: &dyn Fn(&LabEvent)) -> Result<PathBuf> {
    let dir = vm_base_dir(roots, base_root);
    let root = dir.join("root");
    let done = dir.join("complete");
    if done.exists() {
        return Ok(root);
    }
    let parent = roots.cache.join("vm");
    std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
    let lock_path = parent.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
    lock.lock().map_err(io("locking", &lock_path))?;
    if done.exists() {
        return Ok(root);
    }
    let started = Instant::now();
    let tmp = dir.with_extension("building");
    if tmp.exists() {
        if !crate::server::mounts_under(&tmp).is_empty() {
            return Err(LabError::Image {
                image: "vm".into(),
                message: format!("{} still has mounts: unmount them first", tmp.display()),
            });
        }
        std::fs::remove_dir_all(&tmp).map_err(io("removing a half-built image", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    let tmp_root = tmp.join("root");
    log(&LabEvent::BuildingVmBase);
    cmd::run(
        cmd::command("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base_root)
            .arg(&tmp_root),
    )?;
    // The build talks to the Debian mirror directly (as debootstrap did), not through the
    // lab's proxy, with the host's resolver for the time of the build.
    let resolv = tmp_root.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    std::fs::copy("/etc/resolv.conf", &resolv).map_err(io("copying", "/etc/resolv.conf"))?;
    {
        let mut m = ChrootMounts {
            root: &tmp_root,
            mounted: Vec::new(),
        };
        m.mount(&["-t", "proc", "proc"], "proc")?;
        m.mount(&["-t", "sysfs", "sys"], "sys")?;
        m.mount(&["--bind", "/dev"], "dev")?;
        let script = format!(
            "apt-get -q -o Acquire::http::Proxy=false update && \
             DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::http::Proxy=false install -y \
             --no-install-recommends {} && apt-get clean",
            kiln_shell::join(PACKAGES)
        );
        cmd::run_hint(
            cmd::command("chroot")
                .arg(&tmp_root)
                .args(["sh", "-c", &script]),
            Some("check that this machine reaches its Debian mirror (apt-get update works)"),
        )?;
    }
    std::fs::write(&resolv, "").map_err(io("writing", &resolv))?;
    // The guest configures its own network (static address, written per VM).
    let wants = tmp_root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).map_err(io("creating", &wants))?;
    let link = wants.join("systemd-networkd.service");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/usr/lib/systemd/system/systemd-networkd.service", &link)
        .map_err(io("linking", &link))?;
    std::fs::write(tmp_root.join("etc/fstab"), "/dev/vda / ext4 rw 0 1\n")
        .map_err(io("writing", tmp_root.join("etc/fstab")))?;
    kernel_files(&tmp_root)?;
    crate::image::publish(&tmp, &dir, started)?;
    log(&LabEvent::VmBaseReady {
        elapsed: started.elapsed(),
    });
    Ok(root)
}

/// The kernel and initrd in a tree's /boot (the newest version when several).
pub fn kernel_files(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .map_err(io("reading", &boot))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    kernels.sort();
    let missing = |what: &str| LabError::Image {
        image: "vm".into(),
        message: format!("no {what} in {}", boot.display()),
    };
    let kernel = kernels.pop().ok_or_else(|| missing("vmlinuz-*"))?;
    let initrd = boot.join(kernel.replacen("vmlinuz-", "initrd.img-", 1));
    if !initrd.exists() {
        return Err(missing(&initrd.display().to_string()));
    }
    Ok((boot.join(kernel), initrd))
}

/// The tap device of VM `server_index` in the lab's bridge namespace.
pub fn tap_name(server_index: u8) -> String {
    format!("t{server_index}")
}

/// systemd-networkd configuration of a VM: its address, the lab subnet, and a route to the
/// host's proxy address only (no default route, no DNS), as the nspawn servers have.
pub fn network_file(addr: std::net::Ipv4Addr, index: u8) -> String {
    format!(
        "[Match]\nName=eth0\n\n[Network]\nAddress={addr}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[Route]\nDestination={PROXY_ADDR}/32\nGateway={}\n",
        layout::subnet_host_addr(index)
    )
}

/// Turns a server tree prepared by [`crate::server::create`] (mounted at `root`) into the VM's
/// disks, replaces its veth by a tap on the bridge, and unmounts the tree.
pub fn prepare(
    roots: &Roots,
    lab: &str,
    index: u8,
    name: &str,
    server_index: u8,
    addr: std::net::Ipv4Addr,
) -> Result<()> {
    let dir = roots.server_dir(lab, name);
    let root = dir.join("root");
    let netfile = root.join("etc/systemd/network/10-kiln-lab.network");
    if let Some(p) = netfile.parent() {
        std::fs::create_dir_all(p).map_err(io("creating", p))?;
    }
    std::fs::write(&netfile, network_file(addr, index)).map_err(io("writing", &netfile))?;
    let (kernel, initrd) = kernel_files(&root)?;
    for (from, to) in [(&kernel, "vmlinuz"), (&initrd, "initrd.img")] {
        std::fs::copy(from, dir.join(to)).map_err(io("copying", from))?;
    }
    let disk = dir.join("root.img");
    cmd::run(
        cmd::command("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-d"])
            .arg(&root)
            .arg(&disk)
            .arg(ROOT_DISK),
    )?;
    let data = dir.join("data.img");
    let f = std::fs::File::create(&data).map_err(io("creating", &data))?;
    f.set_len(DATA_DISK_BYTES).map_err(io("sizing", &data))?;
    cmd::run(cmd::command("umount").arg(&root))?;
    // The tree is in the disk image now; the overlay's upper layer is not needed any more.
    for d in ["upper", "work", "root", "containers"] {
        let p = dir.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(io("removing", &p))?;
        }
    }
    // The VM is on the bridge through a tap, not through the server's own namespace.
    crate::net::delete_server(lab, name, Some(server_index))?;
    let br = layout::netns_bridge(lab);
    let tap = tap_name(server_index);
    let _ = cmd::ip(["-n", &br, "link", "del", &tap]);
    cmd::ip(["-n", &br, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
    cmd::ip(["-n", &br, "link", "set", &tap, "master", "br0"])?;
    cmd::ip(["-n", &br, "link", "set", &tap, "up"])?;
    let _ = cmd::ip(["neigh", "flush", "to", &addr.to_string()]);
    Ok(())
}

/// The qemu command line of a VM.
pub fn qemu_argv(roots: &Roots, lab: &str, index: u8, name: &str, server_index: u8) -> Vec<String> {
    let dir = roots.server_dir(lab, name);
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        layout::netns_bridge(lab),
        "qemu-system-x86_64".into(),
        "-name".into(),
        format!("kiln-lab-{lab}-{name}"),
        "-accel".into(),
        "tcg,thread=multi".into(),
        "-m".into(),
        MEMORY_MIB.to_string(),
        "-smp".into(),
        "2".into(),
        "-nographic".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-serial".into(),
        format!("file:{}", p("console.log")),
        "-kernel".into(),
        p("vmlinuz"),
        "-initrd".into(),
        p("initrd.img"),
        "-append".into(),
        "root=/dev/vda rw console=ttyS0 net.ifnames=0".into(),
        "-drive".into(),
        format!("file={},format=raw,if=virtio,cache=unsafe", p("root.img")),
        "-drive".into(),
        format!("file={},format=raw,if=virtio,cache=unsafe", p("data.img")),
        "-netdev".into(),
        format!(
            "tap,id=n0,ifname={},script=no,downscript=no",
            tap_name(server_index)
        ),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=n0,mac={}",
            layout::server_mac(index, server_index)
        ),
    ]
}

/// Starts the VM in the lab's bridge namespace and the server's cgroups.
pub fn boot(roots: &Roots, lab: &str, index: u8, name: &str, server_index: u8) -> Result<Child> {
    let dir = roots.server_dir(lab, name);
    process::spawn_in_cgroups(
        &layout::cgroup_dirs(lab, name),
        &qemu_argv(roots, lab, index, name, server_index),
        &[],
        &dir.join("qemu.log"),
        Restart::Never,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_file_has_no_default_route() {
        let n = network_file(std::net::Ipv4Addr::new(10, 77, 3, 11), 3);
        assert!(n.contains("Address=10.77.3.11/24"), "{n}");
        assert!(n.contains("Destination=10.77.0.1/32"), "{n}");
        assert!(n.contains("Gateway=10.77.3.1"), "{n}");
        assert!(!n.contains("0.0.0.0"), "{n}");
    }

    #[test]
    fn qemu_uses_tcg_the_lab_bridge_and_only_the_servers_images() {
        let roots = Roots {
            state: "/s".into(),
            cache: "/c".into(),
        };
        let a = qemu_argv(&roots, "t", 3, "vm1", 2).join(" ");
        assert!(
            a.starts_with("ip netns exec kiln-lab-t_bridge qemu-system-x86_64"),
            "{a}"
        );
        assert!(a.contains("-accel tcg,thread=multi"), "{a}");
        assert!(a.contains("file=/s/t/servers/vm1/root.img,"), "{a}");
        assert!(a.contains("file=/s/t/servers/vm1/data.img,"), "{a}");
        assert!(a.contains("ifname=t2,"), "{a}");
        assert!(a.contains("mac=02:6b:6c:03:02:01"), "{a}");
        // Exactly two disks, both the server's own image files.
        assert_eq!(a.matches("-drive ").count(), 2, "{a}");
        for (i, _) in a.match_indices("file=") {
            assert!(a[i + 5..].starts_with("/s/t/servers/vm1/"), "{a}");
        }
    }
}
