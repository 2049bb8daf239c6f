//! Snapshots of the volume holding a service's data, so that its files are copied
//! consistently without stopping it (the reference infrastructure's no-downtime backups):
//! when every path of an item is on one LVM logical volume, a snapshot of that volume is
//! taken (`lvcreate --snapshot`), the item's `before` steps (Nextcloud's maintenance mode)
//! lasting only as long as taking it, and the files are read from the snapshot by a child
//! process in a mount namespace of its own (`unshare --mount`), where the snapshot is
//! mounted read-only and its copies of the paths are bound over the paths themselves: the
//! snapshot records the paths where they are, the host's own mounts never change, and the
//! mounts vanish with the child however it ends. The snapshot volume itself is removed
//! after the copy, and by the next run or `--recover` when the run was killed (its name is
//! in the pending file first).
//!
//! Without LVM (or when the volume group has no room for a snapshot) the caller falls back
//! to stopping the service for the copy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, HostSecrets, Item, PlanLocation, Source};
use crate::repo::{Repo, SnapshotInfo};

/// Every snapshot volume kiln makes is named so; `--recover` removes those it finds.
pub const SNAPSHOT_PREFIX: &str = "kiln-backup-";
/// Where the child mounts the snapshot (in its own mount namespace).
pub const MOUNT_DIR: &str = "/run/kiln/backup/snapshot";
/// How big a snapshot's copy-on-write space is: writes to the origin during the backup
/// must fit in it.
pub const SNAPSHOT_EXTENTS: &str = "20%ORIGIN";

/// The logical volume holding an item's paths, mounted at `mountpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The mounted device (`/dev/mapper/vg-lv`).
    pub device: String,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub vg: String,
    pub lv: String,
}

impl Origin {
    /// The snapshot volume's name (`kiln-backup-<lv>`), as `vg/name`.
    pub fn snapshot_name(&self) -> String {
        format!("{}/{SNAPSHOT_PREFIX}{}", self.vg, self.lv)
    }
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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

/// The logical volume holding all of `paths`, if they are on one; `None` when they are
/// not on LVM (or on several volumes) or when the host has no LVM tools.
pub fn lvm_origin(paths: &[PathBuf]) -> Option<Origin> {
    let mut found: Option<(String, PathBuf, String)> = None;
    for p in paths {
        let m = mount_of(p).ok()?;
        match &found {
            Some(f) if *f != m => return None,
            _ => found = Some(m),
        }
    }
    let (device, mountpoint, fstype) = found?;
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
    Some(Origin {
        device,
        mountpoint,
        fstype,
        vg: vg.to_owned(),
        lv: lv.to_owned(),
    })
}

/// Takes the snapshot of `origin`: its device (`/dev/vg/name`).
pub fn create(origin: &Origin) -> Result<String, String> {
    let name = origin.snapshot_name();
    let (_, short) = name.split_once('/').unwrap_or(("", &name));
    let full = format!("{}/{}", origin.vg, origin.lv);
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
    Ok(format!("/dev/{name}"))
}

/// Removes snapshot volume `name` (`vg/name`); one already gone is no error.
pub fn remove(name: &str) -> Result<(), String> {
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

/// Where `path` (under `mountpoint`) is inside the snapshot mounted at [`MOUNT_DIR`].
pub fn inside_snapshot(path: &Path, mountpoint: &Path) -> PathBuf {
    let rel = path.strip_prefix(mountpoint).unwrap_or(path);
    Path::new(MOUNT_DIR).join(rel)
}

/// In the child, in its own mount namespace: the snapshot `device` mounted read-only at
/// [`MOUNT_DIR`], and its copy of each of `paths` bound over the path.
pub fn mount_over(
    device: &str,
    fstype: &str,
    mountpoint: &Path,
    paths: &[PathBuf],
) -> Result<(), String> {
    std::fs::create_dir_all(MOUNT_DIR).map_err(|e| format!("{MOUNT_DIR}: {e}"))?;
    output(
        "mount",
        &["-o", mount_options(fstype), "-t", fstype, device, MOUNT_DIR],
    )?;
    for p in paths {
        let from = inside_snapshot(p, mountpoint);
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
    /// The snapshot's device and filesystem, and where its origin is mounted.
    pub device: String,
    pub fstype: String,
    pub mountpoint: PathBuf,
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
    mount_over(&job.device, &job.fstype, &job.mountpoint, paths)?;
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
        "{}\nfrom LVM snapshot {} (the service kept running)",
        job.item.description, job.device
    );
    repo.backup_paths(paths, &job.host, &job.item.tags(&plan), Some(&description))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_and_paths_inside_it() {
        let o = Origin {
            device: "/dev/mapper/data-srv".into(),
            mountpoint: "/srv".into(),
            fstype: "ext4".into(),
            vg: "data".into(),
            lv: "srv".into(),
        };
        assert_eq!(o.snapshot_name(), "data/kiln-backup-srv");
        assert_eq!(
            inside_snapshot(Path::new("/srv/kiln/synapse/data"), &o.mountpoint),
            Path::new("/run/kiln/backup/snapshot/kiln/synapse/data")
        );
        // The root filesystem on LVM, as RHEL installs it.
        assert_eq!(
            inside_snapshot(Path::new("/srv/kiln/x"), Path::new("/")),
            Path::new("/run/kiln/backup/snapshot/srv/kiln/x")
        );
        assert_eq!(mount_options("ext4"), "ro,noload");
        assert_eq!(mount_options("xfs"), "ro,nouuid,norecovery");
    }
}
