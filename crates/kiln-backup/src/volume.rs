//! Snapshots of the volume holding a service's data, so that its files are copied
//! consistently without stopping it (the reference infrastructure's no-downtime backups):
//! when every path of an item is on one LVM logical volume, a snapshot of that volume
//! (`lvcreate --snapshot`); when they are in one btrfs subvolume, a read-only btrfs
//! snapshot of it (`btrfs subvolume snapshot -r`, inside the subvolume as
//! `.kiln-backup-snapshot`). The item's `before` steps (Nextcloud's maintenance mode) last
//! only as long as taking it. The files are read from the snapshot by a child process in a
//! mount namespace of its own (`unshare --mount`), where the LVM snapshot is mounted
//! read-only and the snapshot's copy of each path is bound over the path itself: the
//! backup records the paths where they are, the host's own mounts never change, and the
//! mounts vanish with the child however it ends. The snapshot itself is removed after the
//! copy, and by the next run or `--recover` when the run was killed (it is named in the
//! pending file first).
//!
//! Elsewhere (or when the volume group has no room for a snapshot) the caller falls back
//! to stopping the service for the copy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, HostSecrets, Item, PlanLocation, Source};
use crate::repo::{Repo, SnapshotInfo};

/// Every snapshot volume kiln makes is named so; `--recover` removes those it finds.
pub const SNAPSHOT_PREFIX: &str = "kiln-backup-";
/// The btrfs snapshot's name, inside the subvolume it is taken of.
pub const BTRFS_SNAPSHOT: &str = ".kiln-backup-snapshot";
/// Where the child mounts an LVM snapshot (in its own mount namespace).
pub const MOUNT_DIR: &str = "/run/kiln/backup/snapshot";
/// How big an LVM snapshot's copy-on-write space is: writes to the origin during the
/// backup must fit in it.
pub const SNAPSHOT_EXTENTS: &str = "20%ORIGIN";
/// The inode number of a btrfs subvolume's root directory.
const BTRFS_SUBVOLUME_INODE: u64 = 256;

/// The logical volume holding an item's paths, mounted at `mountpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lvm {
    /// The mounted device (`/dev/mapper/vg-lv`).
    pub device: String,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub vg: String,
    pub lv: String,
}

/// What can be snapshotted under an item's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Lvm(Lvm),
    /// The btrfs subvolume (its root directory) holding all the paths.
    Btrfs {
        subvolume: PathBuf,
    },
}

impl Origin {
    /// The snapshot's name, as the pending file and [`remove`] take it: `vg/kiln-backup-lv`
    /// for LVM, the snapshot's absolute path for btrfs.
    pub fn snapshot_name(&self) -> String {
        match self {
            Origin::Lvm(o) => format!("{}/{SNAPSHOT_PREFIX}{}", o.vg, o.lv),
            Origin::Btrfs { subvolume } => subvolume.join(BTRFS_SNAPSHOT).display().to_string(),
        }
    }

    /// `LVM` or `btrfs`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Lvm(_) => "LVM",
            Origin::Btrfs { .. } => "btrfs",
        }
    }
}

/// A snapshot taken: how the child reaches its tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// What to mount first (an LVM snapshot's device and filesystem) at [`MOUNT_DIR`].
    pub mount: Option<(String, String)>,
    /// Where the origin's tree appears once mounted (the mount, or the btrfs snapshot).
    pub root: PathBuf,
    /// The origin's own root (its mountpoint, or the subvolume): paths are relative to it.
    pub base: PathBuf,
    /// For humans: `LVM snapshot /dev/vg/kiln-backup-lv`, `btrfs snapshot /srv/.kiln-…`.
    pub label: String,
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let argv: Vec<&str> = std::iter::once(program)
        .chain(args.iter().copied())
        .collect();
    crate::exec::output(&argv)
}

/// The mount holding `path`: (source device, mountpoint, filesystem type).
fn mount_of(path: &Path) -> Result<(String, PathBuf, String), String> {
    let p = path.display().to_string();
    let line = output(
        "findmnt",
        &["-n", "-o", "SOURCE,TARGET,FSTYPE", "--target", &p],
    )?;
    let mut f = line.split_whitespace();
    match (f.next(), f.next(), f.next()) {
        (Some(s), Some(t), Some(fs)) => Ok((s.to_owned(), t.into(), fs.to_owned())),
        _ => Err(format!("findmnt --target {p}: no mount in {line:?}")),
    }
}

/// The btrfs subvolume holding `path` (its root directory), below or at `mountpoint`.
fn btrfs_subvolume(path: &Path, mountpoint: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut dir = path.to_path_buf();
    loop {
        if std::fs::metadata(&dir).ok()?.ino() == BTRFS_SUBVOLUME_INODE {
            return Some(dir);
        }
        if dir == mountpoint || !dir.pop() {
            return None;
        }
    }
}

/// What holds all of `paths` and can be snapshotted: one btrfs subvolume or one LVM
/// logical volume; `None` otherwise (several volumes, another filesystem, no LVM tools).
pub fn origin(paths: &[PathBuf]) -> Option<Origin> {
    let mut found: Option<(String, PathBuf, String)> = None;
    for p in paths {
        let m = mount_of(p).ok()?;
        match &found {
            Some(f) if *f != m => return None,
            _ => found = Some(m),
        }
    }
    let (device, mountpoint, fstype) = found?;
    if fstype == "btrfs" {
        let mut subvolume = None;
        for p in paths {
            let s = btrfs_subvolume(p, &mountpoint)?;
            match &subvolume {
                Some(x) if *x != s => return None,
                _ => subvolume = Some(s),
            }
        }
        return subvolume.map(|subvolume| Origin::Btrfs { subvolume });
    }
    // findmnt names `/dev/mapper/vg-lv`, lvs `/dev/vg/lv`: both lead to the same node.
    let real = std::fs::canonicalize(&device).ok()?;
    let lvs = output(
        "lvs",
        &[
            "--noheadings",
            "--separator",
            "|",
            "-o",
            "vg_name,lv_name,lv_attr,lv_path",
        ],
    )
    .ok()?;
    let (vg, lv, attr) = lvs.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split('|').map(str::trim).collect();
        let [vg, lv, attr, path] = f[..] else {
            return None;
        };
        (std::fs::canonicalize(path).ok()? == real).then_some((vg, lv, attr))
    })?;
    // A snapshot (or a thin pool's internals) is no origin to snapshot again.
    if attr.starts_with(['s', 'S', 't']) {
        return None;
    }
    Some(Origin::Lvm(Lvm {
        device,
        mountpoint,
        fstype,
        vg: vg.to_owned(),
        lv: lv.to_owned(),
    }))
}

/// Takes the snapshot of `origin`.
pub fn create(origin: &Origin) -> Result<Taken, String> {
    let name = origin.snapshot_name();
    match origin {
        Origin::Lvm(o) => {
            let (_, short) = name.split_once('/').unwrap_or(("", &name));
            let full = format!("{}/{}", o.vg, o.lv);
            // A leftover was removed by the run's recovery (`leftovers`).
            output(
                "lvcreate",
                &[
                    "-q",
                    "-y",
                    "--snapshot",
                    "--extents",
                    SNAPSHOT_EXTENTS,
                    "--name",
                    short,
                    &full,
                ],
            )
            .map_err(|e| format!("no LVM snapshot of {full}: {e}"))?;
            let device = format!("/dev/{name}");
            Ok(Taken {
                mount: Some((device.clone(), o.fstype.clone())),
                root: MOUNT_DIR.into(),
                base: o.mountpoint.clone(),
                label: format!("LVM snapshot {device}"),
            })
        }
        Origin::Btrfs { subvolume } => {
            // A leftover (no scan finds those) is replaced.
            remove(&name)?;
            let from = subvolume.display().to_string();
            output(
                "btrfs",
                &["-q", "subvolume", "snapshot", "-r", &from, &name],
            )
            .map_err(|e| format!("no btrfs snapshot of {from}: {e}"))?;
            Ok(Taken {
                mount: None,
                root: name.clone().into(),
                base: subvolume.clone(),
                label: format!("btrfs snapshot {name}"),
            })
        }
    }
}

/// Removes snapshot `name` (an LVM `vg/name`, or a btrfs snapshot's path); one already
/// gone is no error.
pub fn remove(name: &str) -> Result<(), String> {
    if name.starts_with('/') {
        if !Path::new(name).exists() {
            return Ok(());
        }
        return output("btrfs", &["-q", "subvolume", "delete", name]).map(|_| ());
    }
    if output("lvs", &["--noheadings", "-o", "lv_name", name]).is_err() {
        return Ok(());
    }
    output("lvremove", &["-q", "-y", name]).map(|_| ())
}

/// Snapshot volumes kiln left (`vg/name`), whatever left them.
pub fn leftovers() -> Vec<String> {
    output(
        "lvs",
        &["--noheadings", "--separator", "|", "-o", "vg_name,lv_name"],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| {
        let (vg, lv) = l.trim().split_once('|')?;
        lv.starts_with(SNAPSHOT_PREFIX)
            .then(|| format!("{}/{}", vg.trim(), lv.trim()))
    })
    .collect()
}

/// Mount options reading a snapshot of a mounted filesystem without writing to it (its
/// journal is not replayed: the snapshot is crash-consistent).
pub fn mount_options(fstype: &str) -> &'static str {
    match fstype {
        "ext3" | "ext4" => "ro,noload",
        "xfs" => "ro,nouuid,norecovery",
        _ => "ro",
    }
}

/// Where `path` (under the origin's `base`) is in the snapshot's tree at `root`.
pub fn inside_snapshot(path: &Path, base: &Path, root: &Path) -> PathBuf {
    let rel = path.strip_prefix(base).unwrap_or(path);
    root.join(rel)
}

/// In the child, in its own mount namespace: the snapshot mounted if it must be, and its
/// copy of each of `paths` bound over the path.
pub fn mount_over(taken: &Taken, paths: &[PathBuf]) -> Result<(), String> {
    if let Some((device, fstype)) = &taken.mount {
        std::fs::create_dir_all(MOUNT_DIR).map_err(|e| format!("{MOUNT_DIR}: {e}"))?;
        output(
            "mount",
            &["-o", mount_options(fstype), "-t", fstype, device, MOUNT_DIR],
        )?;
    }
    for p in paths {
        let from = inside_snapshot(p, &taken.base, &taken.root);
        output(
            "mount",
            &[
                "--bind",
                &from.display().to_string(),
                &p.display().to_string(),
            ],
        )?;
    }
    Ok(())
}

/// What the child copying from a snapshot needs, given on its stdin (never in argv).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotJob {
    pub environment: String,
    pub host: String,
    pub repository: PlanLocation,
    pub item: Item,
    pub secrets: HostSecrets,
    pub taken: Taken,
}

/// The hidden agent command the child runs ([`child_main`] behind it).
pub const CHILD_COMMAND: [&str; 2] = ["agent", "backup-snapshot"];

/// Runs the copy in a child in a mount namespace of its own (`unshare --mount
/// --propagation private`, then this very binary's [`CHILD_COMMAND`]): its snapshot.
pub fn run_child(job: &SnapshotJob) -> Result<SnapshotInfo, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .args(CHILD_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("unshare: {e}"))?;
    let json = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .map_err(|e| format!("the copy from the snapshot: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("the copy from the snapshot: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the copy from the snapshot failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the copy from the snapshot answered no snapshot ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The child's work, in its own mount namespace: the snapshot mounted over the item's
/// paths, the paths backed up.
pub fn child_main(job: &SnapshotJob) -> Result<SnapshotInfo, String> {
    let Source::Paths { paths } = &job.item.source else {
        return Err("only files are copied from a snapshot".into());
    };
    mount_over(&job.taken, paths)?;
    let location = (&job.repository).into();
    let creds = kiln_s3::Credentials::new(
        job.secrets.access_key_id.clone(),
        job.secrets.secret_access_key.clone(),
    );
    let password = kiln_secrets::Secret::new(job.secrets.repository_password.clone());
    let mut repo = Repo::open(&location, &creds, &password).map_err(|e| e.to_string())?;
    let plan = HostPlan {
        environment: job.environment.clone(),
        host: job.host.clone(),
        repository: job.repository.clone(),
        metrics_dir: None,
        state_path: PathBuf::new(),
        items: vec![],
    };
    let description = format!(
        "{}\nfrom {} (the service kept running)",
        job.item.description, job.taken.label
    );
    repo.backup_paths(paths, &job.host, &job.item.tags(&plan), Some(&description))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_and_paths_inside_it() {
        let o = Origin::Lvm(Lvm {
            device: "/dev/mapper/data-srv".into(),
            mountpoint: "/srv".into(),
            fstype: "ext4".into(),
            vg: "data".into(),
            lv: "srv".into(),
        });
        assert_eq!(o.snapshot_name(), "data/kiln-backup-srv");
        let b = Origin::Btrfs {
            subvolume: "/srv/kiln".into(),
        };
        assert_eq!(b.snapshot_name(), "/srv/kiln/.kiln-backup-snapshot");
        assert_eq!(
            inside_snapshot(
                Path::new("/srv/kiln/synapse/data"),
                Path::new("/srv"),
                Path::new(MOUNT_DIR)
            ),
            Path::new("/run/kiln/backup/snapshot/kiln/synapse/data")
        );
        // The root filesystem on LVM, as RHEL installs it.
        assert_eq!(
            inside_snapshot(
                Path::new("/srv/kiln/x"),
                Path::new("/"),
                Path::new(MOUNT_DIR)
            ),
            Path::new("/run/kiln/backup/snapshot/srv/kiln/x")
        );
        assert_eq!(
            inside_snapshot(
                Path::new("/srv/kiln/x/data"),
                Path::new("/srv/kiln"),
                Path::new("/srv/kiln/.kiln-backup-snapshot")
            ),
            Path::new("/srv/kiln/.kiln-backup-snapshot/x/data")
        );
        assert_eq!(mount_options("ext4"), "ro,noload");
        assert_eq!(mount_options("xfs"), "ro,nouuid,norecovery");
    }
}
