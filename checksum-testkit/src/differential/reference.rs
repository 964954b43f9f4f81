//! The reference verifier: what the kernel program should report for a frame, derived from the
//! RFCs and the documented semantics (docs/usage.md, "What is checked, and the verdicts"), not
//! from the kernel code. Headers are decoded with etherparse and every sum is etherparse's
//! `Sum16BitWords`; nothing here calls checksum-common, so a bug in the shared arithmetic cannot
//! hide on both sides.
//!
//! A UDP datagram to a tunnel port (VXLAN 4789 and 8472, VXLAN-GPE 4790, Geneve 6081) whose
//! payload starts with that tunnel's header is followed one level in: the packet inside (an
//! Ethernet frame, or for Geneve and GPE an IP packet) gets the same checks, its verdicts are
//! marked inner, and every verdict of the frame carries the tunnel. The header layout is the
//! shared `parse_tunnel` (a layout, not arithmetic); the rest is from the RFCs: the tunnel header
//! and the inner packet lie within the outer UDP datagram.
//!
//! Where etherparse is stricter than the auditor has to be (a header cut by the end of the frame,
//! an IP length of 0), the fixed part of the header is still decoded by etherparse and the rest
//! follows the documented rule.
#![expect(
    clippy::cast_possible_truncation,
    reason = "lengths of a frame's headers and segments, which fit their 16- and 32-bit fields"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use checksum_common::{
    Kind, Layer, Status,
    encap::{EncapKind, Payload, parse_tunnel},
};
use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, SingleVlanHeaderSlice, UdpHeaderSlice, checksum::Sum16BitWords,
    err::ipv4::HeaderSliceError,
};

use super::judged::{Encap, Judged, Outcome};

/// Up to two VLAN tags are parsed (802.1Q, 802.1ad and the pre-standard 0x9100 QinQ); a frame
/// with a third is not looked into.
const MAX_VLAN_TAGS: usize = 2;
/// Extension headers walked at most; a longer chain is not followed (no transport verdict).
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Judges one frame (at least an Ethernet header long).
pub fn judge(frame: &[u8]) -> Outcome {
    trace(frame).0
}

/// Where the walk went, for explaining disagreements (see `known`).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Offset of the IP header, once the link layer was walked.
    pub network_offset: Option<usize>,
    /// Offset of the transport segment, once the IP headers were walked.
    pub transport_offset: Option<usize>,
    /// Each IPv6 Fragment header met, in order: whether it fragments the packet.
    pub fragment_headers: Vec<bool>,
}

/// The outcome of a frame and the path the walk took to it.
pub fn trace(frame: &[u8]) -> (Outcome, Trace) {
    let mut out = Outcome::default();
    let mut trace = Trace::default();
    let mut tunnel = None;
    match walk(frame, &mut out, &mut trace, &mut tunnel) {
        Ok(()) => {}
        Err(Stop::NotIp) => out.not_ip = true,
        Err(Stop::Malformed) => out.malformed = true,
    }
    out.encapsulated = tunnel.is_some();
    if let Some(t) = tunnel
        && t.follow
    {
        let start = out.verdicts.len();
        if inner(&frame[..t.end], &t, &mut out.verdicts).is_err() {
            out.inner_malformed = true;
        }
        for v in &mut out.verdicts[start..] {
            v.inner = true;
        }
    }
    if let Some(t) = tunnel {
        for v in &mut out.verdicts {
            v.encap = Some(t.encap);
        }
    }
    (out, trace)
}

enum Stop {
    NotIp,
    /// Lengths or versions that contradict each other, or a frame that ends inside the fixed part
    /// of a header it needs to find the segment: counted, never a verdict.
    Malformed,
}

/// The outer packet: link layer, IP, the tunnel if its UDP datagram is one, the transport.
fn walk(
    frame: &[u8],
    out: &mut Outcome,
    trace: &mut Trace,
    tunnel: &mut Option<Found>,
) -> Result<(), Stop> {
    let (ether_type, l3) = link(frame, 0).ok_or(Stop::NotIp)?;
    trace.network_offset = Some(l3);
    let segment = match ether_type {
        EtherType::IPV4 => {
            let (header, segment) = ipv4(frame, l3)?;
            out.verdicts.push(header);
            segment
        }
        EtherType::IPV6 => ipv6(frame, l3, &mut trace.fragment_headers)?,
        _ => return Err(Stop::NotIp),
    };
    trace.transport_offset = Some(segment.off);
    *tunnel = find_tunnel(frame, &segment);
    if let Some(layer) = segment.layer() {
        let udp_tunnel = tunnel.is_some();
        match transport(frame, &segment, layer, udp_tunnel) {
            Ok(v) => out.verdicts.push(v),
            Err(stop) => {
                // An outer datagram that contradicts its lengths: the tunnel was seen, its
                // packet is not followed.
                if let Some(t) = tunnel {
                    t.follow = false;
                }
                return Err(stop);
            }
        }
    }
    Ok(())
}

/// The packet inside a tunnel, `frame` ending where the outer datagram does: the same checks,
/// no tunnel followed further. Any error is the inner packet's (`inner_malformed`).
fn inner(frame: &[u8], t: &Found, verdicts: &mut Vec<Judged>) -> Result<(), Stop> {
    let (ether_type, l3) = match t.payload {
        Payload::Ethernet => link(frame, t.payload_off).ok_or(Stop::Malformed)?,
        // Geneve options may run past the datagram.
        Payload::Ip(_) if t.payload_off > frame.len() => return Err(Stop::Malformed),
        Payload::Ip(ether_type) => (EtherType(ether_type), t.payload_off),
    };
    let segment = match ether_type {
        EtherType::IPV4 => {
            let (header, segment) = ipv4(frame, l3)?;
            verdicts.push(header);
            segment
        }
        EtherType::IPV6 => ipv6(frame, l3, &mut Vec::new())?,
        // Not IP inside (ARP, a third VLAN tag): nothing to check and nothing counted.
        _ => return Ok(()),
    };
    if let Some(layer) = segment.layer() {
        verdicts.push(transport(frame, &segment, layer, false)?);
    }
    Ok(())
}

/// A tunnel recognised in an outer UDP datagram.
#[derive(Clone, Copy)]
struct Found {
    encap: Encap,
    payload: Payload,
    /// Where the inner frame or packet starts.
    payload_off: usize,
    /// Where the outer datagram ends in the frame: the inner packet lies before it.
    end: usize,
    /// The outer datagram is consistent: its inner packet is audited.
    follow: bool,
}

/// The tunnel ports (`DEFAULT_TUNNEL_PORTS`, as the test runs configure them).
fn tunnel_kind(dst_port: u16) -> EncapKind {
    match dst_port {
        4789 | 8472 => EncapKind::Vxlan,
        4790 => EncapKind::VxlanGpe,
        6081 => EncapKind::Geneve,
        _ => EncapKind::None,
    }
}

/// The inner payload's offset is kept below this (the programs' offset bound).
const MAX_PAYLOAD_OFFSET: usize = 0x7fff;

/// Whether an outer segment is a UDP datagram to a tunnel port whose first payload bytes are
/// that tunnel's header (RFC 7348 section 5, the VXLAN-GPE draft, RFC 8926 section 3.4; the
/// layout is `parse_tunnel`'s, shared with the programs). A fragment is not followed: its payload
/// is not all there. The header must lie within the UDP datagram (its UDP length, not merely the
/// IP payload or the frame) and the frame, and so must the inner packet.
fn find_tunnel(frame: &[u8], seg: &Segment) -> Option<Found> {
    if seg.protocol != IpNumber::UDP.0 || !seg.whole {
        return None;
    }
    let udp = UdpHeaderSlice::from_slice(frame.get(seg.off..)?).ok()?;
    let kind = tunnel_kind(udp.destination_port());
    // RFC 768: the datagram is its UDP length, which the IP payload must hold (else the datagram
    // is malformed and carries nothing); the tunnel header is its first 8 payload bytes.
    let datagram = usize::from(udp.length());
    if kind == EncapKind::None || datagram < 16 || datagram > seg.len {
        return None;
    }
    let header: [u8; 8] = frame.get(seg.off + 8..seg.off + 16)?.try_into().ok()?;
    let t = parse_tunnel(kind, &header)?;
    let payload_off = seg.off + 8 + t.header_len as usize;
    if payload_off > MAX_PAYLOAD_OFFSET {
        return None;
    }
    let (outer_src, outer_dst) = seg.ips();
    Some(Found {
        encap: Encap {
            kind,
            vni: t.vni,
            outer_src,
            outer_dst,
        },
        payload: t.payload,
        payload_off,
        end: frame.len().min(seg.off + datagram),
        follow: true,
    })
}

/// The Ethernet header at `at` and up to two VLAN tags: the ethertype and the L3 offset.
fn link(frame: &[u8], at: usize) -> Option<(EtherType, usize)> {
    let eth = Ethernet2HeaderSlice::from_slice(frame.get(at..)?).ok()?;
    let mut ether_type = eth.ether_type();
    let mut off = at + eth.slice().len();
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(
            ether_type,
            EtherType::VLAN_TAGGED_FRAME
                | EtherType::PROVIDER_BRIDGING
                | EtherType::VLAN_DOUBLE_TAGGED_FRAME
        ) {
            break;
        }
        let tag = SingleVlanHeaderSlice::from_slice(&frame[off..]).ok()?;
        ether_type = tag.ether_type();
        off += tag.slice().len();
    }
    Some((ether_type, off))
}

#[derive(Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// An IP packet's transport segment, as the IP header(s) describe it.
struct Segment {
    addrs: Addrs,
    protocol: u8,
    off: usize,
    /// The IP length minus the headers (0 when the IP length is 0).
    len: usize,
    /// Neither a fragment nor an IP length of 0 (TSO/GSO, jumbogram): the segment is all here.
    whole: bool,
    /// The frame holds the whole IP packet.
    in_frame: bool,
    ip_id: u32,
}

impl Segment {
    fn layer(&self) -> Option<Layer> {
        match (IpNumber(self.protocol), self.addrs) {
            (IpNumber::TCP, _) => Some(Layer::Tcp),
            (IpNumber::UDP, _) => Some(Layer::Udp),
            (IpNumber::ICMP, Addrs::V4(..)) => Some(Layer::Icmp),
            (IpNumber::IPV6_ICMP, Addrs::V6(..)) => Some(Layer::Icmpv6),
            _ => None,
        }
    }

    fn ips(&self) -> (IpAddr, IpAddr) {
        match self.addrs {
            Addrs::V4(s, d) => (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()),
            Addrs::V6(s, d) => (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()),
        }
    }

    /// A verdict with nothing read from the transport header yet.
    fn unverifiable(&self, layer: Layer, len: usize) -> Judged {
        let (src, dst) = self.ips();
        Judged {
            layer,
            status: Status::Unverifiable,
            kind: None,
            got: None,
            want: None,
            pseudo: None,
            len: len as u32,
            src,
            dst,
            protocol: self.protocol,
            ports: None,
            tcp_seq: None,
            ip_id: self.ip_id,
            inner: false,
            encap: None,
        }
    }

    /// RFC 793 / RFC 768 (IPv4) and RFC 8200 section 8.1 (IPv6) pseudo-header for `len` bytes.
    fn pseudo_header(&self, len: usize) -> Sum16BitWords {
        match self.addrs {
            Addrs::V4(s, d) => Sum16BitWords::new()
                .add_4bytes(s)
                .add_4bytes(d)
                .add_2bytes([0, self.protocol])
                .add_2bytes((len as u16).to_be_bytes()),
            Addrs::V6(s, d) => Sum16BitWords::new()
                .add_16bytes(s)
                .add_16bytes(d)
                .add_4bytes((len as u32).to_be_bytes())
                .add_4bytes([0, 0, 0, self.protocol]),
        }
    }
}

/// The IPv4 header's own verdict and its segment.
fn ipv4(frame: &[u8], off: usize) -> Result<(Judged, Segment), Stop> {
    let bytes = &frame[off..];
    let full = match Ipv4HeaderSlice::from_slice(bytes) {
        Ok(h) => Some(h),
        // The options run past the end of the frame: the header cannot be summed, but its fixed
        // part still says where the segment is.
        Err(HeaderSliceError::Len(e)) if e.required_len > 20 => None,
        // Version, IHL below 5, or the frame ends inside the fixed 20 bytes.
        Err(_) => return Err(Stop::Malformed),
    };
    // etherparse checked version and IHL on the real bytes; decode the fixed part alone.
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    let mut fixed = [0u8; 20];
    fixed.copy_from_slice(&bytes[..20]);
    fixed[0] = 0x45;
    let h = Ipv4HeaderSlice::from_slice(&fixed).map_err(|_| Stop::Malformed)?;
    let total_len = usize::from(h.total_len());
    if total_len != 0 && total_len < header_len {
        return Err(Stop::Malformed);
    }
    let fragment = h.more_fragments() || h.fragments_offset().value() != 0;
    let segment = Segment {
        addrs: Addrs::V4(h.source(), h.destination()),
        protocol: h.protocol().0,
        off: off + header_len,
        len: total_len.saturating_sub(header_len),
        whole: !fragment && total_len != 0,
        in_frame: frame.len() >= off + total_len,
        ip_id: u32::from(h.identification()),
    };
    let mut verdict = segment.unverifiable(Layer::Ipv4, header_len);
    if let Some(full) = full {
        // RFC 791: the header checksum covers the header only, options included.
        let check = Check::new(None, full.slice(), 10, false);
        check.fill(&mut verdict);
    }
    Ok((verdict, segment))
}

fn ipv6(frame: &[u8], off: usize, fragment_headers: &mut Vec<bool>) -> Result<Segment, Stop> {
    let h = Ipv6HeaderSlice::from_slice(&frame[off..]).map_err(|_| Stop::Malformed)?;
    let payload_len = usize::from(h.payload_length());
    let end = off + 40 + payload_len;
    let mut next = h.next_header();
    let mut dst = h.destination();
    let mut fragment = false;
    let mut ip_id = 0;
    let mut pos = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !matches!(
            next,
            IpNumber::IPV6_HEADER_HOP_BY_HOP
                | IpNumber::IPV6_ROUTE_HEADER
                | IpNumber::IPV6_DESTINATION_OPTIONS
                | IpNumber::IPV6_FRAGMENTATION_HEADER
                | IpNumber::AUTHENTICATION_HEADER
        ) {
            break;
        }
        // Every extension header starts with Next Header and a length; its body may lie beyond
        // the frame (the segment is then cut, or the chain contradicts the payload length).
        let head = frame.get(pos..pos + 8).ok_or(Stop::Malformed)?;
        let len = match next {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                let f = Ipv6FragmentHeaderSlice::from_slice(head).map_err(|_| Stop::Malformed)?;
                // Any Fragment header that is not atomic (RFC 8200 4.5) makes this a fragment.
                fragment |= f.is_fragmenting_payload();
                fragment_headers.push(f.is_fragmenting_payload());
                ip_id = f.identification();
                8
            }
            // RFC 4302: Payload Len is in 4-octet units, minus 2.
            IpNumber::AUTHENTICATION_HEADER => (usize::from(head[1]) + 2) * 4,
            _ => {
                if next == IpNumber::IPV6_ROUTE_HEADER
                    && let Some(d) = final_destination(frame, pos)
                {
                    dst = d;
                }
                // RFC 8200: Hdr Ext Len in 8-octet units, not counting the first 8.
                (usize::from(head[1]) + 1) * 8
            }
        };
        next = IpNumber(head[0]);
        pos += len;
    }
    if payload_len != 0 && pos > end {
        return Err(Stop::Malformed);
    }
    Ok(Segment {
        addrs: Addrs::V6(h.source(), dst),
        protocol: next.0,
        off: pos,
        len: end.saturating_sub(pos),
        whole: !fragment && payload_len != 0,
        in_frame: frame.len() >= end,
        ip_id,
    })
}

/// RFC 8200 section 8.1: with a Routing header that still has segments left, the pseudo-header
/// carries the final destination, the last address the header leads to. Types whose final
/// address is in the clear: 0 (RFC 2460, deprecated: the last of its addresses), 2 (RFC 6275: the
/// home address) and 4 (RFC 8754: Segment List[0] is the last segment). `None` for other types,
/// no segments left, or an address the frame does not hold.
fn final_destination(frame: &[u8], pos: usize) -> Option<[u8; 16]> {
    let rh = frame.get(pos..pos + 8)?;
    let (hdr_ext_len, routing_type, segments_left) = (rh[1], rh[2], rh[3]);
    if segments_left == 0 {
        return None;
    }
    let at = match routing_type {
        0 => {
            // Hdr Ext Len is twice the number of addresses.
            let addresses = usize::from(hdr_ext_len / 2);
            if addresses == 0 {
                return None;
            }
            pos + 8 + 16 * (addresses - 1)
        }
        2 | 4 => pos + 8,
        _ => return None,
    };
    frame.get(at..at + 16)?.try_into().ok()
}

/// `tunnel`: the datagram is a tunnel's outer UDP, whose zero field is allowed over IPv6 too.
fn transport(frame: &[u8], seg: &Segment, layer: Layer, tunnel: bool) -> Result<Judged, Stop> {
    let mut v = seg.unverifiable(layer, seg.len);
    if !seg.whole || !seg.in_frame {
        return Ok(v);
    }
    // The smallest segment that holds the header the checksum field is in: TCP and UDP
    // headers, and type, code and checksum for ICMP and ICMPv6.
    let (min, field_at) = match layer {
        Layer::Tcp => (20, 16),
        Layer::Udp => (8, 6),
        _ => (4, 2),
    };
    if seg.len < min {
        return Err(Stop::Malformed);
    }
    let bytes = &frame[seg.off..seg.off + seg.len];
    let mut len = seg.len;
    let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    v.tcp_seq = Some(0);
    match layer {
        Layer::Udp => {
            let udp = UdpHeaderSlice::from_slice(bytes).map_err(|_| Stop::Malformed)?;
            // The UDP length may end before the IP payload (the rest is not summed), never after.
            let udp_len = usize::from(udp.length());
            if udp_len < 8 || udp_len > seg.len {
                return Err(Stop::Malformed);
            }
            len = udp_len;
            v.ports = Some((udp.source_port(), udp.destination_port()));
        }
        Layer::Tcp => {
            // Read without etherparse's TcpHeaderSlice: the data offset does not matter to the
            // checksum, which covers the whole segment whatever it says.
            v.ports = Some((be16(0), be16(2)));
            v.tcp_seq = Some(u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        }
        _ => {}
    }
    v.len = len as u32;
    let covered = &bytes[..len];
    let got = be16(field_at);
    v.got = Some(got);
    v.status = Status::None;
    let v4 = matches!(seg.addrs, Addrs::V4(..));
    if layer == Layer::Udp && got == 0 && (v4 || tunnel) {
        // RFC 768: the sender did not compute a checksum, which is legal over IPv4, and over IPv6
        // for a tunnel's outer UDP (RFC 6935, RFC 6936: a tunnel may opt into zero checksums).
        return Ok(v);
    }
    // ICMPv4 has no pseudo-header (RFC 792); ICMPv6 does (RFC 4443 section 2.3).
    let pseudo = (layer != Layer::Icmp).then(|| seg.pseudo_header(len));
    let check = Check::new(pseudo, covered, field_at, layer == Layer::Udp);
    check.fill(&mut v);
    if layer == Layer::Udp && got == 0 && !v4 {
        // RFC 8200 section 8.1: a zero UDP checksum over IPv6 is always wrong, even where the
        // correct value is the other zero (a computed 0 is sent as 0xffff, RFC 768).
        v.status = Status::Bad;
        v.want = Some(check.computed);
        v.kind = Some(Kind::Zero);
    }
    Ok(v)
}

/// One checksum field checked against the bytes it covers.
struct Check {
    got: u16,
    ok: bool,
    /// The correct value for the field (RFC 1071: the complement of the sum with the field 0).
    computed: u16,
    /// The folded pseudo-header sum, 0 for checksums without one.
    pseudo: Option<u16>,
}

impl Check {
    /// `covered`: the bytes under the checksum, with the field at `field_at` (even). `udp`: a
    /// computed 0 is sent as 0xffff (RFC 768).
    fn new(pseudo: Option<Sum16BitWords>, covered: &[u8], field_at: usize, udp: bool) -> Self {
        let got = u16::from_be_bytes([covered[field_at], covered[field_at + 1]]);
        let start = pseudo.clone().unwrap_or_default();
        // Summing over the field verifies both zeros, 0x0000 and 0xffff.
        let ok = start.clone().add_slice(covered).ones_complement() == 0;
        let without_field = start
            .add_slice(&covered[..field_at])
            .add_slice(&covered[field_at + 2..]);
        // etherparse sums native-endian words: its results are the field as it lies in memory.
        let computed = u16::from_be(if udp {
            without_field.to_ones_complement_with_no_zero()
        } else {
            without_field.ones_complement()
        });
        Self {
            got,
            ok,
            computed,
            pseudo: pseudo.map(|p| u16::from_be(!p.ones_complement())),
        }
    }

    fn fill(&self, v: &mut Judged) {
        // An `ok` field is what it should be, whichever zero it holds.
        let want = if self.ok { self.got } else { self.computed };
        v.got = Some(self.got);
        v.want = Some(want);
        v.pseudo = Some(self.pseudo.unwrap_or(0));
        v.tcp_seq = v.tcp_seq.or(Some(0));
        if self.ok {
            v.status = Status::Ok;
        } else {
            v.status = Status::Bad;
            v.kind = Some(kind(self.got, want, self.pseudo));
        }
    }
}

/// The "kind" table of docs/usage.md, tested in order: offload-pending (the field holds the folded
/// pseudo-header sum), zero, byte-swapped, corrupt.
fn kind(got: u16, want: u16, pseudo: Option<u16>) -> Kind {
    if pseudo == Some(got) {
        Kind::OffloadPending
    } else if got == 0 {
        Kind::Zero
    } else if got == want.swap_bytes() {
        Kind::ByteSwapped
    } else {
        Kind::Corrupt
    }
}
