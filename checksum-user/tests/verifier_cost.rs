//! What verifying the audit programs costs: the kernel's count of instructions it processed per
//! program, and the time to load. Every new interface used to pay this; now a run pays it once,
//! but it still delays start-up and every test that loads the object. A budget, so that a change
//! that makes the verifier explore many more states fails here instead of showing up as slow
//! start-up.

mod common;

use std::time::Instant;

use checksum_user::kernel::{
    loader::{AUDIT_TC_EGRESS, AUDIT_TC_INGRESS, AUDIT_XDP, LoadOptions, Loaded},
    object::Object,
};

/// Instructions the verifier may process per audit program, half its limit of 1,000,000. The XDP
/// program needed 265,000 before one object served every interface (printed with --nocapture);
/// a change that defeats state pruning multiplies it and would soon hit the limit.
const BUDGET: u32 = 500_000;

#[test]
fn audit_programs_verify_within_budget() {
    if !common::require_root("audit_programs_verify_within_budget") {
        return;
    }
    // As replay loads them (the default), then as a live run does: flow tracking on (branches
    // the default prunes).
    for opts in [
        LoadOptions::default(),
        LoadOptions {
            track_reports: checksum_common::track::DEFAULT_TRACK_REPORTS,
            ..LoadOptions::default()
        },
    ] {
        // Both builds: the host verifies the one for kernels before 5.18 too.
        for object in [Object::Current, Object::Legacy] {
            eprintln!(
                "{} build, track_reports: {}",
                object.name(),
                opts.track_reports
            );
            verify_within_budget(&LoadOptions {
                object: Some(object),
                ..opts.clone()
            });
        }
    }
}

fn verify_within_budget(opts: &LoadOptions) {
    let mut loaded = Loaded::load(opts).expect("load the object");
    for name in [AUDIT_XDP, AUDIT_TC_INGRESS, AUDIT_TC_EGRESS] {
        let started = Instant::now();
        let info = if name == AUDIT_XDP {
            loaded.xdp(name).expect("verify").info()
        } else {
            loaded.tc(name).expect("verify").info()
        }
        .expect("program info");
        let insns = info.verified_instruction_count().expect("kernel >= 5.16");
        eprintln!(
            "{name}: {insns} instructions processed, loaded in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            insns <= BUDGET,
            "{name}: {insns} > {BUDGET} processed instructions"
        );
    }
}

/// The kernel-drop program runs on every packet the kernel frees for any reason, on the whole
/// machine; all but checksum drops leave after a few compares. Its whole verified size stays
/// small (it has no loops but the reason list's, unrolled).
#[test]
fn the_kernel_drop_program_verifies_small() {
    if !common::require_root("the_kernel_drop_program_verifies_small") {
        return;
    }
    let mut loaded = Loaded::load(&LoadOptions {
        kernel_drops: true,
        ..LoadOptions::default()
    })
    .expect("load the object");
    assert!(
        matches!(loaded.drop_config(), Some(Ok(_))),
        "{:?}",
        loaded.drop_config()
    );
    checksum_user::kernel::drops::attach(&mut loaded).expect("attach to kfree_skb");
    let prog: &aya::programs::BtfTracePoint = loaded
        .ebpf
        .program(checksum_user::kernel::drops::KFREE_SKB_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    let insns = prog
        .info()
        .expect("program info")
        .verified_instruction_count()
        .expect("kernel >= 5.16");
    eprintln!("csum_kfree_skb: {insns} instructions processed");
    assert!(insns <= 5_000, "{insns} processed instructions");
}
