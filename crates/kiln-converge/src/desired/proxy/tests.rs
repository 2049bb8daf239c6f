//! The route table and both proxies' configurations, from the reference infrastructure.

use std::path::Path;
use std::sync::Arc;

use kiln_model::Model;

use super::*;
use kiln_secrets::Secret;

use crate::desired::{SecretSource, desired_for_host};
use crate::resource::{DesiredState, UnitKind};

/// Every secret is its own name (the services need them; the proxy uses none).
struct Fixed;

impl SecretSource for Fixed {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        if name.starts_with("wireguard_") {
            return Ok(Secret::new(crate::desired::test_wireguard_key("wg")));
        }
        Ok(Secret::new(format!("value-of-{name}")))
    }
}

/// The reference lab environment's CA: the lab's Pebble, its root recorded by `kiln lab up`.
const LAB_CA: &str = "acme_ca = { directory = \"https://10.77.0.1:14000/dir\" }";

/// `toml` with the lab environment's CA line replaced by `ca` (which must be there).
fn lab_ca(toml: String, ca: &str) -> String {
    assert!(toml.contains(LAB_CA), "the reference's lab CA line changed");
    toml.replacen(LAB_CA, ca, 1)
}

fn reference() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference/kiln.toml"),
    )
    .unwrap()
}

/// The reference kiln.toml with `edit` applied, loaded from a folder of its own (with a
/// `root.pem` for custom ACME directories).
fn model_with(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/motd.j2"), "motd\n").unwrap();
    std::fs::write(
        dir.path().join("root.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = dir.path().join("kiln.toml");
    std::fs::write(&path, edit(reference())).unwrap();
    let m = kiln_model::load(&path).unwrap_or_else(|d| panic!("{}", d.render(100, false)));
    (dir, m)
}

fn desired(m: &Model, env: &str, role: &str) -> Result<DesiredState, DesiredError> {
    let env = m.environment(env).unwrap();
    desired_for_host(m, env, env.host(role).unwrap(), Arc::new(Fixed))
}

fn file_text(d: &DesiredState, path: &str) -> String {
    let f = d
        .files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("no file {path}"));
    String::from_utf8(f.content.bytes().to_vec()).unwrap()
}

fn traefik(toml: String) -> String {
    toml.replace(
        "acme_email = \"thib@ergaster.org\"   # Let's Encrypt expiry warnings go here",
        "acme_email = \"thib@ergaster.org\"\nproxy = \"traefik\"",
    )
}

#[test]
fn the_route_table_has_every_service_name_and_the_apex_delegation() {
    let (_d, m) = model_with(|t| t);
    let env = m.environment("production").unwrap();
    let routes = Routes::for_environment(&m, env).unwrap();
    let sites: Vec<(&str, &str, Option<&str>)> = routes
        .sites
        .iter()
        .map(|s| (s.hostname.as_str(), s.role.as_str(), s.upstream.as_deref()))
        .collect();
    assert_eq!(
        sites,
        [
            ("cloud.ergaster.org", "services", Some("nextcloud:80")),
            // The Matrix server name is the apex; the proxy answers its .well-known.
            ("ergaster.org", "services", None),
            ("hdoc.ergaster.org", "services", Some("hedgedoc:3000")),
            ("matrix.ergaster.org", "services", Some("synapse:8008")),
        ]
    );
    let apex = &routes.sites[1];
    let m = apex.matrix.as_ref().unwrap();
    assert_eq!(m.server_json(), r#"{"m.server":"matrix.ergaster.org:443"}"#);
    assert_eq!(
        m.client_json(),
        r#"{"m.homeserver":{"base_url":"https://matrix.ergaster.org"}}"#
    );
    assert_eq!(routes.sites[3].hidden_paths, ["/_synapse/admin"]);
    assert_eq!(
        routes.sites[0].redirects,
        [
            (
                "/.well-known/carddav".to_string(),
                "/remote.php/dav/".to_string()
            ),
            (
                "/.well-known/caldav".to_string(),
                "/remote.php/dav/".to_string()
            ),
        ]
    );
    // Only the services host needs 80/443 (the monitoring stack is not deployed yet).
    assert_eq!(
        routes.proxy_hosts().into_iter().collect::<Vec<_>>(),
        ["services"]
    );
}

#[test]
fn caddy_gets_the_environments_ca_a_checked_caddyfile_and_reloads_on_change() {
    let (_d, m) = model_with(|t| t);
    let d = desired(&m, "production", "services").unwrap();
    let caddyfile = file_text(&d, "/etc/kiln/proxy/caddy/Caddyfile");
    assert!(
        caddyfile.contains("\temail thib@ergaster.org\n"),
        "{caddyfile}"
    );
    // Production pins Let's Encrypt (no fallback CA: the CAA record names only it).
    assert!(caddyfile.contains("\tacme_ca https://acme-v02.api.letsencrypt.org/directory\n"));
    assert!(caddyfile.contains("matrix.ergaster.org {\n"));
    assert!(caddyfile.contains("\trespond /_synapse/admin* 404\n"));
    assert!(caddyfile.contains("\treverse_proxy synapse:8008\n"));
    assert!(caddyfile.contains("\tredir /.well-known/caldav /remote.php/dav/ 301\n"));
    assert!(caddyfile.contains("respond `{\"m.server\":\"matrix.ergaster.org:443\"}` 200"));
    assert!(caddyfile.contains("Strict-Transport-Security \"max-age=31536000\""));
    let f = d
        .files
        .iter()
        .find(|f| f.path == Path::new("/etc/kiln/proxy/caddy/Caddyfile"))
        .unwrap();
    let check = &f.validate.as_ref().expect("the Caddyfile is checked").argv;
    assert!(check.contains(&"validate".to_string()));
    assert!(check.contains(&"--volume={}:/etc/caddy/Caddyfile:ro".to_string()));
    assert!(check.contains(&kiln_catalog::CADDY_IMAGE.to_string()));
    assert_eq!(f.notify[0].unit, "kiln-proxy.service");
    assert_eq!(f.notify[0].action, Trigger::Reload);
    let quadlet = d
        .units
        .iter()
        .find(|u| u.name == "kiln-proxy.service")
        .unwrap();
    assert!(matches!(quadlet.kind, UnitKind::Quadlet { .. }));
    let q = String::from_utf8(quadlet.content.bytes().to_vec()).unwrap();
    for line in [
        "PublishPort=80:80\n",
        "PublishPort=443:443\n",
        "Network=kiln.network\n",
        "ExecReload=/usr/bin/podman exec kiln-proxy caddy reload",
    ] {
        assert!(q.contains(line), "{line} in\n{q}");
    }
    // Staging: the staging CA. The monitoring host serves no route: no proxy there.
    let d = desired(&m, "staging", "services").unwrap();
    assert!(
        file_text(&d, "/etc/kiln/proxy/caddy/Caddyfile")
            .contains("acme_ca https://acme-staging-v02.api.letsencrypt.org/directory")
    );
    let mon = desired(&m, "staging", "monitoring").unwrap();
    assert!(mon.units.iter().all(|u| u.name != "kiln-proxy.service"));
}

#[test]
fn a_custom_acme_directory_installs_its_root_before_the_configuration() {
    let (_d, m) = model_with(|t| {
        lab_ca(
            t,
            "acme_ca = { directory = \"https://10.77.0.1:14000/dir\", ca_root = \"root.pem\" }",
        )
    });
    let d = desired(&m, "lab", "services").unwrap();
    let caddyfile = file_text(&d, "/etc/kiln/proxy/caddy/Caddyfile");
    assert!(
        caddyfile.contains("\tacme_ca https://10.77.0.1:14000/dir\n"),
        "{caddyfile}"
    );
    assert!(caddyfile.contains("\tacme_ca_root /etc/caddy/acme-ca-root.pem\n"));
    let root = d
        .files
        .iter()
        .position(|f| f.path == Path::new("/etc/kiln/proxy/caddy/acme-ca-root.pem"))
        .expect("the root is installed");
    let conf = d
        .files
        .iter()
        .position(|f| f.path == Path::new("/etc/kiln/proxy/caddy/Caddyfile"))
        .unwrap();
    assert!(
        root < conf,
        "the Caddyfile's check reads the root: it comes first"
    );
    assert!(file_text(&d, "/etc/kiln/proxy/caddy/acme-ca-root.pem").contains("MIIB"));

    // A ca_root that is not there: an error naming the file and the environment.
    let (dir, m) = model_with(|t| {
        lab_ca(
            t,
            "acme_ca = { directory = \"https://10.77.0.1:14000/dir\", ca_root = \"gone.pem\" }",
        )
    });
    let e = desired(&m, "lab", "services").unwrap_err().to_string();
    assert!(
        e.contains(&dir.path().join("gone.pem").display().to_string()),
        "{e}"
    );
    assert!(e.contains("environment lab's ACME directory"), "{e}");
}

#[test]
fn the_internal_ca_is_caddys_own() {
    let (_d, m) = model_with(|t| lab_ca(t, "acme_ca = \"internal\""));
    let d = desired(&m, "lab", "services").unwrap();
    let caddyfile = file_text(&d, "/etc/kiln/proxy/caddy/Caddyfile");
    assert!(caddyfile.contains("\tlocal_certs\n"), "{caddyfile}");
    assert!(!caddyfile.contains("\tacme_ca "), "{caddyfile}");
}

#[test]
fn traefik_renders_the_same_routes_in_static_and_dynamic_configuration() {
    let (_d, m) = model_with(|t| {
        lab_ca(
            traefik(t),
            "acme_ca = { directory = \"https://10.77.0.1:14000/dir\", ca_root = \"root.pem\" }",
        )
    });
    let d = desired(&m, "lab", "services").unwrap();
    let stat = file_text(&d, "/etc/kiln/proxy/traefik/traefik.yml");
    for line in [
        "      caServer: \"https://10.77.0.1:14000/dir\"\n",
        "        - \"/etc/traefik/acme-ca-root.pem\"\n",
        "      certificatesDuration: 168\n",
        "          to: websecure\n",
        "        entryPoint: web\n",
        "ping: {}\n",
    ] {
        assert!(stat.contains(line), "{line} in\n{stat}");
    }
    let dynamic = file_text(&d, "/etc/kiln/proxy/traefik/dynamic/kiln.yml");
    for line in [
        "      rule: \"Host(`matrix.ergaster.test`) && !PathPrefix(`/_synapse/admin`)\"\n",
        "      rule: \"Host(`ergaster.test`) && PathPrefix(`/.well-known/matrix/`)\"\n",
        "          - url: \"http://synapse:8008\"\n",
        "        regex: \"^https://cloud\\\\.ergaster\\\\.test/\\\\.well-known/caldav/?$\"\n",
        "        stsSeconds: 31536000\n",
    ] {
        assert!(dynamic.contains(line), "{line} in\n{dynamic}");
    }
    // YAML both, as Traefik reads them.
    for text in [&stat, &dynamic] {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
        assert_eq!(docs.len(), 1);
    }
    // The routes file is watched (no restart); the static file restarts Traefik.
    let f = |p: &str| d.files.iter().find(|f| f.path == Path::new(p)).unwrap();
    assert!(
        f("/etc/kiln/proxy/traefik/dynamic/kiln.yml")
            .notify
            .is_empty()
    );
    assert_eq!(
        f("/etc/kiln/proxy/traefik/traefik.yml").notify[0].action,
        Trigger::Restart
    );
    let img: Vec<&str> = d.images.iter().map(|i| i.reference.as_str()).collect();
    assert!(img.contains(&kiln_catalog::TRAEFIK_IMAGE));
}

#[test]
fn traefik_refuses_a_delegation_to_synapse_on_another_host() {
    let (_d, m) = model_with(|t| {
        traefik(t)
            // The apex on the monitoring host, Synapse on the services host.
            .replace(
                "apex_host = \"services\"\nbackup_repository",
                "apex_host = \"monitoring\"\nbackup_repository",
            )
    });
    let e = desired(&m, "lab", "monitoring").unwrap_err().to_string();
    assert!(e.contains("Synapse, which runs on host services"), "{e}");
    assert!(e.contains("no WireGuard between them"), "{e}");
}

#[test]
fn the_proxy_host_watches_a_certificate_for_every_name_it_serves() {
    let (_d, m) = model_with(|t| t);
    let d = desired(&m, "lab", "services").unwrap();
    let watch = d
        .certificates
        .expect("the proxy host watches its certificates");
    let env = m.environment("lab").unwrap();
    let routes = Routes::for_environment(&m, env).unwrap();
    let names: Vec<String> = routes
        .on_host("services")
        .map(|s| s.hostname.clone())
        .collect();
    assert!(
        names.contains(&"matrix.ergaster.test".to_string()),
        "{names:?}"
    );
    assert_eq!(watch.names, names);
    assert_eq!(watch.ca, CaKind::Custom);
    assert_eq!(
        watch.store,
        CertificateStore::Caddy {
            dir: "/srv/kiln/kiln-proxy/data/caddy/certificates".into()
        }
    );
    assert_eq!(
        watch.directory.as_deref(),
        Some("https://10.77.0.1:14000/dir")
    );
    // Traefik keeps them in its ACME storage file; production is Let's Encrypt's.
    let (_d, m) = model_with(traefik);
    let watch = desired(&m, "production", "services")
        .unwrap()
        .certificates
        .unwrap();
    assert_eq!(
        watch.store,
        CertificateStore::Traefik {
            acme_json: "/srv/kiln/kiln-proxy/data/acme.json".into()
        }
    );
    assert_eq!(watch.ca, CaKind::Letsencrypt);
    // A host without routes watches nothing.
    let (_d, m) = model_with(|t| t);
    assert_eq!(desired(&m, "lab", "monitoring").unwrap().certificates, None);
}
