//! Podman as kiln sees it: the argv of the few podman calls observation and apply make
//! (`podman ps -a --format json`, `podman images --format json`, `podman pull`,
//! `podman inspect` of a container's health), the parsing of their output, image
//! reference matching, the wording of an image version change, and the check of quadlet
//! files with the host's own generator (`podman-system-generator --dryrun`).
//!
//! Parsing and matching are pure; [`check_quadlets`] and [`containers_and_images`] run
//! commands through the [`Target`]'s runner and change nothing on the host (the quadlet
//! check writes only into a temporary folder of its own). Must not plan or apply: observe
//! and apply call in here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::facts::Argv;
use crate::resource::{DesiredState, Image, Unit, UnitKind};
use crate::system::Target;

/// The host's quadlet generator (podman ≥ 4.4; a symlink to `/usr/libexec/podman/quadlet`).
pub const QUADLET_GENERATOR: &str = "/usr/lib/systemd/system-generators/podman-system-generator";

/// A container as `podman ps -a` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The image reference the container was created from (`docker.io/library/postgres:17`).
    pub image: String,
    /// `running`, `created`, `exited`, `paused`…
    pub state: String,
    /// `healthy`, `unhealthy` or `starting` when the container has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// When it last started (Unix seconds); none if it never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    pub id: String,
    /// The systemd unit running it (the `PODMAN_SYSTEMD_UNIT` label quadlets set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

pub fn ps_argv() -> Vec<String> {
    ["podman", "ps", "-a", "--format", "json"]
        .map(String::from)
        .into()
}

pub fn images_argv() -> Vec<String> {
    ["podman", "images", "--format", "json"]
        .map(String::from)
        .into()
}

pub fn pull_argv(reference: &str) -> Vec<String> {
    vec![
        "podman".into(),
        "pull".into(),
        "--".into(),
        reference.into(),
    ]
}

/// The health of one container with the output of its last check, in one call (the
/// container may be gone a moment later: systemd removes it when its start times out).
pub fn health_argv(container: &str) -> Vec<String> {
    vec![
        "podman".into(),
        "inspect".into(),
        "--format".into(),
        "{{json .State.Health}}".into(),
        "--".into(),
        container.into(),
    ]
}

#[derive(Deserialize)]
struct PsEntry {
    #[serde(rename = "Id", default)]
    id: String,
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "StartedAt", default)]
    started_at: Option<i64>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Parses `podman ps -a --format json` (Podman 4 and 5): containers by name.
pub fn parse_ps(json: &str) -> Result<BTreeMap<String, ContainerState>, String> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let entries: Vec<PsEntry> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for e in entries {
        // The health is only in the status text: "Up 3 seconds (healthy)".
        let health = ["healthy", "unhealthy", "starting"]
            .into_iter()
            .find(|h| e.status.ends_with(&format!("({h})")))
            .map(str::to_owned);
        let st = ContainerState {
            image: e.image,
            state: e.state,
            health,
            // Never started: Go's zero time (-62135596800).
            started_at: e.started_at.filter(|t| *t > 0),
            id: e.id,
            unit: e
                .labels
                .and_then(|mut l| l.remove("PODMAN_SYSTEMD_UNIT"))
                .filter(|u| !u.is_empty()),
        };
        for n in e.names {
            out.insert(n, st.clone());
        }
    }
    Ok(out)
}

/// An image the host holds, as `podman images --format json` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LocalImage {
    /// `repository:tag` names.
    #[serde(rename = "Names", default, deserialize_with = "null_is_empty")]
    pub names: Vec<String>,
    /// `repository@sha256:…`.
    #[serde(rename = "RepoDigests", default, deserialize_with = "null_is_empty")]
    pub repo_digests: Vec<String>,
    #[serde(rename = "Digest", default)]
    pub digest: String,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

pub fn parse_images(json: &str) -> Result<Vec<LocalImage>, String> {
    if json.trim().is_empty() {
        return Ok(vec![]);
    }
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// An image reference split as Podman resolves it: Docker Hub names completed
/// (`postgres:17` is `docker.io/library/postgres:17`), `latest` when no tag nor digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(reference: &str) -> Reference {
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d.to_owned())),
            None => (reference, None),
        };
        let last = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last..].rfind(':') {
            Some(i) => (&name[..last + i], Some(name[last + i + 1..].to_owned())),
            None => (name, None),
        };
        let first = repo.split('/').next().unwrap_or_default();
        let has_registry = repo.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let repository = if has_registry {
            repo.to_owned()
        } else if repo.contains('/') {
            format!("docker.io/{repo}")
        } else {
            format!("docker.io/library/{repo}")
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Reference {
            repository,
            tag,
            digest,
        }
    }

    /// Whether `other` names the same image: the same digest when both have one, else the
    /// same repository and tag.
    pub fn same_image(&self, other: &Reference) -> bool {
        match (&self.digest, &other.digest) {
            (Some(a), Some(b)) => a == b,
            _ => self.repository == other.repository && self.tag == other.tag,
        }
    }
}

/// Whether `reference` is among the images the host holds: `name:tag` when an image has
/// that name, `name:tag@sha256:…` when an image with that digest is there.
pub fn image_present(reference: &str, images: &[LocalImage]) -> bool {
    let want = Reference::parse(reference);
    images.iter().any(|img| match &want.digest {
        Some(d) => {
            img.digest == *d
                || img
                    .repo_digests
                    .iter()
                    .any(|r| r.rsplit_once('@').is_some_and(|(_, x)| x == d))
        }
        None => img.names.iter().any(|n| {
            let have = Reference::parse(n);
            have.repository == want.repository && have.tag == want.tag
        }),
    })
}

/// Whether a container was created from `reference` (so the image is on the host: Podman
/// keeps an image a container uses).
pub fn run_by_a_container(reference: &str, containers: &BTreeMap<String, ContainerState>) -> bool {
    let want = Reference::parse(reference);
    containers.values().any(|c| {
        let have = Reference::parse(&c.image);
        match (&want.digest, &have.digest) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
            (None, _) => have.repository == want.repository && have.tag == want.tag,
        }
    })
}

fn short(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("@sha256:{}", &hex[..hex.len().min(12)])
}

/// The version a user sets back to go from `to` back to `from`: the tag when the
/// repository stays (`v1.117.0`), else the whole reference.
pub fn version_of(from: &str, to: &str) -> String {
    let (a, b) = (Reference::parse(from), Reference::parse(to));
    match (&a.tag, a.repository == b.repository) {
        (Some(t), true) => t.clone(),
        _ => from.to_owned(),
    }
}

/// How a plan says that `service`'s container goes from image `from` to `to`:
/// `synapse v1.117.0 → v1.118.0` (same repository: tags, with short digests when only
/// those differ), else the full references.
pub fn version_change(service: &str, from: &str, to: &str) -> String {
    let (a, b) = (Reference::parse(from), Reference::parse(to));
    if a.repository != b.repository {
        return format!("{service} {from} → {to}");
    }
    let show = |r: &Reference, digest: bool| {
        let mut s = r.tag.clone().unwrap_or_default();
        if digest && let Some(d) = &r.digest {
            s.push_str(&short(d));
        }
        s
    };
    let digests = a.tag == b.tag;
    format!("{service} {} → {}", show(&a, digests), show(&b, digests))
}

/// The value of a `Key=` line of a quadlet or unit file (last one wins, as in systemd).
pub fn unit_key(content: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
}

/// The container a declared unit runs: its health check's, else its quadlet's
/// `ContainerName=`, else Podman's default name for a `.container` quadlet (`systemd-NAME`).
pub fn container_of(unit: &Unit) -> Option<String> {
    if let Some(h) = &unit.health {
        return Some(h.container.clone());
    }
    let UnitKind::Quadlet { file } = &unit.kind else {
        return None;
    };
    let stem = file.strip_suffix(".container")?;
    Some(unit_key(unit.content.bytes(), "ContainerName").unwrap_or(format!("systemd-{stem}")))
}

/// The declared unit running `image`'s container (by container name, or a quadlet whose
/// `Image=` is this reference).
pub fn unit_of_image<'a>(desired: &'a DesiredState, image: &Image) -> Option<&'a Unit> {
    let by_container = image.container.as_ref().and_then(|c| {
        desired
            .units
            .iter()
            .find(|u| container_of(u).as_deref() == Some(c.as_str()))
    });
    by_container.or_else(|| {
        desired.units.iter().find(|u| {
            matches!(u.kind, UnitKind::Quadlet { .. })
                && unit_key(u.content.bytes(), "Image").as_deref() == Some(image.reference.as_str())
        })
    })
}

/// Whether the desired state involves containers (images, health checks or quadlets):
/// only then does observation ask Podman anything.
pub fn involved(desired: &DesiredState) -> bool {
    !desired.images.is_empty()
        || desired
            .units
            .iter()
            .any(|u| u.health.is_some() || matches!(u.kind, UnitKind::Quadlet { .. }))
}

/// What observation learns from Podman.
#[derive(Debug, Default)]
pub struct Seen {
    pub containers: BTreeMap<String, ContainerState>,
    /// The declared image references the host holds.
    pub images: BTreeSet<String>,
    /// How many podman processes it took (for tests and measurements).
    pub calls: usize,
}

/// A podman call failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct PodmanError {
    pub command: String,
    pub message: String,
}

/// Runs `argv`; `Ok(None)` when podman is not installed.
fn run_podman(target: &mut Target, args: Vec<String>) -> Result<Option<String>, PodmanError> {
    let command = args.join(" ");
    match target.runner.run(&Argv { env: vec![], args }) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PodmanError {
            command,
            message: e.to_string(),
        }),
        Ok(out) if out.success() => Ok(Some(out.stdout)),
        Ok(out) => Err(PodmanError {
            command,
            message: out.tail(),
        }),
    }
}

/// The host's containers, in one `podman ps -a`, and which declared images it holds:
/// those its containers run, plus (one `podman images`, only when some declared image is
/// not run by a container) the others. Podman not installed: no containers, no images.
pub fn containers_and_images(
    target: &mut Target,
    desired: &DesiredState,
) -> Result<Seen, PodmanError> {
    let mut seen = Seen::default();
    if !involved(desired) {
        return Ok(seen);
    }
    seen.calls += 1;
    let Some(ps) = run_podman(target, ps_argv())? else {
        return Ok(seen);
    };
    seen.containers = parse_ps(&ps).map_err(|message| PodmanError {
        command: ps_argv().join(" "),
        message: format!("unexpected output: {message}"),
    })?;
    let (explained, rest): (Vec<&Image>, Vec<&Image>) = desired
        .images
        .iter()
        .partition(|i| run_by_a_container(&i.reference, &seen.containers));
    seen.images
        .extend(explained.iter().map(|i| i.reference.clone()));
    if !rest.is_empty() {
        seen.calls += 1;
        let Some(out) = run_podman(target, images_argv())? else {
            return Ok(seen);
        };
        let local = parse_images(&out).map_err(|message| PodmanError {
            command: images_argv().join(" "),
            message: format!("unexpected output: {message}"),
        })?;
        seen.images.extend(
            rest.iter()
                .filter(|i| image_present(&i.reference, &local))
                .map(|i| i.reference.clone()),
        );
    }
    Ok(seen)
}

/// Podman's generator refused the host's quadlet files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: refused by podman's quadlet generator: {message}", describe(.refused))]
pub struct QuadletRefusal {
    /// (unit, quadlet file) of the files it names; all of them when it names none.
    pub refused: Vec<(String, String)>,
    /// Its message (the lines saying what is wrong).
    pub message: String,
}

fn describe(refused: &[(String, String)]) -> String {
    let v: Vec<String> = refused
        .iter()
        .map(|(u, f)| format!("unit {u} (quadlet {f})"))
        .collect();
    v.join(", ")
}

/// The declared quadlets, as (unit, file name).
fn quadlets(desired: &DesiredState) -> Vec<(&Unit, &str)> {
    desired
        .units
        .iter()
        .filter_map(|u| match &u.kind {
            UnitKind::Quadlet { file } => Some((u, file.as_str())),
            UnitKind::File | UnitKind::Packaged => None,
        })
        .collect()
}

/// Whether the host has the quadlet generator (podman installed).
pub fn has_generator(target: &Target) -> bool {
    target.path(Path::new(QUADLET_GENERATOR)).exists()
}

/// Checks every declared quadlet file of the host with the host's own generator, before
/// any is installed: writes them into a fresh temporary folder (root only) and runs
/// `QUADLET_UNIT_DIRS=<it> podman-system-generator --dryrun`, which exits 1 naming the
/// file it cannot convert (an unknown key of `[Container]`, no `Image=`…). Keys of
/// `[Service]` are not checked by it.
pub fn check_quadlets(
    target: &mut Target,
    desired: &DesiredState,
) -> Result<(), QuadletCheckError> {
    let files = quadlets(desired);
    if files.is_empty() {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-quadlet-check.")
        .tempdir()
        .map_err(|e| QuadletCheckError::Io(e.to_string()))?;
    for (u, file) in &files {
        let p = dir.path().join(file);
        crate::apply::write_file_atomic(&p, u.content.bytes(), 0o600, 0, 0)
            .map_err(|e| QuadletCheckError::Io(e.to_string()))?;
    }
    let argv = Argv {
        env: vec![("QUADLET_UNIT_DIRS".into(), dir.path().display().to_string())],
        args: vec![QUADLET_GENERATOR.into(), "--dryrun".into()],
    };
    let out = target
        .runner
        .run(&argv)
        .map_err(|e| QuadletCheckError::Io(format!("{QUADLET_GENERATOR}: {e}")))?;
    if out.success() {
        return Ok(());
    }
    Err(QuadletCheckError::Refused(refusal(
        &files,
        &out.stderr,
        &dir.path().display().to_string(),
    )))
}

/// What the generator's stderr says about `files` (its "Loading source unit file" lines
/// left out, its own prefix and the temporary folder dropped).
pub fn refusal(files: &[(&Unit, &str)], stderr: &str, tmp: &str) -> QuadletRefusal {
    let lines: Vec<String> = stderr
        .lines()
        .map(|l| match l.split_once("]: ") {
            Some((p, rest)) if p.starts_with("quadlet-generator[") => rest,
            _ => l,
        })
        .filter(|l| !l.starts_with("Loading source unit file") && !l.trim().is_empty())
        .map(|l| l.replace(&format!("{tmp}/"), ""))
        .collect();
    let message = if lines.is_empty() {
        "it exited with an error and said nothing".to_owned()
    } else {
        lines.join("; ")
    };
    let named: Vec<(String, String)> = files
        .iter()
        .filter(|(_, f)| message.contains(&format!("\"{f}\"")))
        .map(|(u, f)| (u.name.clone(), (*f).to_owned()))
        .collect();
    let refused = if named.is_empty() {
        files
            .iter()
            .map(|(u, f)| (u.name.clone(), (*f).to_owned()))
            .collect()
    } else {
        named
    };
    QuadletRefusal { refused, message }
}

/// The quadlet check could not be made, or refused the files.
#[derive(Debug, thiserror::Error)]
pub enum QuadletCheckError {
    #[error(transparent)]
    Refused(QuadletRefusal),
    #[error("cannot check the quadlet files: {0}")]
    Io(String),
}

/// A container's health as `podman inspect --format '{{json .State.Health}}'` says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// `healthy`, `unhealthy`, `starting`; empty when the container has no health check.
    pub status: String,
    /// The output of its last check, with its exit code.
    pub last: Option<(i64, String)>,
}

pub fn parse_health(json: &str) -> Result<HealthReport, String> {
    #[derive(Deserialize)]
    struct Log {
        #[serde(rename = "ExitCode", default)]
        exit_code: i64,
        #[serde(rename = "Output", default)]
        output: String,
    }
    #[derive(Deserialize)]
    struct Health {
        #[serde(rename = "Status", default)]
        status: String,
        #[serde(rename = "Log", default)]
        log: Option<Vec<Log>>,
    }
    let t = json.trim();
    if t.is_empty() || t == "null" {
        return Ok(HealthReport::default());
    }
    let h: Health = serde_json::from_str(t).map_err(|e| e.to_string())?;
    Ok(HealthReport {
        status: h.status,
        last: h
            .log
            .unwrap_or_default()
            .pop()
            .map(|l| (l.exit_code, l.output.trim_end().to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = include_str!("../testdata/podman-5.4-ps-a.json");
    const IMAGES: &str = include_str!("../testdata/podman-5.4-images.json");

    #[test]
    fn ps_output_of_podman_5_gives_containers_by_name_with_health_and_start() {
        let c = parse_ps(PS).unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        let pg = &c["pg"];
        assert_eq!(pg.image, "docker.io/library/postgres:17");
        assert_eq!(pg.state, "running");
        assert_eq!(pg.health.as_deref(), Some("healthy"));
        assert_eq!(pg.started_at, Some(1796190824));
        assert_eq!(pg.unit.as_deref(), Some("pg.service"));
        assert!(pg.id.starts_with("3e37f89d64c5"), "{}", pg.id);
        let stopped = &c["stopped"];
        assert_eq!(stopped.state, "created");
        assert_eq!(
            (stopped.health.as_deref(), stopped.started_at),
            (None, None)
        );
        assert_eq!(stopped.unit, None);
        assert!(parse_ps("").unwrap().is_empty());
        assert!(parse_ps("[]").unwrap().is_empty());
        assert!(parse_ps("Error: oops").is_err());
    }

    #[test]
    fn references_resolve_like_podman_and_match_names_or_digests() {
        let r = Reference::parse("postgres:17");
        assert_eq!(r.repository, "docker.io/library/postgres");
        assert_eq!(r.tag.as_deref(), Some("17"));
        let r = Reference::parse("matrixdotorg/synapse");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("docker.io/matrixdotorg/synapse", Some("latest"))
        );
        let r = Reference::parse("localhost:5000/app:1@sha256:abc");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("localhost:5000/app", Some("1"), Some("sha256:abc"))
        );

        let images = parse_images(IMAGES).unwrap();
        assert!(image_present("docker.io/library/postgres:17", &images));
        assert!(image_present("postgres:17", &images));
        assert!(image_present("localhost/postgres:17", &images));
        assert!(!image_present("docker.io/library/postgres:16", &images));
        assert!(!image_present("docker.io/library/redis:17", &images));
        let digest = "sha256:a298834aa918c1ff582a1103419a54c5feb980498fc3f4eb98bbefbd64b4f155";
        assert!(image_present(
            &format!("docker.io/library/postgres:17@{digest}"),
            &images
        ));
        assert!(!image_present(
            "docker.io/library/postgres:17@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            &images
        ));

        let containers = parse_ps(PS).unwrap();
        assert!(run_by_a_container(
            "docker.io/library/postgres:17",
            &containers
        ));
        assert!(run_by_a_container("postgres:17", &containers));
        assert!(!run_by_a_container(
            "docker.io/library/postgres:18",
            &containers
        ));
        // A pinned digest is only known from the images list.
        assert!(!run_by_a_container(
            &format!("docker.io/library/postgres:17@{digest}"),
            &containers
        ));
    }

    #[test]
    fn version_changes_are_worded_by_tag_or_full_reference() {
        assert_eq!(
            version_change(
                "synapse",
                "docker.io/matrixdotorg/synapse:v1.117.0",
                "docker.io/matrixdotorg/synapse:v1.118.0"
            ),
            "synapse v1.117.0 → v1.118.0"
        );
        assert_eq!(
            version_change("db", "postgres:16", "docker.io/library/postgres:17"),
            "db 16 → 17"
        );
        assert_eq!(
            version_change("web", "docker.io/library/caddy:2", "ghcr.io/acme/caddy:2"),
            "web docker.io/library/caddy:2 → ghcr.io/acme/caddy:2"
        );
        assert_eq!(
            version_change(
                "app",
                "x/app:1@sha256:aaaaaaaaaaaaaaaa",
                "x/app:1@sha256:bbbbbbbbbbbbbbbb"
            ),
            "app 1@sha256:aaaaaaaaaaaa → 1@sha256:bbbbbbbbbbbb"
        );
        assert_eq!(
            version_of(
                "docker.io/matrixdotorg/synapse:v1.117.0",
                "matrixdotorg/synapse:v1.118.0"
            ),
            "v1.117.0"
        );
        assert_eq!(
            version_of("docker.io/library/caddy:2", "ghcr.io/acme/caddy:2"),
            "docker.io/library/caddy:2"
        );
    }

    #[test]
    fn containers_of_units_come_from_health_container_name_or_quadlet_default() {
        use crate::resource::{Content, Health};
        let mut u = Unit::quadlet(
            "web.container",
            Content::text("[Container]\nImage=x\nContainerName=site\n"),
        )
        .unwrap();
        assert_eq!(container_of(&u).as_deref(), Some("site"));
        u.content = Content::text("[Container]\nImage=x\n");
        assert_eq!(container_of(&u).as_deref(), Some("systemd-web"));
        u.health = Some(Health {
            container: "web1".into(),
            timeout_s: 5,
        });
        assert_eq!(container_of(&u).as_deref(), Some("web1"));
        assert_eq!(
            container_of(&Unit::file("a.service", Content::text(""))),
            None
        );
    }

    #[test]
    fn the_generator_s_refusal_names_the_bad_file_and_quotes_its_message() {
        use crate::resource::Content;
        let good = Unit::quadlet("good.container", Content::text("")).unwrap();
        let bad = Unit::quadlet("bad.container", Content::text("")).unwrap();
        let files = [(&bad, "bad.container"), (&good, "good.container")];
        let stderr = "quadlet-generator[1867]: Loading source unit file /tmp/tmp.5I/bad.container\n\
                      quadlet-generator[1867]: Loading source unit file /tmp/tmp.5I/good.container\n\
                      quadlet-generator[1867]: converting \"bad.container\": unsupported key 'Imagee' in group 'Container' in /tmp/tmp.5I/bad.container\n";
        let r = refusal(&files, stderr, "/tmp/tmp.5I");
        assert_eq!(
            r.refused,
            [("bad.service".to_owned(), "bad.container".to_owned())]
        );
        assert_eq!(
            r.to_string(),
            "unit bad.service (quadlet bad.container): refused by podman's quadlet generator: converting \"bad.container\": unsupported key 'Imagee' in group 'Container' in bad.container"
        );
        let r = refusal(&files, "", "/tmp/x");
        assert_eq!(r.refused.len(), 2);
    }

    #[test]
    fn the_quadlet_check_runs_the_generator_on_every_declared_quadlet_in_a_folder_of_its_own() {
        use crate::resource::Content;
        use crate::system::{RunOutput, Runner};
        struct Generator(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl Runner for Generator {
            fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput> {
                assert_eq!(argv.args, [QUADLET_GENERATOR, "--dryrun"]);
                let (k, dir) = &argv.env[0];
                assert_eq!(k, "QUADLET_UNIT_DIRS");
                let mut names: Vec<String> = std::fs::read_dir(dir)?
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                *self.0.lock().unwrap() = names;
                Ok(RunOutput {
                    code: Some(1),
                    stdout: String::new(),
                    stderr: format!(
                        "quadlet-generator[9]: converting \"web.container\": no Image or Rootfs key specified in {dir}/web.container\n"
                    ),
                })
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let mut t = Target {
            root: "/".into(),
            runner: Box::new(Generator(seen.clone())),
        };
        let d = DesiredState {
            units: vec![
                Unit::quadlet("web.container", Content::text("[Container]\n")).unwrap(),
                Unit::quadlet("data.volume", Content::text("[Volume]\n")).unwrap(),
                Unit::file("other.service", Content::text("")),
            ],
            ..Default::default()
        };
        let Err(QuadletCheckError::Refused(r)) = check_quadlets(&mut t, &d) else {
            panic!("refused")
        };
        assert_eq!(*seen.lock().unwrap(), ["data.volume", "web.container"]);
        assert_eq!(
            r.refused,
            [("web.service".to_owned(), "web.container".to_owned())]
        );
        assert_eq!(
            r.message,
            "converting \"web.container\": no Image or Rootfs key specified in web.container"
        );
    }

    #[test]
    fn health_inspect_output_gives_status_and_last_check() {
        let h = parse_health(r#"{"Status":"unhealthy","FailingStreak":3,"Log":[{"Start":"a","End":"b","ExitCode":0,"Output":"ok\n"},{"Start":"c","End":"d","ExitCode":1,"Output":"/var/run/postgresql:5432 - no response\n"}]}"#).unwrap();
        assert_eq!(h.status, "unhealthy");
        assert_eq!(
            h.last,
            Some((1, "/var/run/postgresql:5432 - no response".into()))
        );
        assert_eq!(parse_health("null").unwrap(), HealthReport::default());
        let h = parse_health(r#"{"Status":"starting","FailingStreak":0,"Log":null}"#).unwrap();
        assert_eq!((h.status.as_str(), h.last), ("starting", None));
    }
}
