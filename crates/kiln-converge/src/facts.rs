//! What differs between target distributions, behind one facts type: OS family detection
//! from `/etc/os-release`, and the package manager commands (apt on Debian, dnf on the
//! RHEL family) as argv vectors.
//!
//! Pure: parsing and rendering only. Only Debian runs on this project's machines; the dnf
//! side is covered by the rendering tests below, not by a real RHEL host.

use serde::{Deserialize, Serialize};

/// Distribution family of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    Debian,
    Rhel,
}

/// The package manager a family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
}

/// Facts the agent detects on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub os: OsFamily,
    /// `PRETTY_NAME` from os-release, for messages.
    pub pretty_name: String,
}

impl Facts {
    /// Reads the family from an os-release file's text (`ID` then `ID_LIKE`).
    pub fn from_os_release(text: &str) -> Option<Facts> {
        let mut id = String::new();
        let mut like = String::new();
        let mut pretty = String::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
            match k.trim() {
                "ID" => id = v,
                "ID_LIKE" => like = v,
                "PRETTY_NAME" => pretty = v,
                _ => {}
            }
        }
        let words: Vec<&str> = std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .collect();
        let os = if words.iter().any(|w| matches!(*w, "debian" | "ubuntu")) {
            OsFamily::Debian
        } else if words
            .iter()
            .any(|w| matches!(*w, "rhel" | "fedora" | "centos" | "rocky" | "almalinux"))
        {
            OsFamily::Rhel
        } else {
            return None;
        };
        Some(Facts {
            os,
            pretty_name: if pretty.is_empty() { id } else { pretty },
        })
    }

    pub fn package_manager(&self) -> PackageManager {
        match self.os {
            OsFamily::Debian => PackageManager::Apt,
            OsFamily::Rhel => PackageManager::Dnf,
        }
    }
}

/// An argv plus environment variables to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

fn argv(env: &[(&str, &str)], fixed: &[&str], names: &[String]) -> Argv {
    Argv {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        args: fixed
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().cloned())
            .collect(),
    }
}

const APT_ENV: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive")];

impl PackageManager {
    /// Lists which of `names` are installed; parse its stdout with [`Self::parse_installed`].
    pub fn query(self, names: &[String]) -> Argv {
        match self {
            PackageManager::Apt => argv(
                &[],
                &[
                    "dpkg-query",
                    "-W",
                    "-f",
                    "${Package}\\t${db:Status-Status}\\n",
                    "--",
                ],
                names,
            ),
            PackageManager::Dnf => argv(
                &[],
                &["rpm", "-q", "--queryformat", "%{NAME}\\tinstalled\\n", "--"],
                names,
            ),
        }
    }

    /// Names reported installed by [`Self::query`]'s output (missing packages are
    /// reported on stderr by dpkg-query and as free text by rpm: neither matches).
    pub fn parse_installed(self, stdout: &str) -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| {
                let (name, status) = l.split_once('\t')?;
                (status.trim() == "installed")
                    .then(|| name.split(':').next().unwrap_or(name).to_owned())
            })
            .collect()
    }

    pub fn install(self, names: &[String]) -> Argv {
        match self {
            PackageManager::Apt => argv(
                APT_ENV,
                &[
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "--",
                ],
                names,
            ),
            PackageManager::Dnf => argv(&[], &["dnf", "install", "-y", "-q", "--"], names),
        }
    }

    /// Refreshes the package index (run once when an install failed on a stale index).
    pub fn refresh(self) -> Argv {
        match self {
            PackageManager::Apt => argv(APT_ENV, &["apt-get", "update", "-q"], &[]),
            PackageManager::Dnf => argv(&[], &["dnf", "makecache", "-q"], &[]),
        }
    }

    pub fn remove(self, names: &[String]) -> Argv {
        match self {
            PackageManager::Apt => argv(APT_ENV, &["apt-get", "remove", "-y", "-q", "--"], names),
            PackageManager::Dnf => argv(&[], &["dnf", "remove", "-y", "-q", "--"], names),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_debian_and_rhel_families() {
        let deb =
            Facts::from_os_release("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n")
                .unwrap();
        assert_eq!(deb.os, OsFamily::Debian);
        assert_eq!(deb.pretty_name, "Debian GNU/Linux 13 (trixie)");
        let rocky =
            Facts::from_os_release("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n").unwrap();
        assert_eq!(rocky.os, OsFamily::Rhel);
        assert_eq!(rocky.package_manager(), PackageManager::Dnf);
        let alma = Facts::from_os_release("ID=almalinux\n").unwrap();
        assert_eq!(alma.os, OsFamily::Rhel);
        assert!(Facts::from_os_release("ID=arch\n").is_none());
    }

    // RHEL hosts cannot run here: the dnf side is covered by these rendering tests only.
    #[test]
    fn dnf_commands_render() {
        let names = vec!["htop".to_owned(), "rsync".to_owned()];
        let d = PackageManager::Dnf;
        assert_eq!(
            d.install(&names).args,
            ["dnf", "install", "-y", "-q", "--", "htop", "rsync"]
        );
        assert_eq!(
            d.remove(&names).args,
            ["dnf", "remove", "-y", "-q", "--", "htop", "rsync"]
        );
        assert_eq!(
            d.query(&names).args,
            [
                "rpm",
                "-q",
                "--queryformat",
                "%{NAME}\\tinstalled\\n",
                "--",
                "htop",
                "rsync"
            ]
        );
        assert!(d.install(&names).env.is_empty());
        // rpm prints "package rsync is not installed" on stdout for a missing one.
        let out = "htop\tinstalled\npackage rsync is not installed\n";
        assert_eq!(d.parse_installed(out), ["htop"]);
    }

    #[test]
    fn apt_commands_render() {
        let names = vec!["htop".to_owned()];
        let a = PackageManager::Apt;
        let i = a.install(&names);
        assert_eq!(
            i.args,
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--",
                "htop"
            ]
        );
        assert_eq!(
            i.env,
            [("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())]
        );
        let out = "htop\tinstalled\nrsync\tnot-installed\nlibc6:amd64\tinstalled\n";
        assert_eq!(a.parse_installed(out), ["htop", "libc6"]);
    }
}
