//! Typed resources and the per-host [`DesiredState`] the laptop sends to the agent.
//!
//! Pure data with serde: this file owns the wire format of the agent's stdin. It does no
//! I/O and knows nothing about how resources are observed or applied.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Everything one host must look like after an apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// The host's role (for messages only).
    #[serde(default)]
    pub host: String,
    /// The OS family the configuration expects; the agent detects the real one and
    /// refuses a mismatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<crate::facts::OsFamily>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<Directory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Container images the host must hold (pulled before any unit starts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// The certificates the host's reverse proxy obtains by ACME: observed (and waited for
    /// after an apply, [`crate::certs`]), never changed by kiln.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Certificates>,
    /// Facts about data already on the host that the plan must refuse to contradict
    /// (e.g. a PostgreSQL data directory of another major version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
    /// When set, the agent applies only if its plan has this fingerprint
    /// ([`crate::plan::Plan::fingerprint`]): the plan the user confirmed, not a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_plan: Option<String>,
    /// The WireGuard mesh check run from the laptop after an apply ([`crate::mesh`]); the
    /// agent does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<crate::mesh::MeshCheck>,
    /// Seconds a guarded group has to be confirmed over a fresh connection before the
    /// host rolls it back ([`crate::guard::DEFAULT_TIMEOUT_S`] when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_timeout_s: Option<u32>,
}

/// Which kind of certificate authority a proxy's configuration asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaKind {
    Letsencrypt,
    LetsencryptStaging,
    /// The proxy's own local CA.
    Internal,
    /// Another ACME directory (step-ca, the lab's Pebble, another public CA).
    Custom,
}

/// Where a reverse proxy keeps the certificates it obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CertificateStore {
    /// Caddy's `certificates` folder: `<dir>/<issuer>/<name>/<name>.crt`.
    Caddy { dir: String },
    /// Traefik's ACME storage file.
    Traefik { acme_json: String },
}

/// The certificates a host's reverse proxy must hold, one per name of its routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificates {
    /// The proxy's container: its log holds the ACME errors.
    pub container: String,
    pub store: CertificateStore,
    /// The CA the proxy's configuration asks.
    pub ca: CaKind,
    /// The ACME directory, for messages (`None`: the proxy's internal CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Host names, sorted.
    pub names: Vec<String>,
}

/// The bytes of a file. On the wire: a JSON string when the bytes are UTF-8, otherwise
/// `{"base64": "..."}`. `Debug` shows the length only, so a secret never lands in a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl Content {
    pub fn text(s: impl Into<String>) -> Self {
        Content(s.into().into_bytes())
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Content({} bytes)", self.0.len())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ContentWire {
    Text(String),
    Binary { base64: String },
}

impl Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => ContentWire::Text(text.to_owned()).serialize(s),
            Err(_) => ContentWire::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ContentWire::deserialize(d)? {
            ContentWire::Text(t) => Ok(Content(t.into_bytes())),
            ContentWire::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64.as_bytes())
                .map(Content)
                .map_err(serde::de::Error::custom),
        }
    }
}

fn default_dir_mode() -> u32 {
    0o755
}
fn default_file_mode() -> u32 {
    0o644
}
fn root() -> String {
    "root".to_owned()
}
fn yes() -> bool {
    true
}

/// A directory (parents are created as needed, mode 0755, owned by root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub path: PathBuf,
    #[serde(default = "default_dir_mode")]
    pub mode: u32,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
}

/// What to do to a unit when an input changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Restart,
    Reload,
}

/// A unit to restart or reload when a file changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub unit: String,
    #[serde(default = "restart")]
    pub action: Trigger,
}
fn restart() -> Trigger {
    Trigger::Restart
}

/// A regular file with exact content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: PathBuf,
    pub content: Content,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    /// The content holds a secret: plans show that it changed, never how.
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    /// The guarded group this file belongs to ([`crate::guard`]): applied with a rollback
    /// armed, kept only once a fresh connection proved the host still reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// A check of new content before it replaces the file ([`Validate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
    /// Said in the plan when the file changes: why it reads as it does (e.g. who chooses
    /// sshd's algorithms on this system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl File {
    /// A root:root file with `content` and `mode`: not sensitive, notifying nothing, in no
    /// guarded group, unchecked.
    pub fn root(path: impl Into<PathBuf>, content: Content, mode: u32) -> File {
        File {
            path: path.into(),
            content,
            mode,
            owner: root(),
            group: root(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }
    }
}

/// A check of a file's new content before it replaces the file: `argv` run on the host
/// with `{}` standing for a candidate copy (same folder, mode and owner). A failing check
/// leaves the file as it was and fails the step with the check's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// What the check is called in messages (`caddy validate`).
    pub name: String,
    pub argv: Vec<String>,
}

/// A symbolic link `path -> target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// A distribution package, installed by the host's package manager (apt or dnf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
}

/// A local user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<PathBuf>,
    /// Supplementary groups (exactly these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A local group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub system: bool,
}

/// A systemd unit: its file (see [`UnitKind`]), whether it is enabled and running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// The systemd unit's name (`app.service`; for a quadlet, the generated unit).
    pub name: String,
    pub content: Content,
    /// Enabled at boot with `systemctl enable` (ignored for quadlets: see [`UnitKind`]).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub started: bool,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "UnitKind::is_file")]
    pub kind: UnitKind,
    /// The guarded group this unit (its file and its restarts) belongs to ([`crate::guard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// A container health check to wait for after the unit starts or restarts: the
    /// apply reports the unit unhealthy (with its journal) when it does not pass in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Ordering stage ([`Stage`]): what this unit waits for, and what waits for it.
    #[serde(default, skip_serializing_if = "Stage::is_first")]
    pub stage: Stage,
}

/// When a unit's state changes or a command runs, relative to the others. The planner
/// emits, for each stage in increasing order, that stage's commands, then that stage's
/// unit starts, restarts and reloads (each waited for: settled, and healthy when it has a
/// [`Health`] check). So a stage-1 command (creating a database) runs once every stage-0
/// unit (the database server) is up and healthy, and stage-1 units (the applications using
/// the database) start after it. Stage 0 is everything that declares no stage: files,
/// packages and images come before every stage.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Stage(pub u8);

impl Stage {
    pub fn is_first(&self) -> bool {
        self.0 == 0
    }
}

/// A container's own health check (the quadlet's `HealthCmd`), as Podman reports it.
///
/// After a planned start or restart of the unit, apply runs `systemctl restart --no-block`
/// (so a `Notify=healthy` quadlet's start job, which lasts until the container is healthy,
/// does not block it), waits until the unit settled (within `timeout_s` or the default 10 s,
/// whichever is longer), then polls the container's health every 250 ms until `healthy`,
/// `timeout_s` after the restart at most. A unit that fails meanwhile, or a container not
/// healthy in time, is [`crate::apply::ApplyError::Unhealthy`] and apply changes nothing
/// more on the host. Render the quadlet's `TimeoutStartSec=` at least `timeout_s` (systemd
/// gives up on a `Notify=healthy` start at it, and removes the container with its health
/// log). Nothing is waited for when the unit is only observed running (no change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The container's name (`ContainerName=` of the quadlet); also how the plan finds the
    /// unit of an [`Image`] whose `container` is this one.
    pub container: String,
    /// How long to wait for `healthy` after a start or restart.
    pub timeout_s: u32,
}

/// A container image the host must hold: pulled (`podman pull`) when no image with this
/// exact reference is present. Never removed by kiln (Podman's own prune does that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// As pulled and as named in the quadlet's `Image=`: `registry/name:tag`, or
    /// `registry/name:tag@sha256:<digest>` when pinned by digest.
    pub reference: String,
    /// The service the image is for, and the container running it: the plan compares
    /// the image that container runs now with this one (`synapse v1.117.0 → v1.118.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A fact about existing data that the plan refuses to contradict: when the file at `path`
/// exists on the host, its content (trimmed) must be `expect`; otherwise planning fails
/// with `refusal` (which names the service and says what to do). An absent file passes
/// (fresh data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precondition {
    pub path: PathBuf,
    pub expect: String,
    pub refusal: String,
}

/// How a unit's file reaches systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UnitKind {
    /// kiln writes the unit file itself, `/etc/systemd/system/NAME`, and enables it with
    /// `systemctl enable`.
    #[default]
    File,
    /// A Podman quadlet: kiln writes `/etc/containers/systemd/FILE` (`web.container`) and
    /// systemd's quadlet generator makes the unit (`web.service`) from it at
    /// daemon-reload. A generated unit is never `systemctl enable`d (it has no `[Install]`
    /// of its own: the quadlet's `[Install]` section decides what wants it at boot), so
    /// `enabled` is ignored; it is started, and restarted when the quadlet changes.
    Quadlet { file: String },
    /// A unit a distribution package ships (`ssh.service`, `firewalld.service`,
    /// `wg-quick@wg0.service`): kiln writes no file for it (its `content` stays empty;
    /// drop-ins are plain [`File`]s), it only enables, starts, restarts and reloads it.
    /// Declared so that files can notify it and guarded groups restart it. No longer
    /// declared, it gets back the state it had before kiln (it is never removed).
    Packaged,
}

impl UnitKind {
    pub fn is_file(&self) -> bool {
        matches!(self, UnitKind::File)
    }
}

impl Unit {
    /// A unit file kiln writes to /etc/systemd/system, enabled and started.
    pub fn file(name: impl Into<String>, content: Content) -> Unit {
        Unit {
            name: name.into(),
            content,
            enabled: true,
            started: true,
            sensitive: false,
            kind: UnitKind::File,
            guard: None,
            health: None,
            stage: Stage::default(),
        }
    }

    /// The unit Podman's quadlet generates from `file` (`web.container` → `web.service`),
    /// started; `None` when `file` is not a quadlet file name.
    pub fn quadlet(file: &str, content: Content) -> Option<Unit> {
        Some(Unit {
            name: quadlet_unit_name(file)?,
            content,
            enabled: false,
            started: true,
            sensitive: false,
            kind: UnitKind::Quadlet {
                file: file.to_owned(),
            },
            guard: None,
            health: None,
            stage: Stage::default(),
        })
    }

    /// A unit a package ships ([`UnitKind::Packaged`]), enabled and started.
    pub fn packaged(name: impl Into<String>) -> Unit {
        Unit {
            kind: UnitKind::Packaged,
            ..Unit::file(name, Content::default())
        }
    }

    /// The file kiln writes for this unit (`None` for a packaged unit: kiln writes none).
    pub fn path(&self) -> Option<PathBuf> {
        match &self.kind {
            UnitKind::File => Some(unit_path(&self.name)),
            UnitKind::Quadlet { file } => Some(quadlet_path(file)),
            UnitKind::Packaged => None,
        }
    }

    /// Whether this unit's file is `path`.
    pub fn has_path(&self, path: &std::path::Path) -> bool {
        self.path().is_some_and(|p| p == path)
    }

    /// Whether `systemctl enable`/`disable` applies to this unit.
    pub fn enablable(&self) -> bool {
        matches!(self.kind, UnitKind::File | UnitKind::Packaged)
    }
}

/// Where kiln writes a unit's file.
pub fn unit_path(name: &str) -> PathBuf {
    PathBuf::from("/etc/systemd/system").join(name)
}

/// Where kiln writes a quadlet file (the system-wide quadlet folder).
pub fn quadlet_path(file: &str) -> PathBuf {
    PathBuf::from("/etc/containers/systemd").join(file)
}

/// The unit Podman's quadlet generator makes from a quadlet file, by its extension
/// (podman 5: `.container` and `.kube` → `NAME.service`, `.volume` → `NAME-volume.service`,
/// `.network`, `.pod`, `.image`, `.build` likewise).
pub fn quadlet_unit_name(file: &str) -> Option<String> {
    let (stem, ext) = file.rsplit_once('.')?;
    if stem.is_empty() || stem.contains('/') {
        return None;
    }
    let suffix = match ext {
        "container" | "kube" => "",
        "volume" => "-volume",
        "network" => "-network",
        "pod" => "-pod",
        "image" => "-image",
        "build" => "-build",
        _ => return None,
    };
    Some(format!("{stem}{suffix}.service"))
}

/// A shell command run on the host when its guard says so or when a file it depends on
/// changed. Without `unless` and triggers it runs once (again when `run` changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub name: String,
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_by: Vec<PathBuf>,
    /// Ordering stage ([`Stage`]).
    #[serde(default, skip_serializing_if = "Stage::is_first")]
    pub stage: Stage,
}

/// Identifies one resource in plans, events and the ownership record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum ResourceId {
    Group(String),
    User(String),
    Package(String),
    Directory(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
    Unit(String),
    Command(String),
    /// A container image, by reference.
    Image(String),
    /// `systemctl daemon-reload`, planned once when unit files changed.
    Systemd,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceId::Group(n) => write!(f, "group {n}"),
            ResourceId::User(n) => write!(f, "user {n}"),
            ResourceId::Package(n) => write!(f, "package {n}"),
            ResourceId::Directory(p) => write!(f, "directory {}", p.display()),
            ResourceId::File(p) => write!(f, "file {}", p.display()),
            ResourceId::Symlink(p) => write!(f, "symlink {}", p.display()),
            ResourceId::Unit(n) => write!(f, "unit {n}"),
            ResourceId::Command(n) => write!(f, "command {n}"),
            ResourceId::Image(r) => write!(f, "image {r}"),
            ResourceId::Systemd => write!(f, "systemd"),
        }
    }
}

/// A desired state that cannot be applied as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidState {
    #[error(
        "host {host}: unit {unit} is a packaged unit, yet has content\n  hint: kiln writes no file for a unit its package ships; change it with a drop-in file under /etc/systemd/system/{unit}.d/"
    )]
    PackagedContent { host: String, unit: String },
    #[error("host {host}: {id} is declared twice")]
    Duplicate { host: String, id: String },
    #[error("host {host}: {id}: path must be absolute")]
    RelativePath { host: String, id: String },
    #[error("host {host}: {id}: notifies unit {unit}, which is not declared for this host")]
    UnknownUnit {
        host: String,
        id: String,
        unit: String,
    },
    #[error(
        "host {host}: command {name}: triggered_by {path}, which is not a file declared for this host"
    )]
    UnknownTrigger {
        host: String,
        name: String,
        path: String,
    },
    #[error(
        "host {host}: unit {unit}: quadlet file {file:?} {why}\n  hint: name the unit after the quadlet file (web.container → web.service)"
    )]
    BadQuadlet {
        host: String,
        unit: String,
        file: String,
        why: String,
    },
    #[error("host {host}: {id}: mode {mode:o} is not a permission mode (at most 07777)")]
    BadMode { host: String, id: String, mode: u32 },
    #[error("host {host}: {id}: name {name:?} is not valid ({why})")]
    BadName {
        host: String,
        id: String,
        name: String,
        why: &'static str,
    },
}

fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.starts_with('-') {
        return Err("starts with '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-@:+".contains(c))
    {
        return Err("only letters, digits and ._-@:+ are allowed");
    }
    Ok(())
}

impl DesiredState {
    /// Every resource this state declares, in declaration order (a unit also as its file).
    pub fn ids(&self) -> Vec<ResourceId> {
        let mut ids = vec![];
        ids.extend(
            self.groups
                .iter()
                .map(|g| ResourceId::Group(g.name.clone())),
        );
        ids.extend(self.users.iter().map(|u| ResourceId::User(u.name.clone())));
        ids.extend(
            self.packages
                .iter()
                .map(|p| ResourceId::Package(p.name.clone())),
        );
        ids.extend(
            self.directories
                .iter()
                .map(|d| ResourceId::Directory(d.path.clone())),
        );
        ids.extend(self.files.iter().map(|f| ResourceId::File(f.path.clone())));
        ids.extend(
            self.symlinks
                .iter()
                .map(|s| ResourceId::Symlink(s.path.clone())),
        );
        for u in &self.units {
            ids.push(ResourceId::Unit(u.name.clone()));
            ids.extend(u.path().map(ResourceId::File));
        }
        ids.extend(
            self.commands
                .iter()
                .map(|c| ResourceId::Command(c.name.clone())),
        );
        ids.extend(
            self.images
                .iter()
                .map(|i| ResourceId::Image(i.reference.clone())),
        );
        ids
    }

    /// Appends another state's resources (its host, os and expected plan are ignored).
    pub fn extend(&mut self, other: DesiredState) {
        self.groups.extend(other.groups);
        self.users.extend(other.users);
        self.packages.extend(other.packages);
        self.directories.extend(other.directories);
        self.files.extend(other.files);
        self.symlinks.extend(other.symlinks);
        self.units.extend(other.units);
        self.commands.extend(other.commands);
        for image in other.images {
            self.add_image(image);
        }
        self.preconditions.extend(other.preconditions);
        if other.certificates.is_some() {
            // One proxy per host.
            self.certificates = other.certificates;
        }
        if other.mesh.is_some() {
            // One mesh per host.
            self.mesh = other.mesh;
        }
    }

    /// Declares an image, once: several containers (of one feature or of several) may run
    /// the same reference, which is pulled once.
    pub fn add_image(&mut self, image: Image) {
        if !self.images.iter().any(|i| i.reference == image.reference) {
            self.images.push(image);
        }
    }
}

impl DesiredState {
    /// Checks what the planner relies on: unique ids, absolute paths, sane modes and
    /// names, notifications and triggers that point at declared things.
    pub fn validate(&self) -> Result<(), InvalidState> {
        let host = || self.host.clone();
        let mut seen = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut check = |id: ResourceId| {
            if let Some(p) = match &id {
                ResourceId::Directory(p) | ResourceId::File(p) | ResourceId::Symlink(p) => Some(p),
                _ => None,
            } {
                if !p.is_absolute() {
                    return Err(InvalidState::RelativePath {
                        host: host(),
                        id: id.to_string(),
                    });
                }
                if !paths.insert(p.clone()) {
                    return Err(InvalidState::Duplicate {
                        host: host(),
                        id: id.to_string(),
                    });
                }
            }
            let name = match &id {
                ResourceId::Group(n)
                | ResourceId::User(n)
                | ResourceId::Package(n)
                | ResourceId::Unit(n)
                | ResourceId::Command(n) => Some(n.clone()),
                _ => None,
            };
            if let Some(n) = name
                && let Err(why) = valid_name(&n)
            {
                return Err(InvalidState::BadName {
                    host: host(),
                    id: id.to_string(),
                    name: n,
                    why,
                });
            }
            if !seen.insert(id.clone()) {
                return Err(InvalidState::Duplicate {
                    host: host(),
                    id: id.to_string(),
                });
            }
            Ok(())
        };
        for id in self.ids() {
            check(id)?;
        }
        for u in &self.units {
            if u.kind == UnitKind::Packaged && !u.content.bytes().is_empty() {
                return Err(InvalidState::PackagedContent {
                    host: host(),
                    unit: u.name.clone(),
                });
            }
            if let UnitKind::Quadlet { file } = &u.kind {
                let bad = |why: String| InvalidState::BadQuadlet {
                    host: host(),
                    unit: u.name.clone(),
                    file: file.clone(),
                    why,
                };
                if let Err(why) = valid_name(file) {
                    return Err(bad(format!("is not valid ({why})")));
                }
                match quadlet_unit_name(file) {
                    None => {
                        return Err(bad(
                            "is not a quadlet (.container, .volume, .network, .pod, .kube, .image, .build)"
                                .into(),
                        ));
                    }
                    Some(generated) if generated != u.name => {
                        return Err(bad(format!("generates {generated}, not {}", u.name)));
                    }
                    Some(_) => {}
                }
            }
        }
        let modes = self
            .directories
            .iter()
            .map(|d| (ResourceId::Directory(d.path.clone()), d.mode))
            .chain(
                self.files
                    .iter()
                    .map(|f| (ResourceId::File(f.path.clone()), f.mode)),
            );
        for (id, mode) in modes {
            if mode > 0o7777 {
                return Err(InvalidState::BadMode {
                    host: host(),
                    id: id.to_string(),
                    mode,
                });
            }
        }
        let units: BTreeSet<&str> = self.units.iter().map(|u| u.name.as_str()).collect();
        for f in &self.files {
            for n in &f.notify {
                if !units.contains(n.unit.as_str()) {
                    return Err(InvalidState::UnknownUnit {
                        host: host(),
                        id: ResourceId::File(f.path.clone()).to_string(),
                        unit: n.unit.clone(),
                    });
                }
            }
        }
        let files: BTreeSet<PathBuf> = self
            .files
            .iter()
            .map(|f| f.path.clone())
            .chain(self.units.iter().filter_map(Unit::path))
            .collect();
        for c in &self.commands {
            for p in &c.triggered_by {
                if !files.contains(p) {
                    return Err(InvalidState::UnknownTrigger {
                        host: host(),
                        name: c.name.clone(),
                        path: p.display().to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_when_utf8_and_base64_otherwise() {
        let text = serde_json::to_string(&Content::text("héllo\n")).unwrap();
        assert_eq!(text, r#""héllo\n""#);
        let bin = serde_json::to_string(&Content(vec![0xff, 0x00, 0x01])).unwrap();
        assert_eq!(bin, r#"{"base64":"/wAB"}"#);
        let back: Content = serde_json::from_str(&bin).unwrap();
        assert_eq!(back.0, vec![0xff, 0x00, 0x01]);
    }

    #[test]
    fn content_debug_hides_bytes() {
        assert_eq!(
            format!("{:?}", Content::text("hunter2")),
            "Content(7 bytes)"
        );
    }

    #[test]
    fn defaults_apply_and_unknown_fields_are_refused() {
        let d: DesiredState =
            serde_json::from_str(r#"{"host":"web","files":[{"path":"/etc/a","content":"x"}]}"#)
                .unwrap();
        assert_eq!(d.files[0].mode, 0o644);
        assert_eq!(d.files[0].owner, "root");
        let err = serde_json::from_str::<DesiredState>(r#"{"filez":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `filez`"), "{err}");
    }

    #[test]
    fn services_resources_travel_as_json_and_unknown_fields_are_refused() {
        let json = r#"{"host":"app",
            "images":[{"reference":"docker.io/library/postgres:17","service":"postgres","container":"postgres"}],
            "preconditions":[{"path":"/srv/pg/PG_VERSION","expect":"17","refusal":"service postgres: other major"}],
            "units":[{"name":"postgres.service","content":"[Container]\n","kind":{"type":"quadlet","file":"postgres.container"},
                      "health":{"container":"postgres","timeout_s":120},"stage":0},
                     {"name":"app.service","content":"","stage":2}],
            "commands":[{"name":"create-db","run":"true","stage":1}]}"#;
        let d: DesiredState = serde_json::from_str(json).unwrap();
        assert_eq!(d.images[0].container.as_deref(), Some("postgres"));
        assert_eq!(d.units[0].health.as_ref().unwrap().timeout_s, 120);
        assert_eq!(
            (d.units[1].stage, d.commands[0].stage),
            (Stage(2), Stage(1))
        );
        d.validate().unwrap();
        let back: DesiredState = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        // Stage 0 and no health are left out of the wire format.
        let plain = serde_json::to_string(&Unit::file("a.service", Content::text(""))).unwrap();
        assert!(
            !plain.contains("stage") && !plain.contains("health"),
            "{plain}"
        );
        for bad in [
            r#"{"images":[{"reference":"x","tag":"1"}]}"#,
            r#"{"preconditions":[{"path":"/a","expect":"1","refusal":"r","why":"?"}]}"#,
            r#"{"units":[{"name":"a.service","content":"","health":{"container":"a","timeout_s":1,"interval":2}}]}"#,
        ] {
            let err = serde_json::from_str::<DesiredState>(bad).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
    }

    fn file(path: &str) -> File {
        File {
            path: path.into(),
            content: Content::text(""),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            sensitive: false,
            notify: vec![],
            guard: None,
            validate: None,
            note: None,
        }
    }

    #[test]
    fn validate_rejects_duplicates_relative_paths_and_dangling_references() {
        let mut d = DesiredState {
            host: "web".into(),
            ..Default::default()
        };
        d.files = vec![file("/etc/a"), file("/etc/a")];
        assert_eq!(
            d.validate().unwrap_err().to_string(),
            "host web: file /etc/a is declared twice"
        );
        d.files = vec![file("etc/a")];
        assert!(matches!(
            d.validate(),
            Err(InvalidState::RelativePath { .. })
        ));
        let mut f = file("/etc/a");
        f.notify = vec![Notify {
            unit: "app.service".into(),
            action: Trigger::Restart,
        }];
        d.files = vec![f];
        assert!(matches!(
            d.validate(),
            Err(InvalidState::UnknownUnit { .. })
        ));
        d.files = vec![file("/etc/a")];
        d.commands = vec![Command {
            name: "x".into(),
            run: "true".into(),
            unless: None,
            triggered_by: vec!["/etc/b".into()],
            stage: Default::default(),
        }];
        assert!(matches!(
            d.validate(),
            Err(InvalidState::UnknownTrigger { .. })
        ));
        d.commands.clear();
        d.packages = vec![Package {
            name: "-oops".into(),
        }];
        assert!(matches!(d.validate(), Err(InvalidState::BadName { .. })));
        d.packages.clear();
        d.directories = vec![Directory {
            path: "/etc/a".into(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        }];
        assert!(matches!(d.validate(), Err(InvalidState::Duplicate { .. })));
    }
}

#[cfg(test)]
mod quadlet_tests {
    use super::*;

    #[test]
    fn quadlet_files_name_their_generated_units() {
        assert_eq!(
            quadlet_unit_name("web.container").as_deref(),
            Some("web.service")
        );
        assert_eq!(
            quadlet_unit_name("data.volume").as_deref(),
            Some("data-volume.service")
        );
        assert_eq!(
            quadlet_unit_name("mesh.network").as_deref(),
            Some("mesh-network.service")
        );
        assert_eq!(
            quadlet_unit_name("app.pod").as_deref(),
            Some("app-pod.service")
        );
        assert_eq!(quadlet_unit_name("web.service"), None);
        assert_eq!(quadlet_unit_name(".container"), None);
        let u = Unit::quadlet("web.container", Content::text("[Container]\n")).unwrap();
        assert_eq!(
            u.path(),
            Some(PathBuf::from("/etc/containers/systemd/web.container"))
        );
        assert!(!u.enablable());
        assert!(Unit::file("a.service", Content::text("")).enablable());
        let ssh = Unit::packaged("ssh.service");
        assert_eq!(ssh.path(), None);
        assert!(ssh.enablable());
    }

    #[test]
    fn quadlet_kind_on_the_wire_and_file_kind_left_out() {
        let u = Unit::quadlet("web.container", Content::text("x")).unwrap();
        let json = serde_json::to_string(&u).unwrap();
        assert!(
            json.contains(r#""kind":{"type":"quadlet","file":"web.container"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Unit>(&json).unwrap(), u);
        let plain = serde_json::to_string(&Unit::file("a.service", Content::text("x"))).unwrap();
        assert!(!plain.contains("kind"), "{plain}");
    }

    #[test]
    fn a_quadlet_must_generate_the_unit_it_is_declared_as() {
        let mut u = Unit::quadlet("web.container", Content::text("x")).unwrap();
        u.name = "other.service".into();
        let d = DesiredState {
            host: "web".into(),
            units: vec![u],
            ..Default::default()
        };
        assert_eq!(
            d.validate()
                .unwrap_err()
                .to_string()
                .lines()
                .next()
                .unwrap(),
            "host web: unit other.service: quadlet file \"web.container\" generates web.service, not other.service"
        );
        let mut u = Unit::quadlet("web.container", Content::text("x")).unwrap();
        u.kind = UnitKind::Quadlet {
            file: "../web.container".into(),
        };
        let d = DesiredState {
            host: "web".into(),
            units: vec![u],
            ..Default::default()
        };
        assert!(matches!(d.validate(), Err(InvalidState::BadQuadlet { .. })));
    }
}
