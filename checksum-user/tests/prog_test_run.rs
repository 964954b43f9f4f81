//! `BPF_PROG_TEST_RUN` tests: crafted frames through the loaded, verified XDP program. Every case
//! asserts the verdicts and the event fields the kernel reported.

mod common;

use std::sync::{LazyLock, Mutex};

use checksum_common::{Counters, Hook, Kind, Layer, Status, csum::ones_add, event::Direction};
use checksum_testkit::frames::*;
use checksum_user::{kernel::loader::LoadOptions, kernel::testrun::FrameAuditor, model::Verdict};

/// One loaded program (with `REPORT_ALL`, so `ok` verdicts are reported too) shared by the tests.
static AUDITOR: LazyLock<Mutex<FrameAuditor>> =
    LazyLock::new(|| Mutex::new(FrameAuditor::new(true).expect("load the XDP program")));

fn audit(frame: &[u8]) -> Vec<Verdict> {
    AUDITOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .audit(frame)
        .expect("test run")
}

/// Runs a frame and returns its verdicts plus the counter deltas it caused.
fn audit_counted(frame: &[u8]) -> (Vec<Verdict>, Counters) {
    let mut a = AUDITOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = a.counters();
    let v = a.audit(frame).expect("test run");
    let after = a.counters();
    let delta = after.since(&before);
    (v, delta)
}

fn layer(verdicts: &[Verdict], layer: Layer) -> &Verdict {
    verdicts
        .iter()
        .find(|v| v.layer == layer)
        .unwrap_or_else(|| panic!("no {layer:?} verdict in {verdicts:#?}"))
}

fn assert_l4(frame: &Frame, status: Status) -> Verdict {
    let verdicts = audit(&frame.bytes);
    let l = match frame.proto {
        TCP => Layer::Tcp,
        UDP => Layer::Udp,
        ICMP => Layer::Icmp,
        _ => Layer::Icmpv6,
    };
    let v = layer(&verdicts, l).clone();
    assert_eq!(v.status, status, "{l:?} verdict: {v:#?}");
    v
}

const PROTOS_V4: [u8; 3] = [TCP, UDP, ICMP];
const PROTOS_V6: [u8; 3] = [TCP, UDP, ICMPV6];

#[test]
fn good_frames_verify_for_every_protocol() {
    root_only!();
    for proto in PROTOS_V4 {
        let f = v4_frame(&[], proto, segment(proto, 32), &[]);
        let verdicts = audit(&f.bytes);
        assert_eq!(layer(&verdicts, Layer::Ipv4).status, Status::Ok);
        let v = assert_l4(&f, Status::Ok);
        assert_eq!(v.got, f.checksum);
    }
    for proto in PROTOS_V6 {
        let f = v6_frame(proto, segment(proto, 32));
        let v = assert_l4(&f, Status::Ok);
        assert_eq!(v.got, f.checksum);
        assert!(audit(&f.bytes).iter().all(|v| v.layer != Layer::Ipv4));
    }
}

#[test]
fn corrupted_payload_is_bad_with_the_right_want() {
    root_only!();
    for (v6, proto) in PROTOS_V4
        .map(|p| (false, p))
        .into_iter()
        .chain(PROTOS_V6.map(|p| (true, p)))
    {
        let good = if v6 {
            v6_frame(proto, segment(proto, 33))
        } else {
            v4_frame(&[], proto, segment(proto, 33), &[])
        };
        let mut bad = good.clone();
        bad.corrupt_payload();
        // The correct value for the corrupted bytes, from the reference implementation.
        let mut fixed = bad.clone();
        let seg_end = fixed.bytes.len();
        let seg = &mut fixed.bytes[fixed.l4_off..seg_end];
        let pseudo = if proto == ICMP {
            Vec::new()
        } else if v6 {
            pseudo_v6(IP6_A, IP6_B, proto, seg.len())
        } else {
            pseudo_v4(IP4_A, IP4_B, proto, seg.len())
        };
        let want = fill_checksum(seg, proto, &pseudo);
        let v = assert_l4(&bad, Status::Bad);
        assert_eq!(v.got, good.checksum, "proto {proto} v6 {v6}");
        assert_eq!(v.want, want, "proto {proto} v6 {v6}");
        assert_eq!(v.kind, Kind::Corrupt);
    }
}

#[test]
fn event_fields_describe_the_packet() {
    root_only!();
    let mut f = v4_frame(&[], TCP, segment(TCP, 100), &[]);
    f.corrupt_payload();
    let (verdicts, delta) = audit_counted(&f.bytes);
    let v = layer(&verdicts, Layer::Tcp);
    assert_eq!(v.hook, Hook::Xdp);
    assert_eq!(v.direction, Direction::Ingress);
    assert_eq!(v.family(), "ipv4");
    assert_eq!(v.flow.src.to_string(), "10.9.0.1");
    assert_eq!(v.flow.dst.to_string(), "10.9.0.2");
    assert_eq!(v.flow.ports, Some((40682, 8080)));
    assert_eq!(v.flow.protocol, TCP);
    assert_eq!(v.l4_len, 120);
    assert_eq!(v.ip_id, 0x1234);
    assert_eq!(v.tcp_seq, 0x0102_0304);
    assert_eq!(v.pseudo, f.pseudo);
    assert!(v.timestamp_ns > 0);
    assert_eq!(v.ifindex, 1, "test runs use the loopback device");
    assert_eq!(delta.packets, 1);
    assert_eq!(delta.check(Layer::Tcp, Status::Bad), 1);
    assert_eq!(delta.check(Layer::Ipv4, Status::Ok), 1);
    assert_eq!(delta.mismatch(Kind::Corrupt), 1);
}

#[test]
fn ipv4_header_checksum() {
    root_only!();
    let good = v4_frame(&[], UDP, segment(UDP, 10), &[]);
    let header_sum =
        u16::from_be_bytes([good.bytes[good.l3_off + 10], good.bytes[good.l3_off + 11]]);
    let mut bad = good.clone();
    bad.bytes[good.l3_off + 8] = 1; // TTL changed, checksum not updated
    let verdicts = audit(&bad.bytes);
    let h = layer(&verdicts, Layer::Ipv4);
    assert_eq!(h.status, Status::Bad);
    assert_eq!(h.got, header_sum);
    let mut fixed = bad.bytes[bad.l3_off..bad.l3_off + 20].to_vec();
    fixed[10..12].copy_from_slice(&[0, 0]);
    assert_eq!(h.want, reference_checksum(&[&fixed]));
    assert_eq!(
        h.kind,
        Kind::Corrupt,
        "no pseudo-header: never offload-pending"
    );
    assert_eq!(h.l4_len, 20);
    // The L4 checksum does not cover the TTL: still fine.
    assert_eq!(layer(&verdicts, Layer::Udp).status, Status::Ok);
}

#[test]
fn ipv4_options_are_skipped_and_summed() {
    root_only!();
    // NOP, NOP, then Record Route (7) with room for two addresses: 12 bytes, IHL 8.
    let options = [1, 1, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for proto in PROTOS_V4 {
        let f = v4_frame(&[], proto, segment(proto, 21), &options[..12]);
        let verdicts = audit(&f.bytes);
        assert_eq!(layer(&verdicts, Layer::Ipv4).status, Status::Ok);
        assert_eq!(layer(&verdicts, Layer::Ipv4).l4_len, 32);
        assert_l4(&f, Status::Ok);
        let mut bad = f.clone();
        bad.corrupt_payload();
        assert_l4(&bad, Status::Bad);
    }
    // The largest header: 40 bytes of options.
    let f = v4_frame(&[], TCP, segment(TCP, 5), &[1; 40]);
    assert_eq!(layer(&audit(&f.bytes), Layer::Ipv4).status, Status::Ok);
    assert_l4(&f, Status::Ok);
}

#[test]
fn vlan_and_qinq() {
    root_only!();
    for tpids in [&[0x8100][..], &[0x88a8, 0x8100][..], &[0x8100, 0x8100][..]] {
        for proto in PROTOS_V4 {
            let f = v4_frame(tpids, proto, segment(proto, 40), &[]);
            assert_l4(&f, Status::Ok);
            let mut bad = f.clone();
            bad.corrupt_payload();
            assert_l4(&bad, Status::Bad);
        }
    }
}

#[test]
fn ethernet_padding_is_not_summed() {
    root_only!();
    // A 1-byte UDP payload makes a 43-byte frame; Ethernet pads it to 60 with junk.
    for proto in PROTOS_V4 {
        let mut f = v4_frame(&[], proto, segment(proto, 1), &[]);
        f.pad_to(60, 0xa5);
        assert_l4(&f, Status::Ok);
    }
    let mut f = v6_frame(UDP, segment(UDP, 1));
    f.pad_to(100, 0xee);
    assert_l4(&f, Status::Ok);
}

#[test]
fn odd_and_boundary_lengths() {
    root_only!();
    // Around the 512-byte staging chunk and its 4-byte words.
    for len in [
        0, 1, 2, 3, 4, 5, 7, 491, 492, 493, 495, 503, 504, 505, 511, 512, 513, 1023, 1024, 1025,
        1459,
    ] {
        for proto in [TCP, UDP] {
            let f = v4_frame(&[], proto, segment(proto, len), &[]);
            assert_l4(&f, Status::Ok);
            let mut bad = f.clone();
            if len > 0 {
                bad.corrupt_payload();
                assert_l4(&bad, Status::Bad);
            }
        }
        let f = v6_frame(ICMPV6, segment(ICMPV6, len));
        assert_l4(&f, Status::Ok);
    }
}

#[test]
fn jumbo_frames_across_fragments() {
    root_only!();
    // Up to a 9014-byte frame (9000-byte MTU): the linear part of a test-run buffer is one page, so
    // these reach into XDP fragments.
    for len in [5000, 8900, 9000 - 20 - 20] {
        for proto in [TCP, UDP] {
            let f = v4_frame(&[], proto, segment(proto, len), &[]);
            assert!(f.bytes.len() > 4096);
            let v = assert_l4(&f, Status::Ok);
            assert_eq!(v.l4_len as usize, f.bytes.len() - f.l4_off);
            let mut bad = f.clone();
            bad.corrupt_payload(); // the very last byte, in the last fragment
            let v = assert_l4(&bad, Status::Bad);
            assert_eq!(v.got, f.checksum);
        }
        let f = v6_frame(TCP, segment(TCP, len));
        assert_l4(&f, Status::Ok);
    }
}

#[test]
fn ipv6_extension_headers() {
    const HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DSTOPTS: u8 = 60;
    root_only!();
    // Hop-by-hop (8 bytes of PadN) then destination options (16 bytes), then UDP.
    let mut ext = vec![DSTOPTS, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let f = v6_frame_ext(UDP, segment(UDP, 50), HOP, &ext, IP6_B);
    assert_l4(&f, Status::Ok);
    let mut bad = f.clone();
    bad.corrupt_payload();
    assert_l4(&bad, Status::Bad);

    // Routing type 0 with segments left: the pseudo-header uses the last address (RFC 8200 8.1).
    let mut rh0 = vec![TCP, 4, 0, 2, 0, 0, 0, 0];
    rh0.extend_from_slice(&IP6_B);
    rh0.extend_from_slice(&IP6_C);
    let f = v6_frame_ext(TCP, segment(TCP, 30), ROUTING, &rh0, IP6_C);
    let v = assert_l4(&f, Status::Ok);
    assert_eq!(
        v.flow.dst.to_string(),
        "fd00::3",
        "the event names the final destination"
    );
    // The same header with no segments left: the destination field is already final.
    let mut rh0_done = rh0.clone();
    rh0_done[3] = 0;
    let f = v6_frame_ext(TCP, segment(TCP, 30), ROUTING, &rh0_done, IP6_B);
    assert_l4(&f, Status::Ok);
    // Computing the pseudo-header with the wrong destination must be caught.
    let f = v6_frame_ext(TCP, segment(TCP, 30), ROUTING, &rh0, IP6_B);
    assert_l4(&f, Status::Bad);

    // Segment Routing Header (type 4): segment list[0] is the final destination.
    let mut srh = vec![ICMPV6, 4, 4, 1, 1, 0, 0, 0];
    srh.extend_from_slice(&IP6_C);
    srh.extend_from_slice(&IP6_B);
    let f = v6_frame_ext(ICMPV6, segment(ICMPV6, 12), ROUTING, &srh, IP6_C);
    assert_l4(&f, Status::Ok);

    // An atomic fragment (offset 0, M=0) is whole and verifiable; it carries an identification.
    let frag = [TCP, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    let mut f = v6_frame_ext(TCP, segment(TCP, 30), FRAGMENT, &frag, IP6_B);
    f.corrupt_payload();
    let v = assert_l4(&f, Status::Bad);
    assert_eq!(v.ip_id, 0xdead_beef);
    // A first fragment with more to come cannot be verified.
    let frag_more = [TCP, 0, 0, 1, 0, 0, 0, 9];
    let f = v6_frame_ext(TCP, segment(TCP, 30), FRAGMENT, &frag_more, IP6_B);
    assert_l4(&f, Status::Unverifiable);
}

#[test]
fn ipv4_fragments_are_unverifiable_but_the_header_is_checked() {
    root_only!();
    let mut f = v4_frame(&[], UDP, segment(UDP, 100), &[]);
    // Set MF and fix the header checksum.
    let h = f.l3_off;
    f.bytes[h + 6] = 0x20;
    f.bytes[h + 10] = 0;
    f.bytes[h + 11] = 0;
    let c = reference_checksum(&[&f.bytes[h..h + 20]]);
    f.bytes[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
    f.corrupt_payload();
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert_eq!(layer(&verdicts, Layer::Ipv4).status, Status::Ok);
    assert_eq!(layer(&verdicts, Layer::Udp).status, Status::Unverifiable);
    assert_eq!(delta.check(Layer::Udp, Status::Unverifiable), 1);
    assert_eq!(delta.check(Layer::Udp, Status::Bad), 0);
}

#[test]
fn truncated_segments_are_unverifiable() {
    root_only!();
    for proto in PROTOS_V4 {
        let f = v4_frame(&[], proto, segment(proto, 200), &[]);
        let cut = &f.bytes[..f.bytes.len() - 50];
        let verdicts = audit(cut);
        let l4 = verdicts
            .iter()
            .find(|v| v.layer != Layer::Ipv4)
            .expect("an L4 verdict");
        assert_eq!(l4.status, Status::Unverifiable);
    }
    let f = v6_frame(TCP, segment(TCP, 200));
    let verdicts = audit(&f.bytes[..f.bytes.len() - 1]);
    assert_eq!(layer(&verdicts, Layer::Tcp).status, Status::Unverifiable);
}

#[test]
fn inconsistent_lengths_are_malformed_not_mismatches() {
    root_only!();
    // IPv4 total length smaller than the header.
    let mut f = v4_frame(&[], TCP, segment(TCP, 10), &[]);
    set_ipv4_total_len(&mut f, 10);
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert!(verdicts.is_empty(), "{verdicts:#?}");
    assert_eq!(delta.malformed, 1);
    // IHL below 5.
    let mut f = v4_frame(&[], TCP, segment(TCP, 10), &[]);
    f.bytes[f.l3_off] = 0x44;
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert!(verdicts.is_empty(), "{verdicts:?}");
    assert_eq!(delta.malformed, 1);
    // UDP length longer than the IP payload.
    let mut f = v4_frame(&[], UDP, segment(UDP, 10), &[]);
    f.bytes[f.l4_off + 4] = 0x10;
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert!(verdicts.iter().all(|v| v.layer == Layer::Ipv4));
    assert_eq!(delta.malformed, 1);
    assert_eq!(delta.mismatch(Kind::Corrupt), 0);
    // TCP segment shorter than a TCP header.
    let mut f = v4_frame(&[], TCP, segment(TCP, 0), &[]);
    set_ipv4_total_len(&mut f, 20 + 12);
    let (_, delta) = audit_counted(&f.bytes);
    assert_eq!(delta.malformed, 1);
    // IPv6 extension headers longer than the payload.
    let ext = [TCP, 10, 0, 0, 0, 0, 0, 0];
    let f = v6_frame_ext(TCP, segment(TCP, 8), 60, &ext, IP6_B);
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert!(verdicts.is_empty(), "{verdicts:?}");
    assert_eq!(delta.malformed, 1);
}

/// Rewrites the IPv4 total length and keeps the header checksum right.
fn set_ipv4_total_len(f: &mut Frame, len: u16) {
    let h = f.l3_off;
    f.bytes[h + 2..h + 4].copy_from_slice(&len.to_be_bytes());
    f.bytes[h + 10..h + 12].copy_from_slice(&[0, 0]);
    let c = reference_checksum(&[&f.bytes[h..h + 20]]);
    f.bytes[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn frames_that_are_not_ip_are_counted() {
    root_only!();
    let mut arp = ethernet(&[], 0x0806);
    arp.extend_from_slice(&[0; 28]);
    let (verdicts, delta) = audit_counted(&arp);
    assert!(verdicts.is_empty(), "{verdicts:?}");
    assert_eq!(delta.not_ip, 1);
    assert_eq!(delta.packets, 1);
}

#[test]
fn signature_kinds() {
    root_only!();
    for (v6, proto) in [
        (false, TCP),
        (false, UDP),
        (true, TCP),
        (true, UDP),
        (true, ICMPV6),
    ] {
        let f = if v6 {
            v6_frame(proto, segment(proto, 64))
        } else {
            v4_frame(&[], proto, segment(proto, 64), &[])
        };
        // The field holds only the pseudo-header sum: TX offload never completed.
        let mut partial = f.clone();
        partial.set_field(f.pseudo);
        let v = assert_l4(&partial, Status::Bad);
        assert_eq!(v.kind, Kind::OffloadPending, "proto {proto} v6 {v6}");
        assert_eq!(v.want, f.checksum);
        assert_eq!(v.pseudo, f.pseudo);
        // Bytes swapped by an endianness bug.
        let mut swapped = f.clone();
        swapped.set_field(f.checksum.swap_bytes());
        if f.checksum.swap_bytes() != f.checksum {
            assert_eq!(assert_l4(&swapped, Status::Bad).kind, Kind::ByteSwapped);
        }
        // Anything else.
        let mut other = f.clone();
        other.set_field(f.checksum ^ 0x0101);
        assert_eq!(assert_l4(&other, Status::Bad).kind, Kind::Corrupt);
    }
    // Zero where mandatory.
    for f in [
        v4_frame(&[], TCP, segment(TCP, 9), &[]),
        v4_frame(&[], ICMP, segment(ICMP, 9), &[]),
        v6_frame(UDP, segment(UDP, 9)),
    ] {
        let mut z = f.clone();
        z.set_field(0);
        assert_eq!(assert_l4(&z, Status::Bad).kind, Kind::Zero);
    }
    // ICMPv4 has no pseudo-header, so no offload signature.
    let f = v4_frame(&[], ICMP, segment(ICMP, 9), &[]);
    let mut x = f.clone();
    x.set_field(f.checksum ^ 0x00ff);
    assert_eq!(assert_l4(&x, Status::Bad).kind, Kind::Corrupt);
}

#[test]
fn zero_udp_checksum_is_none_over_ipv4_and_bad_over_ipv6() {
    root_only!();
    let mut f = v4_frame(&[], UDP, segment(UDP, 20), &[]);
    f.set_field(0);
    let (verdicts, delta) = audit_counted(&f.bytes);
    assert_eq!(layer(&verdicts, Layer::Udp).status, Status::None);
    assert_eq!(delta.check(Layer::Udp, Status::None), 1);
    let mut f6 = v6_frame(UDP, segment(UDP, 20));
    let want = f6.checksum;
    f6.set_field(0);
    let v = assert_l4(&f6, Status::Bad);
    assert_eq!(v.kind, Kind::Zero);
    assert_eq!(v.want, want);
}

#[test]
fn both_ones_complement_zeros_verify() {
    root_only!();
    // Adjust two payload bytes so that the correct TCP checksum is 0x0000; then 0xffff (-0) must
    // verify too: tools that compare the field with a recomputed value get this wrong.
    let f = v4_frame(&[], TCP, segment(TCP, 40), &[]);
    let mut z = f.clone();
    let p = z.l4_off + 20;
    let word = ones_add(u16::from_be_bytes([z.bytes[p], z.bytes[p + 1]]), f.checksum);
    z.bytes[p..p + 2].copy_from_slice(&word.to_be_bytes());
    z.set_field(0);
    let seg = z.bytes[z.l4_off..].to_vec();
    assert_eq!(
        reference_checksum(&[&pseudo_v4(IP4_A, IP4_B, TCP, seg.len()), &seg]),
        0,
        "test setup"
    );
    assert_l4(&z, Status::Ok);
    z.set_field(0xffff);
    assert_l4(&z, Status::Ok);
}

#[test]
fn never_drops_or_modifies() {
    root_only!();
    // FrameAuditor::audit fails unless the program returned XDP_PASS; feed it junk of every size.
    let mut junk = vec![0u8; 14];
    for len in [14, 15, 33, 34, 54, 60, 100, 1514] {
        junk.resize(len, 0xff);
        junk[12] = 0x08;
        junk[13] = 0x00;
        audit(&junk);
        junk[12] = 0x86;
        junk[13] = 0xdd;
        audit(&junk);
        junk[12] = 0x81;
        audit(&junk);
    }
}

#[test]
fn every_length_and_byte_position_is_summed() {
    root_only!();
    // Every payload length up to past two 512-byte chunks, so every combination of the in-place
    // tail pieces (256 ... 4 bytes and 1-3 trailing bytes) and the small-range path is covered;
    // a flipped byte at the start, middle or end of the payload must always be caught.
    for len in 0..=1100usize {
        let f = v4_frame(&[], TCP, segment(TCP, len), &[]);
        assert_l4(&f, Status::Ok);
        let payload_off = f.l4_off + 20;
        let positions = [0, len / 2, len.saturating_sub(1)];
        for pos in positions.into_iter().filter(|_| len > 0) {
            let mut bad = f.clone();
            bad.bytes[payload_off + pos] ^= 0x5a;
            let v = assert_l4(&bad, Status::Bad);
            assert_eq!(v.got, f.checksum, "len {len} pos {pos}");
        }
    }
}

#[test]
fn events_per_flow_sends_the_first_and_counts_the_rest() {
    root_only!();
    let mut a = FrameAuditor::with_options(&LoadOptions {
        events_per_flow: 3,
        ..LoadOptions::default()
    })
    .expect("load with an event budget");
    let mut flow_a = v4_frame(&[], TCP, tcp_segment(1000, 80, 1, &payload(40)), &[]);
    flow_a.corrupt_payload();
    let mut flow_b = v4_frame(&[], TCP, tcp_segment(2000, 80, 1, &payload(40)), &[]);
    flow_b.corrupt_payload();
    let before = a.counters();
    let mut events = 0;
    for _ in 0..10 {
        events += a.audit(&flow_a.bytes).expect("test run").len();
    }
    assert_eq!(
        events, 3,
        "only the first 3 mismatches of a flow and kind send an event"
    );
    // Another flow has its own budget.
    let events_b: usize = (0..5)
        .map(|_| a.audit(&flow_b.bytes).expect("test run").len())
        .sum();
    assert_eq!(events_b, 3);
    let d = a.counters().since(&before);
    assert_eq!(d.events_sampled_out, 7 + 2, "the rest are counted");
    assert_eq!(
        d.layer_mismatch(Layer::Tcp, Kind::Corrupt),
        15,
        "every mismatch is counted"
    );
    assert_eq!(d.events_lost, 0);
}
