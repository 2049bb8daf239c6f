//! Observation: reads the real state of everything a desired state or the ownership
//! record mentions (files with their metadata and hashes, accounts from /etc/passwd and
//! /etc/group, package status in one query, unit status in one `systemctl show`, guards,
//! containers and images in one `podman ps -a` (plus one `podman images` only when a
//! declared image is run by no container), the files preconditions name, and the check
//! of changed quadlet files by the host's generator).
//!
//! It changes nothing on the host. What it returns is plain data for the pure planner.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::owned::{OWNED_PATH, Owned, sha256_hex};
pub use crate::podman::{ContainerState, QuadletRefusal};
use crate::resource::{DesiredState, UnitKind};
use crate::system::Target;

/// Files larger than this are compared by hash only (no diff).
pub const DIFF_LIMIT: usize = 256 * 1024;

/// Mode and ownership of a path (owner/group as names when known, else numeric).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// What is at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PathState {
    Absent,
    File {
        meta: Meta,
        sha256: String,
        /// The current text, kept only to show a diff (changed, not sensitive, small, UTF-8).
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Directory {
        meta: Meta,
    },
    Symlink {
        target: PathBuf,
    },
    /// A socket, device, fifo…: kiln never replaces those.
    Other,
}

/// An account as found in /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub uid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// Supplementary groups (from /etc/group member lists).
    pub groups: BTreeSet<String>,
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub enabled: bool,
    pub active: bool,
}

/// Everything the planner needs to know about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub paths: BTreeMap<PathBuf, PathState>,
    /// Installed packages among those asked about.
    pub packages: BTreeSet<String>,
    pub users: BTreeMap<String, UserInfo>,
    pub groups: BTreeSet<String>,
    pub units: BTreeMap<String, UnitStatus>,
    /// Command name → its `unless` guard exited 0.
    pub guards: BTreeMap<String, bool>,
    pub owned: Owned,
    /// Declared units kiln does not own yet that have a unit file of their own outside
    /// /etc (a package's, in /usr/lib/systemd/system or /lib/systemd/system): kiln's unit
    /// file would shadow it, so the unit is borrowed, not created.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub vendor_units: BTreeSet<String>,
    /// Containers by name (`podman ps -a`), when the desired state involves containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ContainerState>,
    /// The declared image references the host holds.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub images: BTreeSet<String>,
    /// Precondition path → its content (at most [`PRECONDITION_LIMIT`] bytes, lossy
    /// UTF-8), for the files that exist.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub preconditions: BTreeMap<PathBuf, String>,
    /// Account name → uid, for the owners of observed paths and the declared owners that
    /// exist (so `owner = "999"` matches a path shown as owned by the user of uid 999).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uids: BTreeMap<String, u32>,
    /// Group name → gid, likewise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gids: BTreeMap<String, u32>,
    /// The host's quadlet generator refused the declared quadlet files (checked when one
    /// differs from the host's and the generator is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quadlet_refused: Option<QuadletRefusal>,
}

/// How much of a precondition's file observation reads.
pub const PRECONDITION_LIMIT: u64 = 4096;

/// Where packages install unit files (kiln's own go to /etc/systemd/system).
pub const VENDOR_UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/system", "/lib/systemd/system"];

/// Observation failed: the host cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ownership record {path} is corrupt: {message}\n  hint: fix it (a record written by a newer kiln needs that kiln); deleting it makes kiln forget what it created and which originals (in /var/lib/kiln/originals) it must give back"
    )]
    CorruptRecord { path: String, message: String },
    #[error("cannot run `{command}`: {message}")]
    Command { command: String, message: String },
    #[error("{0} needs the real system: the agent runs with a root prefix (tests only)")]
    NeedsRealRoot(String),
    #[error(
        "packages are declared but the host's distribution is unknown (no /etc/os-release with a Debian or RHEL ID)"
    )]
    UnknownOs,
    #[error(transparent)]
    Podman(#[from] crate::podman::PodmanError),
}

fn read_err(path: &Path, source: std::io::Error) -> ObserveError {
    ObserveError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// Account names, read from the target's /etc/passwd and /etc/group.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: BTreeMap<String, UserInfo>,
    pub uid_names: BTreeMap<u32, String>,
    pub gid_names: BTreeMap<u32, String>,
    pub group_ids: BTreeMap<String, u32>,
}

impl Accounts {
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let mut a = Accounts::default();
        let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in group.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                continue;
            }
            if let Ok(gid) = f[2].parse() {
                a.gid_names.entry(gid).or_insert_with(|| f[0].to_owned());
                a.group_ids.insert(f[0].to_owned(), gid);
            }
            for m in f[3].split(',').filter(|m| !m.is_empty()) {
                members
                    .entry(m.to_owned())
                    .or_default()
                    .insert(f[0].to_owned());
            }
        }
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                continue;
            }
            let Ok(uid) = f[2].parse() else { continue };
            a.uid_names.entry(uid).or_insert_with(|| f[0].to_owned());
            a.users.insert(
                f[0].to_owned(),
                UserInfo {
                    uid,
                    home: f[5].into(),
                    shell: f[6].into(),
                    groups: members.remove(f[0]).unwrap_or_default(),
                },
            );
        }
        a
    }

    pub fn read(target: &Target) -> Result<Accounts, ObserveError> {
        let read = |p: &str| -> Result<String, ObserveError> {
            let path = target.path(Path::new(p));
            match fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(read_err(&path, e)),
            }
        };
        Ok(Accounts::parse(&read("/etc/passwd")?, &read("/etc/group")?))
    }

    pub fn uid(&self, name: &str) -> Option<u32> {
        self.users
            .get(name)
            .map(|u| u.uid)
            .or_else(|| name.parse().ok())
    }
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.group_ids
            .get(name)
            .copied()
            .or_else(|| name.parse().ok())
    }
    fn user_name(&self, uid: u32) -> String {
        self.uid_names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
    fn group_name(&self, gid: u32) -> String {
        self.gid_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

/// Reads one path (without following a final symlink).
pub fn observe_path(
    target: &Target,
    accounts: &Accounts,
    path: &Path,
    want: Option<(&[u8], bool)>,
) -> Result<PathState, ObserveError> {
    let real = target.path(path);
    let md = match fs::symlink_metadata(&real) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(PathState::Absent),
        Err(e) => return Err(read_err(&real, e)),
    };
    let meta = Meta {
        mode: md.mode() & 0o7777,
        owner: accounts.user_name(md.uid()),
        group: accounts.group_name(md.gid()),
    };
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = fs::read_link(&real).map_err(|e| read_err(&real, e))?;
        Ok(PathState::Symlink { target: t })
    } else if ft.is_dir() {
        Ok(PathState::Directory { meta })
    } else if ft.is_file() {
        let bytes = fs::read(&real).map_err(|e| read_err(&real, e))?;
        let sha256 = sha256_hex(&bytes);
        let text = match want {
            Some((content, sensitive))
                if !sensitive && content != bytes.as_slice() && bytes.len() <= DIFF_LIMIT =>
            {
                String::from_utf8(bytes).ok()
            }
            _ => None,
        };
        Ok(PathState::File { meta, sha256, text })
    } else {
        Ok(PathState::Other)
    }
}

/// Reads the ownership record (absent: kiln never ran here).
pub fn read_owned(target: &Target) -> Result<Owned, ObserveError> {
    let path = target.path(Path::new(OWNED_PATH));
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ObserveError::CorruptRecord {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Owned::default()),
        Err(e) => Err(read_err(&path, e)),
    }
}

/// Parses `systemctl show --property=Id,UnitFileState,ActiveState` output for `names`
/// (blocks separated by blank lines, in the order asked).
pub fn parse_systemctl_show(names: &[String], stdout: &str) -> BTreeMap<String, UnitStatus> {
    let mut out = BTreeMap::new();
    let blocks = stdout.split("\n\n").filter(|b| !b.trim().is_empty());
    for (name, block) in names.iter().zip(blocks) {
        let mut st = UnitStatus {
            enabled: false,
            active: false,
        };
        for line in block.lines() {
            match line.split_once('=') {
                Some(("UnitFileState", v)) => st.enabled = v.trim() == "enabled",
                Some(("ActiveState", v)) => {
                    st.active = matches!(v.trim(), "active" | "activating" | "reloading")
                }
                _ => {}
            }
        }
        out.insert(name.clone(), st);
    }
    out
}

/// The declared units kiln does not own yet that a package installed (a unit file in
/// [`VENDOR_UNIT_DIRS`]).
pub fn vendor_units(
    target: &Target,
    desired: &DesiredState,
    owned: &Owned,
) -> Result<BTreeSet<String>, ObserveError> {
    let mut found = BTreeSet::new();
    for u in desired
        .units
        .iter()
        .filter(|u| u.enablable() && !owned.units.contains(&u.name))
    {
        for dir in VENDOR_UNIT_DIRS {
            let real = target.path(&Path::new(dir).join(&u.name));
            match fs::metadata(&real) {
                Ok(m) if m.is_file() => {
                    found.insert(u.name.clone());
                    break;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
                Err(e) => return Err(read_err(&real, e)),
            }
        }
    }
    Ok(found)
}

/// Observes everything `desired` and the ownership record mention.
pub fn observe(
    target: &mut Target,
    facts: Option<&Facts>,
    desired: &DesiredState,
) -> Result<Observed, ObserveError> {
    let owned = read_owned(target)?;
    let accounts = Accounts::read(target)?;
    let mut obs = Observed {
        owned,
        ..Default::default()
    };

    // Paths: declared (with content for diffs) and owned.
    let mut want: BTreeMap<PathBuf, Option<(&[u8], bool)>> = BTreeMap::new();
    for f in &desired.files {
        want.insert(f.path.clone(), Some((f.content.bytes(), f.sensitive)));
    }
    for u in &desired.units {
        if let Some(path) = u.path() {
            want.insert(path, Some((u.content.bytes(), u.sensitive)));
        }
    }
    for p in desired
        .directories
        .iter()
        .map(|d| &d.path)
        .chain(desired.symlinks.iter().map(|s| &s.path))
    {
        want.entry(p.clone()).or_insert(None);
    }
    let owned_paths = obs
        .owned
        .files
        .iter()
        .chain(&obs.owned.directories)
        .chain(&obs.owned.symlinks)
        .cloned()
        .chain(obs.owned.units.iter().map(|u| obs.owned.unit_file(u)))
        .collect::<Vec<_>>();
    for p in owned_paths {
        want.entry(p).or_insert(None);
    }
    for (p, w) in want {
        let st = observe_path(target, &accounts, &p, w)?;
        obs.paths.insert(p, st);
    }

    // Units a package installed, that a unit file of kiln's would shadow.
    obs.vendor_units = vendor_units(target, desired, &obs.owned)?;

    // Accounts.
    for u in desired
        .users
        .iter()
        .map(|u| &u.name)
        .chain(&obs.owned.users)
    {
        if let Some(info) = accounts.users.get(u) {
            obs.users.insert(u.clone(), info.clone());
        }
    }
    for g in desired
        .groups
        .iter()
        .map(|g| &g.name)
        .chain(&obs.owned.groups)
    {
        if accounts.group_ids.contains_key(g) {
            obs.groups.insert(g.clone());
        }
    }

    // Packages: one query for all.
    let pkgs: BTreeSet<String> = desired
        .packages
        .iter()
        .map(|p| p.name.clone())
        .chain(obs.owned.packages.iter().cloned())
        .collect();
    if !pkgs.is_empty() {
        let Some(facts) = facts else {
            return Err(ObserveError::UnknownOs);
        };
        let pm = facts.package_manager();
        let names: Vec<String> = pkgs.into_iter().collect();
        let argv = pm.query(&names);
        let out = target
            .runner
            .run(&argv)
            .map_err(|e| ObserveError::Command {
                command: argv.args.join(" "),
                message: e.to_string(),
            })?;
        obs.packages = pm.parse_installed(&out.stdout).into_iter().collect();
    }

    // Units: one `systemctl show` for all.
    let units: BTreeSet<String> = desired
        .units
        .iter()
        .map(|u| u.name.clone())
        .chain(obs.owned.units.iter().cloned())
        .collect();
    if !units.is_empty() {
        if !target.is_real_root() {
            return Err(ObserveError::NeedsRealRoot("systemd units".into()));
        }
        let names: Vec<String> = units.into_iter().collect();
        let mut args = vec![
            "systemctl",
            "show",
            "--property=Id,UnitFileState,ActiveState",
            "--",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = target.run(&args).map_err(|e| ObserveError::Command {
            command: args.join(" "),
            message: e.to_string(),
        })?;
        if !out.success() {
            return Err(ObserveError::Command {
                command: args.join(" "),
                message: out.tail(),
            });
        }
        obs.units = parse_systemctl_show(&names, &out.stdout);
    }

    // Guards.
    for c in &desired.commands {
        if let Some(unless) = &c.unless {
            if !target.is_real_root() {
                return Err(ObserveError::NeedsRealRoot("commands".into()));
            }
            let out = target.shell(unless).map_err(|e| ObserveError::Command {
                command: unless.clone(),
                message: e.to_string(),
            })?;
            obs.guards.insert(c.name.clone(), out.success());
        }
    }

    // Ids of the accounts owning observed paths and of the declared owners.
    let metas = obs.paths.values().filter_map(|st| match st {
        PathState::File { meta, .. } | PathState::Directory { meta } => Some(meta),
        _ => None,
    });
    let owners = desired
        .directories
        .iter()
        .map(|d| (&d.owner, &d.group))
        .chain(desired.files.iter().map(|f| (&f.owner, &f.group)));
    for (user, group) in metas.map(|m| (&m.owner, &m.group)).chain(owners) {
        if let Some(uid) = accounts.users.get(user).map(|u| u.uid) {
            obs.uids.insert(user.clone(), uid);
        }
        if let Some(gid) = accounts.group_ids.get(group) {
            obs.gids.insert(group.clone(), *gid);
        }
    }

    // Preconditions: the files they name, when present.
    for p in &desired.preconditions {
        if let Some(text) = read_precondition(target, &p.path)? {
            obs.preconditions.insert(p.path.clone(), text);
        }
    }

    // Containers and images: one `podman ps -a` (and `podman images` when needed).
    if crate::podman::involved(desired) {
        if !target.is_real_root() {
            return Err(ObserveError::NeedsRealRoot("containers".into()));
        }
        let seen = crate::podman::containers_and_images(target, desired)?;
        obs.containers = seen.containers;
        obs.images = seen.images;
    }

    // Changed quadlet files: checked by the host's generator now, so a plan already
    // refuses them (without the generator, podman is not installed yet: apply checks).
    let quadlet_changes = desired.units.iter().any(|u| {
        matches!(u.kind, UnitKind::Quadlet { .. })
            && !matches!(u.path().and_then(|p| obs.paths.get(&p)), Some(PathState::File { sha256, .. })
                if *sha256 == sha256_hex(u.content.bytes()))
    });
    if quadlet_changes && target.is_real_root() && crate::podman::has_generator(target) {
        match crate::podman::check_quadlets(target, desired) {
            Ok(()) => {}
            Err(crate::podman::QuadletCheckError::Refused(r)) => obs.quadlet_refused = Some(r),
            Err(e) => {
                return Err(ObserveError::Command {
                    command: crate::podman::QUADLET_GENERATOR.into(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(obs)
}

/// The start of a precondition's file (absent: none).
fn read_precondition(target: &Target, path: &Path) -> Result<Option<String>, ObserveError> {
    use std::io::Read;
    let real = target.path(path);
    let f = match fs::File::open(&real) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => return Err(read_err(&real, e)),
    };
    let mut bytes = vec![];
    f.take(PRECONDITION_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(&real, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_users_groups_and_memberships() {
        let a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/bash\napp:x:998:998::/srv/app:/usr/sbin/nologin\n",
            "root:x:0:\napp:x:998:\nwww:x:33:app,other\n",
        );
        let app = &a.users["app"];
        assert_eq!(app.uid, 998);
        assert_eq!(app.home, PathBuf::from("/srv/app"));
        assert_eq!(app.groups, BTreeSet::from(["www".to_owned()]));
        assert_eq!(a.gid("www"), Some(33));
        assert_eq!(a.uid("1234"), Some(1234));
        assert_eq!(a.user_name(998), "app");
        assert_eq!(a.group_name(4242), "4242");
    }

    #[test]
    fn packages_and_units_are_observed_with_one_query_each() {
        use crate::resource::{Content, Package, Unit};
        use crate::system::{RunOutput, ScriptedRunner};
        let facts = Facts::from_os_release("ID=debian\n").unwrap();
        let out = |stdout: &str| RunOutput {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        };
        let runner = ScriptedRunner {
            expected: [
                (
                    facts.package_manager().query(&["htop".into(), "rsync".into()]).args,
                    RunOutput { code: Some(1), stdout: "htop\tinstalled\n".into(), stderr: "no packages found matching rsync\n".into() },
                ),
                (
                    ["systemctl", "show", "--property=Id,UnitFileState,ActiveState", "--", "kiln-observe-test.service"]
                        .map(String::from)
                        .to_vec(),
                    out("Id=kiln-observe-test.service\nUnitFileState=enabled\nActiveState=inactive\n"),
                ),
            ]
            .into(),
            ran: vec![],
        };
        let mut target = Target {
            root: "/".into(),
            runner: Box::new(runner),
        };
        let d = DesiredState {
            host: "t".into(),
            packages: vec![
                Package {
                    name: "htop".into(),
                },
                Package {
                    name: "rsync".into(),
                },
            ],
            units: vec![Unit::file("kiln-observe-test.service", Content::text(""))],
            ..Default::default()
        };
        let obs = observe(&mut target, Some(&facts), &d).unwrap();
        assert_eq!(obs.packages, BTreeSet::from(["htop".to_owned()]));
        assert_eq!(
            obs.units["kiln-observe-test.service"],
            UnitStatus {
                enabled: true,
                active: false
            }
        );
        // Without facts, packages cannot be observed: a clear error.
        let err = observe(&mut target, None, &d).unwrap_err();
        assert!(matches!(err, ObserveError::UnknownOs), "{err}");
    }

    #[test]
    fn units_a_package_installed_are_found_unless_kiln_owns_them() {
        use crate::resource::{Content, Unit};
        use crate::system::SystemRunner;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib/systemd/system")).unwrap();
        std::fs::write(dir.path().join("usr/lib/systemd/system/pkg.service"), "").unwrap();
        std::fs::write(dir.path().join("usr/lib/systemd/system/mine.service"), "").unwrap();
        let target = Target {
            root: dir.path().to_owned(),
            runner: Box::new(SystemRunner),
        };
        let d = DesiredState {
            units: ["pkg.service", "mine.service", "new.service"]
                .map(|n| Unit::file(n, Content::text("")))
                .into(),
            ..Default::default()
        };
        let mut owned = Owned::default();
        owned.units.insert("mine.service".into());
        assert_eq!(
            vendor_units(&target, &d, &owned).unwrap(),
            BTreeSet::from(["pkg.service".to_owned()])
        );
    }

    fn podman_target(script: Vec<(Vec<String>, crate::system::RunOutput)>) -> Target {
        Target {
            root: "/".into(),
            runner: Box::new(crate::system::ScriptedRunner {
                expected: script.into(),
                ran: vec![],
            }),
        }
    }

    fn ok(stdout: &str) -> crate::system::RunOutput {
        crate::system::RunOutput {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn image(reference: &str, container: Option<&str>) -> crate::resource::Image {
        crate::resource::Image {
            reference: reference.into(),
            service: container.map(str::to_owned),
            container: container.map(str::to_owned),
        }
    }

    const PS: &str = include_str!("../testdata/podman-5.4-ps-a.json");
    const IMAGES: &str = include_str!("../testdata/podman-5.4-images.json");

    #[test]
    fn images_run_by_containers_cost_one_podman_call_others_one_more() {
        use crate::podman::{images_argv, ps_argv};
        // Every declared image is run by a container: `podman ps -a` alone.
        let d = DesiredState {
            images: vec![image("docker.io/library/postgres:17", Some("pg"))],
            ..Default::default()
        };
        let mut t = podman_target(vec![(ps_argv(), ok(PS))]);
        let obs = observe(&mut t, None, &d).unwrap();
        assert_eq!(obs.containers["pg"].health.as_deref(), Some("healthy"));
        assert_eq!(
            obs.images,
            BTreeSet::from(["docker.io/library/postgres:17".to_owned()])
        );
        // One image no container runs: `podman images` once, for all of them.
        let digest = "sha256:a298834aa918c1ff582a1103419a54c5feb980498fc3f4eb98bbefbd64b4f155";
        let pinned = format!("docker.io/library/postgres:17@{digest}");
        let d = DesiredState {
            images: vec![
                image("docker.io/library/postgres:17", Some("pg")),
                image(&pinned, None),
                image("docker.io/library/redis:8", None),
            ],
            ..Default::default()
        };
        let mut t = podman_target(vec![(ps_argv(), ok(PS)), (images_argv(), ok(IMAGES))]);
        let obs = observe(&mut t, None, &d).unwrap();
        assert_eq!(
            obs.images,
            BTreeSet::from(["docker.io/library/postgres:17".to_owned(), pinned])
        );
        // Nothing about containers declared: podman is not asked.
        let mut t = podman_target(vec![]);
        assert!(observe(&mut t, None, &DesiredState::default()).is_ok());
    }

    #[test]
    fn without_podman_every_image_is_absent() {
        struct NoPodman;
        impl crate::system::Runner for NoPodman {
            fn run(
                &mut self,
                argv: &crate::facts::Argv,
            ) -> std::io::Result<crate::system::RunOutput> {
                assert_eq!(argv.args[0], "podman");
                Err(std::io::Error::new(
                    ErrorKind::NotFound,
                    "No such file or directory",
                ))
            }
        }
        let mut t = Target {
            root: "/".into(),
            runner: Box::new(NoPodman),
        };
        let d = DesiredState {
            images: vec![image("docker.io/library/postgres:17", Some("pg"))],
            ..Default::default()
        };
        let obs = observe(&mut t, None, &d).unwrap();
        assert!(obs.images.is_empty() && obs.containers.is_empty());
    }

    #[test]
    fn a_failing_podman_is_an_error_naming_the_command() {
        let mut t = podman_target(vec![(
            crate::podman::ps_argv(),
            crate::system::RunOutput {
                code: Some(125),
                stdout: String::new(),
                stderr: "Error: database is locked\n".into(),
            },
        )]);
        let d = DesiredState {
            images: vec![image("docker.io/library/postgres:17", None)],
            ..Default::default()
        };
        let err = observe(&mut t, None, &d).unwrap_err().to_string();
        assert_eq!(
            err,
            "`podman ps -a --format json` failed: Error: database is locked"
        );
    }

    #[test]
    fn preconditions_read_present_files_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let version = dir.path().join("PG_VERSION");
        std::fs::write(&version, "16\n").unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(10_000)).unwrap();
        let pre = |p: &Path| crate::resource::Precondition {
            path: p.to_owned(),
            expect: "17".into(),
            refusal: "no".into(),
        };
        let d = DesiredState {
            preconditions: vec![pre(&version), pre(&big), pre(&dir.path().join("absent"))],
            ..Default::default()
        };
        let mut t = podman_target(vec![]);
        let obs = observe(&mut t, None, &d).unwrap();
        assert_eq!(obs.preconditions.len(), 2);
        assert_eq!(obs.preconditions[&version], "16\n");
        assert_eq!(obs.preconditions[&big].len(), PRECONDITION_LIMIT as usize);
    }

    #[test]
    fn systemctl_show_blocks_map_to_units_in_order() {
        let out = "Id=a.service\nActiveState=active\nUnitFileState=enabled\n\n\
                   Id=b.service\nActiveState=inactive\nUnitFileState=disabled\n\n\
                   Id=c.service\nActiveState=inactive\nUnitFileState=\n";
        let names = vec![
            "a.service".to_owned(),
            "b.service".to_owned(),
            "c.service".to_owned(),
        ];
        let m = parse_systemctl_show(&names, out);
        assert_eq!(
            m["a.service"],
            UnitStatus {
                enabled: true,
                active: true
            }
        );
        assert_eq!(
            m["b.service"],
            UnitStatus {
                enabled: false,
                active: false
            }
        );
        assert_eq!(
            m["c.service"],
            UnitStatus {
                enabled: false,
                active: false
            }
        );
    }
}
