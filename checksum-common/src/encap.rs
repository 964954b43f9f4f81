//! Tunnels whose inner packets are audited too: one level of VXLAN (RFC 7348), VXLAN-GPE and
//! Geneve (RFC 8926) over UDP, recognised by the UDP destination port. The header layouts live
//! here once, for the kernel programs, the differential reference and the frame builders.
//! Not followed: nested tunnels, GRE, IPIP, and tunnels on ports not configured.
#![expect(
    clippy::inline_always,
    reason = "called from the kernel programs, where everything but a few global functions is inlined"
)]

wire_enum! {
    /// Which tunnel carried a verdict's packet (`Encap::kind`).
    pub enum EncapKind {
        None = 0 => "none",
        Vxlan = 1 => "vxlan",
        VxlanGpe = 2 => "vxlan-gpe",
        Geneve = 3 => "geneve",
    }
}

/// The tunnel around a verdict's packet, in every event (`ChecksumEvent::encap`); all zero for a
/// packet that is not encapsulated. The kernel keeps the current packet's in `SourceState`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encap {
    /// `EncapKind`.
    pub kind: u8,
    /// 1 when the verdict is for the inner packet; 0 for the outer headers (or no tunnel).
    pub inner: u8,
    /// `FAMILY_IPV4` or `FAMILY_IPV6`: the outer IP header's.
    pub outer_family: u8,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad: u8,
    /// VXLAN or Geneve network identifier (24 bits).
    pub vni: u32,
    /// The outer IP addresses (IPv4 in the first 4 bytes).
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<Encap>() == 40);

/// UDP destination ports recognised as tunnels, at most this many (`--vxlan-port`,
/// `--geneve-port` add to the defaults).
pub const MAX_TUNNEL_PORTS: usize = 8;

/// An entry of the programs' `TUNNEL_PORTS`: port | kind << 16; 0 is an unused entry.
pub const fn tunnel_port(port: u16, kind: EncapKind) -> u32 {
    port as u32 | (kind as u32) << 16
}

/// The IANA VXLAN port, Linux's own VXLAN default (flannel's too), VXLAN-GPE's and Geneve's.
pub const DEFAULT_TUNNEL_PORTS: [u32; MAX_TUNNEL_PORTS] = [
    tunnel_port(4789, EncapKind::Vxlan),
    tunnel_port(8472, EncapKind::Vxlan),
    tunnel_port(4790, EncapKind::VxlanGpe),
    tunnel_port(6081, EncapKind::Geneve),
    0,
    0,
    0,
    0,
];

/// What follows a tunnel header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// An Ethernet frame (VXLAN; Geneve and GPE when they say so).
    Ethernet,
    /// An IP packet straight after the tunnel header, with this ethertype (Geneve, GPE).
    Ip(u16),
}

/// A tunnel header as read from its first 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub vni: u32,
    /// Bytes from the tunnel header's start to the payload: 8, plus Geneve's options.
    pub header_len: u32,
    pub payload: Payload,
}

const ETH_P_TEB: u16 = 0x6558;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Parses the 8 bytes after the UDP header as a tunnel header of `kind`; `None` for a header
/// that is not that tunnel's, or a payload that is not followed (NSH, MPLS, a Geneve version
/// other than 0).
#[inline(always)]
pub fn parse_tunnel(kind: EncapKind, h: &[u8; 8]) -> Option<Tunnel> {
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let payload = match kind {
        // Flags: I (0x08) says the VNI is valid; the other bits are extensions (GBP) or reserved.
        EncapKind::Vxlan if h[0] & 0x08 != 0 => Payload::Ethernet,
        EncapKind::None | EncapKind::Vxlan => return None,
        // The next-protocol byte: 1 IPv4, 2 IPv6, 3 Ethernet.
        EncapKind::VxlanGpe => match h[3] {
            1 => Payload::Ip(ETH_P_IPV4),
            2 => Payload::Ip(ETH_P_IPV6),
            3 => Payload::Ethernet,
            _ => return None,
        },
        EncapKind::Geneve => {
            if h[0] >> 6 != 0 {
                return None;
            }
            match u16::from_be_bytes([h[2], h[3]]) {
                ETH_P_TEB => Payload::Ethernet,
                p @ (ETH_P_IPV4 | ETH_P_IPV6) => Payload::Ip(p),
                _ => return None,
            }
        }
    };
    let options = if kind == EncapKind::Geneve {
        u32::from(h[0] & 0x3f) * 4
    } else {
        0
    };
    Some(Tunnel {
        vni,
        header_len: 8 + options,
        payload,
    })
}

/// The kind of tunnel on `dst_port`, from a `TUNNEL_PORTS` table read entry by entry (the kernel
/// reads each from its frozen global, so that the verifier sees constants, and copies nothing to
/// its stack).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "an entry is a 16-bit port and an 8-bit kind"
)]
pub fn tunnel_kind(entry: impl Fn(usize) -> u32, dst_port: u16) -> EncapKind {
    for i in 0..MAX_TUNNEL_PORTS {
        let e = entry(i);
        if e != 0 && (e & 0xffff) as u16 == dst_port {
            return EncapKind::from_u8((e >> 16) as u8).unwrap_or(EncapKind::None);
        }
    }
    EncapKind::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_needs_the_i_flag_and_carries_ethernet() {
        let h = [0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0];
        assert_eq!(
            parse_tunnel(EncapKind::Vxlan, &h),
            Some(Tunnel {
                vni: 42,
                header_len: 8,
                payload: Payload::Ethernet
            })
        );
        assert_eq!(parse_tunnel(EncapKind::Vxlan, &[0; 8]), None);
    }

    #[test]
    fn geneve_options_lengthen_the_header_and_the_protocol_picks_the_payload() {
        // Version 0, 2 option words (8 bytes), Ethernet, VNI 0x123456.
        let h = [0x02, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0];
        let t = parse_tunnel(EncapKind::Geneve, &h).unwrap();
        assert_eq!((t.vni, t.header_len), (0x12_3456, 16));
        assert_eq!(t.payload, Payload::Ethernet);
        let v6 = [0x00, 0, 0x86, 0xdd, 0, 0, 1, 0];
        assert_eq!(
            parse_tunnel(EncapKind::Geneve, &v6).unwrap().payload,
            Payload::Ip(0x86dd)
        );
        // Version 1 is not followed, nor is an unknown protocol.
        assert_eq!(
            parse_tunnel(EncapKind::Geneve, &[0x40, 0, 0x65, 0x58, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            parse_tunnel(EncapKind::Geneve, &[0, 0, 0x88, 0x47, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn gpe_follows_ip_and_ethernet_only() {
        let ip4 = [0x0c, 0, 0, 1, 0, 0, 7, 0];
        assert_eq!(
            parse_tunnel(EncapKind::VxlanGpe, &ip4).unwrap().payload,
            Payload::Ip(0x0800)
        );
        assert_eq!(
            parse_tunnel(EncapKind::VxlanGpe, &[0x0c, 0, 0, 4, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn ports_map_to_kinds_and_unused_entries_match_nothing() {
        let kind = |port| tunnel_kind(|i| DEFAULT_TUNNEL_PORTS[i], port);
        assert_eq!(kind(4789), EncapKind::Vxlan);
        assert_eq!(kind(8472), EncapKind::Vxlan);
        assert_eq!(kind(6081), EncapKind::Geneve);
        assert_eq!(kind(4790), EncapKind::VxlanGpe);
        assert_eq!(kind(0), EncapKind::None);
        assert_eq!(kind(53), EncapKind::None);
    }
}
