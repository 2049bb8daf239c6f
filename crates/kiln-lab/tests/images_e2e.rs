//! End-to-end: the lab's PostgreSQL image (built from Debian packages, no registry) runs under
//! podman in a lab server under its upstream name, initialises from POSTGRES_* variables and
//! /docker-entrypoint-initdb.d like the upstream image, and accepts password connections.

mod common;

use std::time::{Duration, Instant};

use kiln_lab::{Lab, LabOptions};

#[test]
fn postgres_image_initialises_from_env_and_accepts_connections() {
    common::require_root();
    let lab = Lab::start(LabOptions::unique("img", 1)).expect("lab starts");
    let reference = lab.load_image("server1", "postgres").expect("image loads");
    assert_eq!(reference, "localhost/postgres:17");
    let s = lab.server("server1").unwrap().clone();
    let images = s
        .exec_ok("sudo podman images --format '{{.Repository}}:{{.Tag}}'")
        .unwrap();
    assert!(images.contains("docker.io/library/postgres:17"), "{images}");

    s.exec_ok(
        "sudo mkdir -p /srv/pg/data /srv/pg/init && printf '%s\\n' \"CREATE TABLE greeting (t text);\" \"INSERT INTO greeting VALUES ('hello from initdb.d');\" | sudo tee /srv/pg/init/01-greeting.sql >/dev/null",
    )
    .unwrap();
    s.exec_ok(
        "sudo podman run -d --name pg -e POSTGRES_PASSWORD=s3cret -e POSTGRES_USER=app -e POSTGRES_DB=appdb \
         -v /srv/pg/data:/var/lib/postgresql/data -v /srv/pg/init:/docker-entrypoint-initdb.d:ro \
         -p 5432:5432 docker.io/library/postgres:17",
    )
    .unwrap();

    // Over the network, with the password from the environment.
    let psql = |password: &str| {
        format!(
            "sudo podman run --rm --network host -e PGPASSWORD={password} docker.io/library/postgres:17 \
             psql -h {} -U app -d appdb -tAc \"select current_user, current_database(), (select t from greeting)\"",
            s.address
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = loop {
        let out = s.exec(&psql("s3cret")).unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        let logs = s.exec("sudo podman logs pg 2>&1 | tail -20").unwrap();
        assert!(
            Instant::now() < deadline,
            "postgres not ready: {}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&logs.stdout)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(out, "app|appdb|hello from initdb.d");

    // The password is enforced (scram-sha-256 for network connections, as upstream).
    let bad = s.exec(&psql("wrong")).unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Data on the volume, owned by the upstream postgres uid, PostgreSQL 17; initialised once.
    let meta = s
        .exec_ok("sudo stat -c %u /srv/pg/data && sudo cat /srv/pg/data/PG_VERSION")
        .unwrap();
    assert_eq!(
        meta.split_whitespace().collect::<Vec<_>>(),
        vec!["999", "17"]
    );
    s.exec_ok("sudo podman restart pg >/dev/null").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.exec(&psql("s3cret")).unwrap().status.success() {
        assert!(
            Instant::now() < deadline,
            "postgres did not come back after a restart"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let logs = s.exec_ok("sudo podman logs pg 2>&1").unwrap();
    assert_eq!(
        logs.matches("PostgreSQL init process complete").count(),
        1,
        "{logs}"
    );
}
