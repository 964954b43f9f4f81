//! Frame generator: one frame per seed, built from weighted choices (link, network and transport
//! headers, lengths, checksum signatures) and then mutated (truncation, padding, length fields,
//! flipped bytes). The label records the choices so that a disagreement can be read without a
//! decoder. Checksums are filled with the test kit's own big-endian reference (frames.rs): the
//! generator only needs them to be mostly right, the reference verifier is the judge.
#![expect(
    clippy::cast_possible_truncation,
    reason = "generated lengths, counts and field values are chosen within their fields' ranges"
)]

use super::rng::Rng;
use checksum_common::encap::EncapKind;

use crate::frames::{ICMP, ICMPV6, TCP, UDP, reference_checksum};

/// A generated frame and how it was made.
#[derive(Debug, Clone)]
pub struct Generated {
    pub bytes: Vec<u8>,
    pub label: String,
}

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DST_OPTS: u8 = 60;

/// What was built, for the mutations that follow.
struct Built {
    bytes: Vec<u8>,
    label: Vec<String>,
    l3_off: usize,
    /// An IPv4 or IPv6 packet follows the link header.
    ip: bool,
    v6: bool,
    l4_off: usize,
    proto: u8,
    /// Bytes the L4 checksum covers from `l4_off` (the UDP length, else the segment).
    covered: usize,
    /// Absolute position of the L4 checksum field, when the protocol has one we fill.
    field: Option<usize>,
    /// Folded pseudo-header sum the generator used (None for ICMPv4 and other protocols).
    pseudo: Option<u16>,
    /// The correct L4 checksum as the generator computed it.
    checksum: u16,
}

/// Percent of structured frames that go into a tunnel.
const TUNNELLED: u64 = 15;
/// Salt of the tunnel decision's own generator: with it, a frame that is not tunnelled is the
/// very frame its seed made before tunnels were generated.
const TUNNEL_SALT: u64 = 0x7475_6e6e_656c;

pub fn generate(seed: u64) -> Generated {
    let mut r = Rng::new(seed);
    let tunnel = Rng::new(seed ^ TUNNEL_SALT).chance(TUNNELLED);
    let (bytes, label) = if r.chance(3) {
        random_frame(&mut r)
    } else {
        let mut b = structured(&mut r);
        mutate_checksum(&mut r, &mut b);
        mutate_structure(&mut r, &mut b);
        if tunnel {
            tunnelled(&mut r, b)
        } else {
            (b.bytes, b.label.join(" "))
        }
    };
    Generated { bytes, label }
}

/// Bytes with an IP-ish start: exercises every early exit of both parsers.
fn random_frame(r: &mut Rng) -> (Vec<u8>, String) {
    let len = r.range(14, 320);
    let mut b = r.bytes(len);
    let ethertype: u16 = {
        let x = r.u16();
        r.pick(&[0x0800, 0x86dd, 0x8100, 0x88a8, 0x0800, 0x86dd, x])
    };
    b[12..14].copy_from_slice(&ethertype.to_be_bytes());
    if len > 14 && r.chance(60) {
        b[14] = (b[14] & 0x0f) | if ethertype == 0x86dd { 0x60 } else { 0x45 };
    }
    (b, format!("random len={len} ethertype={ethertype:#06x}"))
}

fn structured(r: &mut Rng) -> Built {
    let mut label = Vec::new();
    let mut bytes = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a];
    let tags = r.weighted(&[60, 24, 14, 2]);
    for _ in 0..tags {
        let tpid: u16 = r.pick(&[0x8100, 0x88a8, 0x9100, 0x8100]);
        bytes.extend_from_slice(&tpid.to_be_bytes());
        bytes.extend_from_slice(&(r.u16() & 0x0fff).to_be_bytes());
        label.push(format!("vlan={tpid:#06x}"));
    }
    let family = r.weighted(&[50, 46, 4]);
    if family == 2 {
        let ethertype: u16 = {
            let x = r.u16();
            r.pick(&[0x0806, 0x88cc, 0x8847, x])
        };
        bytes.extend_from_slice(&ethertype.to_be_bytes());
        let n = r.range(28, 100);
        bytes.extend(r.bytes(n));
        label.push(format!("ethertype={ethertype:#06x}"));
        return Built {
            l3_off: bytes.len() - n,
            l4_off: bytes.len(),
            bytes,
            label,
            ip: false,
            v6: false,
            proto: 0,
            covered: 0,
            field: None,
            pseudo: None,
            checksum: 0,
        };
    }
    let v6 = family == 1;
    bytes.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3_off = bytes.len();
    let proto = pick_protocol(r, v6);
    let (mut seg, field_at) = segment(r, proto, v6, &mut label);
    // UDP length shorter than the IP payload: the trailing bytes are not covered.
    let mut covered = seg.len();
    if proto == UDP && seg.len() > 8 && r.chance(4) {
        covered = r.range(8, seg.len() - 1);
        seg[4..6].copy_from_slice(&(covered as u16).to_be_bytes());
        label.push(format!("udp-len={covered}<{}", seg.len()));
    }
    let (header, pseudo_bytes) = if v6 {
        ipv6_headers(r, proto, &seg, covered, &mut label)
    } else {
        ipv4_header(r, proto, seg.len(), covered, &mut label)
    };
    let with_pseudo = matches!(proto, TCP | UDP) || (v6 && proto == ICMPV6);
    let (checksum, pseudo) = match field_at {
        Some(at) => {
            let p: &[u8] = if with_pseudo { &pseudo_bytes } else { &[] };
            let mut c = reference_checksum(&[p, &seg[..covered]]);
            if proto == UDP && c == 0 {
                c = 0xffff;
            }
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
            (c, with_pseudo.then(|| !reference_checksum(&[p])))
        }
        None => (0, None),
    };
    bytes.extend(header);
    let l4_off = bytes.len();
    bytes.extend(seg);
    Built {
        field: field_at.map(|at| l4_off + at),
        bytes,
        label,
        l3_off,
        ip: true,
        v6,
        l4_off,
        proto,
        covered,
        pseudo,
        checksum,
    }
}

fn pick_protocol(r: &mut Rng, v6: bool) -> u8 {
    let own_icmp = if v6 { ICMPV6 } else { ICMP };
    match r.weighted(&[34, 34, 24, 8]) {
        0 => TCP,
        1 => UDP,
        2 => own_icmp,
        _ if v6 => {
            let x = r.byte();
            r.pick(&[ICMP, 59, 50, 47, 132, 135, x])
        }
        _ => {
            let x = r.byte();
            r.pick(&[ICMPV6, 47, 50, 51, 2, 132, x])
        }
    }
}

fn payload_len(r: &mut Rng) -> usize {
    match r.weighted(&[30, 35, 12, 10, 10, 3]) {
        0 => r.range(0, 16),
        1 => r.range(17, 128),
        2 => r.range(129, 600),
        // Around the kernel's 512-byte staging chunks and 4-byte words.
        3 => r.pick(&[492usize, 512, 1004, 1024, 1516, 1536]) + r.range(0, 24) - 12,
        4 => r.range(600, 1460),
        _ => r.range(1461, 8900),
    }
}

fn payload(r: &mut Rng, len: usize) -> Vec<u8> {
    match r.weighted(&[70, 10, 5, 15]) {
        0 => r.bytes(len),
        1 => vec![0; len],
        2 => vec![0xff; len],
        _ => {
            let k = r.byte() | 1;
            (0..len).map(|i| (i as u8).wrapping_mul(k)).collect()
        }
    }
}

/// A transport segment with its checksum field zeroed, and where that field is.
fn segment(r: &mut Rng, proto: u8, v6: bool, label: &mut Vec<String>) -> (Vec<u8>, Option<usize>) {
    let plen = payload_len(r);
    let mut s = Vec::new();
    let field_at = match proto {
        TCP => {
            let opts = 4 * r.weighted(&[70, 10, 10, 5, 5]) * r.range(1, 2);
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend_from_slice(&r.u32().to_be_bytes());
            s.extend_from_slice(&r.u32().to_be_bytes());
            let mut offset = ((20 + opts) / 4) as u8;
            if r.chance(4) {
                offset = r.byte() & 0x0f; // contradicts the segment: irrelevant to the checksum
            }
            s.push(offset << 4);
            s.push(r.byte());
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend(r.bytes(opts));
            label.push(format!("tcp opts={opts} payload={plen}"));
            Some(16)
        }
        UDP => {
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend_from_slice(&r.u16().to_be_bytes());
            s.extend_from_slice(&((8 + plen) as u16).to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            label.push(format!("udp payload={plen}"));
            Some(6)
        }
        _ if (proto == ICMP && !v6) || (proto == ICMPV6 && v6) => {
            let name = if v6 { "icmpv6" } else { "icmp" };
            if r.chance(2) {
                // All zero (an echo reply with id 0, sequence 0 and no data): the correct field
                // is 0xffff, the only message whose sum is +0.
                label.push(format!("{name} all-zero"));
                return (vec![0; 8], Some(2));
            }
            let types: &[u8] = if v6 {
                &[128, 129, 1, 2, 3, 4, 133, 134, 135, 136, 143]
            } else {
                &[8, 0, 3, 11, 5, 13, 12]
            };
            s.push(if r.chance(90) {
                r.pick(types)
            } else {
                r.byte()
            });
            s.push(if r.chance(80) { 0 } else { r.byte() });
            s.extend_from_slice(&[0, 0]);
            if r.chance(4) {
                // Only type, code, checksum and up to 3 more bytes.
                let n = r.range(0, 3);
                s.extend(r.bytes(n));
                label.push(format!("{name} short={}", s.len()));
                return (s, Some(2));
            }
            s.extend(r.bytes(4));
            label.push(format!("{name} type={} payload={plen}", s[0]));
            Some(2)
        }
        _ => {
            label.push(format!("proto={proto} payload={plen}"));
            None
        }
    };
    s.extend(payload(r, plen));
    (s, field_at)
}

fn ipv4_options(r: &mut Rng, label: &mut Vec<String>) -> Vec<u8> {
    let k = r.range(1, 10);
    let opts = match r.weighted(&[62, 10, 10, 10, 8]) {
        0 => return Vec::new(),
        1 => vec![1; 4 * k],
        2 => {
            // Record Route with room for k - 1 addresses, then End of Options list.
            let mut o = vec![7, (3 + 4 * (k - 1)) as u8, 4];
            o.resize(3 + 4 * (k - 1), 0);
            o.push(0);
            o
        }
        3 => r.bytes(4 * k),
        _ => {
            let mut o = vec![0];
            o.extend(r.bytes(4 * k - 1));
            o
        }
    };
    label.push(format!("ipv4-opts={}", opts.len()));
    opts
}

fn addr4(r: &mut Rng) -> [u8; 4] {
    if r.chance(50) {
        [10, 9, 0, r.byte()]
    } else {
        r.u32().to_be_bytes()
    }
}

fn addr6(r: &mut Rng) -> [u8; 16] {
    if r.chance(40) {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = r.byte();
        a
    } else {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&r.next_u64().to_be_bytes());
        a[8..].copy_from_slice(&r.next_u64().to_be_bytes());
        a
    }
}

/// IPv4 header for a segment of `seg_len` bytes, and the pseudo-header for `covered` bytes.
fn ipv4_header(
    r: &mut Rng,
    proto: u8,
    seg_len: usize,
    covered: usize,
    label: &mut Vec<String>,
) -> (Vec<u8>, Vec<u8>) {
    let options = ipv4_options(r, label);
    let ihl = (20 + options.len()) / 4;
    let (src, dst) = (addr4(r), addr4(r));
    let frag: u16 = match r.weighted(&[60, 25, 5, 4, 3, 3]) {
        0 => 0x4000,
        1 => 0,
        2 => 0x2000,                      // first fragment
        3 => (r.u16() & 0x1fff) | 1,      // last fragment
        4 => 0x2000 | (r.u16() & 0x1fff), // middle fragment
        _ => 0x8000,                      // the reserved bit: not a fragment
    };
    if frag & 0x3fff != 0 {
        label.push(format!("ipv4-frag={frag:#06x}"));
    }
    let mut h = vec![0x40 | ihl as u8, r.byte()];
    h.extend_from_slice(&((ihl * 4 + seg_len) as u16).to_be_bytes());
    h.extend_from_slice(&r.u16().to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[r.byte(), proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(options);
    let c = reference_checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(covered as u16).to_be_bytes());
    (h, pseudo)
}

/// IPv6 header with an extension-header chain, and the pseudo-header (with the final
/// destination a Routing header names, most of the time) for `covered` bytes.
fn ipv6_headers(
    r: &mut Rng,
    proto: u8,
    seg: &[u8],
    covered: usize,
    label: &mut Vec<String>,
) -> (Vec<u8>, Vec<u8>) {
    let (src, dst) = (addr6(r), addr6(r));
    let count = match r.weighted(&[55, 20, 12, 8, 4, 1]) {
        4 => r.range(4, 7),
        5 => r.range(8, 10),
        n => n,
    };
    let kinds: Vec<u8> = (0..count)
        .map(|_| [HOP_BY_HOP, DST_OPTS, ROUTING, FRAGMENT, AUTH][r.weighted(&[20, 20, 25, 20, 15])])
        .collect();
    let mut ext = Vec::new();
    let mut final_dst = dst;
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(proto);
        let (h, fin) = ext_header(r, kind, next, label);
        if let Some(f) = fin {
            final_dst = f;
        }
        ext.extend(h);
    }
    if final_dst != dst && r.chance(10) {
        // A sender that puts the IPv6 destination in the pseudo-header: a real mismatch.
        final_dst = dst;
        label.push("pseudo-uses-ipv6-dst".into());
    }
    let mut h = vec![0x60 | (r.byte() & 0x0f), r.byte(), r.byte(), r.byte()];
    h.extend_from_slice(&((ext.len() + seg.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[kinds.first().copied().unwrap_or(proto), r.byte()]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(ext);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&final_dst);
    pseudo.extend_from_slice(&(covered as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    (h, pseudo)
}

/// One extension header, and the final destination it names (Routing with segments left).
fn ext_header(
    r: &mut Rng,
    kind: u8,
    next: u8,
    label: &mut Vec<String>,
) -> (Vec<u8>, Option<[u8; 16]>) {
    match kind {
        FRAGMENT => {
            let (off, more): (u16, u16) = match r.weighted(&[50, 20, 10, 15, 5]) {
                1 => (0, 1),
                2 => ((r.u16() & 0x1fff) | 1, 1),
                3 => ((r.u16() & 0x1fff) | 1, 0),
                // 0 and 4: a fragment header that fragments nothing.
                _ => (0, 0),
            };
            let reserved = if r.chance(5) { 0x0006 } else { 0 };
            let word = (off << 3) | reserved | more;
            let mut h = vec![next, 0];
            h.extend_from_slice(&word.to_be_bytes());
            h.extend_from_slice(&r.u32().to_be_bytes());
            label.push(format!("frag(off={off},m={more})"));
            (h, None)
        }
        AUTH => {
            let len = if r.chance(5) { 0 } else { r.range(1, 6) };
            let mut h = vec![next, len as u8, 0, 0];
            h.extend(r.bytes((len + 2) * 4 - 4));
            label.push(format!("ah(len={len})"));
            (h, None)
        }
        ROUTING => routing_header(r, next, label),
        _ => {
            // Rarely up to 2 KiB: two of them push the segment out of the linear part of an
            // XDP test-run buffer (3520 bytes) into its fragments.
            let len = match r.weighted(&[60, 25, 10, 5, 2]) {
                4 => r.range(32, 255),
                n => n,
            };
            let mut h = vec![next, len as u8];
            let body = 8 * (len + 1) - 2;
            if len > 31 {
                h.resize(2 + body, 0); // Pad1 options
            } else if r.chance(70) {
                h.extend_from_slice(&[1, (body - 2) as u8]); // one PadN option
                h.resize(2 + body, 0);
            } else {
                h.extend(r.bytes(body));
            }
            label.push(format!(
                "{}(len={len})",
                if kind == 0 { "hbh" } else { "dst" }
            ));
            (h, None)
        }
    }
}

fn routing_header(r: &mut Rng, next: u8, label: &mut Vec<String>) -> (Vec<u8>, Option<[u8; 16]>) {
    let routing_type = {
        let x = r.byte();
        r.pick(&[0u8, 0, 2, 2, 4, 4, 4, 3, x])
    };
    let n = match routing_type {
        2 => 1,
        0 | 4 => r.weighted(&[5, 40, 30, 15, 10]),
        _ => r.range(0, 3),
    };
    let segments_left = match r.weighted(&[35, 60, 5]) {
        0 => 0,
        1 => r.range(1, n.max(1)) as u8,
        _ => r.byte(),
    };
    let addrs: Vec<[u8; 16]> = (0..n).map(|_| addr6(r)).collect();
    let mut hdr_ext_len = 2 * n as u8;
    if routing_type == 0 && r.chance(5) {
        hdr_ext_len += 1; // an odd length: 8 bytes that are not an address
    }
    let mut h = vec![next, hdr_ext_len, routing_type, segments_left];
    if routing_type == 4 {
        h.extend_from_slice(&[n.saturating_sub(1) as u8, 0, 0, 0]); // last entry, flags, tag
    } else {
        h.extend_from_slice(&[0; 4]);
    }
    for a in &addrs {
        h.extend_from_slice(a);
    }
    h.resize(8 * (usize::from(hdr_ext_len) + 1), 0);
    label.push(format!("rt(type={routing_type},sl={segments_left},n={n})"));
    let fin = match routing_type {
        _ if segments_left == 0 || addrs.is_empty() => None,
        0 => addrs.last().copied(),
        2 | 4 => addrs.first().copied(),
        _ => None,
    };
    (h, fin)
}

/// The largest frame generated.
const MAX_FRAME: usize = 9100;

/// `inner` (a structured frame, already mutated) in a tunnel: VXLAN on either port, VXLAN-GPE or
/// Geneve (options of any length), carrying the frame or, for GPE and Geneve, its IP packet; over
/// an outer IPv4 or IPv6 header built like any other (options, extension headers, fragments);
/// then the tunnel header's own mutations, the outer UDP checksum's (zero included) and the
/// outer structure's (lengths, padding, a cut inside the tunnel or the inner headers).
fn tunnelled(r: &mut Rng, inner: Built) -> (Vec<u8>, String) {
    let mut label = Vec::new();
    let (kind, mut port) = match r.weighted(&[30, 15, 20, 35]) {
        0 => (EncapKind::Vxlan, 4789),
        1 => (EncapKind::Vxlan, 8472),
        2 => (EncapKind::VxlanGpe, 4790),
        _ => (EncapKind::Geneve, 6081),
    };
    let vni = r.u32() & 0x00ff_ffff;
    let ip_payload = kind != EncapKind::Vxlan && inner.ip && r.chance(50);
    let payload: &[u8] = if ip_payload {
        inner.bytes.get(inner.l3_off..).unwrap_or_default()
    } else {
        &inner.bytes
    };
    let mut header = new_tunnel_header(r, kind, vni, ip_payload.then_some(inner.v6), &mut label);
    label.insert(
        0,
        format!(
            "tunnel={}:{port} vni={vni:#x} payload={}",
            kind.name(),
            if ip_payload { "ip" } else { "ethernet" }
        ),
    );
    if r.chance(12) {
        label.push(mutate_tunnel_header(r, kind, &mut header, &mut port));
    }
    let mut seg = Vec::with_capacity(8 + header.len() + payload.len());
    seg.extend_from_slice(&r.u16().to_be_bytes());
    seg.extend_from_slice(&port.to_be_bytes());
    seg.extend_from_slice(&((8 + header.len() + payload.len()) as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    let tunnel_len = header.len();
    seg.extend(header);
    seg.extend_from_slice(payload);
    let v6 = r.chance(50);
    // The outer headers' own variety (options, extension headers, fragments) where it fits.
    let mut bytes = vec![0x02, 0, 0, 0, 0, 0x0d, 0x02, 0, 0, 0, 0, 0x0c];
    if r.chance(10) {
        bytes.extend_from_slice(&[0x81, 0x00]);
        bytes.extend_from_slice(&(r.u16() & 0x0fff).to_be_bytes());
        label.push("outer-vlan".into());
    }
    bytes.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3_off = bytes.len();
    let covered = seg.len();
    let (ip_header, pseudo_bytes) = if r.chance(70) {
        plain_outer_header(r, v6, seg.len())
    } else if v6 {
        ipv6_headers(r, UDP, &seg, covered, &mut label)
    } else {
        ipv4_header(r, UDP, seg.len(), covered, &mut label)
    };
    let mut checksum = reference_checksum(&[&pseudo_bytes, &seg]);
    if checksum == 0 {
        checksum = 0xffff;
    }
    seg[6..8].copy_from_slice(&checksum.to_be_bytes());
    bytes.extend(ip_header);
    let l4_off = bytes.len();
    bytes.extend(seg);
    if bytes.len() > MAX_FRAME {
        // Too big for a test run with its outer headers: the inner frame alone.
        return (inner.bytes, inner.label.join(" "));
    }
    label.push(if v6 { "outer=ipv6" } else { "outer=ipv4" }.into());
    let mut outer = Built {
        bytes,
        label,
        l3_off,
        ip: true,
        v6,
        l4_off,
        proto: UDP,
        covered,
        field: Some(l4_off + 6),
        pseudo: Some(!reference_checksum(&[&pseudo_bytes])),
        checksum,
    };
    mutate_outer(r, &mut outer, l4_off + 8 + tunnel_len);
    let mut label = outer.label;
    label.push("| inner:".into());
    label.extend(inner.label);
    (outer.bytes, label.join(" "))
}

/// A tunnel header of `kind` carrying an Ethernet frame, or (`ip_v6` `Some`) an IP packet.
fn new_tunnel_header(
    r: &mut Rng,
    kind: EncapKind,
    vni: u32,
    ip_v6: Option<bool>,
    label: &mut Vec<String>,
) -> Vec<u8> {
    let [_, v0, v1, v2] = vni.to_be_bytes();
    match kind {
        EncapKind::Vxlan => {
            // I, and now and then other flag bits (GBP, reserved) and nonzero reserved bytes.
            let flags = if r.chance(15) { r.byte() | 0x08 } else { 0x08 };
            let reserved = if r.chance(10) { r.byte() } else { 0 };
            vec![flags, reserved, 0, 0, v0, v1, v2, reserved]
        }
        EncapKind::VxlanGpe => {
            let next = match ip_v6 {
                None => 3,
                Some(false) => 1,
                Some(true) => 2,
            };
            let flags = if r.chance(20) {
                0x0c | (r.byte() & 0x31)
            } else {
                0x0c
            };
            vec![flags, 0, 0, next, v0, v1, v2, 0]
        }
        _ => {
            let words = match r.weighted(&[40, 35, 20, 5]) {
                0 => 0,
                1 => r.range(1, 4),
                2 => r.range(5, 20),
                _ => r.range(21, 63),
            };
            let protocol: u16 = match ip_v6 {
                None => 0x6558,
                Some(false) => 0x0800,
                Some(true) => 0x86dd,
            };
            // O (control) and C (critical options) bits, now and then.
            let oc = if r.chance(20) { r.byte() & 0xc0 } else { 0 };
            let [p0, p1] = protocol.to_be_bytes();
            let mut h = vec![words as u8, oc, p0, p1, v0, v1, v2, 0];
            h.extend(r.bytes(4 * words));
            label.push(format!("opts={}", 4 * words));
            h
        }
    }
}

/// The outer UDP checksum's mutations (zero included) and the outer structure's (lengths,
/// padding, a cut inside the tunnel header or the inner headers at `payload_off`).
fn mutate_outer(r: &mut Rng, outer: &mut Built, payload_off: usize) {
    let l4_off = outer.l4_off;
    if r.chance(15) {
        // The sender did not compute it: allowed over IPv4, and for a tunnel over IPv6 too.
        outer.bytes[l4_off + 6..l4_off + 8].copy_from_slice(&[0, 0]);
        outer.label.push("outer-udp-zero".into());
    } else if r.chance(30) {
        outer_mutation(outer, |b| mutate_checksum(r, b));
    }
    if r.chance(8) {
        // A cut inside the tunnel header, or inside the inner headers.
        let cut = if r.chance(40) {
            r.range(l4_off + 8, payload_off - 1)
        } else {
            r.range(payload_off, payload_off + 70)
        };
        if cut < outer.bytes.len() {
            outer.bytes.truncate(cut);
            outer.label.push(format!("tunnel-cut={cut}"));
        }
    } else if r.chance(25) {
        outer_mutation(outer, |b| mutate_structure(r, b));
    }
}

/// A mutation of the outer headers, its labels marked as the outer ones.
fn outer_mutation(b: &mut Built, mutate: impl FnOnce(&mut Built)) {
    let before = b.label.len();
    mutate(b);
    for l in &mut b.label[before..] {
        *l = format!("outer-{l}");
    }
}

/// What makes a tunnel header not one to follow, or not the one its port says: VXLAN without
/// the I flag, an unknown GPE next protocol, a Geneve version other than 0 or an unknown
/// protocol, and a header of one kind on another kind's port.
fn mutate_tunnel_header(r: &mut Rng, kind: EncapKind, h: &mut [u8], port: &mut u16) -> String {
    match (r.weighted(&[70, 30]), kind) {
        (0, EncapKind::Vxlan) => {
            h[0] = r.byte() & !0x08;
            format!("vxlan-flags={:#04x}", h[0])
        }
        (0, EncapKind::VxlanGpe) => {
            h[3] = {
                let x = r.byte();
                r.pick(&[0u8, 4, 5, 0x80, x])
            };
            format!("gpe-next={}", h[3])
        }
        (0, _) if r.chance(50) => {
            h[0] = (h[0] & 0x3f) | (r.range(1, 3) as u8) << 6;
            format!("geneve-version={}", h[0] >> 6)
        }
        (0, _) => {
            let p: u16 = {
                let x = r.u16();
                r.pick(&[0x8847u16, 0x0806, 0x894f, x])
            };
            h[2..4].copy_from_slice(&p.to_be_bytes());
            format!("geneve-protocol={p:#06x}")
        }
        _ => {
            *port = r.pick(&[4789u16, 8472, 4790, 6081]);
            format!("port={port}")
        }
    }
}

/// An outer IP header without options or extension headers for a `len`-byte UDP datagram, and
/// its pseudo-header.
fn plain_outer_header(r: &mut Rng, v6: bool, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut pseudo = Vec::new();
    if v6 {
        let (src, dst) = (addr6(r), addr6(r));
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend_from_slice(&[UDP, 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&(len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, UDP]);
        (h, pseudo)
    } else {
        let (src, dst) = (addr4(r), addr4(r));
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&((20 + len) as u16).to_be_bytes());
        h.extend_from_slice(&r.u16().to_be_bytes());
        h.extend_from_slice(&[0x40, 0, 64, UDP, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = reference_checksum(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, UDP]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        (h, pseudo)
    }
}

/// The checksum signatures: offload-pending (the folded pseudo-header sum, or its complement),
/// zero, byte-swapped, corrupted payload, and the two zeros of a checksum that computes to 0.
fn mutate_checksum(r: &mut Rng, b: &mut Built) {
    let Some(at) = b.field else { return };
    let set = |b: &mut Built, v: u16| b.bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let name = match r.weighted(&[40, 10, 5, 8, 8, 10, 5, 6, 3, 5]) {
        0 => return,
        1 => {
            set(b, b.pseudo.unwrap_or(0));
            "offload"
        }
        2 => {
            set(b, !b.pseudo.unwrap_or(0));
            "offload-complement"
        }
        3 => {
            set(b, 0);
            "zero"
        }
        4 => {
            set(b, b.checksum.swap_bytes());
            "swapped"
        }
        5 => {
            let end = b.l4_off + b.covered;
            if end <= at + 2 {
                return;
            }
            let p = r.range(at + 2, end - 1);
            b.bytes[p] ^= r.byte() | 1;
            "corrupt-payload"
        }
        6 => {
            set(b, r.u16());
            "random-field"
        }
        7 => {
            if !negative_zero(r, b, at) {
                return;
            }
            "computes-to-zero"
        }
        8 => {
            // A rewrite of the destination that fixes the IPv4 header but not the L4 checksum.
            let d = b.l3_off + if b.v6 { 39 } else { 19 };
            b.bytes[d] ^= r.byte() | 1;
            if !b.v6 {
                fix_ipv4_checksum(b);
            }
            "stale-dst-rewrite"
        }
        _ => {
            set(b, b.checksum.wrapping_add(1));
            "off-by-one"
        }
    };
    b.label.push(name.into());
}

/// Adjusts a payload word so that the checksum computes to 0, then writes 0x0000 or 0xffff: both
/// verify for TCP and ICMP, only 0xffff is correct for UDP.
fn negative_zero(r: &mut Rng, b: &mut Built, at: usize) -> bool {
    let header = at + 2 - b.l4_off;
    let words: Vec<usize> = (header.div_ceil(2)..b.covered / 2)
        .map(|w| b.l4_off + 2 * w)
        .collect();
    if words.is_empty() {
        return false;
    }
    let p = r.pick(&words);
    let w = u32::from(u16::from_be_bytes([b.bytes[p], b.bytes[p + 1]])) + u32::from(b.checksum);
    let w = ((w & 0xffff) + (w >> 16)) as u16;
    b.bytes[p..p + 2].copy_from_slice(&w.to_be_bytes());
    let field: u16 = if r.chance(50) { 0 } else { 0xffff };
    b.bytes[at..at + 2].copy_from_slice(&field.to_be_bytes());
    b.label.push(format!("field={field:#06x}"));
    true
}

fn fix_ipv4_checksum(b: &mut Built) {
    let h = b.l3_off;
    let ihl = usize::from(b.bytes[h] & 0x0f) * 4;
    if b.v6 || ihl < 20 || b.bytes.len() < h + ihl {
        return;
    }
    b.bytes[h + 10..h + 12].copy_from_slice(&[0, 0]);
    let c = reference_checksum(&[&b.bytes[h..h + ihl]]);
    b.bytes[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
}

/// Lengths, versions, fragments, the IPv4 header checksum, flipped bytes, padding, truncation.
#[expect(
    clippy::many_single_char_names,
    reason = "the rng, the frame and offsets into it, named as throughout this file"
)]
fn mutate_structure(r: &mut Rng, b: &mut Built) {
    let (h, ip) = (b.l3_off, b.ip);
    if ip && !b.v6 && r.chance(10) {
        let (p, name) = match r.weighted(&[30, 20, 20, 30]) {
            0 => (h + 8, "ttl"),
            1 => (h + 10, "ipv4-csum-zero"),
            2 => (h + 11, "ipv4-csum-low"),
            _ => (h + 10, "ipv4-csum"),
        };
        match name {
            "ipv4-csum-zero" => b.bytes[h + 10..h + 12].copy_from_slice(&[0, 0]),
            "ipv4-csum" => {
                let v = u16::from_be_bytes([b.bytes[h + 10], b.bytes[h + 11]]).swap_bytes();
                b.bytes[h + 10..h + 12].copy_from_slice(&v.to_be_bytes());
            }
            _ => b.bytes[p] ^= r.byte() | 1,
        }
        b.label.push(name.into());
    }
    match r.weighted(&[55, 7, 4, 4, 2, 3, 6, 2]) {
        1 if ip => {
            let ip_len_at = if b.v6 { h + 4 } else { h + 2 };
            let old = u16::from_be_bytes([b.bytes[ip_len_at], b.bytes[ip_len_at + 1]]);
            let v = match r.weighted(&[20, 30, 30, 20]) {
                0 => 0,
                1 => old.saturating_sub(r.range(1, 24) as u16),
                2 => old.saturating_add(r.range(1, 24) as u16),
                _ => r.u16(),
            };
            b.bytes[ip_len_at..ip_len_at + 2].copy_from_slice(&v.to_be_bytes());
            b.label.push(format!("ip-len={v}"));
        }
        2 if b.proto == UDP => {
            let at = b.l4_off + 4;
            let v = {
                let x = r.u16();
                r.pick(&[0u16, 7, 8, b.covered as u16 + 1, x])
            };
            b.bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
            b.label.push(format!("udp-len={v}"));
        }
        3 if ip && !b.v6 => {
            b.bytes[h + 6] = r.pick(&[0x20u8, 0x01, 0x21, 0x80]);
            b.label
                .push(format!("ipv4-frag-set={:#04x}", b.bytes[h + 6]));
        }
        4 if ip => {
            b.bytes[h] = r.pick(&[
                0x44u8,
                0x40,
                0x4f,
                0x65,
                0x46,
                0x56,
                0x60 | (b.bytes[h] & 0xf),
            ]);
            b.label.push(format!("ip-byte0={:#04x}", b.bytes[h]));
        }
        5 => {
            let n = r.range(1, 4);
            for _ in 0..n {
                let p = r.range(12, b.bytes.len() - 1);
                b.bytes[p] ^= r.byte() | 1;
            }
            b.label.push(format!("flips={n}"));
        }
        6 => {
            let n = if r.chance(30) {
                60usize.saturating_sub(b.bytes.len())
            } else {
                r.range(1, 64)
            };
            let fill = if r.chance(50) { vec![0; n] } else { r.bytes(n) };
            b.bytes.extend(fill);
            b.label.push(format!("pad={n}"));
        }
        7 if b.v6 => {
            b.bytes[h + 4..h + 6].copy_from_slice(&[0, 0]);
            b.label.push("ipv6-payload-len=0".into());
        }
        _ => {}
    }
    if ip
        && !b.v6
        && r.chance(70)
        && !b
            .label
            .iter()
            .any(|l| l.starts_with("ipv4-csum") || l == "ttl")
    {
        fix_ipv4_checksum(b);
    }
    if b.bytes.len() > 15 && r.chance(6) {
        let cut = if r.chance(50) {
            b.bytes.len() - r.range(1, 4.min(b.bytes.len() - 15))
        } else {
            r.range(14, b.bytes.len() - 1)
        };
        b.bytes.truncate(cut);
        b.label.push(format!("cut={cut}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_frame() {
        for seed in 0..200 {
            let a = generate(seed);
            let b = generate(seed);
            assert_eq!(a.bytes, b.bytes);
            assert_eq!(a.label, b.label);
            assert!(a.bytes.len() >= 14, "{}", a.label);
            assert!(a.bytes.len() <= MAX_FRAME, "{}", a.label);
        }
    }

    #[test]
    fn some_structured_frames_are_tunnelled_and_the_others_unchanged() {
        let n = 4000;
        let tunnelled = (0..n)
            .filter(|&seed| generate(seed).label.starts_with("tunnel="))
            .count();
        // About TUNNELLED percent of the 97 percent of structured frames.
        assert!((400..800).contains(&tunnelled), "{tunnelled} of {n}");
        for kind in ["vxlan:4789", "vxlan:8472", "vxlan-gpe", "geneve"] {
            assert!(
                (0..n).any(|seed| generate(seed).label.contains(kind)),
                "no {kind}"
            );
        }
    }
}
