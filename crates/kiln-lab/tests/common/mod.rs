//! Helpers shared by the lab end-to-end tests: independent checks (not the lab's own code) that
//! a lab left nothing behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_lab::Roots;

pub fn require_root() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (network namespaces, mounts); run them as root after .ci/install-lab.sh"
    );
}

/// Every pid in the lab's cgroups, read directly from /sys/fs/cgroup.
pub fn lab_pids(lab: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for h in ["systemd", "unified", ""] {
        let root = Path::new("/sys/fs/cgroup")
            .join(h)
            .join("kiln-lab")
            .join(lab);
        collect(&root, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn collect(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(t.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect(&e.path(), out);
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead; its parent (init) reaps it.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Asserts the lab `lab` left no namespace, mount, cgroup, host link, folder or process.
pub fn assert_nothing_left(roots: &Roots, lab: &str, pids_before: &[u32]) {
    let prefix = format!("kiln-lab-{lab}_");
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(netns.is_empty(), "network namespaces left: {netns:?}");

    let dir = roots.lab_dir(lab);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");

    for h in ["systemd", "unified", ""] {
        let cg = PathBuf::from("/sys/fs/cgroup")
            .join(h)
            .join("kiln-lab")
            .join(lab);
        assert!(!cg.exists(), "cgroup left: {}", cg.display());
    }

    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let alias = format!("alias kiln-lab-{lab}");
    assert!(
        !links.lines().any(|l| l.trim_end().ends_with(&alias)),
        "host link of the lab left:\n{links}"
    );

    assert!(!dir.exists(), "lab folder left: {}", dir.display());

    let losetup = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap();
    let losetup = String::from_utf8_lossy(&losetup.stdout);
    assert!(
        !losetup.contains(dir.to_str().unwrap()),
        "loop devices left:\n{losetup}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = pids_before.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
