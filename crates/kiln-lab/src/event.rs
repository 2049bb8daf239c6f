//! What the lab reports while it works: one [`LabEvent`] per step, sent to a [`Progress`]
//! sink that the caller (the CLI, a test, the demo workflow) renders; `Display` gives the
//! human line. The library never prints.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::layout::ServerKind;

/// Receives every [`LabEvent`] (for a progress display).
pub type Progress = Arc<dyn Fn(&LabEvent) + Send + Sync>;

/// One step of the lab's work. New variants may be added: match with a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LabEvent {
    /// Installing the host's missing Debian packages (consent given).
    InstallingPackages {
        packages: Vec<String>,
    },
    /// Installing moto (the S3 server) from PyPI into a venv.
    InstallingMoto {
        venv: PathBuf,
    },
    /// A lab of this name was left by a previous run; removing what it left.
    CleaningUp {
        lab: String,
    },
    /// Building the servers' base image with debootstrap (once per mirror).
    BuildingBaseImage {
        suite: String,
        mirror: String,
    },
    BaseImageReady {
        path: PathBuf,
        elapsed: Duration,
    },
    /// Building the VM base image (the base image plus a kernel and lvm2).
    BuildingVmBase,
    VmBaseReady {
        elapsed: Duration,
    },
    /// Creating a server; `elapsed` since this batch of servers started.
    CreatingServer {
        name: String,
        kind: ServerKind,
        elapsed: Duration,
    },
    /// A server answers SSH with its pinned host key, for the first time.
    ServerReady {
        name: String,
        address: IpAddr,
    },
    /// The lab's S3 server runs, its bucket under Object Lock.
    S3Ready {
        endpoint: String,
        bucket: String,
        retention_days: u32,
        elapsed: Duration,
    },
    /// The lab's ACME server (Pebble) and DNS (challtestsrv) run; `issuing_root`: the PEM of
    /// Pebble's root for this run.
    AcmeReady {
        directory: String,
        dns: std::net::SocketAddr,
        issuing_root: PathBuf,
        elapsed: Duration,
    },
    /// Installing podman on a server (to load an image).
    InstallingPodman {
        server: String,
    },
    /// Bootstrapping the minbase tree every container image starts from (once).
    BuildingMinbase,
    /// Building a container image from Debian packages.
    BuildingImage {
        reference: String,
    },
    ImageBuilt {
        reference: String,
        elapsed: Duration,
    },
    /// An upstream image reference is available on a server, served by the lab image
    /// `local`; `contract`: a contract image (a test double, not the application);
    /// `imported`: false when the server already had it.
    ImageProvided {
        server: String,
        upstream: String,
        local: String,
        contract: bool,
        imported: bool,
    },
    /// Dropping a [`crate::Lab`] could not tear it down (`kiln lab down --lab NAME` retries).
    TeardownFailed {
        lab: String,
        error: String,
    },
}

impl fmt::Display for LabEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabEvent::InstallingPackages { packages } => {
                write!(f, "installing {}", packages.join(" "))
            }
            LabEvent::InstallingMoto { venv } => {
                write!(
                    f,
                    "installing moto[server] from PyPI into {}",
                    venv.display()
                )
            }
            LabEvent::CleaningUp { lab } => {
                write!(f, "cleaning up what a previous run of lab `{lab}` left")
            }
            LabEvent::BuildingBaseImage { suite, mirror } => write!(
                f,
                "building the base image (debootstrap {suite} from {mirror}), about 90 s, once"
            ),
            LabEvent::BaseImageReady { path, elapsed } => write!(
                f,
                "base image ready in {:.0} s: {}",
                elapsed.as_secs_f64(),
                path.display()
            ),
            LabEvent::BuildingVmBase => f.write_str(
                "building the VM base image (the base image plus Debian's kernel and lvm2), once",
            ),
            LabEvent::VmBaseReady { elapsed } => {
                write!(f, "VM base image ready in {:.0} s", elapsed.as_secs_f64())
            }
            LabEvent::CreatingServer {
                name,
                kind,
                elapsed,
            } => write!(
                f,
                "creating {}{name} ({:.1} s)",
                kind.label(),
                elapsed.as_secs_f64()
            ),
            LabEvent::ServerReady { name, address } => {
                write!(f, "{name} answers SSH at {address}")
            }
            LabEvent::S3Ready {
                endpoint,
                bucket,
                retention_days,
                elapsed,
            } => write!(
                f,
                "S3 server at {endpoint} (bucket {bucket} with Object Lock, COMPLIANCE {retention_days} days) in {:.1} s",
                elapsed.as_secs_f64()
            ),
            LabEvent::AcmeReady {
                directory,
                dns,
                issuing_root,
                elapsed,
            } => write!(
                f,
                "ACME server at {directory}, lab DNS at {dns}, issuing root in {} ({:.1} s)",
                issuing_root.display(),
                elapsed.as_secs_f64()
            ),
            LabEvent::InstallingPodman { server } => write!(f, "installing podman on {server}"),
            LabEvent::BuildingMinbase => {
                f.write_str("debootstrap of the images' minbase tree (once)")
            }
            LabEvent::BuildingImage { reference } => {
                write!(f, "building image {reference} from Debian packages")
            }
            LabEvent::ImageBuilt { reference, elapsed } => write!(
                f,
                "image {reference} built in {:.0} s",
                elapsed.as_secs_f64()
            ),
            LabEvent::ImageProvided {
                server,
                upstream,
                local,
                contract,
                imported,
            } => {
                let what = if *contract {
                    "contract image (test double, not the application)"
                } else {
                    "lab image"
                };
                let how = if *imported { "" } else { " (already there)" };
                write!(f, "{server}: {upstream} is {what} {local}{how}")
            }
            LabEvent::TeardownFailed { lab, error } => {
                write!(f, "tearing down lab `{lab}` failed: {error}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_before_the_events_were_typed() {
        let cases = [
            (
                LabEvent::CreatingServer {
                    name: "web".into(),
                    kind: ServerKind::Vm,
                    elapsed: Duration::from_millis(1_250),
                },
                "creating VM web (1.2 s)",
            ),
            (
                LabEvent::ServerReady {
                    name: "web".into(),
                    address: "10.77.1.11".parse().unwrap(),
                },
                "web answers SSH at 10.77.1.11",
            ),
            (
                LabEvent::S3Ready {
                    endpoint: "http://10.77.1.1:9000".into(),
                    bucket: "b".into(),
                    retention_days: 7,
                    elapsed: Duration::from_millis(2_340),
                },
                "S3 server at http://10.77.1.1:9000 (bucket b with Object Lock, COMPLIANCE 7 days) in 2.3 s",
            ),
            (
                LabEvent::AcmeReady {
                    directory: "https://10.77.1.1:14000/dir".into(),
                    dns: "10.77.1.1:8053".parse().unwrap(),
                    issuing_root: "/var/lib/kiln-lab/t/acme/issuing-root.pem".into(),
                    elapsed: Duration::from_millis(420),
                },
                "ACME server at https://10.77.1.1:14000/dir, lab DNS at 10.77.1.1:8053, issuing root in /var/lib/kiln-lab/t/acme/issuing-root.pem (0.4 s)",
            ),
            (
                LabEvent::InstallingPackages {
                    packages: vec!["debootstrap".into(), "zstd".into()],
                },
                "installing debootstrap zstd",
            ),
            (
                LabEvent::InstallingMoto {
                    venv: "/opt/kiln-lab/venv".into(),
                },
                "installing moto[server] from PyPI into /opt/kiln-lab/venv",
            ),
            (
                LabEvent::ImageBuilt {
                    reference: "localhost/kiln-lab/caddy:2".into(),
                    elapsed: Duration::from_secs(41),
                },
                "image localhost/kiln-lab/caddy:2 built in 41 s",
            ),
            (
                LabEvent::ImageProvided {
                    server: "web".into(),
                    upstream: "docker.io/library/nextcloud:31".into(),
                    local: "localhost/kiln-contract/nextcloud:31".into(),
                    contract: true,
                    imported: true,
                },
                "web: docker.io/library/nextcloud:31 is contract image (test double, not the application) localhost/kiln-contract/nextcloud:31",
            ),
            (
                LabEvent::ImageProvided {
                    server: "db".into(),
                    upstream: "docker.io/library/postgres:17".into(),
                    local: "localhost/postgres:17".into(),
                    contract: false,
                    imported: false,
                },
                "db: docker.io/library/postgres:17 is lab image localhost/postgres:17 (already there)",
            ),
            (
                LabEvent::TeardownFailed {
                    lab: "t".into(),
                    error: "boom".into(),
                },
                "tearing down lab `t` failed: boom",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(event.to_string(), line);
        }
    }
}
