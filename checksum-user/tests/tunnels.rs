//! Tunnels through the loaded, verified XDP program (`BPF_PROG_TEST_RUN`): VXLAN, VXLAN-GPE and
//! Geneve (with options) over IPv4 and IPv6, with IPv4 and IPv6 inner packets. The outer and the
//! inner checksums each get their own verdict, and each verdict says which it is for.

mod common;

use std::sync::{LazyLock, Mutex};

use checksum_common::{Counters, Layer, Status, encap::EncapKind};
use checksum_testkit::frames::*;
use checksum_user::{kernel::loader::LoadOptions, kernel::testrun::FrameAuditor, model::Verdict};

static AUDITOR: LazyLock<Mutex<FrameAuditor>> =
    LazyLock::new(|| Mutex::new(FrameAuditor::new(true).expect("load the XDP program")));

fn audit(frame: &[u8]) -> (Vec<Verdict>, Counters) {
    let mut a = AUDITOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = a.counters();
    let v = a.audit(frame).expect("test run");
    let delta = a.counters().since(&before);
    (v, delta)
}

/// The one verdict of `layer` at the outer (`inner` false) or inner level.
fn verdict(verdicts: &[Verdict], layer: Layer, inner: bool) -> &Verdict {
    verdicts
        .iter()
        .find(|v| v.layer == layer && v.encap.is_some_and(|t| t.inner) == inner)
        .unwrap_or_else(|| panic!("no {layer:?} (inner {inner}) verdict in {verdicts:#?}"))
}

fn l4(proto: u8) -> Layer {
    match proto {
        TCP => Layer::Tcp,
        UDP => Layer::Udp,
        ICMP => Layer::Icmp,
        _ => Layer::Icmpv6,
    }
}

const KINDS: [EncapKind; 3] = [EncapKind::Vxlan, EncapKind::VxlanGpe, EncapKind::Geneve];

/// A Geneve option: class 0x0102, type 0x80, one 4-byte word of data.
const GENEVE_OPTION: [u8; 8] = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];

/// Every inner packet the tests wrap: an Ethernet frame of each protocol over IPv4 and IPv6.
fn inner_frames() -> Vec<Frame> {
    let mut frames: Vec<Frame> = [TCP, UDP, ICMP]
        .into_iter()
        .map(|p| v4_frame(&[], p, segment(p, 40), &[]))
        .collect();
    frames.extend([TCP, UDP, ICMPV6].map(|p| v6_frame(p, segment(p, 40))));
    frames
}

fn header(kind: EncapKind, vni: u32) -> Vec<u8> {
    let options: &[u8] = if kind == EncapKind::Geneve {
        &GENEVE_OPTION
    } else {
        &[]
    };
    tunnel_header(kind, vni, options, None)
}

#[test]
fn good_tunnelled_packets_verify_outside_and_inside() {
    root_only!();
    for kind in KINDS {
        for outer_v6 in [false, true] {
            for inner in inner_frames() {
                let f = tunnel_frame(outer_v6, tunnel_port(kind), &header(kind, 42), &inner.bytes);
                let (verdicts, counted) = audit(&f.bytes);
                let ctx = format!("{kind:?} outer v6 {outer_v6} inner proto {}", inner.proto);
                let outer = verdict(&verdicts, Layer::Udp, false);
                assert_eq!(outer.status, Status::Ok, "{ctx}: {outer:#?}");
                let t = outer.encap.expect("the outer verdict names its tunnel");
                assert_eq!((t.kind, t.vni, t.inner), (kind, 42, false), "{ctx}");
                let v = verdict(&verdicts, l4(inner.proto), true);
                assert_eq!(v.status, Status::Ok, "{ctx}: {v:#?}");
                assert_eq!(v.got, inner.checksum, "{ctx}");
                let t = v.encap.unwrap();
                assert_eq!((t.kind, t.vni, t.inner), (kind, 42, true), "{ctx}");
                // The outer addresses are the outer header's, the flow the inner packet's.
                assert_eq!(t.outer_src.is_ipv4(), !outer_v6, "{ctx}");
                assert_eq!(
                    v.flow.src.is_ipv4(),
                    inner.l3_off + 20 == inner.l4_off,
                    "{ctx}"
                );
                assert_eq!(counted.encapsulated, 1, "{ctx}");
                assert_eq!(counted.inner_malformed, 0, "{ctx}");
                let inner_ok: u64 = counted
                    .inner_checks
                    .iter()
                    .map(|s| s[Status::Ok as usize])
                    .sum();
                let inner_expected = if inner.l3_off + 20 == inner.l4_off {
                    2
                } else {
                    1
                };
                assert_eq!(inner_ok, inner_expected, "{ctx}: inner IPv4 header and L4");
                assert!(
                    verdicts.iter().all(|v| v.status == Status::Ok),
                    "{ctx}: {verdicts:#?}"
                );
            }
        }
    }
}

#[test]
fn a_broken_inner_checksum_is_bad_inside_only() {
    root_only!();
    for kind in KINDS {
        for outer_v6 in [false, true] {
            for mut inner in inner_frames() {
                inner.corrupt_payload();
                let f = tunnel_frame(outer_v6, tunnel_port(kind), &header(kind, 7), &inner.bytes);
                let (verdicts, _) = audit(&f.bytes);
                let ctx = format!("{kind:?} outer v6 {outer_v6} inner proto {}", inner.proto);
                assert_eq!(
                    verdict(&verdicts, Layer::Udp, false).status,
                    Status::Ok,
                    "{ctx}"
                );
                let v = verdict(&verdicts, l4(inner.proto), true);
                assert_eq!(v.status, Status::Bad, "{ctx}: {v:#?}");
                // The inner sum comes from the outer datagram's (less its headers): the same want
                // as the same frame audited on its own, where it is summed directly.
                let (alone, _) = audit(&inner.bytes);
                let direct = verdict(&alone, l4(inner.proto), false);
                assert_eq!((v.want, v.pseudo), (direct.want, direct.pseudo), "{ctx}");
                assert_eq!(v.got, inner.checksum, "{ctx}: the field as sent");
                assert_eq!(v.encap.unwrap().vni, 7, "{ctx}");
            }
        }
    }
}

#[test]
fn a_broken_outer_udp_checksum_is_bad_outside_and_the_inner_packet_still_fine() {
    root_only!();
    let inner = v4_frame(&[], TCP, segment(TCP, 100), &[]);
    for outer_v6 in [false, true] {
        let mut f = tunnel_frame(outer_v6, 4789, &header(EncapKind::Vxlan, 9), &inner.bytes);
        let good = f.field();
        f.set_field(good ^ 0x0101);
        let (verdicts, _) = audit(&f.bytes);
        let outer = verdict(&verdicts, Layer::Udp, false);
        assert_eq!(
            (outer.status, outer.want),
            (Status::Bad, good),
            "{outer:#?}"
        );
        assert_eq!(verdict(&verdicts, Layer::Tcp, true).status, Status::Ok);
    }
}

#[test]
fn a_zero_outer_udp_checksum_is_none_over_ipv4_and_over_ipv6() {
    root_only!();
    let inner = v4_frame(&[], UDP, segment(UDP, 30), &[]);
    for outer_v6 in [false, true] {
        let mut f = tunnel_frame(outer_v6, 4789, &header(EncapKind::Vxlan, 1), &inner.bytes);
        f.set_field(0);
        let (verdicts, _) = audit(&f.bytes);
        let outer = verdict(&verdicts, Layer::Udp, false);
        assert_eq!(
            outer.status,
            Status::None,
            "outer v6 {outer_v6}: {outer:#?}"
        );
        assert_eq!(outer.zero_outer_udp6(), outer_v6);
        assert_eq!(verdict(&verdicts, Layer::Udp, true).status, Status::Ok);
    }
    // Not on a port that is no tunnel's: a zero UDP checksum over IPv6 stays bad (RFC 8200).
    let mut plain = v6_frame(UDP, udp_datagram(49_152, 5353, &payload(30)));
    plain.set_field(0);
    let (verdicts, _) = audit(&plain.bytes);
    assert_eq!(verdict(&verdicts, Layer::Udp, false).status, Status::Bad);
}

#[test]
fn an_inner_vlan_tag_and_an_ip_payload_are_followed() {
    root_only!();
    let tagged = v4_frame(&[0x8100], TCP, segment(TCP, 64), &[]);
    let f = tunnel_frame(false, 4789, &header(EncapKind::Vxlan, 3), &tagged.bytes);
    let (verdicts, _) = audit(&f.bytes);
    assert_eq!(verdict(&verdicts, Layer::Tcp, true).status, Status::Ok);
    // Geneve and GPE may carry an IP packet with no Ethernet header.
    for kind in [EncapKind::Geneve, EncapKind::VxlanGpe] {
        for inner in [
            v4_frame(&[], UDP, segment(UDP, 20), &[]),
            v6_frame(TCP, segment(TCP, 20)),
        ] {
            let ethertype = if inner.l3_off + 20 == inner.l4_off {
                0x0800
            } else {
                0x86dd
            };
            let h = tunnel_header(kind, 5, &[], Some(ethertype));
            let f = tunnel_frame(true, tunnel_port(kind), &h, &inner.bytes[inner.l3_off..]);
            let (verdicts, _) = audit(&f.bytes);
            assert_eq!(
                verdict(&verdicts, l4(inner.proto), true).status,
                Status::Ok,
                "{kind:?}: {verdicts:#?}"
            );
        }
    }
}

#[test]
fn an_inner_fragment_is_unverifiable() {
    root_only!();
    let mut inner = v4_frame(&[], UDP, segment(UDP, 40), &[]);
    // More fragments, offset 0: the datagram's rest is in another packet.
    let flags = inner.l3_off + 6;
    inner.bytes[flags] = 0x20;
    let h = inner.l3_off + 10;
    inner.bytes[h..h + 2].copy_from_slice(&[0, 0]);
    let sum = reference_checksum(&[&inner.bytes[inner.l3_off..inner.l3_off + 20]]);
    inner.bytes[h..h + 2].copy_from_slice(&sum.to_be_bytes());
    let f = tunnel_frame(false, 4789, &header(EncapKind::Vxlan, 3), &inner.bytes);
    let (verdicts, _) = audit(&f.bytes);
    assert_eq!(verdict(&verdicts, Layer::Ipv4, true).status, Status::Ok);
    assert_eq!(
        verdict(&verdicts, Layer::Udp, true).status,
        Status::Unverifiable
    );
}

#[test]
fn truncated_inner_headers_are_counted_never_a_crash() {
    root_only!();
    let inner = v6_frame(TCP, segment(TCP, 200));
    let whole = tunnel_frame(false, 6081, &header(EncapKind::Geneve, 11), &inner.bytes);
    let inner_start = whole.l4_off + 8 + 16;
    // Cut inside the inner Ethernet header, the inner IPv6 header and the inner TCP header.
    for cut in [
        inner_start + 6,
        inner_start + 14 + 20,
        inner_start + 14 + 40 + 10,
    ] {
        let (verdicts, counted) = audit(&whole.bytes[..cut]);
        assert_eq!(
            verdict(&verdicts, Layer::Udp, false).status,
            Status::Unverifiable,
            "cut {cut}"
        );
        assert!(
            verdicts
                .iter()
                .filter(|v| v.encap.is_some_and(|t| t.inner))
                .all(|v| v.status == Status::Unverifiable),
            "cut {cut}: {verdicts:#?}"
        );
        assert_eq!(counted.encapsulated, 1, "cut {cut}");
        assert!(
            counted.inner_malformed
                + counted
                    .inner_checks
                    .iter()
                    .map(|s| s[Status::Unverifiable as usize])
                    .sum::<u64>()
                >= 1,
            "cut {cut}: {counted:?}"
        );
    }
}

#[test]
fn only_configured_ports_are_tunnels() {
    root_only!();
    let inner = v4_frame(&[], TCP, segment(TCP, 20), &[]);
    let f = tunnel_frame(false, 5555, &header(EncapKind::Vxlan, 2), &inner.bytes);
    let (verdicts, counted) = audit(&f.bytes);
    assert_eq!(counted.encapsulated, 0);
    assert!(verdicts.iter().all(|v| v.encap.is_none()), "{verdicts:#?}");
    let tunnels = checksum_user::cli::TunnelArgs {
        vxlan_ports: vec![5555],
        geneve_ports: vec![],
    };
    let mut custom = FrameAuditor::with_options(&LoadOptions {
        report_all: true,
        tunnel_ports: tunnels.table().unwrap(),
        ..LoadOptions::default()
    })
    .expect("load with --vxlan-port 5555");
    let verdicts = custom.audit(&f.bytes).expect("test run");
    assert_eq!(verdict(&verdicts, Layer::Tcp, true).status, Status::Ok);
}

#[test]
fn too_many_tunnel_ports_is_a_clear_error() {
    let tunnels = checksum_user::cli::TunnelArgs {
        vxlan_ports: vec![1, 2, 3],
        geneve_ports: vec![4, 5],
    };
    let err = tunnels.table().unwrap_err();
    assert!(err.contains("too many tunnel ports"), "{err}");
    // A default port given again is not counted twice.
    let again = checksum_user::cli::TunnelArgs {
        vxlan_ports: vec![4789, 1, 2, 3, 4],
        geneve_ports: vec![6081],
    };
    assert!(again.table().is_ok());
}

/// A Service-like address a NAT rewrote a tunnel's outer destination from.
const VIP: [u8; 4] = [10, 96, 0, 10];

/// RFC 1624 eqn. 3 on big-endian words: `field` updated for the words `old` becoming `new`.
fn rfc1624(field: u16, old: &[u16], new: &[u16]) -> u16 {
    let mut sum = u32::from(!field);
    for w in old {
        sum += u32::from(!w);
    }
    for w in new {
        sum += u32::from(*w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(u16::try_from(sum).unwrap())
}

fn words(a: [u8; 4]) -> [u16; 2] {
    [
        u16::from_be_bytes([a[0], a[1]]),
        u16::from_be_bytes([a[2], a[3]]),
    ]
}

/// The kubernetes#88986 and cilium#28707 family: a tunnel endpoint sends VXLAN with no outer UDP
/// checksum (0, legal over IPv4), and a NAT on the way rewrites the outer destination and
/// "updates" the absent checksum as if it were one. The receiver sees a constant nonzero field on
/// every packet; with the original address among the NAT candidates the diagnosis names it.
#[test]
fn a_nat_that_updates_an_absent_outer_udp_checksum_is_diagnosed() {
    root_only!();
    let field = rfc1624(0, &words(VIP), &words(IP4_B));
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let inner = v4_frame(&[], TCP, segment(TCP, 40 + i * 13), &[]);
            let mut f = tunnel_frame(false, 4789, &header(EncapKind::Vxlan, 100), &inner.bytes);
            f.set_field(field);
            f.bytes
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let candidates = std::env::temp_dir().join(format!("csa-vxlan-vip-{}.txt", std::process::id()));
    std::fs::write(&candidates, "10.96.0.10 vxlan-endpoint-vip\n").unwrap();
    let (out, err) = common::replay::replay(
        &pcap_file(1, &refs),
        &[
            "--all",
            "--format",
            "json",
            "--nat-candidates",
            candidates.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&candidates);
    let lines = common::replay::json_lines(&out);
    let outer: Vec<_> = lines
        .iter()
        .filter(|l| l["type"] == "verdict" && l["layer"] == "udp" && l["encap"]["level"] == "outer")
        .collect();
    assert_eq!(outer.len(), 4, "{out}\n{err}");
    assert!(
        outer
            .iter()
            .all(|v| v["status"] == "bad" && v["got"] == format!("{field:#06x}"))
    );
    // The inner packets are fine.
    assert!(
        lines
            .iter()
            .filter(|l| l["encap"]["level"] == "inner")
            .all(|l| l["status"] == "ok")
    );
    let d = lines
        .iter()
        .find(|l| l["type"] == "diagnosis" && l["layer"] == "udp")
        .unwrap_or_else(|| panic!("no outer UDP diagnosis in {out}"));
    assert_eq!(d["diagnosis"], "absent-checksum-updated", "{d}");
    assert_eq!(d["likely_original"], "10.96.0.10", "{d}");
    assert_eq!(d["evidence"], "candidate", "{d}");
    assert_eq!(d["dport"], 4789, "{d}");
}
