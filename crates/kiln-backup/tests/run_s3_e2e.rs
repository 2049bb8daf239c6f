//! End-to-end against the lab's S3 server: the host's backup mode ([`kiln_backup::run`])
//! runs a plan of files, a dump and a failing dump; the failing one fails loudly and the
//! others go on; a consistency step's undo runs after a failure too, and what a killed run
//! left pending is undone by the next; the state and the node-exporter metrics say what
//! happened per service; a wrong password fails every item, nothing written; Debian's
//! restic lists the snapshots with kiln's tags and checks the repository; the S3 server
//! cut off mid-backup (a proxy that stops forwarding) fails the run naming the endpoint,
//! with a failure metric, leaves the repository valid for restic's check, and the next
//! run completes. Needs root and the lab's prerequisites (.ci/install-lab.sh).

use kiln_backup::plan::{HostPlan, HostSecrets, Item, Kind, PlanLocation, Source};
use kiln_backup::run::{self, BackupEvent};
use kiln_backup::{Location, Repo};
use kiln_lab::{Lab, LabOptions, S3Options};
use kiln_secrets::Secret;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PASSWORD: &str = "correct horse battery staple run";

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn item(service: &str, kind: Kind, source: Source) -> Item {
    Item {
        service: service.into(),
        kind,
        source,
        description: format!("{} of {service}", kind.word()),
        stop_units: vec![],
        before: vec![],
        after: vec![],
        unit: None,
        database: None,
    }
}

fn run_plan(plan: &HostPlan, secrets: &HostSecrets, service: Option<&str>) -> Vec<BackupEvent> {
    let mut events = vec![];
    run::run(plan, secrets, service, &mut |e| events.push(e.clone())).expect("the run starts");
    events
}

#[test]
fn a_host_plan_runs_item_by_item_and_says_so_in_its_metrics() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the lab end-to-end tests need root (after .ci/install-lab.sh)"
    );
    let opts = LabOptions {
        s3: Some(S3Options {
            bucket: "backups".into(),
            retention_days: 1,
            ..Default::default()
        }),
        ..LabOptions::unique("bkrun", 1)
    };
    let lab = Lab::start(opts).expect("lab with S3 starts");
    let s3 = lab.s3().expect("S3 recorded").clone();
    let location = Location {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        prefix: "kiln/lab".into(),
    };
    Repo::init(&location, &s3.server, &Secret::new(PASSWORD)).expect("init");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = w.join("srv/hedgedoc/uploads");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.png"), vec![1u8; 50_000]).unwrap();
    std::fs::write(data.join("b.png"), vec![2u8; 50_000]).unwrap();
    let marker = w.join("maintenance-on");
    let m = marker.display().to_string();
    let mut files = item(
        "hedgedoc",
        Kind::Files,
        Source::Paths {
            paths: vec![data.clone()],
        },
    );
    // A maintenance mode: on before, off after.
    files.before = vec![sh(&format!("touch {m}"))];
    files.after = vec![sh(&format!("rm -f {m}"))];
    let dump = item(
        "synapse",
        Kind::Dump,
        Source::Command {
            argv: sh("for i in $(seq 1 500); do echo \"row $i\"; done"),
            filename: "synapse.dump".into(),
        },
    );
    let down = item(
        "nextcloud",
        Kind::Dump,
        Source::Command {
            argv: sh("echo partial; echo 'pg_dump: connection refused' >&2; exit 1"),
            filename: "nextcloud.dump".into(),
        },
    );
    // A `before` step that fails: the snapshot is not made, the `after` step still runs.
    let after_marker = w.join("after-ran");
    let mut broken = item(
        "grafana",
        Kind::Files,
        Source::Paths {
            paths: vec![data.clone()],
        },
    );
    broken.before = vec![sh("exit 4")];
    broken.after = vec![sh(&format!("touch {}", after_marker.display()))];
    let metrics_dir = w.join("textfile");
    let plan = HostPlan {
        environment: "lab".into(),
        host: "services".into(),
        repository: PlanLocation::from(&location),
        metrics_dir: Some(metrics_dir.clone()),
        state_path: w.join("state/last.json"),
        items: vec![files, down, dump, broken],
    };
    let secrets = HostSecrets {
        access_key_id: s3.server.access_key_id.clone(),
        secret_access_key: s3.server.secret_access_key.expose().to_owned(),
        repository_password: PASSWORD.into(),
    };

    let events = run_plan(&plan, &secrets, None);
    let done: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            BackupEvent::Done { service, .. } => Some(service.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(done, ["hedgedoc", "synapse"], "{events:#?}");
    let failed: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            BackupEvent::Failed {
                service, message, ..
            } => Some((service.as_str(), message.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{events:#?}");
    assert_eq!(failed[0].0, "nextcloud");
    assert!(
        failed[0].1.contains("it said: pg_dump: connection refused"),
        "{}",
        failed[0].1
    );
    assert_eq!(failed[1].0, "grafana");
    assert!(failed[1].1.contains("exit status: 4"), "{}", failed[1].1);
    assert!(!marker.exists(), "the maintenance mode was switched off");
    assert!(
        after_marker.exists(),
        "the `after` step ran after a failed `before`"
    );
    assert!(!w.join("state/pending.json").exists());

    // The metrics say it per service.
    let prom = std::fs::read_to_string(metrics_dir.join("kiln_backup.prom")).unwrap();
    for (service, kind, status) in [
        ("hedgedoc", "files", 0),
        ("synapse", "dump", 0),
        ("nextcloud", "dump", 1),
        ("grafana", "files", 1),
    ] {
        assert!(
            prom.contains(&format!(
                "kiln_backup_last_exit_status{{service=\"{service}\",kind=\"{kind}\"}} {status}\n"
            )),
            "{service}: {prom}"
        );
    }
    assert!(prom.contains("kiln_backup_last_success_timestamp_seconds{service=\"synapse\""));
    assert!(!prom.contains("kiln_backup_last_success_timestamp_seconds{service=\"nextcloud\""));

    // The snapshots carry kiln's tags and what they hold; restic sees the same and
    // checks the repository; the failed dump left no snapshot.
    let repo = Repo::open(&location, &s3.server, &Secret::new(PASSWORD)).unwrap();
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let h = snaps
        .iter()
        .find(|s| s.tags.contains(&"service=hedgedoc".to_owned()))
        .unwrap();
    for t in ["env=lab", "host=services", "kind=files"] {
        assert!(h.tags.contains(&t.to_owned()), "{t}: {:?}", h.tags);
    }
    assert_eq!(h.files, 2);
    assert_eq!(h.description.as_deref(), Some("files of hedgedoc"));
    assert_eq!(h.hostname, "services");
    let out = restic(
        &location,
        &secrets,
        &["snapshots", "--json", "--tag", "kind=dump"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    restic(&location, &secrets, &["check"]);

    // A killed run's pending undo: the next run does it first, and says so.
    std::fs::write(&marker, "").unwrap();
    std::fs::write(
        w.join("state/pending.json"),
        serde_json::json!({"service": "hedgedoc", "start_units": [], "after": [sh(&format!("rm -f {m}"))]}).to_string(),
    )
    .unwrap();
    let events = run_plan(&plan, &secrets, Some("synapse"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BackupEvent::Recovered { .. })),
        "{events:#?}"
    );
    assert!(!marker.exists());
    assert!(!w.join("state/pending.json").exists());
    // Only synapse ran; the others keep their last results.
    let state: run::State =
        serde_json::from_str(&std::fs::read_to_string(&plan.state_path).unwrap()).unwrap();
    assert_eq!(state.items.len(), 4);
    assert!(!state.items["nextcloud/dump"].ok);
    let unknown = run::run(&plan, &secrets, Some("nope"), &mut |_| {}).unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("hedgedoc, nextcloud, synapse, grafana"),
        "{unknown}"
    );

    // A wrong password: every item fails with the repository's error, nothing written.
    let before = s3
        .admin_client()
        .list_object_versions(&s3.bucket, "kiln/lab/")
        .unwrap()
        .len();
    let wrong = HostSecrets {
        repository_password: "not it".into(),
        ..secrets.clone()
    };
    let events = run_plan(&plan, &wrong, None);
    assert!(
        matches!(&events[0], BackupEvent::RepositoryFailed { message } if message.contains("does not open it")),
        "{events:#?}"
    );
    let after = s3
        .admin_client()
        .list_object_versions(&s3.bucket, "kiln/lab/")
        .unwrap()
        .len();
    assert_eq!(before, after);
    let prom = std::fs::read_to_string(metrics_dir.join("kiln_backup.prom")).unwrap();
    assert!(prom.contains("kiln_backup_last_exit_status{service=\"synapse\",kind=\"dump\"} 1\n"));
    // The last success stays what it was.
    assert!(prom.contains("kiln_backup_last_success_timestamp_seconds{service=\"synapse\""));

    s3_cut_mid_backup(&location, &secrets, w);
    drop(lab);
}

/// A TCP proxy on loopback to `target` (`host:port`) that, once `limit` bytes have gone
/// upstream, cuts every connection and drops every new one: the S3 server unreachable in
/// the middle of a backup.
struct Cutter {
    endpoint: String,
    cut: Arc<AtomicBool>,
}

fn cutter(target: &str, limit: u64) -> Cutter {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let cut = Arc::new(AtomicBool::new(false));
    let up = Arc::new(AtomicU64::new(0));
    let target = target.to_owned();
    let flag = cut.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { return };
            if flag.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (flag, up) = (flag.clone(), up.clone());
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            // Downstream as it comes; upstream counted and cut at the limit.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &s2, &mut &c2);
                let _ = c2.shutdown(Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match (&client).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if flag.load(Ordering::SeqCst)
                        || up.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit
                    {
                        flag.store(true, Ordering::SeqCst);
                        break;
                    }
                    if (&server).write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    Cutter { endpoint, cut }
}

/// S3 unreachable mid-backup: the run fails saying so, with a failure metric; the
/// repository stays valid for restic; the next run completes.
fn s3_cut_mid_backup(location: &Location, secrets: &HostSecrets, w: &std::path::Path) {
    // 24 MiB that do not compress or deduplicate: several packs to upload.
    let big = w.join("srv/nextcloud/data");
    std::fs::create_dir_all(&big).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for f in 0..6 {
        let bytes: Vec<u8> = (0..4 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(big.join(format!("blob{f}")), bytes).unwrap();
    }
    let target = location
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let proxy = cutter(target, 8 << 20);
    let metrics_dir = w.join("textfile-cut");
    let mut plan = HostPlan {
        environment: "lab".into(),
        host: "services".into(),
        repository: PlanLocation::from(&Location {
            endpoint: proxy.endpoint.clone(),
            ..location.clone()
        }),
        metrics_dir: Some(metrics_dir.clone()),
        state_path: w.join("state-cut/last.json"),
        items: vec![item(
            "nextcloud",
            Kind::Files,
            Source::Paths {
                paths: vec![big.clone()],
            },
        )],
    };
    let started = std::time::Instant::now();
    let events = run_plan(&plan, secrets, None);
    let took = started.elapsed();
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the proxy never cut: {events:#?}"
    );
    let message = events
        .iter()
        .find_map(|e| match e {
            BackupEvent::Failed { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failure: {events:#?}"));
    assert!(
        message.contains(&proxy.endpoint),
        "the failure names the S3 endpoint: {message}"
    );
    assert!(took.as_secs() < 120, "failing took {took:?}");
    eprintln!("S3 cut mid-backup: the run failed after {took:.1?}: {message}");
    let prom = std::fs::read_to_string(metrics_dir.join("kiln_backup.prom")).unwrap();
    assert!(
        prom.contains("kiln_backup_last_exit_status{service=\"nextcloud\",kind=\"files\"} 1\n"),
        "{prom}"
    );
    // No half-written snapshot; restic's check passes on the repository as it is.
    let listed = restic(
        location,
        secrets,
        &[
            "snapshots",
            "--json",
            "--tag",
            "service=nextcloud,kind=files",
        ],
    );
    assert_eq!(listed.trim(), "[]", "{listed}");
    restic(location, secrets, &["check"]);
    // Reachable again: the next run completes.
    plan.repository = PlanLocation::from(location);
    let events = run_plan(&plan, secrets, None);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BackupEvent::Done { service, .. } if service == "nextcloud")),
        "{events:#?}"
    );
    let prom = std::fs::read_to_string(metrics_dir.join("kiln_backup.prom")).unwrap();
    assert!(
        prom.contains("kiln_backup_last_exit_status{service=\"nextcloud\",kind=\"files\"} 0\n"),
        "{prom}"
    );
    restic(location, secrets, &["check"]);
}

fn restic(location: &Location, secrets: &HostSecrets, args: &[&str]) -> String {
    let out = std::process::Command::new("restic")
        .arg("-r")
        .arg(location.restic_url())
        .arg("--no-cache")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &secrets.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &secrets.secret_access_key)
        .env("RESTIC_PASSWORD", &secrets.repository_password)
        .output()
        .expect("restic (apt install restic)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
