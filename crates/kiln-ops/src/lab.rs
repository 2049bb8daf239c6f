//! The lab as the rest of kiln sees it: which servers a kiln.toml's `lab` environment asks
//! for, starting them and recording them (addresses, SSH ports, admin user, host keys)
//! back into that environment, the lab's ACME server when that environment uses an ACME
//! directory (recorded as its `acme_ca`, the environment's DNS records loaded into the lab
//! DNS), and finding the operator key of the running lab that serves an environment (so
//! plan and apply need no `--identity` for it).
//!
//! Owns: the mapping between the model's `lab` environment and kiln-lab's servers.
//! Must not: boot or tear down servers itself (kiln-lab does), edit kiln.toml other than
//! through `kiln_model::edit`, prompt (consent to install prerequisites arrives as
//! `install_missing`), or print.

use std::path::{Path, PathBuf};

use kiln_model::dns::{DnsRecord, RecordType};
use kiln_model::edit::{EditError, LAB_ENVIRONMENT, LabHost};
use kiln_model::{AcmeCa, Model};

/// How `kiln lab up` (or a workflow) wants its lab.
#[derive(Clone, Default)]
pub struct UpOptions {
    /// The lab's name.
    pub name: String,
    /// Numbered servers (`server1..N`); `None`: one per host role of the model's `lab`
    /// environment, else one.
    pub servers: Option<usize>,
    /// Servers that are qemu VMs.
    pub vms: Vec<String>,
    /// Consent to install missing host prerequisites with apt.
    pub install_missing: bool,
    /// Also an S3 server with Object Lock.
    pub s3: Option<kiln_lab::S3Options>,
    /// Also the lab's ACME server and DNS (also started, without asking, when the model's
    /// `lab` environment has an ACME directory as `acme_ca`).
    pub acme: bool,
    /// Where labs live (default: the system's).
    pub roots: kiln_lab::Roots,
    /// Where the lab's progress goes.
    pub progress: Option<kiln_lab::Progress>,
}

/// A lab could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("--servers must be at least 1 (or give --vm NAME)")]
    NoServers,
    #[error(transparent)]
    Lab(#[from] kiln_lab::LabError),
    #[error("the lab is up but recording its servers failed: {0}")]
    Record(#[from] EditError),
    #[error(
        "the lab recorded its servers and ACME directory in {}, which then failed to load:\n{message}",
        .path.display()
    )]
    Reload { path: PathBuf, message: String },
}

/// What `up` wrote into kiln.toml and the lab DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The host roles whose servers were recorded.
    pub hosts: Vec<String>,
    /// The `lab` environment's new `acme_ca`: directory and ca_root.
    pub acme_ca: Option<(String, PathBuf)>,
    /// The records loaded into the lab DNS (the `lab` environment's).
    pub dns_records: Vec<kiln_lab::LabDnsRecord>,
    /// The `lab` environment's new `backup_repository` (the lab's S3), as restic takes it.
    pub backup_repository: Option<String>,
}

impl UpError {
    /// Whether the user gave something kiln cannot use.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UpError::NoServers
                | UpError::Lab(
                    kiln_lab::LabError::InvalidName { .. }
                        | kiln_lab::LabError::UnknownServer { .. }
                )
        )
    }
}

/// The lab options for `opts`, with servers named after the model's `lab` roles.
pub fn lab_options(
    opts: &UpOptions,
    model: Option<&Model>,
) -> Result<kiln_lab::LabOptions, UpError> {
    let mut lab = kiln_lab::LabOptions {
        name: opts.name.clone(),
        install_missing: opts.install_missing,
        s3: opts.s3.clone(),
        acme: opts.acme || model.is_some_and(wants_acme),
        roots: opts.roots.clone(),
        progress: opts.progress.clone(),
        vms: opts.vms.clone(),
        ..Default::default()
    };
    let roles = model.map(roles).unwrap_or_default();
    match opts.servers {
        Some(n) => lab.servers = n,
        None if !roles.is_empty() => lab.server_names = roles,
        // `--vm NAME` alone: just the VM.
        None if !opts.vms.is_empty() => lab.servers = 0,
        None => lab.servers = 1,
    }
    if lab.servers == 0 && lab.server_names.is_empty() && lab.vms.is_empty() {
        return Err(UpError::NoServers);
    }
    Ok(lab)
}

/// Whether the model's `lab` environment gets its certificates from an ACME directory of
/// its own (the lab's Pebble, once `up` recorded it).
pub fn wants_acme(model: &Model) -> bool {
    model
        .environment(LAB_ENVIRONMENT)
        .is_some_and(|e| matches!(e.acme_ca, AcmeCa::Custom(_)))
}

/// Starts the lab and, with a kiln.toml (`config`, already loaded as `model`), records the
/// servers that play a host role of its `lab` environment there (numbered servers of
/// `--servers N`, or a kiln.toml without a `lab` environment, are not written into it).
/// With the lab's ACME server (`opts.acme`, or [`wants_acme`]) and a `lab` environment,
/// also records the server's directory and listener CA as that environment's `acme_ca`,
/// and loads the environment's DNS records (of the model re-read with the recorded
/// addresses) into the lab DNS. Returns the lab and what was recorded. A failure to
/// record tears the new lab down.
pub fn up(
    opts: &UpOptions,
    config: Option<(&Path, &Model)>,
) -> Result<(kiln_lab::Lab, Recorded), UpError> {
    let lab = kiln_lab::Lab::start(lab_options(opts, config.map(|(_, m)| m))?)?;
    let mut recorded = Recorded::default();
    if let Some((path, model)) = config {
        let servers = of_lab_roles(model, lab.servers());
        if !servers.is_empty() {
            // On error `lab` is dropped here, which tears it down.
            record(path, &servers)?;
            recorded.hosts = servers.into_iter().map(|s| s.name).collect();
        }
        if let Some(acme) = lab.acme()
            && model.environment(LAB_ENVIRONMENT).is_some()
        {
            kiln_model::edit::set_acme_ca(path, LAB_ENVIRONMENT, &acme.directory, &acme.ca_root)?;
            recorded.acme_ca = Some((acme.directory.clone(), acme.ca_root.clone()));
            let model = kiln_model::load(path).map_err(|d| UpError::Reload {
                path: path.into(),
                message: d.render(100, false),
            })?;
            recorded.dns_records = lab_dns_records(&model);
            kiln_lab::acme::set_records(acme, &recorded.dns_records)?;
        }
        if let Some(s3) = lab.s3()
            && model.backups.is_some()
            && model.environment(LAB_ENVIRONMENT).is_some()
        {
            kiln_model::edit::set_backup_repository(
                path,
                LAB_ENVIRONMENT,
                &s3.endpoint,
                &s3.bucket,
                &s3.region,
            )?;
            let prefix = model
                .backups
                .as_ref()
                .map(|b| b.repository.prefix_for(LAB_ENVIRONMENT))
                .unwrap_or_default();
            recorded.backup_repository = Some(format!(
                "s3:{}/{}/{}",
                s3.endpoint,
                s3.bucket,
                prefix.trim_matches('/')
            ));
        }
        // The servers cannot reach a registry: the images of the services they play a
        // role for are built here and imported under their upstream names.
        provide_images(&lab, model)?;
    }
    Ok((lab, recorded))
}

/// Stores the lab S3 server's three credentials in the `lab` environment's `vault` under
/// the names `[backups.credentials]` gives (server, admin, readonly), and generates the
/// repository password when it is missing, so that the lab's backups need no hand step.
/// Returns the names written; nothing when the model has no `[backups]` or its `lab`
/// environment has backups off.
pub fn store_backup_credentials(
    vault: &kiln_secrets::Vault,
    model: &Model,
    s3: &kiln_lab::S3State,
) -> Result<Vec<String>, kiln_secrets::VaultError> {
    let Some(backups) = &model.backups else {
        return Ok(vec![]);
    };
    if !model
        .environment(LAB_ENVIRONMENT)
        .is_some_and(|e| e.backups_enabled)
    {
        return Ok(vec![]);
    }
    let c = &backups.credentials;
    let mut written = vec![];
    for (cred, keys) in [
        (&c.server, &s3.server),
        (&c.admin, &s3.admin),
        (&c.readonly, &s3.readonly),
    ] {
        vault.set(
            &cred.access_key(),
            &kiln_secrets::Secret::new(keys.access_key_id.clone()),
        )?;
        vault.set(&cred.secret_key(), &keys.secret_access_key)?;
        written.extend([cred.access_key(), cred.secret_key()]);
    }
    let password: Vec<_> = model
        .required_secrets_for(LAB_ENVIRONMENT)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.name == c.repository_password)
        .collect();
    let report = vault.generate_missing(&password, &mut kiln_secrets::OsRng)?;
    written.extend(report.created);
    Ok(written)
}

/// The DNS records of the model's `lab` environment ([`kiln_model::dns::records`]), as the
/// lab DNS takes them.
pub fn lab_dns_records(model: &Model) -> Vec<kiln_lab::LabDnsRecord> {
    let Some(env) = model.environment(LAB_ENVIRONMENT) else {
        return vec![];
    };
    kiln_model::dns::records(model, env)
        .iter()
        .map(lab_dns_record)
        .collect()
}

fn lab_dns_record(r: &DnsRecord) -> kiln_lab::LabDnsRecord {
    kiln_lab::LabDnsRecord {
        name: r.name.clone(),
        rtype: match r.rtype {
            RecordType::A => kiln_lab::LabRecordType::A,
            RecordType::AAAA => kiln_lab::LabRecordType::AAAA,
            RecordType::CNAME => kiln_lab::LabRecordType::CNAME,
            RecordType::CAA => kiln_lab::LabRecordType::CAA,
        },
        value: r.value.clone(),
    }
}

/// Loads into each lab server the images of the lab environment's services on its role
/// ([`service_images`]), built on this machine or taken from the cache; what a server has
/// already is left alone. Reports one [`kiln_lab::LabEvent::ImageProvided`] per image (it
/// says when an image is a contract image, a test double).
pub fn provide_images(
    lab: &kiln_lab::Lab,
    model: &Model,
) -> Result<Vec<kiln_lab::ProvidedImage>, kiln_lab::LabError> {
    let servers: Vec<&str> = lab.servers().iter().map(|s| s.name.as_str()).collect();
    service_images(model)
        .into_iter()
        .filter(|(role, _)| servers.contains(&role.as_str()))
        .map(|(role, image)| lab.provide_image(&role, &image))
        .collect()
}

/// The container images the lab environment's services need, per host role (the
/// upstream references the recipes pull: the lab serves them from local builds under
/// those names), in service order without repeats, then the reverse proxy's on the hosts
/// that serve a route.
pub fn service_images(model: &Model) -> Vec<(String, String)> {
    let roles = roles(model);
    let mut out: Vec<(String, String)> = vec![];
    let proxy = model.environment(LAB_ENVIRONMENT).and_then(|env| {
        // A route table that cannot be built is an error plan and apply report, naming
        // the service; the lab then has no proxy image to provide.
        let routes = kiln_converge::desired::proxy::Routes::for_environment(model, env).ok()?;
        Some((env.proxy, routes.proxy_hosts()))
    });
    for svc in &model.services {
        if !roles.contains(&svc.host) || !kiln_converge::desired::services::deploys(svc) {
            continue;
        }
        if let Some(image) = svc.image() {
            let pair = (svc.host.clone(), image);
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    if let Some((kind, hosts)) = proxy {
        for role in hosts.into_iter().filter(|r| roles.contains(r)) {
            out.push((role, kiln_converge::desired::proxy::image(kind).to_owned()));
        }
    }
    out
}

/// The servers named after a host role of the model's `lab` environment.
fn of_lab_roles(model: &Model, servers: &[kiln_lab::Server]) -> Vec<kiln_lab::Server> {
    let roles = roles(model);
    servers
        .iter()
        .filter(|s| roles.contains(&s.name))
        .cloned()
        .collect()
}

/// The host roles of the model's `lab` environment (empty when it has none), in the
/// model's order (sorted by role).
pub fn roles(model: &Model) -> Vec<String> {
    model
        .environment(LAB_ENVIRONMENT)
        .map(|e| e.hosts.keys().cloned().collect())
        .unwrap_or_default()
}

/// Records `servers` as the hosts of kiln.toml's `lab` environment (comments kept).
pub fn record(config: &Path, servers: &[kiln_lab::Server]) -> Result<(), EditError> {
    let hosts: Vec<LabHost> = servers
        .iter()
        .map(|s| LabHost {
            role: s.name.clone(),
            address: s.address.to_string(),
            ssh_port: s.ssh_port,
            admin_user: s.admin_user.clone(),
            host_keys: s.host_keys.clone(),
        })
        .collect();
    kiln_model::edit::record_lab_hosts(config, &hosts)
}

/// The operator key of the running lab on this machine whose servers have every address
/// of `env`'s hosts, when there is one (so that plan and apply reach a lab environment
/// without `--identity`, also for a user with no SSH key of their own). `Ok(None)`: not a
/// lab environment (an address that is a name, or that no running lab has).
pub fn operator_identity(
    roots: &kiln_lab::Roots,
    env: &kiln_model::Environment,
) -> Result<Option<PathBuf>, kiln_lab::LabError> {
    let mut addresses = vec![];
    for host in env.hosts.values() {
        match &host.address {
            kiln_model::HostAddress::Ip(a) => addresses.push(*a),
            kiln_model::HostAddress::Name(_) => return Ok(None),
        }
    }
    Ok(kiln_lab::lab_for_addresses(roots, &addresses)?.map(|lab| lab.identity_file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_lab::Roots;

    fn env_with(addresses: &[&str]) -> kiln_model::Environment {
        let mut text = String::from(
            "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n[environments.lab]\ndomain = \"lab.example.org\"\nacme_ca = \"internal\"\n",
        );
        for (i, a) in addresses.iter().enumerate() {
            text.push_str(&format!(
                "[environments.lab.hosts.h{i}]\naddress = \"{a}\"\nadmin_user = \"kiln\"\n"
            ));
        }
        let m = kiln_model::parse_str("kiln.toml", &text, Path::new("."))
            .unwrap_or_else(|d| panic!("{}", d.render(100, false)));
        m.environment("lab").unwrap().clone()
    }

    #[test]
    fn the_lab_needs_the_images_of_the_services_on_its_roles() {
        let m = kiln_model::parse_str(
            "kiln.toml",
            "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n[environments.lab]\ndomain = \"lab.example.org\"\nacme_ca = \"internal\"\n[environments.lab.hosts.web]\naddress = \"10.77.0.11\"\nadmin_user = \"kiln\"\n[services.db]\nkind = \"postgres\"\nhost = \"web\"\nversion = \"17\"\n[services.old]\nkind = \"sliding-sync\"\nhost = \"web\"\nversion = \"v0.99.11\"\noptions = { database = \"db\" }\n[services.chat]\nkind = \"synapse\"\nhost = \"web\"\nversion = \"v1.162.0\"\noptions = { database = \"db\" }\n",
            Path::new("."),
        )
        .unwrap_or_else(|d| panic!("{}", d.render(100, false)));
        assert_eq!(
            service_images(&m),
            [
                (
                    "web".to_string(),
                    "docker.io/library/postgres:17".to_string()
                ),
                (
                    "web".to_string(),
                    "docker.io/matrixdotorg/synapse:v1.162.0".to_string()
                ),
                // Synapse has a (default) subdomain: the host runs the reverse proxy.
                (
                    "web".to_string(),
                    "docker.io/library/caddy:2.10".to_string()
                ),
            ],
            "the deprecated sliding-sync deploys nothing, so needs no image"
        );
    }

    #[test]
    fn servers_are_named_after_the_lab_roles_unless_counted() {
        let m = kiln_model::parse_str(
            "kiln.toml",
            "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n[environments.lab]\ndomain = \"lab.example.org\"\nacme_ca = \"internal\"\n[environments.lab.hosts.web]\naddress = \"10.77.0.11\"\nadmin_user = \"kiln\"\n[environments.lab.hosts.db]\naddress = \"10.77.0.12\"\nadmin_user = \"kiln\"\n",
            Path::new("."),
        )
        .unwrap_or_else(|d| panic!("{}", d.render(100, false)));
        let opts = UpOptions {
            name: "t".into(),
            ..Default::default()
        };
        let lab = lab_options(&opts, Some(&m)).unwrap();
        assert_eq!(lab.server_names, ["db", "web"]);
        let lab = lab_options(&opts, None).unwrap();
        assert_eq!((lab.servers, lab.server_names.len()), (1, 0));
        let counted = UpOptions {
            servers: Some(3),
            ..opts.clone()
        };
        assert_eq!(lab_options(&counted, Some(&m)).unwrap().servers, 3);
        let vm_only = UpOptions {
            vms: vec!["vm1".into()],
            ..opts.clone()
        };
        assert_eq!(lab_options(&vm_only, None).unwrap().servers, 0);
        let none = UpOptions {
            servers: Some(0),
            ..opts
        };
        assert!(matches!(lab_options(&none, None), Err(UpError::NoServers)));
        // Only servers playing a role of the lab environment are written into kiln.toml.
        let server = |name: &str| kiln_lab::Server {
            name: name.into(),
            address: "10.77.9.11".parse().unwrap(),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: vec![],
            identity_file: "/k".into(),
            known_hosts: "/kh".into(),
        };
        let kept: Vec<String> = of_lab_roles(&m, &[server("server1"), server("web")])
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(kept, ["web"]);
    }

    #[test]
    fn an_acme_directory_in_the_lab_environment_starts_the_acme_server() {
        let text = |acme_ca: &str| {
            format!(
                "[project]\nname = \"t\"\ndomain = \"x.test\"\nacme_email = \"a@x.test\"\n[environments.lab]\ndomain = \"x.test\"\nacme_ca = {acme_ca}\napex_host = \"web\"\n[environments.lab.hosts.web]\naddress = \"10.77.3.11\"\nadmin_user = \"kiln\"\n"
            )
        };
        let parse = |t: &str| {
            kiln_model::parse_str("kiln.toml", t, Path::new("."))
                .unwrap_or_else(|d| panic!("{}", d.render(100, false)))
        };
        let custom = parse(&text(
            "{ directory = \"https://10.77.1.1:14000/dir\", ca_root = \"/ca.pem\" }",
        ));
        let internal = parse(&text("\"internal\""));
        let opts = UpOptions {
            name: "t".into(),
            ..Default::default()
        };
        assert!(wants_acme(&custom) && !wants_acme(&internal));
        assert!(lab_options(&opts, Some(&custom)).unwrap().acme);
        assert!(!lab_options(&opts, Some(&internal)).unwrap().acme);
        let asked = UpOptions { acme: true, ..opts };
        assert!(lab_options(&asked, Some(&internal)).unwrap().acme);
        assert!(lab_options(&asked, None).unwrap().acme);
        // The lab DNS gets the environment's records: the host and the apex, no CAA for a
        // custom directory.
        let names: Vec<(String, kiln_lab::LabRecordType, String)> = lab_dns_records(&custom)
            .into_iter()
            .map(|r| (r.name, r.rtype, r.value))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "x.test".into(),
                    kiln_lab::LabRecordType::A,
                    "10.77.3.11".into()
                ),
                (
                    "web.x.test".into(),
                    kiln_lab::LabRecordType::A,
                    "10.77.3.11".into()
                ),
            ]
        );
    }

    #[test]
    fn no_running_lab_no_default_key() {
        // Finding the lab itself is kiln_lab::lab_for_addresses' (tested there); here:
        // nothing runs under these roots, and a host named by DNS is never a lab's.
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            state: dir.path().join("state"),
            cache: dir.path().join("cache"),
        };
        assert_eq!(
            operator_identity(&roots, &env_with(&["10.77.3.11"])).unwrap(),
            None
        );
        assert_eq!(
            operator_identity(&roots, &env_with(&["10.77.3.11", "web.example.org"])).unwrap(),
            None
        );
    }
}
