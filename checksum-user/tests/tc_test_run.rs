//! The TC programs share the parser and checksum code with XDP: the same frames must get the same
//! verdicts at every hook, except for the documented TC-only cases (GSO super-packets, and VLAN
//! tags the driver moved out of the data, which a test run cannot produce).

mod common;

use checksum_common::{Hook, Layer, Status};
use checksum_testkit::frames::*;
use checksum_user::{
    kernel::testrun::{FrameAuditor, RunError, SkbMeta},
    model::Verdict,
};
use common::require_root;

/// What must agree between hooks: everything but the hook, direction, ifindex and time.
fn essence(v: &[Verdict]) -> Vec<(Layer, Status, u8, u16, u16, u16, u32)> {
    v.iter()
        .map(|v| {
            (
                v.layer,
                v.status,
                v.kind as u8,
                v.got,
                v.want,
                v.pseudo,
                v.l4_len,
            )
        })
        .collect()
}

#[test]
fn tc_and_xdp_agree_on_every_catalogued_frame() {
    if !require_root(module_path!()) {
        return;
    }
    let mut a = FrameAuditor::new(true).expect("load");
    let catalogue = catalogue();
    assert!(catalogue.len() > 200);
    for (name, frame) in &catalogue {
        let xdp = a
            .audit_at(Hook::Xdp, frame, &SkbMeta::default())
            .expect("xdp run");
        assert!(!xdp.is_empty(), "{name}: no verdict at all");
        for hook in [Hook::TcIngress, Hook::TcEgress] {
            let tc = a
                .audit_at(hook, frame, &SkbMeta::default())
                .expect("tc run");
            assert_eq!(
                essence(&tc),
                essence(&xdp),
                "{name}: {hook:?} disagrees with XDP"
            );
            assert!(
                tc.iter()
                    .all(|v| v.hook == hook && v.direction == hook.direction()),
                "{name}"
            );
        }
    }
}

#[test]
fn gso_super_packets_are_counted_not_reported() {
    if !require_root(module_path!()) {
        return;
    }
    let mut a = FrameAuditor::new(true).expect("load");
    // A GRO/TSO aggregate: the field holds a partial sum and the IP length covers all segments.
    let mut f = v4_frame(&[], TCP, segment(TCP, 2800), &[]);
    let pseudo = f.pseudo;
    f.set_field(pseudo);
    let before = a.counters();
    for hook in [Hook::TcIngress, Hook::TcEgress] {
        let v = a
            .audit_at(
                hook,
                &f.bytes,
                &SkbMeta {
                    gso_segs: 2,
                    gso_size: 1400,
                },
            )
            .expect("run");
        assert!(v.is_empty(), "{hook:?}: {v:#?}");
    }
    let delta = a.counters().since(&before);
    assert_eq!(delta.gso_aggregate, 2);
    assert_eq!(delta.packets, 2);
    assert_eq!(delta.check(Layer::Tcp, Status::Bad), 0);
    // The same bytes without GSO metadata are an ordinary offload-pending mismatch.
    let v = a
        .audit_at(Hook::TcEgress, &f.bytes, &SkbMeta::default())
        .expect("run");
    assert!(
        v.iter()
            .any(|v| v.layer == Layer::Tcp && v.status == Status::Bad)
    );
}

#[test]
fn tc_never_ends_the_chain_on_junk() {
    if !require_root(module_path!()) {
        return;
    }
    // audit_at fails unless the program returned TC_ACT_UNSPEC (TCX_NEXT).
    let mut a = FrameAuditor::new(false).expect("load");
    for len in [14, 20, 34, 54, 60, 1514] {
        for ethertype in [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]] {
            let mut junk = vec![0xffu8; len];
            junk[12..14].copy_from_slice(&ethertype);
            for hook in [Hook::TcIngress, Hook::TcEgress] {
                match a.audit_at(hook, &junk, &SkbMeta::default()) {
                    Ok(_) => {}
                    // The kernel's test harness itself refuses IP frames shorter than an IP
                    // header before our program runs; nothing else may fail.
                    Err(RunError::Kernel(_)) if len < 14 + 40 => {}
                    Err(e) => panic!("{hook:?} len {len} {ethertype:x?}: {e}"),
                }
            }
        }
    }
}

/// The skb's own checksum state (checksum-ebpf/src/skb.rs): a test run's skb is built from plain
/// bytes by the kernel, `CHECKSUM_NONE` with no offsets; XDP has no skb, and says "unknown" (None),
/// as a TC program does with the state turned off. A field holding only the pseudo-header sum is
/// then summed and reported offload-pending even with the partial-ok fast path on: only a skb
/// that is `CHECKSUM_PARTIAL` at that field takes it (`tests/skb_state.rs` shows that one live).
#[test]
fn test_runs_report_skb_state_none_at_tc_and_unknown_at_xdp() {
    use checksum_common::{Kind, event::IpSummed};
    use checksum_user::kernel::loader::LoadOptions;
    if !require_root(module_path!()) {
        return;
    }
    let mut a = FrameAuditor::with_options(&LoadOptions {
        report_all: true,
        partial_ok: true,
        ..LoadOptions::default()
    })
    .expect("load");
    let mut pending = v4_frame(&[], TCP, segment(TCP, 100), &[]);
    let pseudo = pending.pseudo;
    pending.set_field(pseudo);
    let frames = [
        v4_frame(&[], TCP, segment(TCP, 100), &[]).bytes,
        v4_frame(&[], UDP, segment(UDP, 33), &[]).bytes,
        v6_frame(UDP, segment(UDP, 64)).bytes,
        v6_frame(ICMPV6, segment(ICMPV6, 8)).bytes,
        pending.bytes.clone(),
    ];
    for frame in &frames {
        for hook in [Hook::TcIngress, Hook::TcEgress] {
            let v = a.audit_at(hook, frame, &SkbMeta::default()).expect("run");
            assert_ne!(v, []);
            for v in &v {
                let skb = v
                    .skb
                    .unwrap_or_else(|| panic!("{hook:?}: no skb state: {v:?}"));
                assert_eq!(skb.ip_summed, IpSummed::None, "{hook:?}: {skb:?}");
                assert_eq!((skb.csum_start, skb.csum_offset), (0, 0), "{skb:?}");
                assert!(!skb.encapsulation);
                // The test harness sets the network header: somewhere past the headroom.
                assert!(skb.network_header > 0, "{skb:?}");
                assert_ne!(v.status, Status::PartialOk);
            }
        }
        let v = a
            .audit_at(Hook::Xdp, frame, &SkbMeta::default())
            .expect("run");
        assert!(v.iter().all(|v| v.skb.is_none()), "{v:#?}");
    }
    let v = a
        .audit_at(Hook::TcEgress, &pending.bytes, &SkbMeta::default())
        .expect("run");
    let tcp = v.iter().find(|v| v.layer == Layer::Tcp).expect("tcp");
    assert_eq!((tcp.status, tcp.kind), (Status::Bad, Kind::OffloadPending));
    eprintln!("a TC test run's skb: {:?}", tcp.skb);

    // Turned off, TC says unknown too.
    let mut off = FrameAuditor::with_options(&LoadOptions {
        report_all: true,
        skb_state: false,
        ..LoadOptions::default()
    })
    .expect("load");
    for hook in [Hook::TcIngress, Hook::TcEgress] {
        let v = off
            .audit_at(hook, &frames[0], &SkbMeta::default())
            .expect("run");
        assert!(!v.is_empty() && v.iter().all(|v| v.skb.is_none()), "{v:#?}");
    }
}
