//! The reference verifier checked on its own, without a kernel: against the hand-written
//! expectations of `tests/prog_test_run.rs` (the documented semantics, frame by frame), and against
//! etherparse's own checksum functions on many generated frames.

use checksum_common::{Kind, Layer, Status, encap::EncapKind};
use etherparse::{Ipv4Header, TcpSlice, UdpSlice};

use super::{
    generate::generate,
    judged::{Judged, Outcome},
    reference::{judge, trace},
    rng::frame_seed,
};
use crate::frames::*;

fn l4(o: &Outcome) -> &Judged {
    o.verdicts.last().expect("a verdict")
}

fn status(f: &Frame) -> Status {
    l4(&judge(&f.bytes)).status
}

fn protocols() -> Vec<Frame> {
    let mut v: Vec<Frame> = [TCP, UDP, ICMP]
        .map(|p| v4_frame(&[], p, segment(p, 33), &[]))
        .into();
    v.extend([TCP, UDP, ICMPV6].map(|p| v6_frame(p, segment(p, 33))));
    v
}

#[test]
fn good_frames_verify_and_corrupted_ones_want_the_builder_value() {
    for f in protocols() {
        let o = judge(&f.bytes);
        let v = l4(&o);
        assert_eq!(
            (v.status, v.got, v.want),
            (Status::Ok, Some(f.checksum), Some(f.checksum))
        );
        let expected_pseudo = if f.proto == ICMP { 0 } else { f.pseudo };
        assert_eq!(v.pseudo, Some(expected_pseudo));
        if f.bytes[f.l3_off] >> 4 == 4 {
            assert_eq!(o.verdicts[0].layer, Layer::Ipv4);
            assert_eq!(o.verdicts[0].status, Status::Ok);
        }
        let mut bad = f.clone();
        bad.set_field(f.checksum ^ 0x0101);
        let v = l4(&judge(&bad.bytes)).clone();
        assert_eq!(
            (v.status, v.kind, v.want),
            (Status::Bad, Some(Kind::Corrupt), Some(f.checksum))
        );
    }
}

#[test]
fn signature_kinds() {
    for f in protocols() {
        let kind = |v: u16| {
            let mut g = f.clone();
            g.set_field(v);
            l4(&judge(&g.bytes)).kind
        };
        if f.proto != ICMP {
            assert_eq!(
                kind(f.pseudo),
                Some(Kind::OffloadPending),
                "proto {}",
                f.proto
            );
        }
        if f.checksum.swap_bytes() != f.checksum {
            assert_eq!(kind(f.checksum.swap_bytes()), Some(Kind::ByteSwapped));
        }
        let v4_udp = f.proto == UDP && f.bytes[f.l3_off] >> 4 == 4;
        if !v4_udp {
            assert_eq!(kind(0), Some(Kind::Zero), "proto {}", f.proto);
        }
    }
}

#[test]
fn udp_zero_field_is_none_over_ipv4_and_bad_over_ipv6() {
    let mut f = v4_frame(&[], UDP, segment(UDP, 20), &[]);
    f.set_field(0);
    let o = judge(&f.bytes);
    assert_eq!(
        (l4(&o).status, l4(&o).got, l4(&o).want),
        (Status::None, Some(0), None)
    );
    let mut f6 = v6_frame(UDP, segment(UDP, 20));
    let want = f6.checksum;
    f6.set_field(0);
    let o = judge(&f6.bytes);
    assert_eq!(
        (l4(&o).status, l4(&o).kind, l4(&o).want),
        (Status::Bad, Some(Kind::Zero), Some(want))
    );
}

#[test]
fn both_zeros_verify_except_a_zero_udp_over_ipv6() {
    for (v6, proto) in [(false, TCP), (true, UDP), (true, TCP)] {
        let f = if v6 {
            v6_frame(proto, segment(proto, 40))
        } else {
            v4_frame(&[], proto, segment(proto, 40), &[])
        };
        // Make the checksum compute to 0: add it to a payload word.
        let mut z = f.clone();
        let p = z.l4_off + 20;
        let w = u32::from(u16::from_be_bytes([z.bytes[p], z.bytes[p + 1]])) + u32::from(f.checksum);
        let w = u16::try_from((w & 0xffff) + (w >> 16)).expect("one carry at most");
        z.bytes[p..p + 2].copy_from_slice(&w.to_be_bytes());
        z.set_field(0xffff);
        assert_eq!(status(&z), Status::Ok);
        z.set_field(0);
        let expected = if proto == UDP {
            Status::Bad
        } else {
            Status::Ok
        };
        assert_eq!(status(&z), expected, "v6 {v6} proto {proto}");
        if proto == UDP {
            assert_eq!(l4(&judge(&z.bytes)).want, Some(0xffff));
        }
    }
}

#[test]
fn the_all_zero_icmp_message_wants_0xffff() {
    let mut f = v4_frame(&[], ICMP, vec![0; 8], &[]);
    assert_eq!(f.checksum, 0xffff);
    assert_eq!(status(&f), Status::Ok);
    f.set_field(0);
    let o = judge(&f.bytes);
    assert_eq!(
        (l4(&o).status, l4(&o).kind, l4(&o).want),
        (Status::Bad, Some(Kind::Zero), Some(0xffff))
    );
}

#[test]
fn lengths_come_from_the_ip_header() {
    // Ethernet padding is not summed.
    for proto in [TCP, UDP, ICMP] {
        let mut f = v4_frame(&[], proto, segment(proto, 1), &[]);
        f.pad_to(60, 0xa5);
        assert_eq!(status(&f), Status::Ok);
    }
    // A UDP length shorter than the IP payload: the rest is not summed.
    let mut f = v4_frame(&[], UDP, segment(UDP, 10), &[]);
    let short = udp_datagram(5353, 53, &payload(4));
    let mut seg = short.clone();
    seg.extend_from_slice(&[0xee; 6]);
    let pseudo = pseudo_v4(IP4_A, IP4_B, UDP, short.len());
    let c = fill_checksum(&mut seg[..short.len()], UDP, &pseudo);
    f.bytes[f.l4_off..].copy_from_slice(&seg);
    let o = judge(&f.bytes);
    assert_eq!(
        (l4(&o).status, l4(&o).len, l4(&o).got),
        (Status::Ok, 12, Some(c))
    );
    // Truncated: unverifiable, the length the IP header gives.
    let f = v4_frame(&[], TCP, segment(TCP, 200), &[]);
    let o = judge(&f.bytes[..f.bytes.len() - 50]);
    assert_eq!((l4(&o).status, l4(&o).len), (Status::Unverifiable, 220));
    // IPv4 options cut by the end of the frame: the header cannot be summed either.
    let f = v4_frame(&[], TCP, segment(TCP, 0), &[1; 40]);
    let o = judge(&f.bytes[..f.l3_off + 30]);
    assert_eq!(o.verdicts[0].status, Status::Unverifiable);
    assert_eq!(o.verdicts[0].len, 60);
}

#[test]
fn fragments_and_ip_length_zero_are_unverifiable() {
    let mut f = v4_frame(&[], UDP, segment(UDP, 100), &[]);
    let h = f.l3_off;
    f.bytes[h + 6] = 0x20;
    f.bytes[h + 10..h + 12].copy_from_slice(&[0, 0]);
    let c = reference_checksum(&[&f.bytes[h..h + 20]]);
    f.bytes[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
    let o = judge(&f.bytes);
    assert_eq!(o.verdicts[0].status, Status::Ok);
    assert_eq!(l4(&o).status, Status::Unverifiable);
    let mut f6 = v6_frame(TCP, segment(TCP, 10));
    f6.bytes[f6.l3_off + 4..f6.l3_off + 6].copy_from_slice(&[0, 0]);
    let o = judge(&f6.bytes);
    assert_eq!((l4(&o).status, l4(&o).len), (Status::Unverifiable, 0));
    // An atomic fragment is whole; a first fragment is not.
    let atomic = [TCP, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    let f = v6_frame_ext(TCP, segment(TCP, 30), 44, &atomic, IP6_B);
    let o = judge(&f.bytes);
    assert_eq!((l4(&o).status, l4(&o).ip_id), (Status::Ok, 0xdead_beef));
    let first = [TCP, 0, 0, 1, 0, 0, 0, 9];
    let f = v6_frame_ext(TCP, segment(TCP, 30), 44, &first, IP6_B);
    assert_eq!(status(&f), Status::Unverifiable);
}

#[test]
fn routing_headers_name_the_final_destination() {
    let mut rh0 = vec![TCP, 4, 0, 2, 0, 0, 0, 0];
    rh0.extend_from_slice(&IP6_B);
    rh0.extend_from_slice(&IP6_C);
    let f = v6_frame_ext(TCP, segment(TCP, 30), 43, &rh0, IP6_C);
    let o = judge(&f.bytes);
    assert_eq!(l4(&o).status, Status::Ok);
    assert_eq!(l4(&o).dst.to_string(), "fd00::3");
    // No segments left: the IPv6 destination is final.
    let mut done = rh0.clone();
    done[3] = 0;
    assert_eq!(
        status(&v6_frame_ext(TCP, segment(TCP, 30), 43, &done, IP6_B)),
        Status::Ok
    );
    // The wrong destination in the pseudo-header is a mismatch.
    assert_eq!(
        status(&v6_frame_ext(TCP, segment(TCP, 30), 43, &rh0, IP6_B)),
        Status::Bad
    );
    // Type 4: segment list[0] is the final destination.
    let mut srh = vec![ICMPV6, 4, 4, 1, 1, 0, 0, 0];
    srh.extend_from_slice(&IP6_C);
    srh.extend_from_slice(&IP6_B);
    let f = v6_frame_ext(ICMPV6, segment(ICMPV6, 12), 43, &srh, IP6_C);
    assert_eq!(status(&f), Status::Ok);
    // Type 2: the home address.
    let mut rh2 = vec![UDP, 2, 2, 1, 0, 0, 0, 0];
    rh2.extend_from_slice(&IP6_C);
    let f = v6_frame_ext(UDP, segment(UDP, 12), 43, &rh2, IP6_C);
    assert_eq!(status(&f), Status::Ok);
}

#[test]
fn inconsistent_lengths_are_malformed() {
    let set_total = |f: &mut Frame, len: u16| {
        let h = f.l3_off;
        f.bytes[h + 2..h + 4].copy_from_slice(&len.to_be_bytes());
    };
    let mut f = v4_frame(&[], TCP, segment(TCP, 10), &[]);
    set_total(&mut f, 10);
    let o = judge(&f.bytes);
    assert!(o.malformed && o.verdicts.is_empty());
    let mut f = v4_frame(&[], TCP, segment(TCP, 10), &[]);
    f.bytes[f.l3_off] = 0x44;
    assert!(judge(&f.bytes).malformed);
    // UDP length longer than the IP payload: the IPv4 header is still checked.
    let mut f = v4_frame(&[], UDP, segment(UDP, 10), &[]);
    f.bytes[f.l4_off + 4] = 0x10;
    let o = judge(&f.bytes);
    assert!(o.malformed);
    assert_eq!(o.verdicts.len(), 1);
    let mut f = v4_frame(&[], TCP, segment(TCP, 0), &[]);
    set_total(&mut f, 20 + 12);
    assert!(judge(&f.bytes).malformed);
    let ext = [TCP, 10, 0, 0, 0, 0, 0, 0];
    let f = v6_frame_ext(TCP, segment(TCP, 8), 60, &ext, IP6_B);
    assert!(judge(&f.bytes).malformed);
}

#[test]
fn vlan_tags_and_other_ethertypes() {
    for tpids in [&[0x8100][..], &[0x88a8, 0x8100], &[0x9100, 0x8100]] {
        let f = v4_frame(tpids, TCP, segment(TCP, 40), &[]);
        assert_eq!(status(&f), Status::Ok);
    }
    // A third tag is not parsed.
    let f = v4_frame(&[0x8100, 0x8100, 0x8100], TCP, segment(TCP, 40), &[]);
    assert!(judge(&f.bytes).not_ip);
    let mut arp = ethernet(&[], 0x0806);
    arp.extend_from_slice(&[0; 28]);
    assert!(judge(&arp).not_ip);
}

/// The reference's sums and pseudo-headers against etherparse's own per-protocol functions, on
/// generated frames whose segment etherparse can slice.
#[test]
#[expect(
    clippy::many_single_char_names,
    reason = "ours and theirs (o, t) per verdict, as in the other tests here"
)]
fn agrees_with_etherparse_checksum_functions() {
    let mut compared = [0usize; 3];
    for i in 0..30_000 {
        let frame = generate(frame_seed(7, i)).bytes;
        let (o, t) = trace(&frame);
        // The trace is the outer packet's (tunnels have tests of their own).
        for v in o.verdicts.iter().filter(|v| !v.inner) {
            let (Some(got), Some(want)) = (v.got, v.want) else {
                continue;
            };
            let ok = v.status == Status::Ok;
            match v.layer {
                Layer::Ipv4 => {
                    let off = t.network_offset.unwrap();
                    let (h, _) = Ipv4Header::from_slice(&frame[off..]).unwrap();
                    if frame[off + 6] & 0x80 != 0 {
                        continue; // the reserved flag: etherparse's header drops it
                    }
                    let calc = h.calc_header_checksum();
                    check(ok, got, want, calc, false, &frame, v);
                    compared[0] += 1;
                }
                Layer::Tcp | Layer::Udp => {
                    let off = t.transport_offset.unwrap();
                    let seg = &frame[off..off + v.len as usize];
                    let calc = match (v.layer, v.src, v.dst) {
                        (Layer::Tcp, std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                            let Ok(tcp) = TcpSlice::from_slice(seg) else {
                                continue;
                            };
                            tcp.calc_checksum_ipv4(s.octets(), d.octets()).unwrap()
                        }
                        (Layer::Tcp, std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                            let Ok(tcp) = TcpSlice::from_slice(seg) else {
                                continue;
                            };
                            tcp.calc_checksum_ipv6(s.octets(), d.octets()).unwrap()
                        }
                        (_, std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                            let udp = UdpSlice::from_slice(seg).unwrap();
                            let h = udp.to_header();
                            h.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload())
                                .unwrap()
                        }
                        (_, std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                            let udp = UdpSlice::from_slice(seg).unwrap();
                            let h = udp.to_header();
                            h.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload())
                                .unwrap()
                        }
                        _ => unreachable!(),
                    };
                    if v.layer == Layer::Udp && got == 0 {
                        assert_eq!(want, calc, "{v}"); // zero is never ok for UDP/IPv6
                    } else {
                        check(ok, got, want, calc, v.layer == Layer::Udp, &frame, v);
                    }
                    compared[1 + usize::from(v.layer == Layer::Udp)] += 1;
                }
                _ => {}
            }
        }
    }
    assert!(compared.iter().all(|n| *n > 1000), "{compared:?}");
}

/// `ok` exactly when the field is the computed value or, outside UDP, its other zero; a `bad`
/// field wants the computed value.
fn check(ok: bool, got: u16, want: u16, calc: u16, udp: bool, frame: &[u8], v: &Judged) {
    let equivalent = got == calc || (!udp && got % 0xffff == calc % 0xffff);
    assert_eq!(
        ok, equivalent,
        "{v} etherparse {calc:#06x} frame {frame:02x?}"
    );
    if !ok {
        assert_eq!(want, calc, "{v} frame {frame:02x?}");
    }
}

/// An Ethernet frame with an IPv4 or IPv6 UDP datagram in it, and its IP packet.
fn inner_frame(v6: bool) -> Frame {
    if v6 {
        v6_frame(UDP, segment(UDP, 40))
    } else {
        v4_frame(&[], UDP, segment(UDP, 40), &[])
    }
}

fn tunnel_of(kind: EncapKind, outer_v6: bool, ip_payload: bool, inner_v6: bool) -> Frame {
    let inner = inner_frame(inner_v6);
    let (payload, ethertype) = if ip_payload {
        (
            &inner.bytes[inner.l3_off..],
            Some(if inner_v6 { 0x86dd } else { 0x0800 }),
        )
    } else {
        (&inner.bytes[..], None)
    };
    let options = if kind == EncapKind::Geneve {
        &[0xaa; 12][..]
    } else {
        &[]
    };
    let header = tunnel_header(kind, 0x12_3456, options, ethertype);
    tunnel_frame(outer_v6, tunnel_port(kind), &header, payload)
}

#[test]
fn tunnels_are_followed_one_level_with_their_kind_and_vni_on_every_verdict() {
    for kind in [EncapKind::Vxlan, EncapKind::VxlanGpe, EncapKind::Geneve] {
        for outer_v6 in [false, true] {
            for inner_v6 in [false, true] {
                for ip_payload in [false, kind != EncapKind::Vxlan] {
                    let f = tunnel_of(kind, outer_v6, ip_payload, inner_v6);
                    let o = judge(&f.bytes);
                    let ctx = format!("{kind:?} outer v6 {outer_v6} inner v6 {inner_v6}");
                    assert!(
                        o.encapsulated && !o.inner_malformed && !o.malformed,
                        "{ctx}"
                    );
                    let levels: Vec<(Layer, bool)> =
                        o.verdicts.iter().map(|v| (v.layer, v.inner)).collect();
                    let mut want = Vec::new();
                    if !outer_v6 {
                        want.push((Layer::Ipv4, false));
                    }
                    want.push((Layer::Udp, false));
                    if !inner_v6 {
                        want.push((Layer::Ipv4, true));
                    }
                    want.push((Layer::Udp, true));
                    assert_eq!(levels, want, "{ctx}");
                    for v in &o.verdicts {
                        assert_eq!(v.status, Status::Ok, "{ctx}: {v}");
                        let e = v.encap.expect("the tunnel");
                        assert_eq!((e.kind, e.vni), (kind, 0x12_3456), "{ctx}");
                    }
                    // The inner flow is the inner packet's; the tunnel names the outer addresses.
                    let inner = o.verdicts.last().unwrap();
                    assert_eq!(inner.ports, Some((5353, 53)), "{ctx}");
                    let outer = o.verdicts.iter().find(|v| !v.inner).unwrap();
                    let e = inner.encap.unwrap();
                    assert_eq!((e.outer_src, e.outer_dst), (outer.src, outer.dst), "{ctx}");
                }
            }
        }
    }
}

#[test]
fn a_zero_outer_udp_checksum_is_none_over_both_families_but_not_inside() {
    for outer_v6 in [false, true] {
        let mut f = tunnel_of(EncapKind::Vxlan, outer_v6, false, true);
        f.set_field(0);
        let o = judge(&f.bytes);
        let outer = o
            .verdicts
            .iter()
            .find(|v| v.layer == Layer::Udp && !v.inner);
        assert_eq!(outer.unwrap().status, Status::None);
    }
    // Inside, over IPv6, a zero is wrong as anywhere else (RFC 8200).
    let inner = inner_frame(true);
    let mut seg = inner.bytes.clone();
    let field = inner.l4_off + 6;
    seg[field..field + 2].copy_from_slice(&[0, 0]);
    let header = tunnel_header(EncapKind::Vxlan, 1, &[], None);
    let f = tunnel_frame(false, 4789, &header, &seg);
    let o = judge(&f.bytes);
    let v = l4(&o);
    assert!(v.inner);
    assert_eq!((v.status, v.kind), (Status::Bad, Some(Kind::Zero)));
}

#[test]
fn headers_that_are_not_the_ports_tunnel_are_not_followed() {
    let inner = inner_frame(false);
    let not_tunnels = [
        (4789, [0x00, 0, 0, 0, 0, 0, 1, 0]), // VXLAN without the I flag
        (4790, [0x0c, 0, 0, 4, 0, 0, 1, 0]), // GPE carrying NSH
        (6081, [0x40, 0, 0x65, 0x58, 0, 0, 1, 0]), // Geneve version 1
        (6081, [0x00, 0, 0x88, 0x47, 0, 0, 1, 0]), // Geneve carrying MPLS
        (53, [0x08, 0, 0, 0, 0, 0, 1, 0]),   // not a tunnel port
    ];
    for (port, header) in not_tunnels {
        let f = tunnel_frame(false, port, &header, &inner.bytes);
        let o = judge(&f.bytes);
        assert!(!o.encapsulated, "{port} {header:?}");
        assert!(o.verdicts.iter().all(|v| !v.inner && v.encap.is_none()));
        assert_eq!(o.verdicts.len(), 2);
    }
}

#[test]
fn a_cut_inner_packet_is_inner_malformed_and_an_outer_fragment_is_not_followed() {
    let f = tunnel_of(EncapKind::Geneve, true, false, false);
    let payload = f.l4_off + 8 + 8 + 12;
    for cut in [payload + 5, payload + 14 + 10] {
        let o = judge(&f.bytes[..cut]);
        assert!(
            o.encapsulated && o.inner_malformed && !o.malformed,
            "cut {cut}"
        );
        assert!(o.verdicts.iter().all(|v| !v.inner), "cut {cut}");
        assert_eq!(l4(&o).status, Status::Unverifiable, "cut {cut}");
    }
    // A cut inside the tunnel header: no tunnel.
    let o = judge(&f.bytes[..f.l4_off + 12]);
    assert!(!o.encapsulated && !o.inner_malformed);
    // An outer IPv4 fragment: its payload is not all there.
    let mut f = tunnel_of(EncapKind::Vxlan, false, false, false);
    f.bytes[f.l3_off + 6] = 0x20;
    let o = judge(&f.bytes);
    assert!(!o.encapsulated);
}

#[test]
fn the_tunnel_and_its_packet_lie_within_the_outer_udp_length() {
    let f = tunnel_of(EncapKind::Vxlan, true, false, false);
    let udp_len = f.l4_off + 4;
    // A UDP length of 8: the bytes after it are not the datagram's, so no tunnel header.
    let mut short = f.clone();
    short.bytes[udp_len..udp_len + 2].copy_from_slice(&8u16.to_be_bytes());
    let o = judge(&short.bytes);
    assert!(!o.encapsulated && o.verdicts.iter().all(|v| v.encap.is_none()));
    // A UDP length longer than the IP payload: malformed, and no tunnel either.
    let mut long = f.clone();
    let n = u16::from_be_bytes([f.bytes[udp_len], f.bytes[udp_len + 1]]) + 1;
    long.bytes[udp_len..udp_len + 2].copy_from_slice(&n.to_be_bytes());
    let o = judge(&long.bytes);
    assert!(o.malformed && !o.encapsulated);
    // An inner packet longer than the datagram, padding after the outer packet: cut short.
    let mut padded = f.clone();
    let inner_ip_len = f.l4_off + 8 + 8 + 14 + 2;
    let n = u16::from_be_bytes([f.bytes[inner_ip_len], f.bytes[inner_ip_len + 1]]) + 10;
    padded.bytes[inner_ip_len..inner_ip_len + 2].copy_from_slice(&n.to_be_bytes());
    padded.pad_to(padded.bytes.len() + 10, 0);
    let o = judge(&padded.bytes);
    assert!(o.encapsulated);
    let v = l4(&o);
    assert!(v.inner);
    assert_eq!(v.status, Status::Unverifiable);
}
