//! Where a lab lives on this machine, and how its pieces are named: state and cache folders,
//! network namespace and interface names, addresses, cgroup paths, and the state file that
//! lets `kiln lab down` clean up after a crashed run (servers, S3 server, ACME server). Pure naming plus
//! state (de)serialisation; uses no other lab module but `error`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kiln_s3::{Credentials, S3Client};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result, io};

/// Prefix of everything the lab creates on the host (namespaces, interfaces, cgroups).
pub const PREFIX: &str = "kiln-lab";
/// Admin user created on every server, as on a fresh VPS.
pub const ADMIN_USER: &str = "kiln";
/// Address of the host-side shared services (the apt proxy), on the host's loopback.
pub const PROXY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PROXY_PORT: u16 = 3142;
/// Port of a lab's S3 server on its host-side address.
pub const S3_PORT: u16 = 9000;
/// Ports of a lab's ACME server (Pebble) and DNS (pebble-challtestsrv) on its host-side
/// address. The servers reach the ACME directory and the DNS; the management ports only
/// the host.
pub const ACME_PORT: u16 = 14000;
pub const ACME_MANAGEMENT_PORT: u16 = 15000;
pub const DNS_PORT: u16 = 8053;
pub const DNS_MANAGEMENT_PORT: u16 = 8055;

/// Root folders of all labs.
#[derive(Debug, Clone)]
pub struct Roots {
    /// One folder per lab (state file, operator key, server overlays), plus shared services.
    pub state: PathBuf,
    /// Base image and container images, kept across runs.
    pub cache: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            state: "/var/lib/kiln-lab".into(),
            cache: "/var/cache/kiln-lab".into(),
        }
    }
}

impl Roots {
    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.state.join(lab)
    }
    pub fn state_file(&self, lab: &str) -> PathBuf {
        self.lab_dir(lab).join("state.json")
    }
    pub fn server_dir(&self, lab: &str, server: &str) -> PathBuf {
        self.lab_dir(lab).join("servers").join(server)
    }
    /// The lab's operator key (private half; `.pub` beside it), authorized for the admin user
    /// on every server of the lab.
    pub fn identity_file(&self, lab: &str) -> PathBuf {
        self.lab_dir(lab).join("id_ed25519")
    }
    /// A known_hosts file holding exactly the lab's recorded host keys.
    pub fn known_hosts(&self, lab: &str) -> PathBuf {
        self.lab_dir(lab).join("known_hosts")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.state.join(".lock")
    }
    pub fn proxy_dir(&self) -> PathBuf {
        self.state.join("_proxy")
    }
    /// Names of the labs that have a folder here.
    pub fn labs(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.state)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| validate_lab_name(n).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

pub fn validate_lab_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > 20 {
        Some("use 1 to 20 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("use lowercase letters, digits and '-'")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must not start or end with '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LabError::InvalidName {
            what: "lab",
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

pub fn validate_server_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > 30 {
        Some("use 1 to 30 characters (it becomes the server's hostname)")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("use lowercase letters, digits and '-' (it becomes the server's hostname)")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
        Some("it must start with a letter and not end with '-'")
    } else if name == "bridge" {
        Some("`bridge` is reserved for the lab's bridge namespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LabError::InvalidName {
            what: "server",
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Network namespace names: `kiln-lab-<lab>_<server>`; lab names have no '_', so the prefix
/// `kiln-lab-<lab>_` selects exactly one lab's namespaces.
pub fn netns_prefix(lab: &str) -> String {
    format!("{PREFIX}-{lab}_")
}
pub fn netns_server(lab: &str, server: &str) -> String {
    format!("{}{server}", netns_prefix(lab))
}
pub fn netns_bridge(lab: &str) -> String {
    netns_server(lab, "bridge")
}
/// The host (root namespace) end of the veth into the lab's bridge namespace.
pub fn host_link(index: u8) -> String {
    format!("{PREFIX}{index}")
}
/// Alias set on the host link so a scan can tell which lab it belongs to.
pub fn host_link_alias(lab: &str) -> String {
    format!("{PREFIX}-{lab}")
}
pub fn subnet_host_addr(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, index, 1)
}
pub fn server_addr(index: u8, server_index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, index, 10 + server_index)
}
pub fn server_mac(index: u8, server_index: u8) -> String {
    format!("02:6b:6c:{index:02x}:{server_index:02x}:01")
}

/// The cgroup hierarchies to place lab processes in (hybrid: the named systemd v1 one and the
/// unified one; pure v2: the root; legacy: the systemd one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("unified").is_dir() && root.join("systemd").is_dir() {
        vec![root.join("systemd"), root.join("unified")]
    } else if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        vec![root.join("systemd")]
    }
}
pub fn cgroup_dirs(lab: &str, unit: &str) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(PREFIX).join(lab).join(unit))
        .collect()
}
pub fn cgroup_lab_dirs(lab: &str) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(PREFIX).join(lab))
        .collect()
}

/// What the lab recorded about itself, so other processes (`kiln lab status/ssh/down`) can use
/// or clean it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabState {
    pub name: String,
    /// Third octet of the lab's subnet 10.77.<index>.0/24.
    pub index: u8,
    pub base_image: PathBuf,
    pub servers: Vec<ServerState>,
    #[serde(default)]
    pub s3: Option<S3State>,
    #[serde(default)]
    pub acme: Option<AcmeState>,
}

/// What the lab recorded about its ACME server (Pebble) and DNS (pebble-challtestsrv),
/// started by `acme.rs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeState {
    /// `https://<host side address>:14000/dir`, reachable from the host and the servers.
    pub directory: String,
    /// PEM of the CA that signs Pebble's listener certificate (what kiln.toml's `ca_root`
    /// points at, and what an ACME client trusts to talk to `directory`).
    pub ca_root: PathBuf,
    /// Where the PEM of Pebble's issuing root is written (it changes at every Pebble start;
    /// `acme::issuing_root` fetches and writes it).
    pub issuing_root: PathBuf,
    /// Pebble's management API (`https://<host side>:15000`, host only).
    pub management: String,
    /// The lab's DNS (UDP and TCP), reachable from the host and the servers. Pebble resolves
    /// the names it validates here.
    pub dns: SocketAddr,
    /// challtestsrv's management API (`http://<host side>:8055`, host only).
    pub dns_management: String,
    /// The lab's ACME folder (certificates, config, logs, the names set in the DNS).
    pub folder: PathBuf,
}

/// What the lab recorded about its S3 server (started by `s3.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3State {
    /// `http://<host side address>:<port>`, reachable from the host and from the servers.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub retention_days: u32,
    /// Everything allowed.
    #[serde(with = "stored_credentials")]
    pub admin: Credentials,
    /// Write and read, never delete a version nor touch the lock.
    #[serde(with = "stored_credentials")]
    pub server: Credentials,
    /// List and read, nothing else.
    #[serde(with = "stored_credentials")]
    pub readonly: Credentials,
}

impl S3State {
    pub fn admin_client(&self) -> S3Client {
        S3Client::new(&self.endpoint, &self.region, self.admin.clone())
    }
    pub fn server_client(&self) -> S3Client {
        S3Client::new(&self.endpoint, &self.region, self.server.clone())
    }
    pub fn readonly_client(&self) -> S3Client {
        S3Client::new(&self.endpoint, &self.region, self.readonly.clone())
    }
}

/// Credentials as the state file (mode 0600) holds them: the secret in clear, since other
/// processes (`kiln lab status`, tests, kiln itself) need it. `Secret` refuses to serialize
/// its value, so this is the one place that exposes it.
mod stored_credentials {
    use kiln_s3::Credentials;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored {
        access_key_id: String,
        secret_access_key: String,
    }

    pub fn serialize<S: Serializer>(c: &Credentials, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.expose().to_string(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Credentials, D::Error> {
        let s = Stored::deserialize(d)?;
        Ok(Credentials::new(s.access_key_id, s.secret_access_key))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerState {
    pub name: String,
    pub server_index: u8,
    pub address: Ipv4Addr,
    pub host_keys: Vec<String>,
    /// Container or VM (state files written before VMs existed hold containers).
    #[serde(default)]
    pub kind: ServerKind,
}

/// What a lab server runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// A systemd-nspawn container (fast, shares the host kernel).
    #[default]
    Container,
    /// A qemu VM under software emulation with a Debian kernel (device-mapper, LVM).
    Vm,
}

impl ServerKind {
    /// Prefix for progress messages.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Container => "",
            ServerKind::Vm => "VM ",
        }
    }
    /// One word for status tables.
    pub fn word(self) -> &'static str {
        match self {
            ServerKind::Container => "container",
            ServerKind::Vm => "vm",
        }
    }
}

impl LabState {
    pub fn load(roots: &Roots, lab: &str) -> Result<Option<LabState>> {
        let path = roots.state_file(lab);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::State {
                lab: lab.into(),
                path,
                message: e.to_string(),
            })
    }

    pub fn save(&self, roots: &Roots) -> Result<()> {
        let path = roots.state_file(&self.name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::State {
            lab: self.name.clone(),
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Mode before content: the state holds the lab's S3 credentials.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("writing", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_lab_name("default").is_ok());
        assert!(validate_lab_name("t-12").is_ok());
        assert!(validate_lab_name("A").is_err());
        assert!(validate_lab_name("a_b").is_err());
        assert!(validate_lab_name("").is_err());
        assert!(validate_server_name("web-1").is_ok());
        assert!(validate_server_name("1web").is_err());
        assert!(validate_server_name("bridge").is_err());
        let err = validate_server_name("Web").unwrap_err().to_string();
        assert!(err.contains("`Web`"), "{err}");
    }

    #[test]
    fn state_keeps_the_s3_secrets_readable_for_other_processes() {
        let state = LabState {
            name: "t".into(),
            index: 3,
            base_image: "/b".into(),
            servers: Vec::new(),
            acme: None,
            s3: Some(S3State {
                endpoint: "http://10.77.3.1:9000".into(),
                bucket: "b".into(),
                region: "us-east-1".into(),
                retention_days: 7,
                admin: Credentials::new("AKADMIN", "admin-secret"),
                server: Credentials::new("AKSERVER", "server-secret"),
                readonly: Credentials::new("AKREAD", "readonly-secret"),
            }),
        };
        let json = serde_json::to_string(&state).unwrap();
        // The same layout as state files written before credentials held a `Secret`.
        assert!(
            json.contains(
                r#""server":{"access_key_id":"AKSERVER","secret_access_key":"server-secret"}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LabState>(&json).unwrap(), state);
        assert!(!format!("{state:?}").contains("admin-secret"));
    }

    #[test]
    fn naming_keeps_interfaces_short_and_labs_apart() {
        assert!(host_link(250).len() <= 15);
        assert_eq!(netns_server("a", "web"), "kiln-lab-a_web");
        assert!(!netns_server("a-b", "x").starts_with(&netns_prefix("a")));
        assert_eq!(server_addr(3, 2), Ipv4Addr::new(10, 77, 3, 12));
        assert_eq!(server_mac(10, 2), "02:6b:6c:0a:02:01");
    }
}
