//! Decoding kernel events into owned reports, and their JSON form.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use checksum_common::csum::{complete_l4_sum, verifies};
use checksum_common::{
    ChecksumEvent, Hook, Kind, Layer, Status,
    encap::EncapKind,
    event::{
        CAPTURE_HEADER_LEN, CaptureRecord, Direction, FAMILY_IPV4, IP_SUMMED_UNKNOWN, IpSummed,
        MAX_SNAP, REPORT_TRACKED, SKB_ENCAPSULATION,
    },
};
use serde_json::{Value, json};

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
    fn from_event(e: &ChecksumEvent) -> Result<Option<Self>, DecodeError> {
        let kind = EncapKind::from_u8(e.encap.kind).ok_or(DecodeError("encap"))?;
        if kind == EncapKind::None {
            return Ok(None);
        }
        let (outer_src, outer_dst) =
            addresses(e.encap.outer_family, e.encap.outer_src, e.encap.outer_dst);
        Ok(Some(Self {
            kind,
            vni: e.encap.vni,
            inner: e.encap.inner != 0,
            outer_src,
            outer_dst,
        }))
    }

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

    fn json(&self) -> Value {
        json!({
            "kind": self.kind.name(),
            "vni": self.vni,
            "level": self.level(),
            "outer_src": self.outer_src.to_string(),
            "outer_dst": self.outer_dst.to_string(),
        })
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

/// An event's two addresses as IPv4 or IPv6 by its family byte.
fn addresses(family: u8, src: [u8; 16], dst: [u8; 16]) -> (IpAddr, IpAddr) {
    if family == FAMILY_IPV4 {
        let [s0, s1, s2, s3, ..] = src;
        let [d0, d1, d2, d3, ..] = dst;
        (
            IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
            IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::from(src)),
            IpAddr::V6(Ipv6Addr::from(dst)),
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

    fn from_event(e: &ChecksumEvent) -> Result<Option<Self>, DecodeError> {
        if e.ip_summed == IP_SUMMED_UNKNOWN {
            return Ok(None);
        }
        Ok(Some(Self {
            ip_summed: IpSummed::from_u8(e.ip_summed).ok_or(DecodeError("ip_summed"))?,
            csum_start: e.csum_start,
            csum_offset: e.csum_offset,
            network_header: e.network_header,
            csum_level: e.csum_level,
            encapsulation: e.skb_flags & SKB_ENCAPSULATION != 0,
        }))
    }

    fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("ip_summed".into(), json!(self.ip_summed.name()));
        if self.ip_summed == IpSummed::Partial {
            m.insert("csum_start".into(), json!(self.csum_start));
            m.insert("csum_offset".into(), json!(self.csum_offset));
            m.insert("network_header".into(), json!(self.network_header));
        }
        if self.ip_summed == IpSummed::Complete {
            m.insert("csum".into(), json!(format!("{:#010x}", self.csum())));
        }
        if self.ip_summed == IpSummed::Unnecessary {
            m.insert("csum_level".into(), json!(self.csum_level));
        }
        m.insert("encapsulation".into(), json!(self.encapsulation));
        Value::Object(m)
    }
}

/// The first bytes of the frame a mismatch was found in: what a capture record carries besides
/// its verdict (`LoadOptions::snaplen` > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Length of the whole frame (a pcapng "original length").
    pub frame_len: u32,
    /// Offset of the IP header in `data`: 14 after Ethernet, +4 per VLAN tag; 0 when the frame
    /// starts at the IP header (TC ingress behind a generic-mode XDP program: no MAC header).
    pub l3_off: u16,
    /// The first min(snap length, `frame_len`) bytes. Empty only if the kernel could not copy
    /// them (not expected); the verdict is still valid.
    pub data: Vec<u8>,
}

impl Captured {
    /// The frame as `--pcap-out` writes it, and its length on the wire. Bytes that start at the IP
    /// header (`l3_off` 0: TC behind a generic-mode XDP program sees no MAC header) get the
    /// Ethernet header replay synthesizes for raw-IP captures, so every packet in the file is
    /// Ethernet. `None` when there is nothing to write (the kernel could not copy the bytes).
    pub fn ethernet_frame(&self) -> Option<(Cow<'_, [u8]>, u32)> {
        if self.data.is_empty() {
            return None;
        }
        if self.l3_off == 0 {
            let framed =
                crate::pcap::read::to_ethernet(crate::pcap::read::LINKTYPE_RAW, &self.data)
                    .ok()??;
            // frame_len comes from the record: saturate rather than overflow (a panic in debug
            // builds, a wrapped, tiny original length in release ones).
            Some((Cow::Owned(framed), self.frame_len.saturating_add(14)))
        } else {
            Some((Cow::Borrowed(&self.data[..]), self.frame_len))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed event from the kernel program: {0}")]
pub struct DecodeError(pub(crate) &'static str);

const EVENT_LEN: usize = size_of::<ChecksumEvent>();
const FRAME_LEN_AT: usize = core::mem::offset_of!(CaptureRecord, frame_len);
const CAP_LEN_AT: usize = core::mem::offset_of!(CaptureRecord, cap_len);
const L3_OFF_AT: usize = core::mem::offset_of!(CaptureRecord, l3_off);

impl Verdict {
    /// Decodes a ring-buffer record. The bytes come from our own program, but are still checked:
    /// a short record or an unknown enum value is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < size_of::<ChecksumEvent>() {
            return Err(DecodeError("short record"));
        }
        // SAFETY: length checked; ChecksumEvent is Pod (any bit pattern is valid); read_unaligned
        // because ring-buffer records are only 8-byte aligned by convention.
        let e: ChecksumEvent = unsafe { bytes.as_ptr().cast::<ChecksumEvent>().read_unaligned() };
        Self::from_event(&e)
    }

    /// Decodes a ring-buffer record of either kind: a plain event (exactly 136 bytes) gives no
    /// capture, a capture record (104-byte header and `cap_len` frame bytes) gives the bytes too.
    /// Any other length, or a `cap_len` larger than `MAX_SNAP`, the frame, or the record, is an
    /// error. (`decode` accepts both kinds too, and ignores the bytes.)
    pub fn decode_with_capture(bytes: &[u8]) -> Result<(Self, Option<Captured>), DecodeError> {
        if bytes.len() == EVENT_LEN {
            return Ok((Self::decode(bytes)?, None));
        }
        if bytes.len() < CAPTURE_HEADER_LEN {
            return Err(DecodeError(if bytes.len() < EVENT_LEN {
                "short record"
            } else {
                "record longer than an event, shorter than a capture header"
            }));
        }
        // In bounds: every field ends within the header, whose length was checked.
        let u16_at = |off: usize| u16::from_ne_bytes([bytes[off], bytes[off + 1]]);
        let frame_len = u32::from_ne_bytes([
            bytes[FRAME_LEN_AT],
            bytes[FRAME_LEN_AT + 1],
            bytes[FRAME_LEN_AT + 2],
            bytes[FRAME_LEN_AT + 3],
        ]);
        let cap_len = u16_at(CAP_LEN_AT) as usize;
        let l3_off = u16_at(L3_OFF_AT);
        if cap_len > MAX_SNAP {
            return Err(DecodeError("capture length exceeds MAX_SNAP"));
        }
        if cap_len as u64 > u64::from(frame_len) {
            return Err(DecodeError("capture length exceeds the frame length"));
        }
        if bytes.len() != CAPTURE_HEADER_LEN + cap_len {
            return Err(DecodeError(
                "capture record length disagrees with its cap_len",
            ));
        }
        let verdict = Self::decode(bytes)?;
        let captured = Captured {
            frame_len,
            l3_off,
            data: bytes[CAPTURE_HEADER_LEN..].to_vec(),
        };
        Ok((verdict, Some(captured)))
    }

    pub fn from_event(e: &ChecksumEvent) -> Result<Self, DecodeError> {
        let layer = Layer::from_u8(e.layer).ok_or(DecodeError("layer"))?;
        let (src, dst) = addresses(e.family, e.src_addr, e.dst_addr);
        let ports = matches!(layer, Layer::Tcp | Layer::Udp).then_some((e.src_port, e.dst_port));
        Ok(Self {
            timestamp_ns: e.timestamp_ns,
            slot: e.slot,
            ifindex: e.ifindex,
            hook: Hook::from_u8(e.hook).ok_or(DecodeError("hook"))?,
            direction: Direction::from_u8(e.direction).ok_or(DecodeError("direction"))?,
            layer,
            status: Status::from_u8(e.status).ok_or(DecodeError("status"))?,
            kind: Kind::from_u8(e.kind).ok_or(DecodeError("kind"))?,
            flow: Flow {
                src,
                dst,
                ports,
                protocol: e.protocol,
            },
            got: e.got,
            want: e.want,
            pseudo: e.pseudo,
            l4_len: e.l4_len,
            ip_id: e.ip_id,
            tcp_seq: e.tcp_seq,
            tcp_ack: e.tcp_ack,
            flow_label: e.flow_label,
            tracked: e.report == REPORT_TRACKED,
            skb: SkbCsum::from_event(e)?,
            encap: Tunnel::from_event(e)?,
        })
    }

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

    /// The JSON object shared by `replay --format json` and live `--format json`; the caller adds
    /// `packet`, or `iface`, `hook` and `ts`.
    pub fn json_fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!("verdict"));
        m.insert("layer".into(), json!(self.layer.name()));
        m.insert("status".into(), json!(self.status.name()));
        let verified = matches!(self.status, Status::Ok | Status::Bad);
        m.insert(
            "got".into(),
            if verified || matches!(self.status, Status::None | Status::PartialOk) {
                json!(hex(self.got))
            } else {
                Value::Null
            },
        );
        m.insert(
            "want".into(),
            if verified {
                json!(hex(self.want))
            } else {
                Value::Null
            },
        );
        m.insert(
            "kind".into(),
            if self.status == Status::Bad {
                json!(self.kind.name())
            } else {
                Value::Null
            },
        );
        m.insert("family".into(), json!(self.family()));
        m.insert("src".into(), json!(self.flow.src.to_string()));
        m.insert("dst".into(), json!(self.flow.dst.to_string()));
        let (sport, dport) = self
            .flow
            .ports
            .map_or((Value::Null, Value::Null), |(s, d)| (json!(s), json!(d)));
        m.insert("sport".into(), sport);
        m.insert("dport".into(), dport);
        let mut skb = self.skb.as_ref().map_or(Value::Null, SkbCsum::json);
        if let (Some(d), Value::Object(o)) = (self.device_sum_disagrees(), &mut skb) {
            o.insert("device_sum_disagrees".into(), json!(d));
        }
        m.insert("skb".into(), skb);
        m.insert(
            "encap".into(),
            self.encap.as_ref().map_or(Value::Null, Tunnel::json),
        );
        m
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 event with a `CHECKSUM_COMPLETE` skb whose `skb->csum` a device summed over the
    /// packet (IP header on), and the kernel program's verdict `status` on the same bytes.
    fn complete_event(corrupt_after_device: bool) -> Verdict {
        use checksum_common::csum::{field_for, fold, pseudo_header_v4, sum_bytes};
        let (src, dst) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let mut seg = vec![
            0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 2, 0,
        ];
        seg.extend_from_slice(&[0, 0, 0, 0]);
        seg.extend_from_slice(b"payload");
        let pseudo = pseudo_header_v4(src, dst, 6, u16::try_from(seg.len()).unwrap());
        let field = field_for(sum_bytes(pseudo, &seg));
        seg[16..18].copy_from_slice(&field.to_ne_bytes());
        let mut ip = vec![0x45, 0, 0, 47, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = field_for(sum_bytes(0, &ip));
        ip[10..12].copy_from_slice(&c.to_ne_bytes());
        let csum = u32::from(fold(sum_bytes(sum_bytes(0, &ip), &seg)));
        if corrupt_after_device {
            // A program rewrote a payload byte without updating skb->csum.
            let last = seg.len() - 1;
            seg[last] ^= 0x20;
        }
        let ok = verifies(sum_bytes(pseudo, &seg));
        let mut e = ChecksumEvent {
            src_addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            status: if ok { Status::Ok } else { Status::Bad } as u8,
            kind: if ok { Kind::Match } else { Kind::Corrupt } as u8,
            pseudo: u16::from_be(fold(pseudo)),
            ip_summed: IpSummed::Complete as u8,
            protocol: 6,
            ..event()
        };
        e.csum_start = u16::try_from(csum & 0xffff).unwrap();
        e.csum_offset = u16::try_from(csum >> 16).unwrap();
        Verdict::from_event(&e).unwrap()
    }

    #[test]
    fn a_packet_changed_after_the_device_summed_it_is_told() {
        let intact = complete_event(false);
        assert_eq!(intact.status, Status::Ok);
        assert_eq!(intact.device_sum_disagrees(), Some(false));
        let changed = complete_event(true);
        assert_eq!(changed.status, Status::Bad);
        assert_eq!(changed.device_sum_disagrees(), Some(true));
        assert!(
            crate::report::output::verdict_text(&changed)
                .contains("CHECKSUM_COMPLETE sum disagrees")
        );
        // Not a COMPLETE skb: nothing to tell.
        let mut none = changed.clone();
        none.skb = None;
        assert_eq!(none.device_sum_disagrees(), None);
    }

    fn event() -> ChecksumEvent {
        ChecksumEvent {
            family: FAMILY_IPV4,
            layer: Layer::Tcp as u8,
            status: Status::Bad as u8,
            kind: Kind::Corrupt as u8,
            got: 0x1443,
            want: 0x46a1,
            ip_summed: IP_SUMMED_UNKNOWN,
            ..ChecksumEvent::default()
        }
    }

    fn as_bytes(e: &ChecksumEvent) -> Vec<u8> {
        // SAFETY: ChecksumEvent is repr(C) with explicit padding: every byte is initialized.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(e).cast::<u8>(), EVENT_LEN).to_vec()
        }
    }

    fn capture_record(frame_len: u32, cap_len: u16, data: &[u8]) -> Vec<u8> {
        let mut b = as_bytes(&event());
        b.extend_from_slice(&frame_len.to_ne_bytes());
        b.extend_from_slice(&cap_len.to_ne_bytes());
        b.extend_from_slice(&18u16.to_ne_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn plain_events_and_capture_records() {
        let (v, cap) = Verdict::decode_with_capture(&as_bytes(&event())).unwrap();
        assert_eq!((v.layer, v.got, v.want), (Layer::Tcp, 0x1443, 0x46a1));
        assert!(cap.is_none());
        let record = capture_record(1514, 3, &[1, 2, 3]);
        let (v2, cap) = Verdict::decode_with_capture(&record).unwrap();
        assert_eq!(v2, v);
        let cap = cap.unwrap();
        assert_eq!((cap.frame_len, cap.l3_off), (1514, 18));
        assert_eq!(cap.data, [1, 2, 3]);
        // `decode` reads the event of a capture record too.
        assert_eq!(Verdict::decode(&record).unwrap(), v);
        // Capture with no bytes (the kernel could not copy them).
        let (_, cap) = Verdict::decode_with_capture(&capture_record(60, 0, &[])).unwrap();
        assert_eq!(cap.unwrap().data, Vec::<u8>::new());
    }

    #[test]
    fn skb_state_decodes_and_shows_in_json() {
        // Unknown (XDP, replay): no state, and "skb": null.
        let v = Verdict::from_event(&event()).unwrap();
        assert_eq!(v.skb, None);
        assert_eq!(v.json_fields()["skb"], Value::Null);
        // CHECKSUM_PARTIAL of a TCP segment after a 20-byte IPv4 header at head + 78.
        let partial = ChecksumEvent {
            ip_summed: IpSummed::Partial as u8,
            csum_start: 98,
            csum_offset: 16,
            network_header: 78,
            skb_flags: SKB_ENCAPSULATION,
            ..event()
        };
        let skb = Verdict::from_event(&partial).unwrap().skb.unwrap();
        assert_eq!(skb.ip_summed, IpSummed::Partial);
        assert_eq!((skb.start_from_ip_header(), skb.csum_offset), (20, 16));
        assert!(skb.encapsulation);
        assert_eq!(
            Verdict::from_event(&partial).unwrap().json_fields()["skb"],
            json!({"ip_summed": "partial", "csum_start": 98, "csum_offset": 16,
                   "network_header": 78, "encapsulation": true})
        );
        // CHECKSUM_COMPLETE: the union holds the device's sum.
        let complete = ChecksumEvent {
            ip_summed: IpSummed::Complete as u8,
            csum_start: 0x5678,
            csum_offset: 0x1234,
            ..event()
        };
        let v = Verdict::from_event(&complete).unwrap();
        assert_eq!(v.skb.unwrap().csum(), 0x1234_5678);
        assert_eq!(v.json_fields()["skb"]["csum"], "0x12345678");
        // Any other value is a decoding error.
        let bad = ChecksumEvent {
            ip_summed: 4,
            ..event()
        };
        assert!(Verdict::from_event(&bad).is_err());
    }

    #[test]
    fn ethernet_frame_of_captures() {
        let ip = vec![0x45, 0, 0, 20];
        let raw = Captured {
            frame_len: 20,
            l3_off: 0,
            data: ip.clone(),
        };
        let (frame, orig_len) = raw.ethernet_frame().unwrap();
        assert_eq!(
            (&frame[12..], orig_len),
            (&[0x08, 0x00, 0x45, 0, 0, 20][..], 34)
        );
        let eth = Captured { l3_off: 14, ..raw };
        assert_eq!(eth.ethernet_frame().unwrap(), (Cow::Borrowed(&ip[..]), 20));
        assert!(
            Captured {
                data: vec![],
                ..eth
            }
            .ethernet_frame()
            .is_none()
        );
        // Found by the ring_record fuzz target: a frame length near u32::MAX (any record may carry
        // one) overflowed when the synthesized Ethernet header was added.
        let huge = Captured {
            frame_len: u32::MAX - 3,
            l3_off: 0,
            data: ip,
        };
        assert_eq!(huge.ethernet_frame().unwrap().1, u32::MAX);
    }

    #[test]
    fn bad_records_are_errors() {
        let ok = capture_record(1514, 3, &[1, 2, 3]);
        for len in [0, 1, 87, 89, 95] {
            assert!(Verdict::decode_with_capture(&ok[..len]).is_err(), "{len}");
        }
        // Shorter or longer than cap_len says.
        assert!(Verdict::decode_with_capture(&ok[..ok.len() - 1]).is_err());
        assert!(Verdict::decode_with_capture(&capture_record(1514, 3, &[1, 2, 3, 4])).is_err());
        // cap_len beyond MAX_SNAP, or beyond the frame.
        let huge = vec![0; MAX_SNAP + 1];
        let r = capture_record(u32::MAX, u16::try_from(MAX_SNAP + 1).unwrap(), &huge);
        assert!(Verdict::decode_with_capture(&r).is_err());
        assert!(Verdict::decode_with_capture(&capture_record(2, 3, &[1, 2, 3])).is_err());
        // An unknown enum value in the event part.
        let mut bad = ok.clone();
        bad[core::mem::offset_of!(ChecksumEvent, layer)] = 99;
        assert!(Verdict::decode_with_capture(&bad).is_err());
    }
}
