//! End-to-end on a lab VM (qemu under software emulation: device-mapper works there, not in
//! the nspawn servers), with the lab's S3 server: a service's data on an LVM logical
//! volume (a plain data directory and a `sleep` unit standing for the service, no
//! containers: podman in an emulated VM takes too long) is backed up by the shipped kiln
//! binary's backup mode from an LVM snapshot: the snapshot volume exists during the backup
//! and is gone after, the host's own mounts never show it (the copy runs in a mount
//! namespace of its own), the service is never stopped, a write made during the backup is
//! not in the snapshot, and the snapshot records the data's own paths, as Debian's
//! `restic` shows. The backup SIGKILLed mid-copy leaves the snapshot volume; `agent backup
//! --recover` (the unit's ExecStopPost) removes it, and a leftover is also removed by the
//! next run, which completes. Needs root and the lab's prerequisites (.ci/install-lab.sh).

mod common;
use common::{NotesBackup, text};

use kiln_backup::plan::STATE_PATH;
use std::process::{Command, Stdio};

const PASSWORD: &str = "correct horse battery staple lvm";

fn sh(vm: &kiln_lab::Server, script: &str) -> String {
    let o = vm
        .exec_argv(&["sudo".into(), "bash".into(), "-c".into(), script.into()])
        .unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `bytes` to `path` on `vm` (root, mode `mode`).
fn put(vm: &kiln_lab::Server, path: &str, mode: &str, bytes: &[u8]) {
    let mut c = vm.ssh_argv_command(&[
        "sudo".into(),
        "sh".into(),
        "-c".into(),
        format!("umask 077; cat > {path}.tmp && chmod {mode} {path}.tmp && mv {path}.tmp {path}"),
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(bytes).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "put {path}: {}", text(&o));
}

#[test]
fn files_on_lvm_are_copied_from_a_snapshot_which_is_always_removed() {
    let bk = NotesBackup::start("bklvm", "lvm", &["vm1"], PASSWORD);
    let vm = bk.lab.server("vm1").expect("vm1").clone();

    // The data on a logical volume, as the reference VPSes have it; a unit standing for
    // the service.
    sh(
        &vm,
        "set -e; pvcreate -q /dev/vdb; vgcreate -q data /dev/vdb; \
         lvcreate -q -y -L 400M -n srv data; mkfs.ext4 -q /dev/data/srv; \
         mkdir -p /srv; mount /dev/data/srv /srv; mkdir -p /srv/kiln/notes/data/sub; \
         echo before > /srv/kiln/notes/data/changing; \
         head -c 12000000 /dev/urandom > /srv/kiln/notes/data/sub/blob; \
         chown -R 1234:1234 /srv/kiln/notes/data; \
         systemd-run --unit=notes-test-double --property=Type=exec sleep infinity",
    );
    // The shipped binary (without its debug sections, for the emulated VM's sake).
    let stripped = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_kiln")])
        .arg(stripped.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "objcopy: {}", text(&o));
    put(
        &vm,
        "/usr/local/bin/kiln",
        "755",
        &std::fs::read(stripped.path()).unwrap(),
    );
    // Without a snapshot it would be stopped for its copy.
    let plan = bk.plan(
        "vm1",
        std::path::Path::new("/srv/kiln/notes/data"),
        "notes-test-double.service",
        STATE_PATH.into(),
    );
    let secrets = bk.secrets();
    sh(
        &vm,
        "mkdir -p /etc/kiln/backup && chmod 700 /etc/kiln/backup",
    );
    put(
        &vm,
        "/etc/kiln/backup/plan.json",
        "600",
        serde_json::to_string(&plan).unwrap().as_bytes(),
    );
    put(
        &vm,
        "/etc/kiln/backup/secrets.json",
        "600",
        serde_json::to_string(&secrets).unwrap().as_bytes(),
    );

    // A backup, watched from the host's own mount namespace while it runs.
    let pid_before = sh(
        &vm,
        "systemctl show -p MainPID --value notes-test-double.service",
    );
    let watched = sh(
        &vm,
        "kiln agent backup > /tmp/run1.json 2> /tmp/run1.err & run=$!
         for i in $(seq 1 600); do lvs --noheadings -o lv_name data | grep -q kiln-backup-srv && break; sleep 0.1; done
         lvs --noheadings -o lv_name data | grep -q kiln-backup-srv && echo snapshot-seen
         echo after > /srv/kiln/notes/data/changing
         findmnt -n /run/kiln/backup/snapshot >/dev/null && echo mounted-here || echo not-mounted-here
         wait $run; echo exit=$?
         lvs --noheadings -o lv_name data | grep -q kiln-backup || echo snapshot-gone
         cat /tmp/run1.err",
    );
    let events = sh(&vm, "cat /tmp/run1.json");
    eprintln!(
        "the backup on LVM (service `notes`: a data directory and a `sleep` unit, notes-test-double.service, standing for a service) said:\n{events}"
    );
    assert!(
        watched.contains("snapshot-seen\nnot-mounted-here\nexit=0\nsnapshot-gone\n"),
        "{watched}\n{events}"
    );
    assert!(
        events.contains("\"event\":\"snapshotted\"") && events.contains("data/kiln-backup-srv"),
        "{events}"
    );
    assert!(
        events.contains("\"event\":\"snapshot_removed\""),
        "{events}"
    );
    assert!(!events.contains("\"event\":\"stopped\""), "{events}");
    let done = events
        .lines()
        .find(|l| l.contains("\"event\":\"done\""))
        .unwrap_or_else(|| panic!("{events}"));
    assert!(done.contains("\"downtime_seconds\":null"), "{done}");
    // The service ran through it, the same process.
    assert_eq!(
        sh(
            &vm,
            "systemctl show -p MainPID --value notes-test-double.service"
        ),
        pid_before
    );
    // restic: the data's own paths, the content from the snapshot's moment, the owners.
    let ls = bk.restic(&["ls", "latest", "--tag", "service=notes"]);
    assert!(ls.contains("/srv/kiln/notes/data/sub/blob"), "{ls}");
    assert!(!ls.contains("/run/kiln"), "{ls}");
    let dumped = bk.dump("/srv/kiln/notes/data/changing");
    assert_eq!(dumped, "before\n");
    // What kiln recorded (restic 0.14 does not show descriptions).
    let repo = kiln_backup::Repo::open(
        &bk.location,
        &bk.s3.readonly,
        &kiln_secrets::Secret::new(PASSWORD),
    )
    .unwrap();
    let snaps = repo.snapshots().unwrap();
    let d = snaps[0].description.as_deref().unwrap_or_default();
    assert!(
        d.contains("from LVM snapshot /dev/data/kiln-backup-srv (the service kept running)"),
        "{d}"
    );

    // SIGKILLed mid-copy (the whole unit, as systemd does): the snapshot volume is left…
    let killed = sh(
        &vm,
        "systemd-run --unit=kb --property=Type=exec /usr/local/bin/kiln agent backup
         for i in $(seq 1 600); do lvs --noheadings -o lv_name data | grep -q kiln-backup-srv && break; sleep 0.1; done
         systemctl kill -s KILL kb; sleep 1
         lvs --noheadings -o lv_name data | grep -q kiln-backup-srv && echo snapshot-left
         kiln agent backup --recover
         lvs --noheadings -o lv_name data | grep -q kiln-backup || echo snapshot-gone",
    );
    // …and removed by --recover (what the unit's ExecStopPost runs).
    assert!(
        killed.contains("snapshot-left") && killed.contains("snapshot-gone"),
        "{killed}"
    );
    assert!(
        killed.contains("remove snapshot data/kiln-backup-srv"),
        "{killed}"
    );
    // A leftover (killed with no ExecStopPost) is removed by the next run, which completes.
    let next = sh(
        &vm,
        "lvcreate -q -y -s -L 40M -n kiln-backup-srv data/srv
         kiln agent backup
         lvs --noheadings -o lv_name data | grep -q kiln-backup || echo snapshot-gone",
    );
    assert!(
        next.contains("remove snapshot data/kiln-backup-srv")
            && next.contains("\"event\":\"done\"")
            && next.ends_with("snapshot-gone\n"),
        "{next}"
    );
    bk.restic(&["check"]);
    drop(bk);
}
