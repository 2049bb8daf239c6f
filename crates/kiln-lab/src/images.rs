//! Local container images without a registry: root trees built from Debian packages (and PyPI
//! for Synapse) in a chroot, honouring the upstream images' contract (paths, environment
//! variables, ports, first-start initialisation), cached as zstd tarballs, and imported with
//! `podman import --change ...` into a lab server on demand, also under the upstream name so a
//! recipe written for the upstream image runs unchanged.
//!
//! [`for_upstream`] maps an upstream `name:tag` to the recipe serving it. HedgeDoc and
//! Nextcloud cannot be built here (lab-apps.md): they are served by **contract images**
//! (`localhost/kiln-contract/<app>`, the server in `images/contract/contract.py`), test doubles
//! of kiln's side of the upstream images' documented contracts, never evidence that the
//! applications work; no code of those applications enters this crate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::event::LabEvent;
use crate::image::{SUITE, fnv1a};
use crate::layout::Roots;
use crate::mirror::AptMirror;

/// How to build one image. Owned: a recipe can depend on a tag known only at run time
/// (Synapse built for the version an upstream reference names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecipe {
    /// Local name: the image is `localhost/<name>:<tag>`.
    pub name: String,
    pub tag: String,
    /// Builds kept side by side in the cache: a new build replaces older builds (another
    /// recipe version) of the same name and series only (Synapse 1.161.0 stays next to
    /// 1.162.0; every tag of a contract image shares one tree and one series).
    pub series: String,
    /// Upstream references the image is also tagged as (e.g. `docker.io/library/postgres:17`).
    pub aliases: Vec<String>,
    /// A contract image: a test double of kiln's side of an upstream image's documented
    /// contract (`localhost/kiln-contract/...`), never evidence that the application works.
    pub contract: bool,
    /// Shell run in the chroot before installing packages (users with fixed ids, policies).
    pub pre_install: String,
    /// Debian packages (installed without recommends).
    pub packages: Vec<String>,
    /// Shell run in the chroot after installing packages.
    pub post_install: String,
    /// Files written into the tree: (path, mode, content).
    pub files: Vec<(String, u32, String)>,
    /// `podman import --change` instructions (ENV, ENTRYPOINT, CMD, EXPOSE, VOLUME, ...),
    /// applied at import: not part of the cached tree.
    pub changes: Vec<String>,
}

impl ImageRecipe {
    pub fn reference(&self) -> String {
        format!("localhost/{}:{}", self.name, self.tag)
    }

    /// Everything that changes the tree (suite, mirror, packages, scripts, files; Synapse's
    /// version is in its post-install script). Not the tag, the aliases or the import
    /// changes: those are applied when the tree is imported, so every upstream tag a tree
    /// serves shares one build.
    fn cache_key(&self, mirror: &AptMirror) -> String {
        let text = format!(
            "{SUITE}|{}|{:?}|{}|{:?}|{}",
            mirror.debian, self.packages, self.pre_install, self.files, self.post_install,
        );
        format!("{:012x}", fnv1a(text.as_bytes()) & 0xffff_ffff_ffff)
    }

    /// The cached tarball's file name: `<name>-<series>@<key>.tar.zst` (`/` in a name as
    /// `_`). `@` cannot be in a tag, so no series' prefix is another's; nor does it match the
    /// `<name>-<tag>-` prefix of the earlier naming, whose pruning would delete these files.
    fn cache_file(&self, mirror: &AptMirror) -> String {
        format!("{}{}.tar.zst", self.cache_prefix(), self.cache_key(mirror))
    }

    fn cache_prefix(&self) -> String {
        format!("{}-{}@", self.name.replace('/', "_"), self.series)
    }
}

/// An upstream image made available on a lab server by [`crate::Lab::provide_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidedImage {
    /// The reference as the recipe names it (`docker.io/library/nextcloud:31`).
    pub upstream: String,
    /// The lab image serving it (`localhost/kiln-contract/nextcloud:31`).
    pub local: String,
    /// A contract image: a test double of kiln's side of the upstream image's contract,
    /// never evidence that the application works.
    pub contract: bool,
    /// Imported now (false: the server already had the reference).
    pub imported: bool,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const POSTGRES_ENTRYPOINT: &str = include_str!("../images/postgres/docker-entrypoint.sh");
const CADDY_FILE: &str = include_str!("../images/caddy/Caddyfile");
const SYNAPSE_START: &str = include_str!("../images/synapse/start.sh");
const CONTRACT_SERVER: &str = include_str!("../images/contract/contract.py");
const CONTRACT_PHP: &str = include_str!("../images/contract/php");

const NO_DAEMONS: &str =
    "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d\n";

/// The PostgreSQL major version Debian 13 ships (the only one the lab can serve).
pub const POSTGRES_MAJOR: u32 = 17;

/// The PostgreSQL image: Debian's postgresql-17 with the upstream image's contract
/// (POSTGRES_PASSWORD/USER/DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, PGDATA at
/// /var/lib/postgresql/data, /docker-entrypoint-initdb.d, port 5432, user postgres uid 999).
pub fn postgres() -> ImageRecipe {
    ImageRecipe {
        name: "postgres".into(),
        tag: "17".into(),
        series: "17".into(),
        aliases: strings(&["docker.io/library/postgres:17"]),
        contract: false,
        pre_install: "groupadd -r -g 999 postgres && useradd -r -u 999 -g postgres -d /var/lib/postgresql -s /bin/bash postgres\nmkdir -p /etc/postgresql-common/createcluster.d\necho 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/kiln-lab.conf\n".into(),
        packages: strings(&[
            "postgresql-17",
            "postgresql-client-17",
            "gzip",
            "tzdata",
            "locales",
        ]),
        post_install: "localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8\nmkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql\nchown -R postgres:postgres /var/lib/postgresql /var/run/postgresql\nchmod 3777 /var/run/postgresql\nchmod 1777 /var/lib/postgresql/data\n".into(),
        files: vec![(
            "/usr/local/bin/docker-entrypoint.sh".into(),
            0o755,
            POSTGRES_ENTRYPOINT.into(),
        )],
        changes: strings(&[
            "ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PG_MAJOR=17",
            "ENV PGDATA=/var/lib/postgresql/data",
            "ENV LANG=en_US.utf8",
            "VOLUME /var/lib/postgresql/data",
            "ENTRYPOINT [\"docker-entrypoint.sh\"]",
            "CMD [\"postgres\"]",
            "STOPSIGNAL SIGINT",
            "EXPOSE 5432",
        ]),
    }
}

/// The Caddy image: Debian's caddy with the upstream image's layout (/etc/caddy/Caddyfile,
/// serving /usr/share/caddy, /data, /config, /srv, ports 80/443/2019,
/// XDG_CONFIG_HOME/XDG_DATA_HOME, and `wget` as the upstream image's busybox has it, for
/// health checks).
pub fn caddy() -> ImageRecipe {
    ImageRecipe {
        name: "caddy".into(),
        tag: "2".into(),
        series: "2".into(),
        aliases: strings(&["docker.io/library/caddy:2"]),
        contract: false,
        pre_install: String::new(),
        packages: strings(&["caddy", "ca-certificates", "wget"]),
        post_install: "mkdir -p /config/caddy /data/caddy /srv /etc/caddy\n".into(),
        files: vec![("/etc/caddy/Caddyfile".into(), 0o644, CADDY_FILE.into())],
        changes: strings(&[
            "ENV XDG_CONFIG_HOME=/config",
            "ENV XDG_DATA_HOME=/data",
            "VOLUME /config",
            "VOLUME /data",
            "WORKDIR /srv",
            "CMD [\"caddy\", \"run\", \"--config\", \"/etc/caddy/Caddyfile\", \"--adapter\", \"caddyfile\"]",
            "EXPOSE 80",
            "EXPOSE 443",
            "EXPOSE 2019",
        ]),
    }
}

/// The Synapse image: matrix-synapse from PyPI in a venv, with the upstream image's contract
/// (`/data` volume, SYNAPSE_SERVER_NAME / SYNAPSE_REPORT_STATS, `generate` mode, port 8008,
/// UID/GID 991, curl for the health check). The newest release PyPI has at build time.
pub fn synapse() -> ImageRecipe {
    synapse_recipe("latest", None)
}

/// The Synapse image built for exactly `version` (`1.162.0`, from PyPI's `matrix-synapse`),
/// tagged `localhost/synapse:v<version>`: two releases side by side make an upgrade testable.
pub fn synapse_version(version: &str) -> Result<ImageRecipe, LabError> {
    if !is_synapse_version(version) {
        return Err(LabError::Image {
            image: format!("docker.io/matrixdotorg/synapse:v{version}"),
            message: format!(
                "`{version}` is not a Synapse release version (X.Y.Z, or X.Y.ZrcN for a release candidate)"
            ),
        });
    }
    Ok(synapse_recipe(&format!("v{version}"), Some(version)))
}

fn is_synapse_version(v: &str) -> bool {
    let (release, rc) = match v.split_once("rc") {
        Some((r, n)) => (r, Some(n)),
        None => (v, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = release.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| numeric(p)) && rc.is_none_or(numeric)
}

fn synapse_recipe(tag: &str, version: Option<&str>) -> ImageRecipe {
    let (requirement, check) = match version {
        Some(v) => (
            format!("matrix-synapse=={v}"),
            // The venv holds exactly the version asked for.
            format!(
                "/opt/synapse/bin/python -c {}\n",
                kiln_shell::quote(&format!(
                    "import synapse, sys; sys.exit(0 if synapse.__version__ == {v:?} else 'synapse ' + synapse.__version__ + ' installed, not {v}')"
                ))
            ),
        ),
        None => ("matrix-synapse".to_string(), String::new()),
    };
    ImageRecipe {
        name: "synapse".into(),
        tag: tag.into(),
        series: tag.into(),
        aliases: vec![format!("docker.io/matrixdotorg/synapse:{tag}")],
        contract: false,
        pre_install: String::new(),
        packages: strings(&[
            "python3",
            "python3-venv",
            "libpq5",
            "python3-psycopg2",
            "ca-certificates",
            "curl",
            "libjpeg62-turbo",
            "libwebp7",
            "libxslt1.1",
        ]),
        post_install: format!(
            "python3 -m venv --system-site-packages /opt/synapse\n/opt/synapse/bin/pip install --no-cache-dir -q --disable-pip-version-check {}\n/opt/synapse/bin/python -c 'import psycopg2, synapse'\n{check}mkdir -p /data\n",
            kiln_shell::quote(&requirement)
        ),
        files: vec![("/start.sh".into(), 0o755, SYNAPSE_START.into())],
        changes: strings(&[
            "ENV PATH=/opt/synapse/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV UID=991",
            "ENV GID=991",
            "VOLUME /data",
            "WORKDIR /data",
            "ENTRYPOINT [\"/start.sh\"]",
            "EXPOSE 8008",
        ]),
    }
}

/// Where the contract images keep their one server script.
const CONTRACT_SCRIPT: &str = "/usr/local/lib/kiln-contract/contract.py";

/// A contract image (test double, see `images/contract/contract.py`) for `app`, served as
/// `localhost/kiln-contract/<app>:<tag>` and tagged `upstream`.
fn contract_recipe(app: &str, tag: &str, upstream: &str) -> ImageRecipe {
    let mut packages = strings(&["python3", "python3-psycopg2", "curl", "ca-certificates"]);
    let mut pre_install = String::new();
    let mut post_install = String::new();
    let mut files = vec![(
        CONTRACT_SCRIPT.to_string(),
        0o755,
        CONTRACT_SERVER.to_string(),
    )];
    let entrypoint = format!("ENTRYPOINT [\"python3\", \"{CONTRACT_SCRIPT}\", \"{app}\"]");
    let mut changes = vec![
        format!("ENV KILN_CONTRACT_UPSTREAM={upstream}"),
        format!("LABEL org.kiln.contract-image={app}"),
        entrypoint,
    ];
    match app {
        "hedgedoc" => {
            // node for a Node-based health check like the upstream image's.
            packages.push("nodejs".into());
            pre_install.push_str("groupadd -g 10000 hedgedoc && useradd -u 10000 -g 10000 -d /hedgedoc -M -s /usr/sbin/nologin hedgedoc\n");
            post_install
                .push_str("mkdir -p /hedgedoc/public/uploads\nchown -R 10000:10000 /hedgedoc\n");
            changes.extend(strings(&[
                "ENV NODE_ENV=production",
                "WORKDIR /hedgedoc",
                "USER 10000:10000",
                "VOLUME /hedgedoc/public/uploads",
                "EXPOSE 3000",
            ]));
        }
        "nextcloud" => {
            files.push(("/usr/local/bin/php".into(), 0o755, CONTRACT_PHP.into()));
            post_install.push_str("mkdir -p /var/www/html\nchown 33:33 /var/www/html\n");
            changes.extend(strings(&[
                "WORKDIR /var/www/html",
                "VOLUME /var/www/html",
                "CMD [\"apache2-foreground\"]",
                "STOPSIGNAL SIGWINCH",
                "EXPOSE 80",
            ]));
        }
        _ => changes.extend(strings(&["EXPOSE 8008"])),
    }
    ImageRecipe {
        name: format!("kiln-contract/{app}"),
        tag: tag.into(),
        series: "contract".into(),
        aliases: vec![upstream.to_string()],
        contract: true,
        pre_install,
        packages,
        post_install,
        files,
        changes,
    }
}

/// Every recipe the lab knows, by name (`kiln lab image NAME`).
pub fn recipe(name: &str) -> Option<ImageRecipe> {
    match name {
        "postgres" => Some(postgres()),
        "caddy" => Some(caddy()),
        "synapse" => Some(synapse()),
        _ => None,
    }
}

/// The upstream images the lab serves, for messages.
pub const SERVED_UPSTREAM: &str = "docker.io/library/postgres:17, docker.io/library/caddy:2…, docker.io/matrixdotorg/synapse:vX.Y.Z (or :latest), quay.io/hedgedoc/hedgedoc:1… and docker.io/library/nextcloud:TAG (contract images), any of them with a tag ending in -kiln-broken (the broken double)";

/// The suffix of an upstream tag that asks for the deliberately unhealthy contract image.
pub const BROKEN_SUFFIX: &str = "-kiln-broken";

/// The lab recipe serving the upstream image `reference` (`registry/name:tag`), so a recipe
/// written for the upstream image runs unchanged in the lab:
/// - `docker.io/library/postgres:17…`: Debian's PostgreSQL 17 (Debian has no other major);
/// - `docker.io/library/caddy:2…`: Debian's Caddy 2;
/// - `docker.io/matrixdotorg/synapse:vX.Y.Z`: Synapse built for exactly that version from
///   PyPI (`:latest`: the newest release);
/// - `quay.io/hedgedoc/hedgedoc:1…`, `docker.io/library/nextcloud:TAG`: **contract images**
///   (test doubles, `localhost/kiln-contract/<app>:<tag>`), not the applications;
/// - any of these with a tag ending in `-kiln-broken`: `localhost/kiln-contract/broken:<tag>`,
///   running but never healthy (for unhealthy-upgrade tests).
///
/// Digest-pinned references cannot be served by a local build and are refused.
pub fn for_upstream(reference: &str) -> Result<ImageRecipe, LabError> {
    let refuse = |message: String| LabError::Image {
        image: reference.to_string(),
        message,
    };
    if reference.contains('@') {
        return Err(refuse(
            "is pinned by digest: a lab image is built locally and can never have the upstream image's digest\n  hint: in the lab, pin the version by tag only".into(),
        ));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let Some((name, tag)) = reference[slash..]
        .split_once(':')
        .map(|(n, t)| (&reference[..slash + n.len()], t))
    else {
        return Err(refuse(
            "names no tag: the lab serves upstream images by name and tag (e.g. docker.io/library/postgres:17)".into(),
        ));
    };
    if !valid_tag(tag) {
        return Err(refuse(format!(
            "`{tag}` is not a valid image tag (letters, digits, `_`, `.`, `-`; at most 128)"
        )));
    }
    let known = [
        "docker.io/library/postgres",
        "docker.io/library/caddy",
        "docker.io/matrixdotorg/synapse",
        "quay.io/hedgedoc/hedgedoc",
        "docker.io/library/nextcloud",
    ];
    if !known.contains(&name) {
        return Err(refuse(format!(
            "the lab has no image for `{name}` (it serves {SERVED_UPSTREAM})"
        )));
    }
    if tag.ends_with(BROKEN_SUFFIX) {
        return Ok(contract_recipe("broken", tag, reference));
    }
    let with_alias = |mut r: ImageRecipe| {
        if !r.aliases.iter().any(|a| a == reference) {
            r.aliases.push(reference.to_string());
        }
        r
    };
    let major = |t: &str| -> Option<u32> {
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        let rest = &t[digits.len()..];
        (rest.is_empty() || rest.starts_with(['.', '-']))
            .then(|| digits.parse().ok())
            .flatten()
    };
    match name {
        "docker.io/library/postgres" => match major(tag) {
            Some(POSTGRES_MAJOR) => Ok(with_alias(postgres())),
            Some(m) => Err(refuse(format!(
                "Debian 13 ships PostgreSQL {POSTGRES_MAJOR} only: the lab cannot serve PostgreSQL {m}\n  hint: use docker.io/library/postgres:{POSTGRES_MAJOR} in the lab"
            ))),
            None => Err(refuse(format!(
                "tag `{tag}` names no PostgreSQL major version: the lab serves PostgreSQL {POSTGRES_MAJOR} only (docker.io/library/postgres:{POSTGRES_MAJOR})"
            ))),
        },
        "docker.io/library/caddy" => match major(tag) {
            Some(2) => Ok(with_alias(caddy())),
            _ => Err(refuse(format!(
                "the lab serves Caddy 2 (Debian's) only, not tag `{tag}`"
            ))),
        },
        "docker.io/matrixdotorg/synapse" => {
            if tag == "latest" {
                return Ok(with_alias(synapse()));
            }
            match tag.strip_prefix('v') {
                Some(v) if is_synapse_version(v) => Ok(with_alias(synapse_version(v)?)),
                _ => Err(refuse(format!(
                    "tag `{tag}` is not a Synapse release (vX.Y.Z): the lab builds Synapse for exactly the release a tag names"
                ))),
            }
        }
        "quay.io/hedgedoc/hedgedoc" => match major(tag) {
            Some(1) => Ok(contract_recipe("hedgedoc", tag, reference)),
            _ => Err(refuse(format!(
                "the lab's HedgeDoc contract image doubles HedgeDoc 1.x only, not tag `{tag}`"
            ))),
        },
        "docker.io/library/nextcloud" => {
            if tag.contains("fpm") {
                return Err(refuse(
                    "the lab's Nextcloud contract image doubles the apache variant (port 80), not fpm".into(),
                ));
            }
            Ok(contract_recipe("nextcloud", tag, reference))
        }
        _ => unreachable!("checked against the known names above"),
    }
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn images_dir(roots: &Roots) -> PathBuf {
    roots.cache.join("images")
}

fn umount_under(dir: &Path) {
    for m in crate::server::mounts_under(dir) {
        if cmd::run(cmd::command("umount").arg(&m)).is_err() {
            let _ = cmd::run(cmd::command("umount").arg("-l").arg(&m));
        }
    }
}

/// Nothing is mounted under `dir` any more (safe to delete recursively).
fn server_mounts_clear(dir: &Path) -> bool {
    crate::server::mounts_under(dir).is_empty()
}

/// A minbase trixie tree as a cached tarball, the starting point of every image.
fn ensure_minbase(roots: &Roots, mirror: &AptMirror, log: &dyn Fn(&LabEvent)) -> Result<PathBuf> {
    let dir = images_dir(roots);
    let key = format!(
        "{:012x}",
        fnv1a(format!("{SUITE}|{}", mirror.debian).as_bytes()) & 0xffff_ffff_ffff
    );
    let tar = dir.join(format!("minbase-{SUITE}-{key}.tar.zst"));
    if tar.exists() {
        return Ok(tar);
    }
    let tmp = dir.join(format!("minbase-{key}.building"));
    umount_under(&tmp);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    log(&LabEvent::BuildingMinbase);
    let mut deb = cmd::command("debootstrap");
    deb.args(["--variant=minbase", "--include=ca-certificates", SUITE])
        .arg(&tmp)
        .arg(&mirror.debian);
    cmd::run_hint(
        &mut deb,
        Some("check that this machine reaches its Debian mirror (apt-get update works)"),
    )?;
    pack(&tmp, &tar)?;
    std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
    Ok(tar)
}

fn pack(tree: &Path, tar: &Path) -> Result<()> {
    let part = tar.with_extension("zst.part");
    let script = "tar -C \"$1\" --numeric-owner --xattrs -cf - . | zstd -q -T0 -3 -o \"$2\" -f";
    cmd::run(
        Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(tree)
            .arg(&part),
    )?;
    std::fs::rename(&part, tar).map_err(io("renaming", tar))
}

/// Builds (or finds in the cache) the image; returns its zstd tarball.
pub fn ensure_image(
    roots: &Roots,
    mirror: &AptMirror,
    recipe: &ImageRecipe,
    log: &dyn Fn(&LabEvent),
) -> Result<PathBuf> {
    let dir = images_dir(roots);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let tar = dir.join(recipe.cache_file(mirror));
    if tar.exists() {
        return Ok(tar);
    }
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
    lock.lock().map_err(io("locking", &lock_path))?;
    if tar.exists() {
        return Ok(tar);
    }
    let started = Instant::now();
    let minbase = ensure_minbase(roots, mirror, log)?;
    log(&LabEvent::BuildingImage {
        reference: recipe.reference(),
    });
    let tree = dir.join(format!("{}building", recipe.cache_prefix()));
    umount_under(&tree);
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(io("removing", &tree))?;
    }
    std::fs::create_dir_all(&tree).map_err(io("creating", &tree))?;
    let err = |m: String| LabError::Image {
        image: recipe.reference(),
        message: m,
    };
    cmd::run(
        Command::new("sh")
            .args([
                "-c",
                "zstd -q -dc \"$1\" | tar -C \"$2\" --numeric-owner -xf -",
                "sh",
            ])
            .arg(&minbase)
            .arg(&tree),
    )?;
    // Name resolution for apt inside the chroot: the host's.
    std::fs::copy("/etc/resolv.conf", tree.join("etc/resolv.conf"))
        .map_err(io("copying resolv.conf into", &tree))?;
    let sources = format!(
        "Types: deb\nURIs: {}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        mirror.debian
    );
    let _ = std::fs::remove_file(tree.join("etc/apt/sources.list"));
    std::fs::create_dir_all(tree.join("etc/apt/sources.list.d")).map_err(io("creating", &tree))?;
    std::fs::write(tree.join("etc/apt/sources.list.d/debian.sources"), sources)
        .map_err(io("writing", &tree))?;
    // Build-time downloads (pip) trust what this machine trusts (e.g. an egress proxy's CA).
    let host_ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let ca_env = if host_ca.exists() {
        std::fs::copy(host_ca, tree.join("tmp/kiln-lab-host-ca.crt"))
            .map_err(io("copying the host CA bundle into", &tree))?;
        "export PIP_CERT=/tmp/kiln-lab-host-ca.crt SSL_CERT_FILE=/tmp/kiln-lab-host-ca.crt REQUESTS_CA_BUNDLE=/tmp/kiln-lab-host-ca.crt PIP_FIND_LINKS=\n"
    } else {
        ""
    };
    let install = format!(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8\n{NO_DAEMONS}{}\napt-get update -q\napt-get install -y -q --no-install-recommends {}\n",
        recipe.pre_install,
        kiln_shell::join(&recipe.packages),
    );
    let finish = format!(
        "set -e\nexport LC_ALL=C.UTF-8\n{ca_env}{}\napt-get clean\nrm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /var/log/*.log /root/.cache /tmp/kiln-lab-host-ca.crt\n: > /etc/resolv.conf\n",
        recipe.post_install
    );
    let chroot = |step: &str, script: &str| {
        cmd::run(
            cmd::command("chroot")
                .arg(&tree)
                .args(["/bin/sh", "-c", script])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        )
        .map(|_| ())
        .map_err(|e| match e {
            // The script is the recipe's (in the source); what failed is in its stderr.
            LabError::Command { status, stderr, .. } => err(build_failure(step, &status, &stderr)),
            e => err(e.to_string()),
        })
    };
    let write_files = || -> Result<()> {
        // After the packages: the recipe's files replace the packages' defaults.
        for (path, mode, content) in &recipe.files {
            let p = tree.join(path.trim_start_matches('/'));
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            std::fs::write(&p, content).map_err(io("writing", &p))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                .map_err(io("chmod", &p))?;
        }
        Ok(())
    };
    cmd::run(
        cmd::command("mount")
            .args(["-t", "proc", "proc"])
            .arg(tree.join("proc")),
    )?;
    let built = chroot("installing the packages", &install)
        .and_then(|_| write_files())
        .and_then(|_| chroot("the post-install script", &finish));
    umount_under(&tree);
    if let Err(e) = built {
        // A failed tree is of no use (the error carries the build's output); one per failed
        // version (Synapse) would pile up.
        if server_mounts_clear(&tree) {
            let _ = std::fs::remove_dir_all(&tree);
        }
        return Err(e);
    }
    pack(&tree, &tar)?;
    std::fs::remove_dir_all(&tree).map_err(io("removing", &tree))?;
    // Older builds of the same image (another recipe version) are now dead weight.
    let prefix = recipe.cache_prefix();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".tar.zst") && e.path() != tar {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    log(&LabEvent::ImageBuilt {
        reference: recipe.reference(),
        elapsed: started.elapsed(),
    });
    Ok(tar)
}

/// A failed build step as a message: the step, its exit status and the tail of its stderr,
/// each line at most 300 characters (pip lists every release on one line).
fn build_failure(step: &str, status: &str, stderr: &str) -> String {
    const WIDTH: usize = 300;
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    let mut text = format!("{step} failed in the build chroot ({status})");
    for line in tail {
        let line = if line.chars().count() > WIDTH {
            let head: String = line.chars().take(WIDTH - 40).collect();
            let end: String = {
                let rev: Vec<char> = line.chars().rev().take(30).collect();
                rev.into_iter().rev().collect()
            };
            format!("{head} … {end}")
        } else {
            line.to_string()
        };
        text.push_str("\n  ");
        text.push_str(&line);
    }
    text
}

/// The `podman import` command line (run in the server) for `recipe` from `tar_in_server`.
pub fn import_command(recipe: &ImageRecipe, tar_in_server: &str) -> String {
    let mut c = String::from("sudo podman import -q");
    for ch in &recipe.changes {
        c.push_str(&format!(" --change {}", kiln_shell::quote(ch)));
    }
    c.push_str(&format!(
        " {} {}",
        kiln_shell::quote(tar_in_server),
        kiln_shell::quote(&recipe.reference())
    ));
    for alias in &recipe.aliases {
        c.push_str(&format!(
            " && sudo podman tag {} {}",
            kiln_shell::quote(&recipe.reference()),
            kiln_shell::quote(alias)
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_command_quotes_changes_and_tags_upstream_names() {
        let c = import_command(&postgres(), "/var/tmp/pg.tar");
        assert!(
            c.starts_with("sudo podman import -q --change 'ENV PATH="),
            "{c}"
        );
        assert!(
            c.contains("--change 'ENTRYPOINT [\"docker-entrypoint.sh\"]'"),
            "{c}"
        );
        assert!(c.contains(" /var/tmp/pg.tar localhost/postgres:17 && sudo podman tag localhost/postgres:17 docker.io/library/postgres:17"), "{c}");
    }

    fn mirror() -> AptMirror {
        AptMirror {
            debian: "http://m.example/debian".into(),
            security: None,
        }
    }

    #[test]
    fn cache_key_follows_the_tree_not_the_tags() {
        let m = mirror();
        let r = postgres();
        let k1 = r.cache_key(&m);
        let mut other = r.clone();
        other.packages = strings(&["postgresql-17"]);
        assert_ne!(k1, other.cache_key(&m));
        let mut other = r.clone();
        other.post_install.push_str("true\n");
        assert_ne!(k1, other.cache_key(&m));
        let mut other = r.clone();
        other.files[0].2.push('\n');
        assert_ne!(k1, other.cache_key(&m));
        let other_mirror = AptMirror {
            debian: "http://n.example/debian".into(),
            security: None,
        };
        assert_ne!(k1, r.cache_key(&other_mirror));
        // Tags, aliases and import changes are applied at import: one tree serves them all.
        let minor = for_upstream("docker.io/library/postgres:17.6").unwrap();
        assert_eq!(minor.cache_file(&m), r.cache_file(&m));
        let a = for_upstream("quay.io/hedgedoc/hedgedoc:1.10.2").unwrap();
        let b = for_upstream("quay.io/hedgedoc/hedgedoc:1.10.3").unwrap();
        assert_ne!(a.reference(), b.reference());
        assert_eq!(a.cache_file(&m), b.cache_file(&m));
        assert!(
            a.cache_file(&m)
                .starts_with("kiln-contract_hedgedoc-contract@"),
            "{}",
            a.cache_file(&m)
        );
        assert!(recipe("postgres").is_some() && recipe("nope").is_none());
    }

    #[test]
    fn a_build_failure_keeps_the_tail_of_stderr_with_long_lines_shortened() {
        let versions: Vec<String> = (0..900).map(|i| format!("1.{i}.0")).collect();
        let stderr = format!(
            "noise\nERROR: Could not find a version that satisfies the requirement matrix-synapse==1.0.999 (from versions: {})\nERROR: No matching distribution found for matrix-synapse==1.0.999\n",
            versions.join(", ")
        );
        let m = build_failure("the post-install script", "exit status: 1", &stderr);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(
            lines[0],
            "the post-install script failed in the build chroot (exit status: 1)"
        );
        assert_eq!(lines[1], "  noise");
        assert!(
            lines[2].starts_with("  ERROR: Could not find a version that satisfies the requirement matrix-synapse==1.0.999 (from versions: 1.0.0, ")
                && lines[2].contains(" … ")
                && lines[2].ends_with(", 1.898.0, 1.899.0)")
                && lines[2].chars().count() < 310,
            "{}",
            lines[2]
        );
        assert_eq!(
            lines[3],
            "  ERROR: No matching distribution found for matrix-synapse==1.0.999"
        );
    }

    #[test]
    fn synapse_is_built_for_the_version_its_tag_names() {
        let m = mirror();
        let a = for_upstream("docker.io/matrixdotorg/synapse:v1.161.0").unwrap();
        let b = for_upstream("docker.io/matrixdotorg/synapse:v1.162.0").unwrap();
        assert_eq!(a.reference(), "localhost/synapse:v1.161.0");
        assert_eq!(b.aliases, ["docker.io/matrixdotorg/synapse:v1.162.0"]);
        assert!(
            b.post_install
                .contains("pip install --no-cache-dir -q --disable-pip-version-check matrix-synapse==1.162.0\n"),
            "{}",
            b.post_install
        );
        assert!(
            b.post_install
                .contains("synapse.__version__ == \"1.162.0\"")
        );
        assert!(b.packages.iter().any(|p| p == "curl"));
        assert!(!b.contract);
        // Two versions: two trees, kept side by side (their own series).
        assert_ne!(a.cache_key(&m), b.cache_key(&m));
        assert_ne!(a.cache_prefix(), b.cache_prefix());
        assert!(!b.cache_prefix().starts_with(&a.cache_prefix()));
        let rc = for_upstream("docker.io/matrixdotorg/synapse:v1.162.0rc1").unwrap();
        assert!(!rc.cache_file(&m).starts_with(&b.cache_prefix()));
        // Not deleted by the earlier naming's pruning (`synapse-v1.162.0-` prefix).
        assert!(!b.cache_file(&m).starts_with("synapse-v1.162.0-"));
        let rc = for_upstream("docker.io/matrixdotorg/synapse:v1.163.0rc1").unwrap();
        assert!(rc.post_install.contains("matrix-synapse==1.163.0rc1"));
        let latest = for_upstream("docker.io/matrixdotorg/synapse:latest").unwrap();
        assert_eq!(latest, synapse());
        for bad in ["1.162.0", "v1.162", "vlatest", "v1.162.0-py3", "v1.162.0rc"] {
            let e = for_upstream(&format!("docker.io/matrixdotorg/synapse:{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a Synapse release"), "{bad}: {e}");
        }
    }

    #[test]
    fn postgres_and_caddy_serve_their_majors_only() {
        for tag in ["17", "17.6", "17-trixie", "17.6-bookworm"] {
            let r = for_upstream(&format!("docker.io/library/postgres:{tag}")).unwrap();
            assert_eq!(r.reference(), "localhost/postgres:17");
            assert!(
                r.aliases
                    .contains(&format!("docker.io/library/postgres:{tag}"))
            );
        }
        let e = for_upstream("docker.io/library/postgres:16.4")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "image `docker.io/library/postgres:16.4`: Debian 13 ships PostgreSQL 17 only: the lab cannot serve PostgreSQL 16\n  hint: use docker.io/library/postgres:17 in the lab"
        );
        for tag in ["latest", "alpine", "170"] {
            assert!(for_upstream(&format!("docker.io/library/postgres:{tag}")).is_err());
        }
        let c = for_upstream("docker.io/library/caddy:2.8.4").unwrap();
        assert_eq!(c.reference(), "localhost/caddy:2");
        assert_eq!(
            c.aliases,
            ["docker.io/library/caddy:2", "docker.io/library/caddy:2.8.4"]
        );
        assert!(for_upstream("docker.io/library/caddy:3").is_err());
    }

    #[test]
    fn hedgedoc_and_nextcloud_are_contract_images() {
        let h = for_upstream("quay.io/hedgedoc/hedgedoc:1.10.3").unwrap();
        assert!(h.contract);
        assert_eq!(h.reference(), "localhost/kiln-contract/hedgedoc:1.10.3");
        assert_eq!(h.aliases, ["quay.io/hedgedoc/hedgedoc:1.10.3"]);
        assert!(h.packages.iter().any(|p| p == "nodejs"));
        assert!(h.changes.contains(&"USER 10000:10000".to_string()));
        assert!(
            h.changes.contains(
                &"ENV KILN_CONTRACT_UPSTREAM=quay.io/hedgedoc/hedgedoc:1.10.3".to_string()
            )
        );
        assert!(for_upstream("quay.io/hedgedoc/hedgedoc:2.0.0").is_err());

        let n = for_upstream("docker.io/library/nextcloud:31").unwrap();
        assert!(n.contract);
        assert_eq!(n.reference(), "localhost/kiln-contract/nextcloud:31");
        assert!(
            n.files
                .iter()
                .any(|(p, m, _)| p == "/usr/local/bin/php" && *m == 0o755)
        );
        assert!(n.changes.contains(&"WORKDIR /var/www/html".to_string()));
        let e = for_upstream("docker.io/library/nextcloud:31-fpm")
            .unwrap_err()
            .to_string();
        assert!(e.contains("apache variant"), "{e}");
        // The import tags the upstream reference, quoted.
        let c = import_command(&n, "/var/tmp/nc.tar");
        assert!(
            c.ends_with(" /var/tmp/nc.tar localhost/kiln-contract/nextcloud:31 && sudo podman tag localhost/kiln-contract/nextcloud:31 docker.io/library/nextcloud:31"),
            "{c}"
        );
    }

    #[test]
    fn a_kiln_broken_tag_is_the_broken_double() {
        let b = for_upstream("docker.io/matrixdotorg/synapse:v9.9.9-kiln-broken").unwrap();
        assert!(b.contract);
        assert_eq!(
            b.reference(),
            "localhost/kiln-contract/broken:v9.9.9-kiln-broken"
        );
        assert_eq!(
            b.aliases,
            ["docker.io/matrixdotorg/synapse:v9.9.9-kiln-broken"]
        );
        let other = for_upstream("quay.io/hedgedoc/hedgedoc:1.10.3-kiln-broken").unwrap();
        assert_eq!(other.cache_file(&mirror()), b.cache_file(&mirror()));
    }

    #[test]
    fn references_the_lab_cannot_serve_are_clear_errors() {
        let e = for_upstream("docker.io/library/postgres:17@sha256:0123abcd")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pinned by digest"), "{e}");
        let e = for_upstream("docker.io/library/postgres")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no tag"), "{e}");
        let e = for_upstream("docker.io/grafana/grafana:11.0.0")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("image `docker.io/grafana/grafana:11.0.0`: the lab has no image for `docker.io/grafana/grafana`"),
            "{e}"
        );
        // A registry port is not a tag.
        let e = for_upstream("localhost:5000/postgres")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no tag"), "{e}");
        for bad in [
            "docker.io/library/postgres:17;rm",
            "docker.io/library/postgres:-17",
            "docker.io/library/postgres:",
        ] {
            let e = for_upstream(bad).unwrap_err().to_string();
            assert!(e.contains("not a valid image tag"), "{bad}: {e}");
        }
        assert!(synapse_version("1.2.3; true").is_err());
    }
}
