//! Local container images without a registry: root trees built from Debian packages (and PyPI
//! for Synapse) in a chroot, honouring the upstream images' contract (paths, environment
//! variables, ports, first-start initialisation), cached as zstd tarballs, and imported with
//! `podman import --change ...` into a lab server on demand, also under the upstream name so a
//! recipe written for the upstream image runs unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd;
use crate::error::{LabError, Result, io};
use crate::event::LabEvent;
use crate::image::{SUITE, fnv1a};
use crate::layout::Roots;
use crate::mirror::AptMirror;

/// How to build one image.
#[derive(Debug, Clone)]
pub struct ImageRecipe {
    /// Local name: the image is `localhost/<name>:<tag>`.
    pub name: &'static str,
    pub tag: &'static str,
    /// Upstream references the image is also tagged as (e.g. `docker.io/library/postgres:17`).
    pub aliases: &'static [&'static str],
    /// Shell run in the chroot before installing packages (users with fixed ids, policies).
    pub pre_install: &'static str,
    /// Debian packages (installed without recommends).
    pub packages: &'static [&'static str],
    /// Shell run in the chroot after installing packages.
    pub post_install: &'static str,
    /// Files written into the tree: (path, mode, content).
    pub files: &'static [(&'static str, u32, &'static str)],
    /// `podman import --change` instructions (ENV, ENTRYPOINT, CMD, EXPOSE, VOLUME, ...).
    pub changes: &'static [&'static str],
}

impl ImageRecipe {
    pub fn reference(&self) -> String {
        format!("localhost/{}:{}", self.name, self.tag)
    }

    fn cache_key(&self, mirror: &AptMirror) -> String {
        let text = format!(
            "{SUITE}|{}|{:?}|{}|{:?}|{}|{:?}|{:?}",
            mirror.debian,
            self.packages,
            self.pre_install,
            self.files,
            self.post_install,
            self.changes,
            self.aliases
        );
        format!("{:012x}", fnv1a(text.as_bytes()) & 0xffff_ffff_ffff)
    }
}

const POSTGRES_ENTRYPOINT: &str = include_str!("../images/postgres/docker-entrypoint.sh");
const CADDY_FILE: &str = include_str!("../images/caddy/Caddyfile");
const SYNAPSE_START: &str = include_str!("../images/synapse/start.sh");

const NO_DAEMONS: &str =
    "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d\n";

/// The PostgreSQL image: Debian's postgresql-17 with the upstream image's contract
/// (POSTGRES_PASSWORD/USER/DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, PGDATA at
/// /var/lib/postgresql/data, /docker-entrypoint-initdb.d, port 5432, user postgres uid 999).
pub fn postgres() -> ImageRecipe {
    ImageRecipe {
        name: "postgres",
        tag: "17",
        aliases: &["docker.io/library/postgres:17"],
        pre_install: "groupadd -r -g 999 postgres && useradd -r -u 999 -g postgres -d /var/lib/postgresql -s /bin/bash postgres\nmkdir -p /etc/postgresql-common/createcluster.d\necho 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/kiln-lab.conf\n",
        packages: &[
            "postgresql-17",
            "postgresql-client-17",
            "gzip",
            "tzdata",
            "locales",
        ],
        post_install: "localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8\nmkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql\nchown -R postgres:postgres /var/lib/postgresql /var/run/postgresql\nchmod 3777 /var/run/postgresql\nchmod 1777 /var/lib/postgresql/data\n",
        files: &[(
            "/usr/local/bin/docker-entrypoint.sh",
            0o755,
            POSTGRES_ENTRYPOINT,
        )],
        changes: &[
            "ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PG_MAJOR=17",
            "ENV PGDATA=/var/lib/postgresql/data",
            "ENV LANG=en_US.utf8",
            "VOLUME /var/lib/postgresql/data",
            "ENTRYPOINT [\"docker-entrypoint.sh\"]",
            "CMD [\"postgres\"]",
            "STOPSIGNAL SIGINT",
            "EXPOSE 5432",
        ],
    }
}

/// The Caddy image: Debian's caddy with the upstream image's layout (/etc/caddy/Caddyfile,
/// serving /usr/share/caddy, /data, /config, /srv, ports 80/443/2019,
/// XDG_CONFIG_HOME/XDG_DATA_HOME).
pub fn caddy() -> ImageRecipe {
    ImageRecipe {
        name: "caddy",
        tag: "2",
        aliases: &["docker.io/library/caddy:2"],
        pre_install: "",
        packages: &["caddy", "ca-certificates"],
        post_install: "mkdir -p /config/caddy /data/caddy /srv /etc/caddy\n",
        files: &[("/etc/caddy/Caddyfile", 0o644, CADDY_FILE)],
        changes: &[
            "ENV XDG_CONFIG_HOME=/config",
            "ENV XDG_DATA_HOME=/data",
            "VOLUME /config",
            "VOLUME /data",
            "WORKDIR /srv",
            "CMD [\"caddy\", \"run\", \"--config\", \"/etc/caddy/Caddyfile\", \"--adapter\", \"caddyfile\"]",
            "EXPOSE 80",
            "EXPOSE 443",
            "EXPOSE 2019",
        ],
    }
}

/// The Synapse image: matrix-synapse from PyPI in a venv, with the upstream image's contract
/// (`/data` volume, SYNAPSE_SERVER_NAME / SYNAPSE_REPORT_STATS, `generate` mode, port 8008,
/// UID/GID 991).
pub fn synapse() -> ImageRecipe {
    ImageRecipe {
        name: "synapse",
        tag: "latest",
        aliases: &["docker.io/matrixdotorg/synapse:latest"],
        pre_install: "",
        packages: &[
            "python3",
            "python3-venv",
            "libpq5",
            "python3-psycopg2",
            "ca-certificates",
            "libjpeg62-turbo",
            "libwebp7",
            "libxslt1.1",
        ],
        post_install: "python3 -m venv --system-site-packages /opt/synapse\n/opt/synapse/bin/pip install --no-cache-dir -q matrix-synapse\n/opt/synapse/bin/python -c 'import psycopg2, synapse'\nmkdir -p /data\n",
        files: &[("/start.sh", 0o755, SYNAPSE_START)],
        changes: &[
            "ENV PATH=/opt/synapse/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV UID=991",
            "ENV GID=991",
            "VOLUME /data",
            "WORKDIR /data",
            "ENTRYPOINT [\"/start.sh\"]",
            "EXPOSE 8008",
        ],
    }
}

/// Every recipe the lab knows, by name.
pub fn recipe(name: &str) -> Option<ImageRecipe> {
    match name {
        "postgres" => Some(postgres()),
        "caddy" => Some(caddy()),
        "synapse" => Some(synapse()),
        _ => None,
    }
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
    let tar = dir.join(format!(
        "{}-{}-{}.tar.zst",
        recipe.name,
        recipe.tag,
        recipe.cache_key(mirror)
    ));
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
    let tree = dir.join(format!("{}.building", recipe.name));
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
        kiln_shell::join(recipe.packages),
    );
    let finish = format!(
        "set -e\nexport LC_ALL=C.UTF-8\n{ca_env}{}\napt-get clean\nrm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /var/log/*.log /root/.cache /tmp/kiln-lab-host-ca.crt\n: > /etc/resolv.conf\n",
        recipe.post_install
    );
    let chroot = |script: &str| {
        cmd::run(
            cmd::command("chroot")
                .arg(&tree)
                .args(["/bin/sh", "-c", script])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        )
        .map(|_| ())
        .map_err(|e| err(e.to_string()))
    };
    let write_files = || -> Result<()> {
        // After the packages: the recipe's files replace the packages' defaults.
        for (path, mode, content) in recipe.files {
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
    let built = chroot(&install)
        .and_then(|_| write_files())
        .and_then(|_| chroot(&finish));
    umount_under(&tree);
    built?;
    pack(&tree, &tar)?;
    std::fs::remove_dir_all(&tree).map_err(io("removing", &tree))?;
    // Older builds of the same image (another recipe version) are now dead weight.
    let prefix = format!("{}-{}-", recipe.name, recipe.tag);
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

/// The `podman import` command line (run in the server) for `recipe` from `tar_in_server`.
pub fn import_command(recipe: &ImageRecipe, tar_in_server: &str) -> String {
    let mut c = String::from("sudo podman import -q");
    for ch in recipe.changes {
        c.push_str(&format!(" --change {}", kiln_shell::quote(ch)));
    }
    c.push_str(&format!(
        " {} {}",
        kiln_shell::quote(tar_in_server),
        kiln_shell::quote(&recipe.reference())
    ));
    for alias in recipe.aliases {
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

    #[test]
    fn cache_key_follows_the_recipe() {
        let m = AptMirror {
            debian: "http://m.example/debian".into(),
            security: None,
        };
        let mut r = postgres();
        let k1 = r.cache_key(&m);
        r.packages = &["postgresql-17"];
        assert_ne!(k1, r.cache_key(&m));
        assert!(recipe("postgres").is_some() && recipe("nope").is_none());
    }
}
