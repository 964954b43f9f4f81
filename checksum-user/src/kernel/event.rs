//! Decoding the kernel programs' ring-buffer records (`ChecksumEvent`, capture records) into the
//! model's verdicts and captures: the wire format, checked, never trusted to be well formed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use checksum_common::{
    ChecksumEvent, Hook, Kind, Layer, Status,
    encap::EncapKind,
    event::{
        CAPTURE_HEADER_LEN, CaptureRecord, Direction, FAMILY_IPV4, IP_SUMMED_UNKNOWN, IpSummed,
        MAX_SNAP, REPORT_TRACKED, SKB_ENCAPSULATION,
    },
};

use crate::model::{Captured, Flow, SkbCsum, Tunnel, Verdict};

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

impl SkbCsum {
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

    /// Decodes a ring-buffer record of either kind: a plain event (exactly a `ChecksumEvent`) gives
    /// no capture, a capture record (`CAPTURE_HEADER_LEN` bytes of header and `cap_len` frame
    /// bytes) gives the bytes too.
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
}

#[cfg(test)]
mod tests {
    use checksum_common::csum::verifies;
    use serde_json::{Value, json};

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
