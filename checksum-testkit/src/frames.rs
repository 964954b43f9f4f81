//! Frame construction for tests and the demo, with a deliberately plain big-endian reference checksum that
//! shares no code with checksum-common (the kernel and the CLI use that one).
#![expect(
    clippy::cast_possible_truncation,
    reason = "test frames: lengths and offsets well under the 16-bit fields that hold them"
)]

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const IP4_A: [u8; 4] = [10, 9, 0, 1];
pub const IP4_B: [u8; 4] = [10, 9, 0, 2];
pub const IP6_A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const IP6_B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const IP6_C: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// The independent RFC 1071 reference every frame builder here fills checksums with.
pub use checksum_common::reference::reference_checksum;

pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// Offset of the checksum field within each L4 header.
pub fn field_offset(proto: u8) -> usize {
    match proto {
        TCP => 16,
        UDP => 6,
        _ => 2,
    }
}

pub fn tcp_segment(sport: u16, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&0u32.to_be_bytes()); // ack
    s.extend_from_slice(&[0x50, 0x18]); // data offset 5, PSH|ACK
    s.extend_from_slice(&512u16.to_be_bytes()); // window
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    s.extend_from_slice(payload);
    s
}

pub fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

/// ICMP / ICMPv6 echo request (type 8 / 128).
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// Writes the correct checksum into `seg` (whose field is zero) for the given pseudo-header.
pub fn fill_checksum(seg: &mut [u8], proto: u8, pseudo: &[u8]) -> u16 {
    let off = field_offset(proto);
    seg[off..off + 2].copy_from_slice(&[0, 0]);
    let mut c = reference_checksum(&[pseudo, seg]);
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    seg[off..off + 2].copy_from_slice(&c.to_be_bytes());
    c
}

/// IPv4 header (with `options`, a multiple of 4 bytes) and a correct header checksum.
pub fn ipv4_header(proto: u8, payload_len: usize, options: &[u8], id: u16, frag: u16) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = (20 + options.len()) / 4;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&((ihl * 4 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&IP4_A);
    h.extend_from_slice(&IP4_B);
    h.extend_from_slice(options);
    let c = reference_checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

pub fn ipv6_header(next: u8, payload_len: usize, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// Ethernet header with VLAN tags given as TPIDs (0x8100, 0x88a8).
pub fn ethernet(tpids: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    for (i, tpid) in tpids.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A built frame and where its L4 checksum field is.
#[derive(Clone, Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub l3_off: usize,
    pub l4_off: usize,
    pub proto: u8,
    /// The correct L4 checksum.
    pub checksum: u16,
    /// Folded pseudo-header sum (not complemented), 0 for ICMPv4.
    pub pseudo: u16,
}

impl Frame {
    pub fn field_pos(&self) -> usize {
        self.l4_off + field_offset(self.proto)
    }

    pub fn field(&self) -> u16 {
        let p = self.field_pos();
        u16::from_be_bytes([self.bytes[p], self.bytes[p + 1]])
    }

    pub fn set_field(&mut self, v: u16) -> &mut Self {
        let p = self.field_pos();
        self.bytes[p..p + 2].copy_from_slice(&v.to_be_bytes());
        self
    }

    /// Flips bits in the last payload byte: the checksum no longer matches.
    pub fn corrupt_payload(&mut self) -> &mut Self {
        let last = self.bytes.len() - 1;
        self.bytes[last] ^= 0x5a;
        self
    }

    pub fn pad_to(&mut self, len: usize, byte: u8) -> &mut Self {
        self.bytes.resize(len.max(self.bytes.len()), byte);
        self
    }
}

fn folded_pseudo(pseudo: &[u8]) -> u16 {
    !reference_checksum(&[pseudo])
}

/// L4 segment `seg` (checksum field zero) over IPv4.
pub fn v4_frame(tpids: &[u16], proto: u8, mut seg: Vec<u8>, options: &[u8]) -> Frame {
    let pseudo = if proto == ICMP {
        Vec::new()
    } else {
        pseudo_v4(IP4_A, IP4_B, proto, seg.len())
    };
    let checksum = fill_checksum(&mut seg, proto, &pseudo);
    let mut bytes = ethernet(tpids, 0x0800);
    let l3_off = bytes.len();
    bytes.extend(ipv4_header(proto, seg.len(), options, 0x1234, 0x4000));
    let l4_off = bytes.len();
    bytes.extend(seg);
    Frame {
        bytes,
        l3_off,
        l4_off,
        proto,
        checksum,
        pseudo: if pseudo.is_empty() {
            0
        } else {
            folded_pseudo(&pseudo)
        },
    }
}

/// L4 segment over IPv6 with extension headers `ext` (already encoded, chained by the caller:
/// `first_next` is the IPv6 header's next header). `final_dst` is the pseudo-header destination.
pub fn v6_frame_ext(
    proto: u8,
    mut seg: Vec<u8>,
    first_next: u8,
    ext: &[u8],
    final_dst: [u8; 16],
) -> Frame {
    let pseudo = pseudo_v6(IP6_A, final_dst, proto, seg.len());
    let checksum = fill_checksum(&mut seg, proto, &pseudo);
    let mut bytes = ethernet(&[], 0x86dd);
    let l3_off = bytes.len();
    bytes.extend(ipv6_header(first_next, ext.len() + seg.len(), IP6_A, IP6_B));
    bytes.extend_from_slice(ext);
    let l4_off = bytes.len();
    bytes.extend(seg);
    Frame {
        bytes,
        l3_off,
        l4_off,
        proto,
        checksum,
        pseudo: folded_pseudo(&pseudo),
    }
}

pub fn v6_frame(proto: u8, seg: Vec<u8>) -> Frame {
    v6_frame_ext(proto, seg, proto, &[], IP6_B)
}

pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

pub fn segment(proto: u8, payload_len: usize) -> Vec<u8> {
    let p = payload(payload_len);
    match proto {
        TCP => tcp_segment(40682, 8080, 0x0102_0304, &p),
        UDP => udp_datagram(5353, 53, &p),
        ICMP => echo_request(false, 7, 1, &p),
        _ => echo_request(true, 7, 1, &p),
    }
}

/// A catalogue of good, bad and odd frames (one per case) for tests that compare hooks.
pub fn catalogue() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (v6, proto) in [
        (false, TCP),
        (false, UDP),
        (false, ICMP),
        (true, TCP),
        (true, UDP),
        (true, ICMPV6),
    ] {
        for len in [0usize, 1, 33, 511, 512, 513, 1400] {
            let f = if v6 {
                v6_frame(proto, segment(proto, len))
            } else {
                v4_frame(&[], proto, segment(proto, len), &[])
            };
            let name = format!("{}-{proto}-{len}", if v6 { "v6" } else { "v4" });
            let mut bad = f.clone();
            bad.set_field(f.checksum ^ 0x4242);
            let mut partial = f.clone();
            partial.set_field(f.pseudo);
            let mut zero = f.clone();
            zero.set_field(0);
            let mut swapped = f.clone();
            swapped.set_field(f.checksum.swap_bytes());
            out.push((format!("{name}-good"), f.bytes.clone()));
            out.push((format!("{name}-bad"), bad.bytes));
            out.push((format!("{name}-partial"), partial.bytes));
            out.push((format!("{name}-zero"), zero.bytes));
            out.push((format!("{name}-swapped"), swapped.bytes));
            out.push((
                format!("{name}-truncated"),
                f.bytes[..f.bytes.len() - 1].to_vec(),
            ));
        }
    }
    let mut vlan = v4_frame(&[0x88a8, 0x8100], TCP, segment(TCP, 99), &[]);
    out.push(("qinq-good".into(), vlan.bytes.clone()));
    vlan.corrupt_payload();
    out.push(("qinq-bad".into(), vlan.bytes));
    let mut ttl = v4_frame(&[], UDP, segment(UDP, 20), &[]);
    ttl.bytes[ttl.l3_off + 8] = 1;
    out.push(("ipv4-header-bad".into(), ttl.bytes));
    let mut padded = v4_frame(&[], UDP, segment(UDP, 1), &[]);
    padded.pad_to(60, 0xa5);
    out.push(("padded".into(), padded.bytes));
    let opts = v4_frame(&[], TCP, segment(TCP, 10), &[1, 1, 1, 1, 1, 1, 1, 0]);
    out.push(("ipv4-options".into(), opts.bytes));
    out
}

impl Frame {
    /// Rewrites the IPv4 destination the way a faulty NAT does: the IP header checksum is fixed,
    /// the L4 checksum is left stale.
    pub fn rewrite_v4_dst_stale(&mut self, dst: [u8; 4]) -> &mut Self {
        let h = self.l3_off;
        self.bytes[h + 16..h + 20].copy_from_slice(&dst);
        self.bytes[h + 10..h + 12].copy_from_slice(&[0, 0]);
        let ihl = ((self.bytes[h] & 0x0f) as usize) * 4;
        let c = reference_checksum(&[&self.bytes[h..h + ihl]]);
        self.bytes[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
        self
    }
}

/// A classic pcap file (microsecond timestamps) holding `packets` of link type `linktype`.
pub fn pcap_file(linktype: u32, packets: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&linktype.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

/// The 8-byte header (and Geneve's `options`, a multiple of 4 bytes) of a tunnel of `kind` with
/// network identifier `vni`, carrying an Ethernet frame (`ethertype` `None`) or an IP packet.
pub fn tunnel_header(kind: EncapKind, vni: u32, options: &[u8], ethertype: Option<u16>) -> Vec<u8> {
    let [_, v0, v1, v2] = vni.to_be_bytes();
    let mut h = match kind {
        EncapKind::Vxlan => vec![0x08, 0, 0, 0, v0, v1, v2, 0],
        EncapKind::VxlanGpe => {
            let next = match ethertype {
                None => 3,
                Some(0x0800) => 1,
                Some(_) => 2,
            };
            vec![0x0c, 0, 0, next, v0, v1, v2, 0]
        }
        EncapKind::Geneve => {
            let [p0, p1] = ethertype.unwrap_or(0x6558).to_be_bytes();
            vec![(options.len() / 4) as u8, 0, p0, p1, v0, v1, v2, 0]
        }
        EncapKind::None => Vec::new(),
    };
    h.extend_from_slice(options);
    h
}

/// `inner` (an Ethernet frame, or an IP packet with `ethertype`) in a tunnel over UDP to `port`,
/// over IPv4 or IPv6, with a correct outer UDP checksum. The frame's `l4_off` is the outer UDP's.
pub fn tunnel_frame(outer_v6: bool, port: u16, header: &[u8], inner: &[u8]) -> Frame {
    let mut payload = header.to_vec();
    payload.extend_from_slice(inner);
    let seg = udp_datagram(49_152, port, &payload);
    if outer_v6 {
        v6_frame(UDP, seg)
    } else {
        v4_frame(&[], UDP, seg, &[])
    }
}

/// The IANA port of each tunnel kind.
pub fn tunnel_port(kind: EncapKind) -> u16 {
    match kind {
        EncapKind::Vxlan | EncapKind::None => 4789,
        EncapKind::VxlanGpe => 4790,
        EncapKind::Geneve => 6081,
    }
}

use checksum_common::encap::EncapKind;
