//! The lab as a Rust API: `Lab::start` brings up servers (base image, network, proxy),
//! `Lab::servers`/`exec` use them, `Lab::down` or `Drop` (also on panic) tears everything down.
//! Free functions clean up labs left by crashed runs from their state file plus a scan.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::layout::{self, LabState, Roots, ServerKind as Kind, ServerState};
use crate::server::{self, NewServer, Server};
use crate::{image, mirror, net, prereq, process, proxy};

use crate::event::{LabEvent, Progress};
use crate::images::{ImageRecipe, ProvidedImage};

/// How to start a lab.
#[derive(Clone)]
pub struct LabOptions {
    /// Lab name (several labs can run side by side): lowercase letters, digits, '-'.
    pub name: String,
    /// Number of servers, named `server1`..`serverN` unless `server_names` is given.
    pub servers: usize,
    /// Explicit server names (e.g. the host roles of kiln.toml's `lab` environment).
    pub server_names: Vec<String>,
    /// Consent to install missing host prerequisites with apt.
    pub install_missing: bool,
    pub roots: Roots,
    pub progress: Option<Progress>,
    /// How long a server may take from launch to SSH.
    pub boot_timeout: Duration,
    /// Start an S3 server with Object Lock on the host side of the bridge.
    pub s3: Option<crate::s3::S3Options>,
    /// Servers that are qemu VMs (software emulation, Debian kernel, device-mapper).
    pub vms: Vec<String>,
    /// Start an ACME server (Pebble) and the lab DNS on the host side of the bridge.
    pub acme: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            name: "default".into(),
            servers: 1,
            server_names: Vec::new(),
            install_missing: false,
            roots: Roots::default(),
            progress: None,
            boot_timeout: Duration::from_secs(90),
            s3: None,
            vms: Vec::new(),
            acme: false,
        }
    }
}

impl fmt::Debug for LabOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabOptions")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .field("server_names", &self.server_names)
            .field("install_missing", &self.install_missing)
            .field("roots", &self.roots)
            .field("s3", &self.s3)
            .field("vms", &self.vms)
            .field("acme", &self.acme)
            .finish_non_exhaustive()
    }
}

static UNIQUE: AtomicU32 = AtomicU32::new(0);

impl LabOptions {
    /// Options with a lab name unique to this process (for tests running side by side).
    pub fn unique(prefix: &str, servers: usize) -> LabOptions {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        LabOptions {
            name: format!("{prefix}-{}-{n}", std::process::id() % 100_000),
            servers,
            ..Default::default()
        }
    }

    fn names(&self) -> Vec<String> {
        if self.server_names.is_empty() {
            (1..=self.servers).map(|i| format!("server{i}")).collect()
        } else {
            self.server_names.clone()
        }
    }
}

/// What teardown removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub processes: usize,
    pub cgroups: usize,
    pub mounts: usize,
    pub loop_devices: usize,
    pub namespaces: usize,
    pub links: usize,
    pub folders: usize,
}

impl Cleaned {
    fn add(&mut self, o: &Cleaned) {
        self.processes += o.processes;
        self.cgroups += o.cgroups;
        self.mounts += o.mounts;
        self.loop_devices += o.loop_devices;
        self.namespaces += o.namespaces;
        self.links += o.links;
        self.folders += o.folders;
    }
    pub fn is_empty(&self) -> bool {
        *self == Cleaned::default()
    }
}

/// A running lab. Dropping it tears it down unless it was [`Lab::detach`]ed or attached.
pub struct Lab {
    roots: Roots,
    state: LabState,
    servers: Vec<Server>,
    children: BTreeMap<String, Child>,
    keep_running: bool,
    progress: Option<Progress>,
    boot_timeout: Duration,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("name", &self.state.name)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

fn lock(roots: &Roots) -> Result<std::fs::File> {
    std::fs::create_dir_all(&roots.state).map_err(io("creating", &roots.state))?;
    let path = roots.lock_file();
    let f = std::fs::File::create(&path).map_err(io("creating", &path))?;
    f.lock().map_err(io("locking", &path))?;
    Ok(f)
}

/// The public keys in the invoking user's ~/.ssh (the sudo caller's when run with sudo).
fn user_public_keys() -> Vec<String> {
    let home = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "root")
        .map(|u| PathBuf::from("/home").join(u))
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let Some(home) = home else { return Vec::new() };
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(home.join(".ssh").join(f)).ok())
        .filter(|k| k.starts_with("ssh-") || k.starts_with("ecdsa-"))
        .collect()
}

/// Whether any process still runs in the lab's cgroups.
fn lab_alive(lab: &str) -> bool {
    layout::cgroup_lab_dirs(lab)
        .iter()
        .any(|d| !process::pids_in(d).is_empty())
}

/// Lowest subnet index not used by another lab (state files and host links).
fn allocate_index(roots: &Roots, lab: &str) -> Result<u8> {
    let mut used: Vec<u8> = roots
        .labs()
        .iter()
        .filter(|l| l.as_str() != lab)
        .filter_map(|l| LabState::load(roots, l).ok().flatten().map(|s| s.index))
        .collect();
    for (name, _) in net::host_links() {
        if let Ok(i) = name.trim_start_matches(layout::PREFIX).parse::<u8>() {
            used.push(i);
        }
    }
    (1..=250u8)
        .find(|i| !used.contains(i))
        .ok_or(LabError::NoFreeSubnet)
}

impl Lab {
    /// Starts a lab: checks prerequisites, builds or reuses the base image, starts the apt
    /// proxy, creates the network and boots the servers, and returns once all answer SSH.
    pub fn start(opts: LabOptions) -> Result<Lab> {
        layout::validate_lab_name(&opts.name)?;
        let names = opts.names();
        for n in names.iter().chain(&opts.vms) {
            layout::validate_server_name(n)?;
        }
        let say = |e: &LabEvent| {
            if let Some(p) = &opts.progress {
                p(e)
            }
        };
        prereq::ensure(
            prereq::Needs {
                s3: opts.s3.is_some(),
                vm: !opts.vms.is_empty(),
                acme: opts.acme,
            },
            opts.install_missing,
            &say,
        )?;
        let mirror = mirror::host_mirror()?;
        let roots = opts.roots.clone();

        let guard = lock(&roots)?;
        if LabState::load(&roots, &opts.name).ok().flatten().is_some()
            || roots.lab_dir(&opts.name).exists()
        {
            if lab_alive(&opts.name) {
                return Err(LabError::AlreadyRunning {
                    lab: opts.name.clone(),
                });
            }
            say(&LabEvent::CleaningUp {
                lab: opts.name.clone(),
            });
            teardown_lab(&roots, &opts.name)?;
        }
        let index = allocate_index(&roots, &opts.name)?;
        let dir = roots.lab_dir(&opts.name);
        std::fs::create_dir_all(dir.join("servers")).map_err(io("creating", &dir))?;
        let state = LabState {
            name: opts.name.clone(),
            index,
            base_image: PathBuf::new(),
            servers: Vec::new(),
            s3: None,
            acme: None,
        };
        state.save(&roots)?;
        // From here on, dropping `lab` tears down what exists.
        let mut lab = Lab {
            roots: roots.clone(),
            state,
            servers: Vec::new(),
            children: BTreeMap::new(),
            keep_running: false,
            progress: opts.progress.clone(),
            boot_timeout: opts.boot_timeout,
        };
        let shared = net::ensure_host_shared().and_then(|()| proxy::ensure(&roots));
        // Release the lock before anything can drop `lab`: its teardown takes the lock too
        // (flock is per open file, so holding it here would deadlock this very process).
        drop(guard);
        shared?;

        let (base, _) = image::ensure_base(&roots, &mirror, &say)?;
        lab.state.base_image = base;
        let key = lab.identity_file();
        let mut kg = cmd::command("ssh-keygen");
        kg.args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("kiln-lab-{}", opts.name),
            "-f",
        ])
        .arg(&key);
        cmd::run(&mut kg)?;
        net::create_bridge(&opts.name, index)?;
        lab.state.save(&roots)?;
        lab.add_servers(&names)?;
        if !opts.vms.is_empty() {
            lab.add_vms(&opts.vms)?;
        }
        if let Some(s3) = &opts.s3 {
            lab.start_s3(s3)?;
        }
        if opts.acme {
            lab.start_acme()?;
        }
        Ok(lab)
    }

    /// Starts the lab's ACME server (Pebble) and DNS (challtestsrv) on the host side of the
    /// bridge; recorded in the lab state. See `acme.rs`.
    pub fn start_acme(&mut self) -> Result<&crate::acme::AcmeState> {
        if self.state.acme.is_some() {
            return Err(LabError::Acme {
                operation: "start".into(),
                target: format!("lab {}", self.state.name),
                message: "the lab's ACME server is already running".into(),
            });
        }
        let started = Instant::now();
        // A half-started one needs no record to be cleaned: its folder is the lab's and its
        // processes are in the lab's cgroup, so teardown removes both.
        let acme = crate::acme::start(&self.roots, &self.state.name, self.host_address())?;
        self.say(LabEvent::AcmeReady {
            directory: acme.directory.clone(),
            dns: acme.dns,
            issuing_root: acme.issuing_root.clone(),
            elapsed: started.elapsed(),
        });
        self.state.acme = Some(acme.clone());
        self.state.save(&self.roots)?;
        Ok(self.state.acme.get_or_insert(acme))
    }

    /// Starts the lab's S3 server (moto) with a bucket under Object Lock and its two
    /// credentials; recorded in the lab state.
    pub fn start_s3(&mut self, opts: &crate::s3::S3Options) -> Result<&crate::s3::S3State> {
        if self.state.s3.is_some() {
            return Err(LabError::S3 {
                operation: "start".into(),
                target: format!("lab {}", self.state.name),
                message: "the lab's S3 server is already running".into(),
            });
        }
        let started = Instant::now();
        let s3 = crate::s3::start(&self.roots, &self.state.name, self.host_address(), opts)?;
        self.say(LabEvent::S3Ready {
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            retention_days: s3.retention_days,
            elapsed: started.elapsed(),
        });
        self.state.s3 = Some(s3.clone());
        self.state.save(&self.roots)?;
        Ok(self.state.s3.get_or_insert(s3))
    }

    /// Installs Debian packages on a server through the lab's apt proxy.
    pub fn apt_install(&self, server: &str, packages: &[&str]) -> Result<()> {
        let pkgs: Vec<String> = packages.iter().map(|p| kiln_shell::quote(p)).collect();
        self.exec_ok(
            server,
            &format!(
                "sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q {} >/dev/null",
                pkgs.join(" ")
            ),
        )
        .map(|_| ())
    }

    /// Loads a lab container image (`postgres`, `caddy`, `synapse`) into a server's podman,
    /// building it on this machine first when it is not cached, and installing podman on the
    /// server when missing. Returns the local reference (also tagged with the upstream name).
    pub fn load_image(&self, server: &str, image: &str) -> Result<String> {
        let recipe = crate::images::recipe(image).ok_or_else(|| LabError::Image {
            image: image.into(),
            message: "unknown lab image (known: postgres, caddy, synapse)".into(),
        })?;
        self.server(server)?;
        self.ensure_podman(server)?;
        self.import_image(server, &recipe)?;
        Ok(recipe.reference())
    }

    /// Makes the upstream image `upstream` (`registry/name:tag`) available in a server's
    /// podman under that very reference, served by the lab's recipe for it (see
    /// [`crate::images::for_upstream`]): built on this machine or taken from the cache, then
    /// imported. Nothing is built or imported when the server already has the reference.
    /// Reports [`LabEvent::ImageProvided`], which says when the image is a contract image
    /// (a test double, never the application).
    pub fn provide_image(&self, server: &str, upstream: &str) -> Result<ProvidedImage> {
        let recipe = crate::images::for_upstream(upstream)?;
        self.server(server)?;
        self.ensure_podman(server)?;
        let present = self
            .exec(
                server,
                &format!("sudo podman image exists {}", kiln_shell::quote(upstream)),
            )?
            .status
            .success();
        if !present {
            self.import_image(server, &recipe)?;
            // Verify the effect: the server now resolves the upstream reference.
            self.exec_ok(
                server,
                &format!("sudo podman image exists {}", kiln_shell::quote(upstream)),
            )
            .map_err(|e| LabError::Image {
                image: upstream.into(),
                message: format!("imported into {server}, but podman does not find it: {e}"),
            })?;
        }
        let provided = ProvidedImage {
            upstream: upstream.into(),
            local: recipe.reference(),
            contract: recipe.contract,
            imported: !present,
        };
        self.say(LabEvent::ImageProvided {
            server: server.into(),
            upstream: provided.upstream.clone(),
            local: provided.local.clone(),
            contract: provided.contract,
            imported: provided.imported,
        });
        Ok(provided)
    }

    /// Installs podman on a server when it has none.
    fn ensure_podman(&self, server: &str) -> Result<()> {
        if !self
            .exec(server, "command -v podman >/dev/null")?
            .status
            .success()
        {
            self.say(LabEvent::InstallingPodman {
                server: server.into(),
            });
            self.apt_install(server, &["podman"])?;
        }
        Ok(())
    }

    /// Builds (or takes from the cache) `recipe`'s tree and imports it into the server's
    /// podman as its local reference, tagged with its aliases.
    fn import_image(&self, server: &str, recipe: &ImageRecipe) -> Result<()> {
        let say = |e: &LabEvent| self.say(e.clone());
        let mirror = mirror::host_mirror()?;
        let tar = crate::images::ensure_image(&self.roots, &mirror, recipe, &say)?;
        let file = format!("kiln-lab-image-{}.tar", recipe.name.replace('/', "_"));
        let remote = format!("/var/tmp/{file}");
        let import = crate::images::import_command(recipe, &remote);
        let kind = self
            .state
            .servers
            .iter()
            .find(|s| s.name == server)
            .map(|s| s.kind)
            .unwrap_or_default();
        match kind {
            // A container's tree is a folder on this machine: write the archive into it.
            Kind::Container => {
                let host_path = self
                    .roots
                    .server_dir(&self.state.name, server)
                    .join("root/var/tmp")
                    .join(&file);
                let unpack = cmd::run(
                    cmd::command("zstd")
                        .args(["-q", "-d", "-f", "-o"])
                        .arg(&host_path)
                        .arg(&tar),
                );
                let imported = unpack.and_then(|_| self.exec_ok(server, &import));
                let _ = std::fs::remove_file(&host_path);
                imported?;
            }
            // A VM's disk is its own: stream the archive over SSH.
            Kind::Vm => {
                self.stream_to(server, &tar, &remote)?;
                let imported = self.exec_ok(server, &import);
                let _ = self.exec(server, &format!("rm -f {}", kiln_shell::quote(&remote)));
                imported?;
            }
        }
        Ok(())
    }

    /// Decompresses a zstd archive of this machine into `remote` on a server, over SSH.
    fn stream_to(&self, server: &str, archive: &Path, remote: &str) -> Result<()> {
        use std::process::Stdio;
        let s = self.server(server)?;
        let mut unzstd = cmd::command("zstd")
            .args(["-q", "-d", "-c"])
            .arg(archive)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io("running zstd on", archive))?;
        let Some(stdout) = unzstd.stdout.take() else {
            let _ = unzstd.kill();
            let _ = unzstd.wait();
            return Err(io("running zstd on", archive)(std::io::Error::other(
                "zstd's output was not piped",
            )));
        };
        let out = match s
            .ssh_command()
            .arg(format!("cat > {}", kiln_shell::quote(remote)))
            .stdin(stdout)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                let _ = unzstd.kill();
                let _ = unzstd.wait();
                return Err(io("streaming over ssh", archive)(e));
            }
        };
        let unzstd_status = unzstd.wait().map_err(io("running zstd on", archive))?;
        if !out.status.success() || !unzstd_status.success() {
            return Err(LabError::Image {
                image: archive.display().to_string(),
                message: format!(
                    "copying to {server}:{remote} failed (zstd {unzstd_status}, ssh {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// The lab's S3 server, when started.
    pub fn s3(&self) -> Option<&crate::s3::S3State> {
        self.state.s3.as_ref()
    }

    /// The lab's ACME server and DNS, when started.
    pub fn acme(&self) -> Option<&crate::acme::AcmeState> {
        self.state.acme.as_ref()
    }

    /// A lab started earlier (by another process); dropping the handle leaves it running.
    pub fn attach(roots: &Roots, name: &str) -> Result<Lab> {
        layout::validate_lab_name(name)?;
        let state =
            LabState::load(roots, name)?.ok_or_else(|| LabError::NoSuchLab { lab: name.into() })?;
        let mut lab = Lab {
            roots: roots.clone(),
            state,
            servers: Vec::new(),
            children: BTreeMap::new(),
            keep_running: true,
            progress: None,
            boot_timeout: Duration::from_secs(90),
        };
        lab.servers = lab
            .state
            .servers
            .iter()
            .map(|s| lab.server_view(s))
            .collect();
        Ok(lab)
    }

    fn say(&self, e: LabEvent) {
        if let Some(p) = &self.progress {
            p(&e)
        }
    }

    /// Where progress events go from now on.
    pub fn set_progress(&mut self, progress: Option<Progress>) {
        self.progress = progress;
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }
    pub fn state(&self) -> &LabState {
        &self.state
    }
    pub fn roots(&self) -> &Roots {
        &self.roots
    }
    /// The lab's folder (state file, operator key, known_hosts, servers).
    pub fn dir(&self) -> PathBuf {
        self.roots.lab_dir(&self.state.name)
    }
    pub fn identity_file(&self) -> PathBuf {
        self.roots.identity_file(&self.state.name)
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.roots.known_hosts(&self.state.name)
    }
    /// The host's address on the lab subnet (where the lab's S3 and ACME servers listen).
    pub fn host_address(&self) -> IpAddr {
        IpAddr::V4(layout::subnet_host_addr(self.state.index))
    }
    /// The apt proxy the servers use.
    pub fn apt_proxy(&self) -> std::net::SocketAddr {
        proxy::address()
    }
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }
    pub fn server(&self, name: &str) -> Result<&Server> {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| LabError::UnknownServer {
                lab: self.state.name.clone(),
                server: name.into(),
                known: self
                    .servers
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
    /// Runs a shell command line on a server as the admin user (prefix `sudo` for root).
    pub fn exec(&self, server: &str, command: &str) -> Result<Output> {
        self.server(server)?.exec(command)
    }
    /// Runs `argv` on a server with every word intact (see [`Server::exec_argv`]).
    pub fn exec_argv(&self, server: &str, argv: &[String]) -> Result<Output> {
        self.server(server)?.exec_argv(argv)
    }
    /// As [`Lab::exec`]; a non-zero exit is an error. Returns stdout.
    pub fn exec_ok(&self, server: &str, command: &str) -> Result<String> {
        self.server(server)?.exec_ok(command)
    }

    /// Memory used by a server's processes (PSS, KiB), for measurements.
    pub fn server_memory_kib(&self, server: &str) -> Result<u64> {
        self.server(server)?;
        Ok(process::pss_kib(&layout::cgroup_dirs(
            &self.state.name,
            server,
        )))
    }

    fn server_view(&self, s: &ServerState) -> Server {
        Server::from_state(&self.roots, &self.state.name, s)
    }

    fn write_known_hosts(&self) -> Result<()> {
        let mut text = String::new();
        for s in &self.state.servers {
            for k in &s.host_keys {
                text.push_str(&format!("{} {k}\n", s.address));
            }
        }
        let path = self.known_hosts();
        std::fs::write(&path, text).map_err(io("writing", &path))
    }

    /// Adds servers to the running lab (created, booted, SSH-ready).
    pub fn add_servers(&mut self, names: &[String]) -> Result<()> {
        self.create_servers(names, Kind::Container)
    }

    /// Adds qemu VM servers to the running lab (built, booted, SSH-ready); see `vm.rs`.
    pub fn add_vms(&mut self, names: &[String]) -> Result<()> {
        self.create_servers(names, Kind::Vm)
    }

    /// Creates, boots and waits for `names`: systemd-nspawn containers on the lab's base
    /// tree, or qemu VMs on the VM base (the same tree plus a kernel); one path for both.
    fn create_servers(&mut self, names: &[String], kind: Kind) -> Result<()> {
        for n in names {
            layout::validate_server_name(n)?;
            if self.state.servers.iter().any(|s| &s.name == n) {
                return Err(LabError::InvalidName {
                    what: "server",
                    name: n.clone(),
                    reason: "a server of this name already exists in the lab",
                });
            }
        }
        let base_root = match kind {
            Kind::Container => self.state.base_image.clone(),
            Kind::Vm => {
                let say = |e: &LabEvent| self.say(e.clone());
                crate::vm::ensure_vm_base(&self.roots, &self.state.base_image, &say)?
            }
        };
        let operator_pub_path = self.identity_file().with_extension("pub");
        let mut operator_pub = std::fs::read_to_string(&operator_pub_path)
            .map_err(io("reading", &operator_pub_path))?;
        // As a provider does on a fresh VPS, also authorize the invoking user's own keys, so
        // plain `ssh`/kiln with the user's agent work too.
        for key in user_public_keys() {
            operator_pub.push_str(&format!("\n{}", key.trim()));
        }
        let started = Instant::now();
        // Indices and addresses first, so every server's /etc/hosts lists all of them.
        let mut planned = Vec::new();
        for n in names {
            let used: Vec<u8> = self
                .state
                .servers
                .iter()
                .map(|s| s.server_index)
                .chain(planned.iter().map(|(_, i)| *i))
                .collect();
            let i = (1..=200u8)
                .find(|i| !used.contains(i))
                .ok_or(LabError::NoFreeSubnet)?;
            planned.push((n.clone(), i));
        }
        let peers: Vec<(String, std::net::Ipv4Addr)> = self
            .state
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.address))
            .chain(
                planned
                    .iter()
                    .map(|(n, i)| (n.clone(), layout::server_addr(self.state.index, *i))),
            )
            .collect();
        for (n, i) in &planned {
            self.say(LabEvent::CreatingServer {
                name: n.clone(),
                kind,
                elapsed: started.elapsed(),
            });
            // Record first: a failure half-way must still be cleaned by teardown.
            self.state.servers.push(ServerState {
                name: n.clone(),
                server_index: *i,
                address: layout::server_addr(self.state.index, *i),
                host_keys: Vec::new(),
                kind,
            });
            self.state.save(&self.roots)?;
            let (addr, keys) = server::create(&NewServer {
                roots: &self.roots,
                lab: &self.state.name,
                index: self.state.index,
                name: n,
                server_index: *i,
                base_root: &base_root,
                operator_pub: &operator_pub,
                peers: &peers,
            })?;
            if let Some(s) = self.state.servers.iter_mut().find(|s| &s.name == n) {
                s.address = addr;
                s.host_keys = keys;
            }
            self.state.save(&self.roots)?;
            let child = match kind {
                Kind::Container => server::boot(&self.roots, &self.state.name, n)?,
                Kind::Vm => {
                    let lab = (&self.roots, self.state.name.as_str(), self.state.index);
                    crate::vm::prepare(lab.0, lab.1, lab.2, n, *i, addr)?;
                    crate::vm::boot(lab.0, lab.1, lab.2, n, *i)?
                }
            };
            self.children.insert(n.clone(), child);
        }
        self.write_known_hosts()?;
        self.servers = self
            .state
            .servers
            .iter()
            .map(|s| self.server_view(s))
            .collect();
        for (n, _) in &planned {
            let srv = self.server(n)?.clone();
            let log = self
                .roots
                .server_dir(&self.state.name, n)
                .join("console.log");
            let timeout = match kind {
                Kind::Container => self.boot_timeout,
                // Software emulation: a VM boots in about a minute.
                Kind::Vm => self.boot_timeout.max(Duration::from_secs(300)),
            };
            server::wait_ssh(&srv, self.children.get_mut(n), &log, timeout)?;
            self.say(LabEvent::ServerReady {
                name: n.clone(),
                address: srv.address,
            });
        }
        Ok(())
    }

    /// Leaves the lab running after this handle is dropped (e.g. `kiln lab up`).
    pub fn detach(mut self) -> LabState {
        self.keep_running = true;
        self.state.clone()
    }

    /// Tears the lab down now and reports what was removed.
    pub fn down(mut self) -> Result<Cleaned> {
        self.keep_running = true; // Drop has nothing left to do.
        self.teardown()
    }

    fn teardown(&mut self) -> Result<Cleaned> {
        let c = down(&self.roots, &self.state.name);
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep_running
            && let Err(e) = self.teardown()
        {
            // Drop cannot return the error; it must not vanish either: to the progress sink,
            // or (no sink given) to stderr as the last resort.
            let event = LabEvent::TeardownFailed {
                lab: self.state.name.clone(),
                error: e.to_string(),
            };
            match &self.progress {
                Some(p) => p(&event),
                None => eprintln!("kiln lab: {event}"),
            }
        }
    }
}

/// Removes one lab's processes, cgroups, mounts, loop devices, namespaces, links and folder,
/// from its state file if any and from a scan of `kiln-lab`-named leftovers. Idempotent.
fn teardown_lab(roots: &Roots, lab: &str) -> Result<Cleaned> {
    let mut c = Cleaned::default();
    let state = LabState::load(roots, lab).ok().flatten();
    let (killed, cgroups) = process::kill_and_remove_cgroups(&layout::cgroup_lab_dirs(lab))?;
    c.processes += killed;
    c.cgroups += cgroups;
    let dir = roots.lab_dir(lab);
    for m in server::mounts_under(&dir) {
        if cmd::run(cmd::command("umount").arg(&m)).is_err() {
            cmd::run(cmd::command("umount").arg("-l").arg(&m))?;
        }
        c.mounts += 1;
    }
    c.loop_devices += detach_loops_under(&dir)?;
    let alias = layout::host_link_alias(lab);
    for (name, a) in net::host_links() {
        let ours = a.as_deref() == Some(alias.as_str())
            || (a.is_none()
                && state
                    .as_ref()
                    .is_some_and(|s| name == layout::host_link(s.index)));
        if ours {
            // Deleted before the namespaces: deleting the bridge namespace would take the
            // link with it, at a moment of the kernel's choosing.
            if cmd::ip(["link", "del", &name]).is_ok() {
                c.links += 1;
            }
        }
    }
    for ns in net::netns_with_prefix(&layout::netns_prefix(lab)) {
        cmd::ip(["netns", "del", &ns])?;
        c.namespaces += 1;
    }
    if dir.exists() {
        if !server::mounts_under(&dir).is_empty() {
            return Err(LabError::Io {
                action: "removing (still mounted)",
                path: dir,
                source: std::io::Error::other("mounts remain"),
            });
        }
        std::fs::remove_dir_all(&dir).map_err(io("removing", &dir))?;
        c.folders += 1;
    }
    Ok(c)
}

fn detach_loops_under(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Ok(0);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let backing =
            std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
        if Path::new(backing.trim()).starts_with(dir) {
            cmd::run_args("losetup", ["-d", &format!("/dev/{name}")])?;
            n += 1;
        }
    }
    Ok(n)
}

/// Stops the shared pieces (apt proxy, host filter, proxy address) when no lab is left.
fn finish_shared(roots: &Roots) -> Result<Cleaned> {
    let _guard = lock(roots)?;
    let mut c = Cleaned::default();
    if roots.labs().is_empty() && net::netns_with_prefix(&format!("{}-", layout::PREFIX)).is_empty()
    {
        c.processes += proxy::stop()?;
        net::remove_host_shared()?;
        let pd = roots.proxy_dir();
        if pd.exists() {
            std::fs::remove_dir_all(&pd).map_err(io("removing", &pd))?;
            c.folders += 1;
        }
        for h in layout::cgroup_hierarchies() {
            let _ = std::fs::remove_dir(h.join(layout::PREFIX));
        }
    }
    Ok(c)
}

/// Tears down the lab `name` (running, crashed or half-removed). Idempotent.
pub fn down(roots: &Roots, name: &str) -> Result<Cleaned> {
    layout::validate_lab_name(name)?;
    let mut c = teardown_lab(roots, name)?;
    c.add(&finish_shared(roots)?);
    Ok(c)
}

/// Tears down every lab and every `kiln-lab` leftover found on this machine.
pub fn down_all(roots: &Roots) -> Result<Cleaned> {
    let mut labs = roots.labs();
    for h in layout::cgroup_hierarchies() {
        if let Ok(rd) = std::fs::read_dir(h.join(layout::PREFIX)) {
            labs.extend(
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| layout::validate_lab_name(n).is_ok()),
            );
        }
    }
    for ns in net::netns_with_prefix(&format!("{}-", layout::PREFIX)) {
        if let Some((lab, _)) = ns
            .trim_start_matches(&format!("{}-", layout::PREFIX))
            .split_once('_')
        {
            labs.push(lab.to_string());
        }
    }
    labs.sort();
    labs.dedup();
    let mut c = Cleaned::default();
    for lab in labs {
        if layout::validate_lab_name(&lab).is_ok() {
            c.add(&teardown_lab(roots, &lab)?);
        }
    }
    // Host links of labs whose state is gone.
    for (name, _) in net::host_links() {
        if cmd::ip(["link", "del", &name]).is_ok() {
            c.links += 1;
        }
    }
    c.add(&finish_shared(roots)?);
    Ok(c)
}

/// One lab as `kiln lab status` shows it.
#[derive(Debug, Clone)]
pub struct LabStatus {
    pub name: String,
    pub host_address: IpAddr,
    /// Each server, whether its processes run, and their memory (PSS, KiB).
    pub servers: Vec<(ServerState, bool, u64)>,
    pub s3: Option<crate::s3::S3State>,
    pub acme: Option<crate::acme::AcmeState>,
}

/// Every lab with a state file, and whether each server's processes are alive.
pub fn status(roots: &Roots) -> Result<Vec<LabStatus>> {
    let mut out = Vec::new();
    for lab in roots.labs() {
        let Some(state) = LabState::load(roots, &lab)? else {
            continue;
        };
        let servers = state
            .servers
            .iter()
            .map(|s| {
                let dirs = layout::cgroup_dirs(&lab, &s.name);
                let alive = dirs.iter().any(|d| !process::pids_in(d).is_empty());
                (s.clone(), alive, process::pss_kib(&dirs))
            })
            .collect();
        out.push(LabStatus {
            name: lab,
            host_address: IpAddr::V4(layout::subnet_host_addr(state.index)),
            servers,
            s3: state.s3,
            acme: state.acme,
        });
    }
    Ok(out)
}
