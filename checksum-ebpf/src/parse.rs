//! Header parsing: Ethernet with up to two VLAN tags, IPv4 (options), IPv6 (extension headers).
//! Produces where the L4 segment is and what its pseudo-header needs.

use checksum_common::event::{FAMILY_IPV4, FAMILY_IPV6};

use crate::{
    bytes::{OFFSET_MASK, PacketBytes, be16, be32, mem16},
    packet::Packet,
};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ_OLD: u16 = 0x9100;
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXT_HEADERS: usize = 8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// The ethertype after any VLAN tags and the offset of the L3 header, of the frame as the hook
/// sees it.
///
/// At TC the data normally starts at the MAC header, but not always: after a generic-mode XDP
/// program on the same device, TC ingress sees the skb starting at the network header
/// (`mac_len` 0). `skb->protocol` tells which: when it is IP but the Ethernet ethertype
/// disagrees and the first byte carries the matching IP version, L3 starts at offset 0. At XDP
/// (no skb, `skb_protocol` a constant `None`) this is `ethernet`.
#[inline(always)]
pub fn link_layer<P: Packet>(pkt: &P) -> Option<(u16, u32)> {
    let eth = ethernet(pkt);
    let Some(protocol) = pkt.skb_protocol() else {
        return eth;
    };
    let version = match protocol {
        ETH_P_IPV4 => 4,
        ETH_P_IPV6 => 6,
        _ => return eth,
    };
    if let Some((ethertype, _)) = eth
        && ethertype == protocol
    {
        return eth;
    }
    // Two bytes, not one: LLVM turns a one-byte bound check into `data < data_end`, which the
    // verifier does not accept as a range ("invalid access to packet").
    let first = pkt.load::<2>(0)?;
    if first[0] >> 4 == version {
        Some((protocol, 0))
    } else {
        eth
    }
}

/// Returns the ethertype after any VLAN tags and the offset of the L3 header.
#[inline(always)]
pub fn ethernet<P: PacketBytes>(pkt: &P) -> Option<(u16, u32)> {
    ethernet_at(pkt, 0)
}

/// `ethernet` for a frame that starts at `at`: a tunnel's inner frame.
#[inline(always)]
pub fn ethernet_at<P: PacketBytes>(pkt: &P, at: u32) -> Option<(u16, u32)> {
    let eth = pkt.load::<14>(at)?;
    let mut ethertype = be16(&eth, 12);
    let mut off = at + 14;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD && ethertype != ETH_P_QINQ_OLD {
            break;
        }
        let tag = pkt.load::<4>(off)?;
        ethertype = be16(&tag, 2);
        off += 4;
    }
    Some((ethertype, off))
}

pub fn is_ipv4(ethertype: u16) -> bool {
    ethertype == ETH_P_IPV4
}

pub fn is_ipv6(ethertype: u16) -> bool {
    ethertype == ETH_P_IPV6
}

/// The L4 segment of an IP packet and what its checksum needs.
#[derive(Clone, Copy)]
pub struct Segment {
    pub family: u8,
    pub protocol: u8,
    pub src: [u8; 16],
    /// Final destination (IPv6 Routing header) as used in the pseudo-header.
    pub dst: [u8; 16],
    pub ip_id: u32,
    /// IPv6 flow label, 0 for IPv4.
    pub flow_label: u32,
    pub off: u32,
    pub len: u32,
    /// A fragment (or an IP length of 0, as TSO/GSO writes): the segment cannot be verified.
    pub partial: bool,
    /// The packet ends before the segment does.
    pub truncated: bool,
}

/// Why a frame could not be parsed.
pub enum ParseError {
    /// Lengths or versions that contradict each other.
    Malformed,
    /// The frame ends inside a header.
    Truncated,
}

/// IPv4 header as parsed; the header checksum is checked by the caller.
pub struct Ipv4Header {
    pub header_len: u32,
    /// The header checksum field, memory order.
    pub checksum: u16,
}

/// Parses an IPv4 header into `seg`, in place: the segment lives in a per-CPU value (see
/// `audit::Pending`), and a segment returned by value took stack the programs do not have.
#[inline(always)]
pub fn ipv4<P: PacketBytes>(
    pkt: &P,
    off: u32,
    seg: &mut Segment,
) -> Result<Ipv4Header, ParseError> {
    let h = pkt.load::<20>(off).ok_or(ParseError::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(ParseError::Malformed);
    }
    let header_len = u32::from(h[0] & 0x0f) << 2;
    let total_len = u32::from(be16(&h, 2));
    if header_len < 20 || (total_len != 0 && total_len < header_len) {
        return Err(ParseError::Malformed);
    }
    let frag = be16(&h, 6);
    let is_fragment = frag & 0x2000 != 0 || frag & 0x1fff != 0;
    seg.family = FAMILY_IPV4;
    seg.protocol = h[9];
    seg.src = [0; 16];
    seg.dst = [0; 16];
    seg.src[..4].copy_from_slice(&h[12..16]);
    seg.dst[..4].copy_from_slice(&h[16..20]);
    seg.ip_id = u32::from(be16(&h, 4));
    seg.flow_label = 0;
    seg.off = off + header_len;
    seg.len = total_len.saturating_sub(header_len);
    seg.partial = is_fragment || total_len == 0;
    seg.truncated = !pkt.holds(off + total_len);
    Ok(Ipv4Header {
        header_len,
        checksum: mem16(&h, 10),
    })
}

/// Parses an IPv6 header and its extension headers into `seg`, in place (see `ipv4`).
#[inline(always)]
pub fn ipv6<P: PacketBytes>(pkt: &P, off: u32, seg: &mut Segment) -> Result<(), ParseError> {
    let h = pkt.load::<40>(off).ok_or(ParseError::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    let payload_len = u32::from(be16(&h, 4));
    let end = off + 40 + payload_len;
    let mut next = h[6];
    seg.src.copy_from_slice(&h[8..24]);
    seg.dst.copy_from_slice(&h[24..40]);
    let mut ip_id = 0;
    let mut is_fragment = false;
    let mut pos = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if next != IPPROTO_HOPOPTS
            && next != IPPROTO_ROUTING
            && next != IPPROTO_DSTOPTS
            && next != IPPROTO_FRAGMENT
            && next != IPPROTO_AH
        {
            break;
        }
        let ext = pkt.load::<8>(pos).ok_or(ParseError::Truncated)?;
        let ext_len = match next {
            IPPROTO_FRAGMENT => {
                let frag = be16(&ext, 2);
                // Any fragmenting header makes the segment partial, not only the last one.
                is_fragment |= frag & 0xfff8 != 0 || frag & 1 != 0;
                ip_id = be32(&ext, 4);
                8
            }
            IPPROTO_AH => (u32::from(ext[1]) + 2) << 2,
            _ => {
                if next == IPPROTO_ROUTING && ext[3] != 0 {
                    // RFC 8200 section 8.1: the pseudo-header carries the final destination.
                    if let Some(final_dst) = routing_final_destination(pkt, pos, &ext) {
                        seg.dst = final_dst;
                    }
                }
                (u32::from(ext[1]) + 1) << 3
            }
        };
        next = ext[0];
        pos += ext_len;
    }
    if (payload_len != 0 && pos > end) || pos > OFFSET_MASK {
        return Err(ParseError::Malformed);
    }
    seg.family = FAMILY_IPV6;
    seg.protocol = next;
    seg.ip_id = ip_id;
    seg.flow_label = be32(&h, 0) & 0x000f_ffff;
    seg.off = pos;
    seg.len = end.saturating_sub(pos);
    // A payload length of 0 is a jumbogram or a GSO super-packet.
    seg.partial = is_fragment || payload_len == 0;
    seg.truncated = !pkt.holds(end);
    Ok(())
}

/// The last address a Routing header leads to, for the types that carry it in the clear.
#[inline(always)]
fn routing_final_destination<P: PacketBytes>(pkt: &P, pos: u32, ext: &[u8]) -> Option<[u8; 16]> {
    match ext[2] {
        // Type 0 (deprecated source route): the last address of the list.
        0 => {
            let addresses = u32::from(ext[1] / 2);
            if addresses == 0 {
                return None;
            }
            pkt.load::<16>(pos + 8 + 16 * (addresses - 1)).map(|b| b.0)
        }
        // Type 2 (Mobile IPv6 home address) and type 4 (SRH: segment list[0] is the last).
        2 | 4 => pkt.load::<16>(pos + 8).map(|b| b.0),
        _ => None,
    }
}
