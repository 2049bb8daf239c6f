//! The base's files: snapshots of every file on Debian 13 and on RHEL 9 (no RHEL host is
//! available here: the RHEL files are checked by these snapshots only), and checks by the
//! real tools that run here (sshd -t and sshd -T, firewall-offline-cmd, chronyd -p, the
//! metrics script against the real apt).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use kiln_lab::cmd::which;
use kiln_secrets::Secret;

use super::firewall::{FirewallParams, OpenPort, Protocol, firewall_files};
use super::node_exporter::{NodeExporterParams, PORT, node_exporter_files};
use super::sshd::{OpensshVersion, SshdParams, algorithms, sshd_files};
use super::time::{ChronyParams, chrony_files, default_pools, hostname_file};
use super::updates::{RebootWindow, UpdatesParams, updates_files};
use super::wireguard::{Endpoint, Peer, WireguardParams, wireguard_files};
use super::*;

const DEBIAN13_OPENSSH: OpensshVersion = OpensshVersion::new(10, 0);
const RHEL9_OPENSSH: OpensshVersion = OpensshVersion::new(8, 7);

/// No override folder: the embedded templates.
fn renderer() -> Renderer<'static> {
    Renderer::new(Path::new("/nonexistent-kiln-test"), "web")
}

fn sshd(os: OsFamily, openssh: OpensshVersion) -> SshdParams {
    SshdParams {
        port: 2222,
        admin_user: "kiln".into(),
        allow_groups: vec![],
        os,
        openssh,
        penalties_exempt: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)).into()],
    }
}

// Test keys (`wg genkey`-shaped, never used anywhere).
const PRIVATE: &str = "YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PEER_DB: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER_MON: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

fn wireguard() -> WireguardParams {
    WireguardParams {
        address: Ipv4Addr::new(10, 42, 0, 1),
        prefix: 24,
        port: 51820,
        private_key: Secret::new(PRIVATE),
        peers: vec![
            Peer {
                name: "db".into(),
                public_key: PEER_DB.into(),
                address: Ipv4Addr::new(10, 42, 0, 2),
                endpoint: Endpoint {
                    host: "203.0.113.12".into(),
                    port: 51820,
                },
            },
            Peer {
                name: "monitoring".into(),
                public_key: PEER_MON.into(),
                address: Ipv4Addr::new(10, 42, 0, 3),
                endpoint: Endpoint {
                    host: "2001:db8::3".into(),
                    port: 51820,
                },
            },
        ],
        keepalive: Some(25),
    }
}

fn firewall() -> FirewallParams {
    FirewallParams {
        ssh_port: 2222,
        proxy: true,
        wireguard_port: Some(51820),
        wireguard_interface: "wg0".into(),
        extra: vec![OpenPort {
            port: 25,
            protocol: Protocol::Tcp,
            why: "service mail".into(),
        }],
        dhcpv6_client: false,
    }
}

/// Every file of the base for one family, as a Debian 13 or RHEL 9 host gets them.
fn all_files(os: OsFamily, openssh: OpensshVersion) -> Vec<BaseFile> {
    let r = renderer();
    let mut files = sshd_files(&r, &sshd(os, openssh)).unwrap();
    files.extend(firewall_files(&r, &firewall()).unwrap());
    files.extend(
        updates_files(
            &r,
            &UpdatesParams {
                os,
                reboot_window: RebootWindow::new(3, 30),
            },
        )
        .unwrap(),
    );
    files.extend(
        chrony_files(
            &r,
            &ChronyParams {
                os,
                pools: default_pools(os),
                servers: vec!["169.254.169.123".into()],
            },
        )
        .unwrap(),
    );
    files.push(hostname_file(&r, "web").unwrap());
    files.extend(
        node_exporter_files(
            &r,
            &NodeExporterParams {
                os,
                address: Ipv4Addr::new(10, 42, 0, 1),
                port: PORT,
            },
        )
        .unwrap(),
    );
    files.extend(wireguard_files(&r, &wireguard()).unwrap());
    files
}

/// A snapshot name for a file: its path without the leading slash, `/` as `_`.
fn snap_name(prefix: &str, f: &BaseFile) -> String {
    let p = f.path.display().to_string();
    format!("{prefix}{}", p.trim_start_matches('/').replace('/', "_"))
}

fn snapshot_all(prefix: &str, files: &[BaseFile]) {
    let mut listing = String::new();
    for f in files {
        listing.push_str(&format!(
            "{:o} {}{}\n",
            f.mode,
            f.path.display(),
            if f.sensitive { " (sensitive)" } else { "" }
        ));
        insta::assert_snapshot!(snap_name(prefix, f), f.content);
    }
    insta::assert_snapshot!(format!("{prefix}files"), listing);
}

#[test]
fn debian13_files() {
    snapshot_all("debian13-", &all_files(OsFamily::Debian, DEBIAN13_OPENSSH));
}

/// RHEL 9 rendering (no RHEL host here: these snapshots are the only check): the sshd
/// drop-in leaves algorithms to the crypto-policy, dnf-automatic, chrony's RHEL paths,
/// the EPEL node-exporter's sysconfig file, the same zones and wg-quick file.
#[test]
fn rhel9_files_no_rhel_host_here() {
    snapshot_all("rhel9-", &all_files(OsFamily::Rhel, RHEL9_OPENSSH));
}

#[test]
fn openssh_versions_parse_from_sshd_ssh_and_banners() {
    let v = |s| OpensshVersion::parse(s);
    assert_eq!(
        v("OpenSSH_10.0p2 Debian-7"),
        Some(OpensshVersion::new(10, 0))
    );
    assert_eq!(v("OpenSSH_9.9p1"), Some(OpensshVersion::new(9, 9)));
    // Debian 12's `sshd -V` prints no portable release.
    assert_eq!(
        v("OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026"),
        Some(OpensshVersion::new(9, 2))
    );
    assert_eq!(
        v("OpenSSH_8.7p1, OpenSSL 3.0.7 1 Nov 2022"),
        Some(OpensshVersion::new(8, 7))
    );
    assert_eq!(
        v("SSH-2.0-OpenSSH_9.8p1 Ubuntu-1"),
        Some(OpensshVersion::new(9, 8))
    );
    assert_eq!(v("SSH-2.0-dropbear_2022.83"), None);
    assert_eq!(v("OpenSSH_x.1"), None);
    assert_eq!(v("OpenSSH_9"), None);
    assert!(OpensshVersion::new(10, 0) > OpensshVersion::new(9, 9));
    assert!(OpensshVersion::new(9, 10).at_least(9, 9));
    assert!(!OpensshVersion::new(9, 7).at_least(9, 8));
    assert_eq!(OpensshVersion::new(10, 0).to_string(), "10.0");
}

#[test]
fn sshd_keywords_follow_the_openssh_version() {
    let text = |os, major, minor| {
        sshd_files(&renderer(), &sshd(os, OpensshVersion::new(major, minor))).unwrap()[0]
            .content
            .clone()
    };
    let d92 = text(OsFamily::Debian, 9, 2);
    assert!(!d92.contains("PerSourcePenalties"), "{d92}");
    assert!(
        d92.contains("KexAlgorithms sntrup761x25519-sha512@openssh.com\n"),
        "{d92}"
    );
    let d98 = text(OsFamily::Debian, 9, 8);
    assert!(d98.contains("\nPerSourcePenalties "), "{d98}");
    assert!(
        d98.contains("\nPerSourcePenaltyExemptList 192.0.2.10\n"),
        "{d98}"
    );
    assert!(!d98.contains("mlkem"), "{d98}");
    assert!(text(OsFamily::Debian, 9, 9).contains("KexAlgorithms mlkem768x25519-sha256,"));
    assert!(text(OsFamily::Debian, 8, 6).contains("\nChallengeResponseAuthentication no\n"));
    let r10 = text(OsFamily::Rhel, 9, 9);
    assert!(
        !r10.contains("KexAlgorithms") && !r10.contains("Ciphers "),
        "{r10}"
    );
    assert!(r10.contains("update-crypto-policies"), "{r10}");
    // No algorithm the OpenSSH manual or ssh-audit calls weak, at any version.
    for v in [(8, 4), (8, 7), (9, 2), (9, 9), (10, 0)] {
        let a = algorithms(OpensshVersion::new(v.0, v.1));
        for name in a
            .kex
            .iter()
            .chain(&a.ciphers)
            .chain(&a.macs)
            .chain(&a.host_keys)
        {
            for weak in [
                "sha1", "nistp", "cbc", "ssh-rsa", "dss", "md5", "umac-64", "group14",
            ] {
                assert!(!name.contains(weak), "{name} at {v:?}");
            }
        }
        assert!(a.macs.iter().all(|m| m.ends_with("-etm@openssh.com")));
    }
}

#[test]
fn groups_replace_users_and_odd_names_are_refused() {
    let r = renderer();
    let mut p = sshd(OsFamily::Debian, DEBIAN13_OPENSSH);
    p.allow_groups = vec!["kiln-admins".into(), "wheel".into()];
    let t = &sshd_files(&r, &p).unwrap()[0].content;
    assert!(t.contains("\nAllowGroups kiln-admins wheel\n"), "{t}");
    assert!(!t.lines().any(|l| l.starts_with("AllowUsers")), "{t}");
    p.admin_user = "kiln\nPermitRootLogin yes".into();
    let err = sshd_files(&r, &p).unwrap_err().to_string();
    assert!(
        err.starts_with("host web: the base's sshd drop-in: admin user"),
        "{err}"
    );
}

#[test]
fn the_public_zone_lists_each_port_once_and_refuses_markup() {
    let mut p = firewall();
    p.proxy = false;
    p.wireguard_port = None;
    p.extra = vec![
        OpenPort {
            port: 2222,
            protocol: Protocol::Tcp,
            why: "again".into(),
        },
        OpenPort {
            port: 2222,
            protocol: Protocol::Udp,
            why: "mosh-ish".into(),
        },
    ];
    let ports: Vec<_> = p
        .ports()
        .iter()
        .map(|o| (o.port, o.protocol, o.why.clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (2222, Protocol::Tcp, "SSH".into()),
            (2222, Protocol::Udp, "mosh-ish".into())
        ]
    );
    p.extra[1].why = "a --> b".into();
    let err = firewall_files(&renderer(), &p).unwrap_err().to_string();
    assert!(err.contains("cannot go into a comment"), "{err}");
}

#[test]
fn wireguard_refuses_bad_keys_without_showing_the_private_one() {
    let r = renderer();
    let mut p = wireguard();
    p.peers[1].public_key = "not-a-key".into();
    let err = wireguard_files(&r, &p).unwrap_err().to_string();
    assert!(
        err.contains("peer monitoring: public key \"not-a-key\""),
        "{err}"
    );
    let mut p = wireguard();
    p.private_key = Secret::new("c2hvcnQ=");
    let err = wireguard_files(&r, &p).unwrap_err().to_string();
    assert!(!err.contains("c2hvcnQ="), "{err}");
    let f = wireguard_files(&r, &wireguard()).unwrap().remove(0);
    assert!(f.sensitive && f.mode == 0o600);
    assert!(
        !format!("{f:?}").contains(PRIVATE),
        "Debug shows the private key"
    );
    assert!(
        f.content.contains("Endpoint = [2001:db8::3]:51820"),
        "{}",
        f.content
    );
}

#[test]
fn updates_without_a_window_never_reboot() {
    let r = renderer();
    for os in [OsFamily::Debian, OsFamily::Rhel] {
        let files = updates_files(
            &r,
            &UpdatesParams {
                os,
                reboot_window: None,
            },
        )
        .unwrap();
        let all: String = files.iter().map(|f| f.content.as_str()).collect();
        assert!(
            all.contains("Automatic-Reboot \"false\"") || all.contains("reboot = never"),
            "{all}"
        );
        assert!(
            !files
                .iter()
                .any(|f| f.path.to_string_lossy().contains("timer.d"))
        );
    }
    assert_eq!(RebootWindow::new(24, 0), None);
    assert_eq!(RebootWindow::new(4, 5).unwrap().to_string(), "04:05");
}

#[test]
fn a_repository_override_replaces_a_base_template_and_gets_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let over = dir.path().join("catalog/base");
    std::fs::create_dir_all(&over).unwrap();
    std::fs::write(
        over.join("chrony.conf.j2"),
        "# {{ host.role }}\nserver {{ servers[0] }}\n",
    )
    .unwrap();
    let r = Renderer::new(dir.path(), "web");
    let p = ChronyParams {
        os: OsFamily::Debian,
        pools: vec![],
        servers: vec!["ntp.example".into()],
    };
    assert_eq!(
        chrony_files(&r, &p).unwrap()[0].content,
        "# web\nserver ntp.example\n"
    );
    std::fs::write(over.join("chrony.conf.j2"), "{{ secret(\"x\") }}").unwrap();
    let err = chrony_files(&r, &p).unwrap_err().to_string();
    assert!(err.contains("not from the vault"), "{err}");
}

// ---- real tools ----

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The sshd executables to check: /usr/sbin/sshd, and those named in `KILN_TEST_SSHD`
/// (`:`-separated, e.g. a Debian 13 sshd unpacked elsewhere).
fn sshds() -> Vec<String> {
    let mut all = vec![];
    if Path::new("/usr/sbin/sshd").is_file() {
        all.push("/usr/sbin/sshd".to_owned());
    }
    if let Ok(more) = std::env::var("KILN_TEST_SSHD") {
        all.extend(more.split(':').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    all
}

/// The drop-in, rendered for the version of each sshd here and for both families, passes
/// that sshd's `sshd -t` with a config that includes it as sshd_config does, and
/// `sshd -T` shows its settings in effect.
#[test]
fn the_sshd_drop_in_passes_the_real_sshd() {
    let sshds = sshds();
    if sshds.is_empty() {
        eprintln!("SKIPPED: no /usr/sbin/sshd (install openssh-server: .ci/install-converge.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_ed25519");
    let (ok, out) = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    assert!(ok, "ssh-keygen: {out}");
    for sshd_bin in sshds {
        let (_, banner) = run(Command::new(&sshd_bin).arg("-V"));
        let version = OpensshVersion::parse(&banner)
            .unwrap_or_else(|| panic!("{sshd_bin} -V: no version in {banner:?}"));
        for os in [OsFamily::Debian, OsFamily::Rhel] {
            let params = sshd(os, version);
            let drop_in = sshd_files(&renderer(), &params).unwrap().remove(0);
            let d = dir.path().join(format!("{version}-{}", os_name(os)));
            std::fs::create_dir_all(d.join("sshd_config.d")).unwrap();
            std::fs::write(d.join("sshd_config.d/00-kiln.conf"), &drop_in.content).unwrap();
            // What Debian's and RHEL's sshd_config start with, then a later value the
            // drop-in must win over.
            let main = d.join("sshd_config");
            std::fs::write(
                &main,
                format!(
                    "Include {}/sshd_config.d/*.conf\nHostKey {}\nPasswordAuthentication yes\nPermitRootLogin yes\nPidFile none\n",
                    d.display(),
                    key.display()
                ),
            )
            .unwrap();
            let (ok, out) = run(Command::new(&sshd_bin).arg("-t").arg("-f").arg(&main));
            assert!(
                ok,
                "{sshd_bin} ({version}) -t refuses the {os:?} drop-in: {out}\n{}",
                drop_in.content
            );
            let (ok, effective) = run(Command::new(&sshd_bin)
                .args(["-T", "-C", "user=kiln,host=laptop,addr=192.0.2.10", "-f"])
                .arg(&main));
            assert!(ok, "{sshd_bin} -T: {effective}");
            for want in [
                "port 2222",
                "passwordauthentication no",
                "permitrootlogin no",
                "pubkeyauthentication yes",
                "kbdinteractiveauthentication no",
                "authenticationmethods publickey",
                "allowusers kiln",
                "loglevel VERBOSE",
                "x11forwarding no",
                "maxauthtries 4",
            ] {
                assert!(
                    effective.lines().any(|l| l.eq_ignore_ascii_case(want)),
                    "{sshd_bin} {os:?}: {want:?} not in effect:\n{effective}"
                );
            }
            if os == OsFamily::Debian {
                let a = algorithms(version);
                let line = format!("kexalgorithms {}", a.kex.join(","));
                assert!(
                    effective.lines().any(|l| l == line),
                    "{line:?} not in effect:\n{effective}"
                );
            }
            eprintln!("{sshd_bin} (OpenSSH {version}) accepts the {os:?} drop-in");
        }
    }
}

/// firewalld's own offline checker reads kiln's zones (Debian's firewalld; install it with
/// .ci/install-converge.sh).
#[test]
fn the_zones_pass_firewall_offline_cmd() {
    let Some(cmd) = which("firewall-offline-cmd") else {
        eprintln!("SKIPPED: no firewall-offline-cmd (package firewalld: .ci/install-converge.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    // The stock firewalld.conf's default zone, which holds the public interface.
    std::fs::write(dir.path().join("firewalld.conf"), "DefaultZone=public\n").unwrap();
    let files = firewall_files(&renderer(), &firewall()).unwrap();
    for f in &files {
        std::fs::write(zones.join(f.path.file_name().unwrap()), &f.content).unwrap();
    }
    let (ok, out) = run(Command::new(&cmd)
        .arg("--system-config")
        .arg(dir.path())
        .arg("--check-config"));
    assert!(
        ok && !out.to_lowercase().contains("error"),
        "--check-config: {out}"
    );
    // What firewalld makes of them.
    let (ok, public) = run(Command::new(&cmd)
        .arg("--system-config")
        .arg(dir.path())
        .args(["--zone=public", "--list-ports"]));
    assert!(ok, "{public}");
    let mut listed: Vec<_> = public.split_whitespace().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["2222/tcp", "25/tcp", "443/tcp", "51820/udp", "80/tcp"]
    );
    let (ok, kiln) = run(Command::new(&cmd)
        .arg("--system-config")
        .arg(dir.path())
        .args(["--zone=kiln", "--list-interfaces"]));
    assert!(ok && kiln.trim() == "wg0", "{kiln}");
}

/// chronyd parses the Debian and RHEL files (`chronyd -p` prints what it read).
#[test]
fn chrony_conf_passes_chronyd() {
    let Some(chronyd) = which("chronyd") else {
        eprintln!("SKIPPED: no chronyd on PATH or in /usr/sbin (package chrony)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for os in [OsFamily::Debian, OsFamily::Rhel] {
        let p = ChronyParams {
            os,
            pools: default_pools(os),
            servers: vec!["169.254.169.123".into()],
        };
        let f = chrony_files(&renderer(), &p).unwrap().remove(0);
        let path = dir.path().join(format!("chrony-{}.conf", os_name(os)));
        std::fs::write(&path, &f.content).unwrap();
        let (ok, out) = run(Command::new(&chronyd).arg("-p").arg("-f").arg(&path));
        assert!(ok, "chronyd -p {os:?}: {out}");
        for want in [
            "makestep 1.0 3",
            "rtcsync",
            &format!("pool {} iburst", default_pools(os)[0]),
        ] {
            assert!(
                out.lines().any(|l| l.trim() == want),
                "{want:?} not read: {out}"
            );
        }
    }
}

/// The Debian metrics script, run here against the real apt, writes the textfile
/// collector's format (node-exporter's parser is not here: the lines are checked).
#[test]
fn the_debian_metrics_script_writes_textfile_metrics() {
    if which("apt-get").is_none() {
        eprintln!("SKIPPED: no apt-get");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = updates_files(
        &renderer(),
        &UpdatesParams {
            os: OsFamily::Debian,
            reboot_window: None,
        },
    )
    .unwrap();
    let script = files
        .iter()
        .find(|f| f.path == Path::new(super::updates::SCRIPT))
        .unwrap();
    let path = dir.path().join("updates-metrics");
    std::fs::write(&path, &script.content).unwrap();
    let out_dir = dir.path().join("textfile");
    std::fs::create_dir(&out_dir).unwrap();
    let (ok, out) = run(Command::new("sh").arg(&path).arg(&out_dir));
    assert!(ok, "updates-metrics: {out}");
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        ["kiln_updates.prom"],
        "the temporary file stayed behind"
    );
    let text = std::fs::read_to_string(out_dir.join("kiln_updates.prom")).unwrap();
    let mut seen = vec![];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<u64>().is_ok(), "{line:?}");
        seen.push(name.to_owned());
    }
    assert_eq!(
        seen,
        [
            "kiln_updates_pending{kind=\"security\"}",
            "kiln_reboot_required",
            "kiln_updates_metrics_timestamp_seconds"
        ],
        "{text}"
    );
}

/// apt reads the unattended-upgrades drop-in as meant: the package's origins cleared,
/// the security archive's kept, the reboot time set.
#[test]
fn the_unattended_upgrades_drop_in_passes_apt_config() {
    let Some(apt_config) = which("apt-config") else {
        eprintln!("SKIPPED: no apt-config");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = updates_files(
        &renderer(),
        &UpdatesParams {
            os: OsFamily::Debian,
            reboot_window: RebootWindow::new(3, 30),
        },
    )
    .unwrap();
    // The package's list first, as 50unattended-upgrades has it, then kiln's.
    let mut conf = String::from(
        "Unattended-Upgrade::Origins-Pattern { \"origin=Debian,codename=${distro_codename},label=Debian\"; };\n",
    );
    for f in &files {
        if f.path.starts_with("/etc/apt/apt.conf.d") {
            conf.push_str(&f.content);
        }
    }
    let path = dir.path().join("apt.conf");
    std::fs::write(&path, conf).unwrap();
    let (ok, out) = run(Command::new(apt_config).arg("-c").arg(&path).arg("dump"));
    assert!(ok, "apt-config: {out}");
    let ours: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("Unattended-Upgrade::") || l.starts_with("APT::Periodic::"))
        .collect();
    assert_eq!(
        ours,
        [
            "APT::Periodic::Update-Package-Lists \"1\";",
            "APT::Periodic::Unattended-Upgrade \"1\";",
            // The package's "label=Debian" origin is gone (#clear).
            "Unattended-Upgrade::Origins-Pattern \"\";",
            "Unattended-Upgrade::Origins-Pattern:: \"origin=Debian,codename=${distro_codename}-security,label=Debian-Security\";",
            "Unattended-Upgrade::Origins-Pattern:: \"origin=Debian,codename=${distro_codename},label=Debian-Security\";",
            "Unattended-Upgrade::Automatic-Reboot \"true\";",
            "Unattended-Upgrade::Automatic-Reboot-Time \"03:30\";",
        ],
        "{out}"
    );
}
