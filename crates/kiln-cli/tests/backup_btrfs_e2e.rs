//! End-to-end on this machine (root), with the lab's S3 server: a service's data in a btrfs
//! subvolume (a loop device made for the test) is backed up by kiln's backup mode from a
//! read-only btrfs snapshot of the subvolume: the snapshot exists during the backup and is
//! gone after, the host's mounts never show the copy's bind mounts (a mount namespace of
//! its own), the service's unit is never stopped (it does not exist: stopping it would
//! fail the item), a write made during the backup is not in it, and Debian's `restic`
//! shows the data's own paths. SIGKILLed mid-copy, the snapshot is left and `agent backup
//! --recover` removes it; a leftover is removed by the next run, which completes. Needs
//! root, btrfs-progs and the lab's prerequisites (.ci/install-lab.sh).

mod common;
use common::{NotesBackup, text};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple btrfs";

fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(o.status.success(), "{program} {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A btrfs filesystem on a loop device, mounted at `mnt`; unmounted and detached on drop.
struct Btrfs {
    mnt: PathBuf,
    loop_dev: String,
}

impl Btrfs {
    fn new(dir: &Path) -> Btrfs {
        let img = dir.join("btrfs.img");
        run("truncate", &["-s", "512M", img.to_str().unwrap()]);
        let loop_dev = run("losetup", &["-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_owned();
        run("mkfs.btrfs", &["-q", &loop_dev]);
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        run("mount", &[&loop_dev, mnt.to_str().unwrap()]);
        Btrfs { mnt, loop_dev }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup")
            .args(["-d", &self.loop_dev])
            .status();
    }
}

/// `kiln agent backup` with this plan and these secrets, in a process group of its own.
fn agent(plan: &Path, secrets: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(["agent", "backup", "--plan"])
        .arg(plan)
        .arg("--secrets")
        .arg(secrets)
        .args(extra)
        .process_group(0);
    c
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn files_in_a_btrfs_subvolume_are_copied_from_a_snapshot_which_is_always_removed() {
    let bk = NotesBackup::start("bkbtrfs", "btrfs", &[], PASSWORD);

    let work = tempfile::tempdir().unwrap();
    let fs = Btrfs::new(work.path());
    let subvolume = fs.mnt.join("srv");
    run(
        "btrfs",
        &["-q", "subvolume", "create", subvolume.to_str().unwrap()],
    );
    let data = subvolume.join("kiln/notes/data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("changing"), "before\n").unwrap();
    // 48 MB that neither compress nor deduplicate: the copy takes a moment.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let blob: Vec<u8> = (0..48_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(data.join("sub/blob"), &blob).unwrap();
    let snapshot = subvolume.join(".kiln-backup-snapshot");

    let never = format!(
        "notes-test-double-never-stopped-{}.service",
        std::process::id()
    );
    // Without a snapshot it would be stopped for its copy (and fail: no such unit).
    let plan = bk.plan("here", &data, &never, work.path().join("state/last.json"));
    let secrets = bk.secrets();
    let plan_path = work.path().join("plan.json");
    let secrets_path = work.path().join("secrets.json");
    std::fs::write(&plan_path, serde_json::to_string(&plan).unwrap()).unwrap();
    std::fs::write(&secrets_path, serde_json::to_string(&secrets).unwrap()).unwrap();
    run("chmod", &["600", secrets_path.to_str().unwrap()]);

    // A backup, watched from this machine's own mount namespace.
    let child = agent(&plan_path, &secrets_path, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the snapshot", || snapshot.exists());
    std::fs::write(data.join("changing"), "after\n").unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(data.to_str().unwrap()),
        "the copy's bind mount shows here: {mounts}"
    );
    let o = child.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!(
        "the backup on btrfs (service `notes`: a data directory, and a unit that does not exist, notes-test-double-never-stopped-*.service, standing for its service) said:\n{events}"
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!snapshot.exists(), "the snapshot is left: {events}");
    assert!(
        events.contains("\"event\":\"snapshotted\"") && events.contains("\"of\":\"btrfs\""),
        "{events}"
    );
    assert!(
        events.contains("\"event\":\"snapshot_removed\""),
        "{events}"
    );
    assert!(!events.contains("\"event\":\"stopped\""), "{events}");
    let d = data.display().to_string();
    let ls = bk.restic(&["ls", "latest", "--tag", "service=notes"]);
    assert!(ls.contains(&format!("{d}/sub/blob")), "{ls}");
    assert!(!ls.contains(".kiln-backup-snapshot"), "{ls}");
    let dumped = bk.dump(&format!("{d}/changing"));
    assert_eq!(dumped, "before\n");

    // SIGKILLed mid-copy (its whole process group, as systemd kills a unit).
    let child = agent(&plan_path, &secrets_path, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pgid = child.id().to_string();
    wait_for("the snapshot", || snapshot.exists());
    run("kill", &["-KILL", "--", &format!("-{pgid}")]);
    let mut child = child;
    let _ = child.wait();
    assert!(snapshot.exists(), "the kill came too late to leave it");
    let o = agent(&plan_path, &secrets_path, &["--recover"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "--recover: {}", text(&o));
    assert!(
        said.contains(&format!("remove snapshot {}", snapshot.display())),
        "{said}"
    );
    assert!(!snapshot.exists(), "{said}");
    // A leftover of the same name (killed with no --recover): the next run replaces it.
    run(
        "btrfs",
        &[
            "-q",
            "subvolume",
            "snapshot",
            "-r",
            subvolume.to_str().unwrap(),
            snapshot.to_str().unwrap(),
        ],
    );
    let o = agent(&plan_path, &secrets_path, &[]).output().unwrap();
    assert!(o.status.success(), "the next run: {}", text(&o));
    assert!(!snapshot.exists());
    let dumped = bk.dump(&format!("{d}/changing"));
    assert_eq!(dumped, "after\n", "the next run copied what is there now");
    bk.restic(&["check"]);
    drop(fs);
    drop(bk);
}
