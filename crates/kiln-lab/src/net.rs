//! The lab's network: one bridge namespace per lab, a veth from the host's root namespace into
//! it (the host side gets 10.77.<lab>.1), one namespace + veth per server with a fixed MAC and
//! address, no default route: the only routes a server has are its lab subnet and the host's
//! proxy address. A small nftables table on the host lets lab interfaces reach only the apt
//! proxy, S3, ACME directory and lab DNS ports (not the ACME and DNS management ports) and
//! never be forwarded anywhere.

use std::net::Ipv4Addr;

use crate::cmd;
use crate::error::Result;
use crate::layout::{self, ACME_PORT, DNS_PORT, PROXY_ADDR, PROXY_PORT, S3_PORT};

const NFT_TABLE: &str = "kiln_lab";

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Names of existing network namespaces starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Host links (root namespace) whose name starts with `kiln-lab`, with their alias.
pub fn host_links() -> Vec<(String, Option<String>)> {
    let Ok(out) = cmd::ip(["-j", "link", "show"]) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .map(|links| {
            links
                .iter()
                .filter_map(|l| {
                    let name = l.get("ifname")?.as_str()?;
                    name.starts_with(layout::PREFIX).then(|| {
                        (
                            name.to_string(),
                            l.get("ifalias")
                                .and_then(|a| a.as_str())
                                .map(str::to_string),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Creates the lab's bridge namespace and the host veth, host side addressed 10.77.<index>.1.
pub fn create_bridge(lab: &str, index: u8) -> Result<()> {
    let br = layout::netns_bridge(lab);
    let link = layout::host_link(index);
    if !netns_exists(&br) {
        cmd::ip(["netns", "add", &br])?;
    }
    cmd::ip(["-n", &br, "link", "set", "lo", "up"])?;
    cmd::ip(["-n", &br, "link", "add", "br0", "type", "bridge"])?;
    cmd::ip([
        "link", "add", &link, "type", "veth", "peer", "name", "up0", "netns", &br,
    ])?;
    cmd::ip([
        "link",
        "set",
        "dev",
        &link,
        "alias",
        &layout::host_link_alias(lab),
    ])?;
    cmd::ip([
        "addr",
        "add",
        &format!("{}/24", layout::subnet_host_addr(index)),
        "dev",
        &link,
    ])?;
    cmd::ip(["link", "set", &link, "up"])?;
    cmd::ip(["-n", &br, "link", "set", "up0", "master", "br0"])?;
    cmd::ip(["-n", &br, "link", "set", "up0", "up"])?;
    cmd::ip(["-n", &br, "link", "set", "br0", "up"])?;
    Ok(())
}

/// Creates a server's namespace and its veth on the bridge, addressed and routed.
pub fn create_server(lab: &str, index: u8, server: &str, server_index: u8) -> Result<Ipv4Addr> {
    let br = layout::netns_bridge(lab);
    let ns = layout::netns_server(lab, server);
    let port = format!("s{server_index}");
    let addr = layout::server_addr(index, server_index);
    if netns_exists(&ns) {
        cmd::ip(["netns", "del", &ns])?;
    }
    cmd::ip(["netns", "add", &ns])?;
    cmd::ip(["-n", &ns, "link", "set", "lo", "up"])?;
    // A leftover port of a server of the same name would make `link add` fail.
    let _ = cmd::ip(["-n", &br, "link", "del", &port]);
    cmd::ip([
        "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "host0", "netns", &ns,
    ])?;
    cmd::ip([
        "-n",
        &ns,
        "link",
        "set",
        "host0",
        "address",
        &layout::server_mac(index, server_index),
    ])?;
    cmd::ip([
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "host0",
    ])?;
    cmd::ip(["-n", &br, "link", "set", &port, "master", "br0"])?;
    cmd::ip(["-n", &br, "link", "set", &port, "up"])?;
    cmd::ip(["-n", &ns, "link", "set", "host0", "up"])?;
    // The host's proxy address, via the host side of the bridge. No default route.
    cmd::ip([
        "-n",
        &ns,
        "route",
        "add",
        &format!("{PROXY_ADDR}/32"),
        "via",
        &layout::subnet_host_addr(index).to_string(),
    ])?;
    // /proc/sys is read-only in the server except net.*, and systemd-sysctl skips it there:
    // let unprivileged ping work as on a normal Debian host.
    let _ = cmd::ip([
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    // A reused address must not wait on a stale neighbour entry.
    let _ = cmd::ip(["neigh", "flush", "to", &addr.to_string()]);
    Ok(addr)
}

/// Deletes a server's namespace and its bridge port (both ends of the veth go with it).
pub fn delete_server(lab: &str, server: &str, server_index: Option<u8>) -> Result<()> {
    let br = layout::netns_bridge(lab);
    if let Some(i) = server_index
        && netns_exists(&br)
    {
        let _ = cmd::ip(["-n", &br, "link", "del", &format!("s{i}")]);
    }
    let ns = layout::netns_server(lab, server);
    if netns_exists(&ns) {
        cmd::ip(["netns", "del", &ns])?;
    }
    Ok(())
}

/// One `nft -f` transaction that replaces the table whether or not it exists. Deleting the
/// table and loading it again in two steps would leave a moment with no conntrack user in
/// the host namespace: the kernel then stops tracking, and packets of SSH sessions already
/// open to other labs' servers come back untracked, fall through to the reject rule and reset
/// those sessions (seen when tests start labs side by side).
fn nft_replace_script() -> String {
    format!(
        "table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n{}",
        nft_ruleset()
    )
}

/// Everything host-side the servers may reach, and nothing forwarded: an nftables table
/// filtering only packets coming in from lab interfaces.
fn nft_ruleset() -> String {
    format!(
        "table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"{p}*\" ct state established,related accept
    iifname \"{p}*\" ct state invalid drop
    iifname \"{p}*\" ip daddr {PROXY_ADDR} tcp dport {PROXY_PORT} accept
    iifname \"{p}*\" tcp dport {S3_PORT} accept
    iifname \"{p}*\" tcp dport {ACME_PORT} accept
    iifname \"{p}*\" meta l4proto {{ tcp, udp }} th dport {DNS_PORT} accept
    iifname \"{p}*\" icmp type echo-request accept
    iifname \"{p}*\" meta l4proto tcp reject with tcp reset
    iifname \"{p}*\" reject
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname \"{p}*\" drop
    oifname \"{p}*\" drop
  }}
}}
",
        p = layout::PREFIX
    )
}

/// Installs the host-side shared pieces: proxy address on loopback and the filter table.
pub fn ensure_host_shared() -> Result<()> {
    let out = cmd::ip(["-4", "addr", "show", "dev", "lo"])?;
    if !String::from_utf8_lossy(&out.stdout).contains(&format!("{PROXY_ADDR}/32")) {
        cmd::ip(["addr", "add", &format!("{PROXY_ADDR}/32"), "dev", "lo"])?;
    }
    if cmd::which("nft").is_some() {
        let path = std::env::temp_dir().join(format!("kiln-lab-nft-{}.conf", std::process::id()));
        std::fs::write(&path, nft_replace_script()).map_err(crate::error::io("writing", &path))?;
        let r = cmd::run(cmd::command("nft").arg("-f").arg(&path));
        let _ = std::fs::remove_file(&path);
        r?;
    }
    Ok(())
}

/// Removes the host-side shared pieces (when no lab is left).
pub fn remove_host_shared() -> Result<()> {
    let out = cmd::ip(["-4", "addr", "show", "dev", "lo"])?;
    if String::from_utf8_lossy(&out.stdout).contains(&format!("{PROXY_ADDR}/32")) {
        cmd::ip(["addr", "del", &format!("{PROXY_ADDR}/32"), "dev", "lo"])?;
    }
    if cmd::which("nft").is_some() {
        let _ = cmd::output(cmd::command("nft").args(["delete", "table", "inet", NFT_TABLE]));
    }
    Ok(())
}

/// Whether the host-side filter table is installed.
pub fn host_filter_present() -> bool {
    cmd::output(cmd::command("nft").args(["list", "table", "inet", NFT_TABLE]))
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_in_one_transaction() {
        let s = nft_replace_script();
        let add = s
            .find("table inet kiln_lab {}")
            .expect("creates the table first");
        let del = s
            .find("delete table inet kiln_lab")
            .expect("then deletes it");
        let load = s.find("chain input").expect("then loads the rules");
        assert!(add < del && del < load, "{s}");
    }

    #[test]
    fn invalid_packets_from_servers_are_dropped_not_reset() {
        let r = nft_ruleset();
        let drop = r.find("ct state invalid drop").expect("invalid dropped");
        let reset = r.find("reject with tcp reset").unwrap();
        assert!(drop < reset, "{r}");
    }

    #[test]
    fn ruleset_filters_only_lab_interfaces_and_opens_only_proxy_s3_acme_and_dns() {
        let r = nft_ruleset();
        assert!(r.contains("tcp dport 14000 accept"), "{r}");
        assert!(
            r.contains("meta l4proto { tcp, udp } th dport 8053 accept"),
            "{r}"
        );
        for management in ["15000", "8055"] {
            assert!(!r.contains(management), "{r}");
        }
        let open = r.find("dport 8053 accept").unwrap();
        assert!(open < r.find("reject with tcp reset").unwrap(), "{r}");
        assert!(
            r.contains("iifname \"kiln-lab*\" ip daddr 10.77.0.1 tcp dport 3142 accept"),
            "{r}"
        );
        assert!(r.contains("tcp dport 9000 accept"), "{r}");
        assert!(r.contains("iifname \"kiln-lab*\" reject"), "{r}");
        assert!(r.contains("chain forward"), "{r}");
    }
}
