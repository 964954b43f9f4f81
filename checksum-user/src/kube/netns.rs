//! Which pod an audited interface belongs to: the pod whose network namespace holds the other
//! end of the interface (a veth's peer).
//!
//! The route is the one Inspektor Gadget takes, netns inodes through `/proc` (hostPID), rather
//! than the container runtime's CRI (`KubeSkoop`'s): it needs no gRPC client, works with every
//! runtime (docker's dockershim keeps its CRI inside the kubelet), and reads only what the kernel
//! says. For each network namespace seen in `/proc/*/ns/net`, its local addresses
//! (`/proc/PID/net/fib_trie`, `if_inet6`) say which pod it is (the pod IPs from the API); the
//! kernel's id for that namespace (`RTM_GETNSID`) is then matched to the interface's
//! `IFLA_LINK_NETNSID`.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv6Addr},
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
};

use super::state::PodEntry;
use crate::sys::netlink;

/// Interface name -> `namespace/pod`, for the interfaces of `ifaces` (ifindex, name) of this
/// namespace whose peer is in a pod's namespace.
pub fn interface_pods(ifaces: &[(u32, String)], pods: &[PodEntry]) -> HashMap<String, String> {
    let wanted: HashMap<i32, Vec<&str>> = ifaces.iter().fold(HashMap::new(), |mut m, (i, name)| {
        if let Some(id) = netlink::get_link(*i)
            .ok()
            .as_ref()
            .and_then(netlink::link_netnsid)
        {
            m.entry(id).or_default().push(name.as_str());
        }
        m
    });
    if wanted.is_empty() {
        return HashMap::new();
    }
    let by_ip: HashMap<IpAddr, String> = pods
        .iter()
        .filter(|p| !p.host_network)
        .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p.full_name())))
        .collect();
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    let mut seen = HashSet::new();
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(ino) = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino()) else {
            continue;
        };
        if Some(ino) == own || !seen.insert(ino) {
            continue;
        }
        let Some(pod) = local_addresses(pid).iter().find_map(|ip| by_ip.get(ip)) else {
            continue;
        };
        let Ok(ns) = std::fs::File::open(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if let Ok(Some(id)) = netlink::nsid_of(ns.as_fd())
            && let Some(names) = wanted.get(&id)
        {
            for iface in names {
                out.insert((*iface).to_owned(), pod.clone());
            }
        }
    }
    out
}

/// The addresses local to the namespace of `pid`.
fn local_addresses(pid: &str) -> Vec<IpAddr> {
    let mut out = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie"))
        .map(|t| fib_trie_locals(&t))
        .unwrap_or_default();
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")) {
        out.extend(if_inet6_addresses(&text));
    }
    out
}

/// The `/32 host LOCAL` entries of `/proc/net/fib_trie`, loopback excluded.
pub fn fib_trie_locals(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(addr) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last = addr.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The addresses of `/proc/net/if_inet6` (32 hex digits first on each line), link-local and
/// loopback excluded.
pub fn if_inet6_addresses(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(Ipv6Addr::from)
        .filter(|ip| !ip.is_loopback() && !ip.is_unicast_link_local())
        .map(IpAddr::V6)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_from_proc_files() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.199.2.0\n        /24 link UNICAST\n     \
                   |-- 10.199.2.2\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
                   Local:\n     |-- 10.199.2.2\n        /32 host LOCAL\n";
        assert_eq!(
            fib_trie_locals(fib),
            ["10.199.2.2".parse::<IpAddr>().unwrap()]
        );
        let v6 = "fe800000000000000000000000000001 02 40 20 80 eth0\n\
                  fd000000000000000000000000000005 02 40 00 80 eth0\n\
                  00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(
            if_inet6_addresses(v6),
            ["fd00::5".parse::<IpAddr>().unwrap()]
        );
    }
}
