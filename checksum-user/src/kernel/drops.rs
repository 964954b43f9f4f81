//! The kernel's own checksum drops (the `csum_kfree_skb` program, checksum-ebpf/src/drops.rs):
//! attaching it, decoding its records, and naming the code that dropped each packet.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result};
use aya::programs::BtfTracePoint;
use checksum_common::{
    drop::DropEvent,
    event::{FAMILY_IPV4, FAMILY_IPV6},
};

use crate::{
    kernel::{event::DecodeError, loader::Loaded, refusal},
    model::Flow,
};

/// The program's name in the object, and the tracepoint it attaches to.
pub const KFREE_SKB_PROGRAM: &str = "csum_kfree_skb";
const KFREE_SKB: &str = "kfree_skb";

/// Loads and attaches the drop program. The link is held by the object's file descriptors, so
/// it goes when the process does, even on SIGKILL.
pub fn attach(loaded: &mut Loaded) -> Result<()> {
    let btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let prog: &mut BtfTracePoint = loaded
        .ebpf
        .program_mut(KFREE_SKB_PROGRAM)
        .context("the drop program is missing from the object")?
        .try_into()?;
    prog.load(KFREE_SKB, &btf).map_err(|e| {
        anyhow::anyhow!(
            "loading the {KFREE_SKB} tracepoint program: {}",
            verifier_gist(&e)
        )
    })?;
    prog.attach()
        .with_context(|| format!("attaching to the {KFREE_SKB} tracepoint"))?;
    Ok(())
}

/// A program load error in one line: the syscall's error and the verifier's decisive line
/// (`refusal::decisive_line`), not the whole log (that goes to the debug log, -v).
fn verifier_gist(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            refusal::log_full(KFREE_SKB_PROGRAM, &log);
            let why =
                refusal::decisive_line(&log).unwrap_or_else(|| "the verifier log is empty".into());
            format!("{io_error}: {why}")
        }
        other => other.to_string(),
    }
}

/// One checksum drop, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDrop {
    pub timestamp_ns: u64,
    /// The dropping code's address (see [`Symbolizer`]).
    pub location: u64,
    /// The device's namespace cookie (0 when unreadable).
    pub netns: u64,
    pub ifindex: u32,
    /// `enum skb_drop_reason` value.
    pub reason: u32,
    pub family: u8,
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl KernelDrop {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < size_of::<DropEvent>() {
            return Err(DecodeError("short drop record"));
        }
        // SAFETY: length checked; DropEvent is Pod (any bit pattern is valid); read_unaligned
        // because ring-buffer records are only 8-byte aligned by convention.
        let e: DropEvent = unsafe { bytes.as_ptr().cast::<DropEvent>().read_unaligned() };
        let (src, dst) = if e.family == FAMILY_IPV6 {
            (
                IpAddr::V6(Ipv6Addr::from(e.src)),
                IpAddr::V6(Ipv6Addr::from(e.dst)),
            )
        } else {
            let v4 = |a: [u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            (v4(e.src), v4(e.dst))
        };
        Ok(Self {
            timestamp_ns: e.timestamp_ns,
            location: e.location,
            netns: e.netns,
            ifindex: e.ifindex,
            reason: e.reason,
            family: e.family,
            protocol: e.protocol,
            src,
            dst,
            sport: e.sport,
            dport: e.dport,
        })
    }

    /// The flow, as the audit programs name it, for a drop of reason `reason` (its name): the
    /// reason says which checksum failed, and so the layer, even where an IPv6 extension header
    /// hides the protocol. `None` when the packet's headers could not be read.
    pub fn flow(&self, reason: &str) -> Option<Flow> {
        if self.family != FAMILY_IPV4 && self.family != FAMILY_IPV6 {
            return None;
        }
        let v6 = self.family == FAMILY_IPV6;
        let protocol = match reason {
            "TCP_CSUM" => 6,
            "UDP_CSUM" => 17,
            "ICMP_CSUM" if v6 => 58,
            "ICMP_CSUM" => 1,
            // The IPv4 header's own checksum: the audit programs' `ipv4` layer has no ports.
            "IP_CSUM" => 0,
            _ => self.protocol,
        };
        let ports = matches!(protocol, 6 | 17).then_some((self.sport, self.dport));
        Some(Flow {
            src: self.src,
            dst: self.dst,
            ports,
            protocol,
        })
    }
}

/// Names kernel addresses as `function+0xoffset` from /proc/kallsyms, each address once: the file
/// is scanned when an address is new (drops come from a handful of places), and nothing of it is
/// kept but the answers.
#[derive(Debug, Default)]
pub struct Symbolizer {
    known: HashMap<u64, String>,
}

impl Symbolizer {
    pub fn name(&mut self, addr: u64) -> String {
        if let Some(name) = self.known.get(&addr) {
            return name.clone();
        }
        let name = std::fs::File::open("/proc/kallsyms")
            .ok()
            .and_then(|f| nearest_symbol(BufReader::new(f), addr))
            .unwrap_or_else(|| format!("{addr:#x}"));
        if self.known.len() < 4096 {
            self.known.insert(addr, name.clone());
        }
        name
    }
}

/// The text symbol at or below `addr` in a kallsyms listing, as `name+0xoff`. `None` when there
/// is none, or when addresses are hidden (all zero without `CAP_SYSLOG` or with `kptr_restrict`).
fn nearest_symbol(listing: impl BufRead, addr: u64) -> Option<String> {
    let mut best: Option<(u64, String)> = None;
    for line in listing.lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace();
        let (Some(start), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(start) = u64::from_str_radix(start, 16) else {
            continue;
        };
        if start != 0 && start <= addr && best.as_ref().is_none_or(|(b, _)| start > *b) {
            best = Some((start, name.to_owned()));
        }
    }
    best.map(|(start, name)| format!("{name}+{:#x}", addr - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_the_nearest_text_symbol_below() {
        let listing = "ffffffff81000000 T _stext\n\
                       ffffffff820934f0 T tcp_v4_rcv\n\
                       ffffffff82093f00 t tcp_v4_do_rcv\n\
                       ffffffff82094000 D some_data\n\
                       ffffffff82095000 T udp_rcv [udp]\n";
        let at = |addr| nearest_symbol(listing.as_bytes(), addr);
        assert_eq!(at(0xffff_ffff_8209_34f0).as_deref(), Some("tcp_v4_rcv+0x0"));
        assert_eq!(
            at(0xffff_ffff_8209_3f10).as_deref(),
            Some("tcp_v4_do_rcv+0x10")
        );
        // Data symbols are skipped: this address is still in tcp_v4_do_rcv.
        assert_eq!(
            at(0xffff_ffff_8209_4010).as_deref(),
            Some("tcp_v4_do_rcv+0x110")
        );
        assert_eq!(at(0x1000), None, "below every symbol");
        // Hidden addresses (kptr_restrict) are all zero: no answer rather than a wrong one.
        assert_eq!(
            nearest_symbol(
                "0000000000000000 T tcp_v4_rcv\n".as_bytes(),
                0xffff_ffff_8209_34f0
            ),
            None
        );
    }

    #[test]
    fn drop_records_decode_and_name_their_flow_by_reason() {
        let mut e = DropEvent {
            timestamp_ns: 5,
            location: 0xffff_ffff_8209_34f0,
            netns: 4096,
            reason: 10,
            ifindex: 2,
            sport: 40682,
            dport: 8080,
            family: FAMILY_IPV4,
            protocol: 6,
            ..DropEvent::default()
        };
        e.src[..4].copy_from_slice(&[10, 9, 0, 1]);
        e.dst[..4].copy_from_slice(&[10, 9, 0, 2]);
        // SAFETY: DropEvent is plain old data.
        let bytes: [u8; 72] = unsafe { std::mem::transmute(e) };
        let d = KernelDrop::decode(&bytes).unwrap();
        let flow = d.flow("TCP_CSUM").unwrap();
        assert_eq!(flow.to_string(), "10.9.0.1:40682 -> 10.9.0.2:8080");
        // The IPv4 header's checksum: no ports, the audit programs' ipv4 layer.
        assert_eq!(d.flow("IP_CSUM").unwrap().ports, None);
        // IPv6 behind an extension header: the reason still says UDP.
        e.family = FAMILY_IPV6;
        e.protocol = 0; // hop-by-hop
        // SAFETY: as above.
        let bytes: [u8; 72] = unsafe { std::mem::transmute(e) };
        let flow = KernelDrop::decode(&bytes)
            .unwrap()
            .flow("UDP_CSUM")
            .unwrap();
        assert_eq!((flow.protocol, flow.ports), (17, Some((40682, 8080))));
        // Headers unread, and a short record.
        e.family = 0;
        // SAFETY: as above.
        let bytes: [u8; 72] = unsafe { std::mem::transmute(e) };
        assert_eq!(KernelDrop::decode(&bytes).unwrap().flow("TCP_CSUM"), None);
        assert!(KernelDrop::decode(&bytes[..71]).is_err());
    }
}
