//! The TC programs share the parser and checksum code with XDP: the same frames must get the same
//! verdicts at every hook, except for the documented TC-only cases (GSO super-packets, and VLAN
//! tags the driver moved out of the data, which a test run cannot produce).

mod common;

use checksum_common::{Hook, Layer, Status};
use checksum_user::testkit::frames::*;
use checksum_user::{
    kernel::event::Verdict,
    kernel::testrun::{FrameAuditor, RunError, SkbMeta},
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
