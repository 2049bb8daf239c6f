//! End-to-end (root): a lab server that is a qemu VM under software emulation. SSH with pinned
//! host keys, passwordless sudo, LVM with a snapshot on its data disk (device-mapper, which the
//! nspawn servers lack), and `down` leaves nothing: no qemu process, no tap, no image files.
//! Prints the boot-to-SSH time and qemu's memory (RSS) for the closing note.

mod common;

use std::time::Instant;

use kiln_lab::{Lab, LabOptions};

use common::{assert_nothing_left, lab_pids, require_root};

/// Resident memory of a process (KiB), from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn vm_server_has_pinned_ssh_lvm_snapshots_and_down_leaves_nothing() {
    require_root();
    let mut opts = LabOptions::unique("vm", 0);
    opts.vms = vec!["vm1".into()];
    opts.progress = Some(std::sync::Arc::new(|e: &kiln_lab::LabEvent| {
        eprintln!("lab: {e}")
    }));
    let started = Instant::now();
    let lab = Lab::start(opts).expect("lab with a VM starts");
    let boot = started.elapsed();
    let name = lab.name().to_string();
    let roots = lab.roots().clone();
    let vm = lab
        .server("vm1")
        .expect("vm1 is a server of the lab")
        .clone();

    // SSH with StrictHostKeyChecking=yes against the recorded keys; admin with sudo.
    assert_eq!(vm.exec_ok("sudo -n id -u").unwrap().trim(), "0");
    assert_eq!(vm.exec_ok("hostname").unwrap().trim(), "vm1");
    let ed = vm.exec_ok("cat /etc/ssh/ssh_host_ed25519_key.pub").unwrap();
    let ed: Vec<&str> = ed.split_whitespace().take(2).collect();
    assert!(vm.host_keys.contains(&ed.join(" ")), "{:?}", vm.host_keys);
    // The lab records it as a VM (for `kiln lab status` and image loading).
    let recorded = kiln_lab::status(&roots).unwrap();
    let me = recorded.iter().find(|l| l.name == name).expect("listed");
    assert_eq!(me.servers[0].0.kind, kiln_lab::ServerKind::Vm);

    // A real kernel of its own, not the host's.
    let uname = vm.exec_ok("uname -r").unwrap();
    assert!(uname.contains("deb13"), "{uname}");

    // LVM on the data disk, with a snapshot: device-mapper works.
    let out = vm
        .exec_ok(
            "set -e; sudo pvcreate -q /dev/vdb; sudo vgcreate -q labvg /dev/vdb; \
             sudo lvcreate -q -y -L 200M -n data labvg; sudo mkfs.ext4 -q /dev/labvg/data; \
             sudo mkdir -p /mnt/data; sudo mount /dev/labvg/data /mnt/data; \
             echo before | sudo tee /mnt/data/f >/dev/null; sync; \
             sudo lvcreate -q -y -s -L 100M -n snap /dev/labvg/data; \
             echo after | sudo tee /mnt/data/f >/dev/null; sync; \
             sudo mkdir -p /mnt/snap; sudo mount -o ro /dev/labvg/snap /mnt/snap; \
             echo SNAP=$(cat /mnt/snap/f) DATA=$(cat /mnt/data/f); sudo lvs --noheadings -o lv_name,lv_attr labvg",
        )
        .expect("LVM with a snapshot works in the VM");
    // The snapshot kept the content from before the write; the origin has the new one.
    assert!(
        out.lines().any(|l| l.trim() == "SNAP=before DATA=after"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 2 && f[0] == "snap" && f[1].starts_with('s')
        }),
        "no snapshot volume listed:\n{out}"
    );

    // Measure: qemu's resident memory.
    let pids = lab_pids(&name);
    let qemu: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| comm(*p).starts_with("qemu"))
        .collect();
    assert_eq!(
        qemu.len(),
        1,
        "one qemu process in the lab's cgroups: {pids:?}"
    );
    eprintln!(
        "measure: lab start with one VM to SSH {:.1} s, qemu RSS {} MiB",
        boot.as_secs_f64(),
        rss_kib(qemu[0]) / 1024
    );
    let dir = roots.server_dir(&name, "vm1");
    assert!(dir.join("root.img").exists() && dir.join("data.img").exists());

    // Its tap is on the lab's bridge.
    let bridge_ns = format!("kiln-lab-{name}_bridge");
    let tap = std::process::Command::new("ip")
        .args(["-n", &bridge_ns, "-o", "link", "show", "master", "br0"])
        .output()
        .unwrap();
    let tap = String::from_utf8_lossy(&tap.stdout);
    assert!(tap.lines().any(|l| l.contains(": t1:")), "{tap}");

    lab.down().expect("down");
    assert_nothing_left(&roots, &name, &pids);
    assert!(!dir.exists(), "VM images left in {}", dir.display());
    // The bridge namespace with the tap is gone (checked above), and so is qemu.
    let ps = std::process::Command::new("pgrep")
        .args(["-f", &format!("kiln-lab-{name}-vm1")])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "qemu still runs: {:?}", ps.stdout);
}
