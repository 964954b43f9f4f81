//! A checksum verdict and the flow, tunnel and socket-buffer state it speaks of: the domain model
//! that analysis, reports and captures share. Its encodings live beside their formats, as `impl`
//! blocks there: decoding from the kernel's records in `kernel/event.rs`, JSON in
//! `report/json.rs`.

use std::net::IpAddr;

use checksum_common::{
    Hook, Kind, Layer, Status,
    csum::{complete_l4_sum, verifies},
    encap::EncapKind,
    event::{Direction, IpSummed},
};

/// The flow a verdict belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports for TCP and UDP; `None` for the IPv4 header, ICMP and ICMPv6.
    pub ports: Option<(u16, u16)>,
    pub protocol: u8,
}

impl Flow {
    /// `ipv4` or `ipv6`, as the output names it.
    pub fn family(&self) -> &'static str {
        if self.src.is_ipv4() { "ipv4" } else { "ipv6" }
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ports, self.src) {
            (Some((sp, dp)), IpAddr::V6(_)) => {
                write!(f, "[{}]:{sp} -> [{}]:{dp}", self.src, self.dst)
            }
            (Some((sp, dp)), _) => write!(f, "{}:{sp} -> {}:{dp}", self.src, self.dst),
            (None, _) => write!(f, "{} -> {}", self.src, self.dst),
        }
    }
}

/// One decoded checksum verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub timestamp_ns: u64,
    /// The source it was seen at: the programs' `STATES` slot user space gave it.
    pub slot: u32,
    pub ifindex: u32,
    pub hook: Hook,
    pub direction: Direction,
    pub layer: Layer,
    pub status: Status,
    pub kind: Kind,
    pub flow: Flow,
    pub got: u16,
    pub want: u16,
    pub pseudo: u16,
    pub l4_len: u32,
    pub ip_id: u32,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// IPv6 flow label, 0 for IPv4.
    pub flow_label: u32,
    /// Sent because its flow is tracked (a hook saw it broken), not as a mismatch itself.
    pub tracked: bool,
    /// The socket buffer's checksum state when the TC program ran; `None` at XDP, in replay, and
    /// where the kernel's layout could not be resolved.
    pub skb: Option<SkbCsum>,
    /// The tunnel the packet came in (VXLAN, Geneve), `None` when it is not encapsulated.
    pub encap: Option<Tunnel>,
}

/// The tunnel around a verdict's packet (`checksum_common::encap::Encap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tunnel {
    pub kind: EncapKind,
    pub vni: u32,
    /// The verdict is for the inner packet (its flow is the inner flow); else for the outer
    /// headers.
    pub inner: bool,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

impl Tunnel {
    /// The metrics' `encap` label: the kind and level (`vxlan-inner`), bounded to seven values.
    pub fn label(tunnel: Option<&Tunnel>) -> &'static str {
        match tunnel.map(|t| (t.kind, t.inner)) {
            None | Some((EncapKind::None, _)) => "none",
            Some((EncapKind::Vxlan, false)) => "vxlan-outer",
            Some((EncapKind::Vxlan, true)) => "vxlan-inner",
            Some((EncapKind::VxlanGpe, false)) => "vxlan-gpe-outer",
            Some((EncapKind::VxlanGpe, true)) => "vxlan-gpe-inner",
            Some((EncapKind::Geneve, false)) => "geneve-outer",
            Some((EncapKind::Geneve, true)) => "geneve-inner",
        }
    }

    /// `outer` or `inner`: which headers of the tunnelled packet a verdict is about.
    pub fn level(&self) -> &'static str {
        if self.inner { "inner" } else { "outer" }
    }
}

impl std::fmt::Display for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vni {} {} (outer {} -> {})",
            self.kind.name(),
            self.vni,
            self.level(),
            self.outer_src,
            self.outer_dst
        )
    }
}

/// What a socket buffer said about its checksum at TC (see `ChecksumEvent::ip_summed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SkbCsum {
    pub ip_summed: IpSummed,
    /// From `skb->head`, meaningful for `IpSummed::Partial`.
    pub csum_start: u16,
    pub csum_offset: u16,
    /// The IP header's offset from `skb->head`.
    pub network_header: u16,
    pub csum_level: u8,
    pub encapsulation: bool,
}

impl SkbCsum {
    /// Where the checksummed bytes start, counted from the IP header: `csum_start` and
    /// `network_header` both count from `skb->head`, so their difference does not depend on the
    /// headroom. For a PARTIAL TCP or UDP checksum of the packet's own segment this is the IP
    /// header's length (with IPv6 extension headers), and `csum_offset` the field's offset in the
    /// segment (16, 6); an encapsulated packet's may point further in.
    pub fn start_from_ip_header(&self) -> i32 {
        i32::from(self.csum_start) - i32::from(self.network_header)
    }

    /// `skb->csum`, the device's sum for `IpSummed::Complete` (a union with the two offsets).
    pub fn csum(&self) -> u32 {
        u32::from(self.csum_start) | u32::from(self.csum_offset) << 16
    }
}

impl Verdict {
    pub fn family(&self) -> &'static str {
        self.flow.family()
    }

    /// For a `CHECKSUM_COMPLETE` skb: whether the device's own sum (`skb->csum`) says otherwise
    /// than the kernel program's sum of the segment (`csum::complete_l4_sum`). That is the
    /// kernel's "hw csum failure": the packet changed after the device summed it without
    /// `skb->csum` being updated (a program or a NAT), or the device summed wrongly. Only for
    /// TCP/UDP over IPv4, whose header sums to zero when valid; Ethernet padding the device
    /// summed (frames under 60 bytes) also makes them differ, which the caller says. `None`
    /// where it cannot be told.
    pub fn device_sum_disagrees(&self) -> Option<bool> {
        let skb = self.skb?;
        let summed = matches!(self.status, Status::Ok | Status::Bad);
        if skb.ip_summed != IpSummed::Complete
            || !summed
            || !self.flow.src.is_ipv4()
            || !matches!(self.layer, Layer::Tcp | Layer::Udp)
        {
            return None;
        }
        // Events carry host-order values of the wire words; the sums are of memory-order words.
        let pseudo = u64::from(self.pseudo.to_be());
        let device = complete_l4_sum(skb.csum(), 0, 0, pseudo);
        Some(verifies(device) != (self.status == Status::Ok))
    }

    /// A zero outer UDP checksum over IPv6 on a tunnel: legal where the tunnel opted in (RFC 6935,
    /// 6936: Linux's `udp6zerocsumtx`/`udp6zerocsumrx`), so `none` rather than bad, and said.
    pub fn zero_outer_udp6(&self) -> bool {
        self.status == Status::None
            && self.layer == Layer::Udp
            && !self.flow.src.is_ipv4()
            && self.encap.is_some_and(|t| !t.inner)
    }
}

pub fn hex(v: u16) -> String {
    format!("{v:#06x}")
}
