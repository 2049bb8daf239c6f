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

/// GET `url` from inside the server with python; prints the status and the body.
fn http_get(url: &str) -> String {
    format!(
        "python3 -c 'import urllib.request,sys\nr=urllib.request.urlopen(\"{url}\", timeout=5)\nsys.stdout.write(str(r.status)+\"\\n\"+r.read().decode())'"
    )
}

fn wait_for(s: &kiln_lab::Server, command: &str, what: &str, logs: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = s.exec(command).unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let logs = s.exec(logs).unwrap();
            panic!(
                "{what} not ready: {}\nlogs:\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn caddy_image_serves_its_site_on_port_80_with_the_upstream_layout() {
    common::require_root();
    let lab = Lab::start(LabOptions::unique("caddy", 1)).expect("lab starts");
    assert_eq!(
        lab.load_image("server1", "caddy").unwrap(),
        "localhost/caddy:2"
    );
    let s = lab.server("server1").unwrap().clone();
    // As with the upstream image: the default Caddyfile serves /usr/share/caddy on :80 and
    // Caddy keeps its configuration state under /config (XDG_CONFIG_HOME).
    s.exec_ok(
        "sudo mkdir -p /srv/site /srv/caddy-config /srv/caddy-data && echo 'hello from the lab' | sudo tee /srv/site/index.html >/dev/null && \
         sudo podman run -d --name web -p 8080:80 -v /srv/site:/usr/share/caddy:ro -v /srv/caddy-config:/config \
         -v /srv/caddy-data:/data docker.io/library/caddy:2",
    )
    .unwrap();
    let out = wait_for(
        &s,
        &http_get(&format!("http://{}:8080/", s.address)),
        "caddy",
        "sudo podman logs web 2>&1 | tail",
    );
    assert_eq!(out, "200\nhello from the lab\n");
    s.exec_ok("sudo test -f /srv/caddy-config/caddy/autosave.json")
        .unwrap();
    let env = s
        .exec_ok("sudo podman exec web sh -c 'echo $XDG_CONFIG_HOME $XDG_DATA_HOME'")
        .unwrap();
    assert_eq!(env.trim(), "/config /data");
}

#[test]
fn synapse_image_generates_its_config_and_serves_the_client_api() {
    common::require_root();
    let lab = Lab::start(LabOptions::unique("synapse", 1)).expect("lab starts");
    assert_eq!(
        lab.load_image("server1", "synapse").unwrap(),
        "localhost/synapse:latest"
    );
    let s = lab.server("server1").unwrap().clone();
    // The upstream image's `generate` mode: config and signing key in /data, owned by 991.
    s.exec_ok(
        "sudo mkdir -p /srv/synapse && sudo podman run --rm -v /srv/synapse:/data -e SYNAPSE_SERVER_NAME=lab.test \
         -e SYNAPSE_REPORT_STATS=no docker.io/matrixdotorg/synapse:latest generate",
    )
    .unwrap();
    let files = s
        .exec_ok("sudo ls /srv/synapse && sudo stat -c %u /srv/synapse/homeserver.yaml")
        .unwrap();
    assert!(
        files.contains("homeserver.yaml") && files.contains("lab.test.signing.key"),
        "{files}"
    );
    assert!(files.trim_end().ends_with("991"), "{files}");
    s.exec_ok("sudo podman run -d --name synapse -v /srv/synapse:/data -p 8008:8008 docker.io/matrixdotorg/synapse:latest").unwrap();
    let out = wait_for(
        &s,
        &http_get(&format!(
            "http://{}:8008/_matrix/client/versions",
            s.address
        )),
        "synapse",
        "sudo podman logs synapse 2>&1 | tail -30",
    );
    assert!(
        out.starts_with("200\n") && out.contains("\"versions\""),
        "{out}"
    );
}
